"""Matches between needs and offers, free-text search, partner recommendations and feedback."""

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, Field, StringConstraints

from schemas.codes import CountryCode
from schemas.listings import ListingKind, OrganizationRef, Sector, Side
from schemas.organizations import OrganizationKind
from schemas.strict import StrictModel
from schemas.text import no_nul

MAX_MATCHES = 50
MAX_QUERY_CHARS = 2_000

Method = Literal["dense", "lexical", "hybrid"]


class FeedbackVerdict(StrEnum):
    RELEVANT = "relevant"
    DISMISSED = "dismissed"


class ConstraintOutcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


class ConstraintCheck(BaseModel):
    name: str = Field(description="Stable name, e.g. `data_residency`, `budget`, `capabilities`.")
    outcome: ConstraintOutcome
    detail: str = Field(description="Why, in words.")
    hard: bool = Field(description="Whether `strict=true` drops a counterpart that fails it.")


class ScoreComponents(BaseModel):
    semantic: float = Field(description="Cosine similarity of the embeddings.")
    lexical: float = Field(description="BM25 relative to the best lexical hit (0 if no term).")
    constraints: float = Field(description="Share of constraints met (unknown counts half).")
    prominence: float = Field(
        description="How widely other organizations name this one by its title, from 0 to 1."
    )
    mentions: int = Field(
        description="How many other organizations name this one by its title in their listings."
    )


class ListingBrief(BaseModel):
    id: UUID
    kind: ListingKind
    side: Side
    title: str
    summary: str
    sector: Sector
    country: str
    region: str
    organization: OrganizationRef


class MatchRead(BaseModel):
    listing: ListingBrief
    score: float
    components: ScoreComponents
    matched_terms: list[str]
    evidence: str = Field(description="The counterpart's sentence closest to the query.")
    checks: list[ConstraintCheck]
    feedback: FeedbackVerdict | None = Field(
        default=None, description="Your organization's verdict on this pair, if any."
    )


class MatchList(BaseModel):
    items: list[MatchRead]


QueryText = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS),
    AfterValidator(no_nul),
]


class SearchRequest(StrictModel):
    """Free text (English or Chinese) and filters; either side or both."""

    text: QueryText
    kinds: Annotated[list[ListingKind], Field(max_length=4)] | None = None
    side: Side | None = None
    sector: Sector | None = None
    country: CountryCode | None = None
    organization_kind: OrganizationKind | None = None
    limit: int = Field(default=10, ge=1, le=MAX_MATCHES)
    min_score: float = Field(default=0.0, ge=0.0, le=1.0)


class PartnerPair(BaseModel):
    listing_id: UUID = Field(description="Your organization's listing.")
    listing_title: str
    counterpart_id: UUID = Field(description="The partner's listing.")
    counterpart_title: str
    score: float


class PartnerRead(BaseModel):
    organization: OrganizationRef
    score: float = Field(description="Sum of the best pair scores, so breadth and fit both count.")
    pairs: list[PartnerPair]


class PartnerList(BaseModel):
    items: list[PartnerRead]


class FeedbackCreate(StrictModel):
    verdict: FeedbackVerdict
    reason: Annotated[
        str, StringConstraints(strip_whitespace=True, max_length=1_000), AfterValidator(no_nul)
    ] = ""


class FeedbackRead(BaseModel):
    listing_id: UUID
    counterpart_id: UUID
    verdict: FeedbackVerdict
    reason: str
