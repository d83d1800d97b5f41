"""Agreements: party organizations, immutable terms versions, signatures and the state machine.

The state machine is data: `ALLOWED_TRANSITIONS` lists the states each state may move to, and
`ACTION_TARGETS` the state each action moves towards, so the allowed actions of a state follow.
"""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any
from uuid import UUID

from pydantic import AfterValidator, AwareDatetime, BaseModel, Field

from schemas.codes import CurrencyCode, LicenceId
from schemas.listings import OrganizationRef
from schemas.strict import StrictModel
from schemas.text import LongText, Markdown, Paragraph, ShortText, Title


class AgreementType(StrEnum):
    NDA = "nda"
    DATA_USE = "data_use"
    DATA_LICENCE = "data_licence"
    COMPUTE_RENTAL = "compute_rental"
    MODEL_LICENCE = "model_licence"
    SCENARIO_PILOT = "scenario_pilot"
    JOINT_RESEARCH = "joint_research"


class AgreementStatus(StrEnum):
    PROPOSED = "proposed"
    COUNTERED = "countered"
    SIGNED = "signed"
    ACTIVE = "active"
    COMPLETED = "completed"
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"
    EXPIRED = "expired"
    TERMINATED = "terminated"


class AgreementAction(StrEnum):
    COUNTER = "counter"
    SIGN = "sign"
    WITHDRAW = "withdraw"
    REJECT = "reject"
    TERMINATE = "terminate"
    CONFIRM_COMPLETION = "confirm_completion"


_OPEN = frozenset(
    {
        AgreementStatus.COUNTERED,
        AgreementStatus.SIGNED,
        AgreementStatus.WITHDRAWN,
        AgreementStatus.REJECTED,
        AgreementStatus.EXPIRED,
    }
)
ALLOWED_TRANSITIONS: dict[AgreementStatus, frozenset[AgreementStatus]] = {
    AgreementStatus.PROPOSED: _OPEN,
    AgreementStatus.COUNTERED: _OPEN,
    AgreementStatus.SIGNED: frozenset({AgreementStatus.ACTIVE, AgreementStatus.TERMINATED}),
    AgreementStatus.ACTIVE: frozenset({AgreementStatus.COMPLETED, AgreementStatus.TERMINATED}),
    AgreementStatus.COMPLETED: frozenset(),
    AgreementStatus.WITHDRAWN: frozenset(),
    AgreementStatus.REJECTED: frozenset(),
    AgreementStatus.EXPIRED: frozenset(),
    AgreementStatus.TERMINATED: frozenset(),
}
# Signing and confirming completion move towards their state once every party has done it.
ACTION_TARGETS: dict[AgreementAction, AgreementStatus] = {
    AgreementAction.COUNTER: AgreementStatus.COUNTERED,
    AgreementAction.SIGN: AgreementStatus.SIGNED,
    AgreementAction.WITHDRAW: AgreementStatus.WITHDRAWN,
    AgreementAction.REJECT: AgreementStatus.REJECTED,
    AgreementAction.TERMINATE: AgreementStatus.TERMINATED,
    AgreementAction.CONFIRM_COMPLETION: AgreementStatus.COMPLETED,
}
OPEN_STATUSES = frozenset({AgreementStatus.PROPOSED, AgreementStatus.COUNTERED})


def allowed_actions(status: AgreementStatus) -> list[AgreementAction]:
    """The actions the state machine allows in `status` (roles are checked separately)."""
    return [
        action for action, target in ACTION_TARGETS.items() if target in ALLOWED_TRANSITIONS[status]
    ]


def _to_cents(value: Decimal) -> Decimal:
    # One spelling per amount ("100" and "100.0" become "100.00"), so equal terms hash equally.
    return value.quantize(Decimal("0.01"))


Amount = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2), AfterValidator(_to_cents)]
GpuHours = Annotated[
    Decimal, Field(gt=0, max_digits=14, decimal_places=2), AfterValidator(_to_cents)
]


class PersonalData(StrEnum):
    NONE = "none"
    ANONYMISED = "anonymised"
    PSEUDONYMISED = "pseudonymised"
    IDENTIFIABLE = "identifiable"


class PaymentSchedule(StrEnum):
    ONE_OFF = "one_off"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    ON_MILESTONES = "on_milestones"
    PER_GPU_HOUR = "per_gpu_hour"


class IpOwnership(StrEnum):
    """Who owns the results: each party what it creates, jointly, the proposer or the recipients."""

    CONTRIBUTOR = "contributor"
    JOINT = "joint"
    PROPOSER = "proposer"
    RECIPIENTS = "recipients"


