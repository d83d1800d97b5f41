"""Storage rows -> API schemas; the only way a row leaves the service."""

from marketplace.models import (
    Agreement,
    AgreementSignature,
    AgreementTerms,
    ApiToken,
    Event,
    Listing,
    Member,
    Organization,
    SavedSearch,
    WebhookDelivery,
    WebhookEndpoint,
)
from matching.ranking import Match
from schemas.agreements import (
    AgreementRead,
    AgreementStatus,
    PartyRead,
    SignatureRead,
    Terms,
    TermsVersionRead,
    allowed_actions,
)
from schemas.auth import TokenRead
from schemas.events import EventRead
from schemas.listings import ATTRIBUTES_BY_KIND, ListingKind, ListingRead, OrganizationRef, side_of
from schemas.matches import (
    ConstraintCheck,
    FeedbackVerdict,
    ListingBrief,
    MatchRead,
    ScoreComponents,
)
from schemas.members import MemberRead
from schemas.organizations import OrganizationRead
from schemas.saved_searches import SavedSearchRead
from schemas.webhooks import (
    DeliveryRead,
    WebhookEndpointCreated,
    WebhookEndpointRead,
)


def organization_read(row: Organization) -> OrganizationRead:
    return OrganizationRead.model_validate(row, from_attributes=True)


def organization_ref(row: Organization) -> OrganizationRef:
    return OrganizationRef.model_validate(row, from_attributes=True)


def member_read(row: Member) -> MemberRead:
    return MemberRead.model_validate(row, from_attributes=True)


def token_read(row: ApiToken) -> TokenRead:
    return TokenRead.model_validate(row, from_attributes=True)


def listing_read(row: Listing) -> ListingRead:
    kind = ListingKind(row.kind)
    return ListingRead(
        id=row.id,
        kind=kind,
        side=side_of(kind),
        title=row.title,
        summary=row.summary,
        description=row.description,
        tags=row.tags,
        sector=row.sector,
        country=row.country,
        region=row.region,
        languages=row.languages,
        status=row.status,
        visibility=row.visibility,
        organization=organization_ref(row.organization),
        attributes=ATTRIBUTES_BY_KIND[kind].model_validate(row.attributes),  # type: ignore[arg-type]
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )


def _signature_read(row: AgreementSignature | None) -> SignatureRead | None:
    return None if row is None else SignatureRead.model_validate(row, from_attributes=True)


def agreement_read(row: Agreement) -> AgreementRead:
    status = AgreementStatus(row.status)
    current = {
        s.organization_id: s
        for s in row.signatures
        if s.terms_version == row.terms_version and s.voided_at is None
    }
    return AgreementRead(
        id=row.id,
        type=row.type,
        title=row.title,
        status=status,
        status_reason=row.status_reason,
        parties=[
            PartyRead(
                organization=organization_ref(party.organization),
                listing_ids=party.listing_ids,  # type: ignore[arg-type]
                is_proposer=party.organization_id == row.proposer_organization_id,
                signature=_signature_read(current.get(party.organization_id)),
                completion_confirmed_at=party.completion_confirmed_at,
            )
            for party in row.parties
        ],
        terms_version=row.terms_version,
        terms_hash=row.terms_hash,
        respond_by=row.respond_by,
        start_date=row.start_date,
        end_date=row.end_date,
        allowed_actions=allowed_actions(status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        version=row.version,
    )


def terms_version_read(row: AgreementTerms) -> TermsVersionRead:
    return TermsVersionRead(
        agreement_id=row.agreement_id,
        version=row.version,
        hash=row.hash,
        terms=Terms.model_validate(row.terms),
        author_organization_id=row.author_organization_id,
        author_member_id=row.author_member_id,
        created_at=row.created_at,
    )


def event_read(row: Event) -> EventRead:
    return EventRead.model_validate(row, from_attributes=True)


def webhook_endpoint_read(row: WebhookEndpoint) -> WebhookEndpointRead:
    return WebhookEndpointRead.model_validate(row, from_attributes=True)


def webhook_endpoint_created(row: WebhookEndpoint) -> WebhookEndpointCreated:
    return WebhookEndpointCreated.model_validate(row, from_attributes=True)


def delivery_read(row: WebhookDelivery) -> DeliveryRead:
    return DeliveryRead(
        id=row.id,
        endpoint_id=row.endpoint_id,
        event_id=row.event_id,
        event_type=row.event.type,  # type: ignore[arg-type]
        status=row.status,
        attempts=row.attempts,
        next_attempt_at=row.next_attempt_at,
        last_attempt_at=row.last_attempt_at,
        last_status_code=row.last_status_code,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        created_at=row.created_at,
    )


def saved_search_read(row: SavedSearch) -> SavedSearchRead:
    return SavedSearchRead.model_validate(row, from_attributes=True)


def listing_brief(row: Listing) -> ListingBrief:
    kind = ListingKind(row.kind)
    return ListingBrief(
        id=row.id,
        kind=kind,
        side=side_of(kind),
        title=row.title,
        summary=row.summary,
        sector=row.sector,
        country=row.country,
        region=row.region,
        organization=organization_ref(row.organization),
    )


def match_read(match: Match, row: Listing, verdict: FeedbackVerdict | None) -> MatchRead:
    return MatchRead(
        listing=listing_brief(row),
        score=round(match.score, 6),
        components=ScoreComponents(
            semantic=round(match.components.semantic, 6),
            lexical=round(match.components.lexical, 6),
            constraints=round(match.components.constraints, 6),
            prominence=round(match.components.prominence, 6),
            mentions=match.components.mentions,
        ),
        matched_terms=list(match.matched_terms),
        evidence=match.evidence,
        checks=[
            ConstraintCheck(name=c.name, outcome=c.outcome, detail=c.detail, hard=c.hard)  # type: ignore[arg-type]
            for c in match.checks
        ],
        feedback=verdict,
    )
