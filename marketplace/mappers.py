"""Storage rows -> API schemas; the only way a row leaves the service."""

from marketplace.models import ApiToken, Listing, Member, Organization
from schemas.auth import TokenRead
from schemas.listings import ATTRIBUTES_BY_KIND, ListingKind, ListingRead, OrganizationRef, side_of
from schemas.members import MemberRead
from schemas.organizations import OrganizationRead


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