class Confidentiality(StrEnum):
    NONE = "none"
    ONE_WAY = "one_way"
    MUTUAL = "mutual"


class Milestone(StrictModel):
    title: ShortText
    due: date
    deliverables: Annotated[list[ShortText], Field(max_length=20)] = Field(default_factory=list)


class DataUseTerms(StrictModel):
    allowed_purposes: Annotated[list[ShortText], Field(min_length=1, max_length=20)]
    retention_days: int = Field(ge=0, le=36_500)
    onward_sharing: bool = False
    on_premises_only: bool = False
    personal_data: PersonalData = PersonalData.NONE


class ComputeTerms(StrictModel):
    listing_id: UUID = Field(description="The compute listing (one of the agreement's) rented.")
    gpu_hours: GpuHours
    accelerator: ShortText
    window_start: date
    window_end: date


class PriceTerms(StrictModel):
    amount: Amount
    currency: CurrencyCode
    schedule: PaymentSchedule


class ResultsTerms(StrictModel):
    ownership: IpOwnership
    licence: LicenceId | None = Field(default=None, description="SPDX licence of the results.")


class ConfidentialityTerms(StrictModel):
    level: Confidentiality = Confidentiality.MUTUAL
    years: int = Field(default=3, ge=0, le=50)


class Terms(StrictModel):
    """One version of an agreement's terms; immutable once proposed, hashed canonically."""

    purpose: Annotated[LongText, Field(min_length=1)]
    scope: LongText = ""
    deliverables: Annotated[list[ShortText], Field(max_length=50)] = Field(default_factory=list)
    milestones: Annotated[list[Milestone], Field(max_length=50)] = Field(default_factory=list)
    data_use: DataUseTerms | None = None
    compute: ComputeTerms | None = None
    price: PriceTerms | None = None
    results: ResultsTerms | None = None
    confidentiality: ConfidentialityTerms = Field(default_factory=ConfidentialityTerms)
    start_date: date
    end_date: date
    text: Markdown = Field(default="", description="Free text, part of the signed terms.")


class PartyProposal(StrictModel):
    organization_id: UUID
    listing_ids: Annotated[list[UUID], Field(min_length=1, max_length=20)]


class AgreementCreate(StrictModel):
    type: AgreementType
    title: Title
    parties: Annotated[list[PartyProposal], Field(min_length=2, max_length=10)] = Field(
        description="Every party with its own listings, your organization included."
    )
    terms: Terms
    respond_by: AwareDatetime | None = Field(
        default=None, description="Deadline for the other parties; a default applies if unset."
    )


class CounterProposal(StrictModel):
    terms: Terms
    respond_by: AwareDatetime | None = None


class TransitionRequest(StrictModel):
    action: AgreementAction = Field(description="Counter-proposals go to `.../counter`.")
    terms_version: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="The terms version you sign (required to sign).",
    )
    reason: Paragraph | None = Field(default=None, description="Required to reject or terminate.")


class CommentCreate(StrictModel):
    body: Annotated[LongText, Field(min_length=1)]


class SignatureRead(BaseModel):
    member_id: UUID
    terms_version: int
    terms_hash: str
    signed_at: datetime


class PartyRead(BaseModel):
    organization: OrganizationRef
    listing_ids: list[UUID]
    is_proposer: bool
    signature: SignatureRead | None = Field(description="Its signature of the current terms.")
    completion_confirmed_at: datetime | None


class AgreementRead(BaseModel):
    id: UUID
    type: AgreementType
    title: str
    status: AgreementStatus
    status_reason: str | None
    parties: list[PartyRead]
    terms_version: int
    terms_hash: str = Field(description="SHA-256 of the current terms' canonical JSON.")
    respond_by: datetime
    start_date: date
    end_date: date
    allowed_actions: list[AgreementAction]
    created_at: datetime
    updated_at: datetime
    version: int


class TermsVersionRead(BaseModel):
    agreement_id: UUID
    version: int
    hash: str
    terms: Terms
    author_organization_id: UUID
    author_member_id: UUID
    created_at: datetime


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


class TermsChange(BaseModel):
    path: str = Field(description="Dotted path in the terms, e.g. `price.amount`.")
    change: ChangeKind
    before: Any = None
    after: Any = None


class TermsDiff(BaseModel):
    agreement_id: UUID
    version: int
    against: int
    changes: list[TermsChange] = Field(description="From `against` to `version`.")
