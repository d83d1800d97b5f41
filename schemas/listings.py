"""Listings: the four kinds (dataset, scenario on the need side; compute, model on the offer side).

Kind-specific attributes form a discriminated union on `kind`, so a body is validated against the
attributes of its own kind only.
"""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    Field,
    StringConstraints,
    model_validator,
)

from schemas.codes import CountryCode, CurrencyCode, LanguageCode, LicenceId
from schemas.organizations import OrganizationKind
from schemas.partial import Omittable
from schemas.strict import StrictModel
from schemas.text import LongText, Markdown, ShortText, Title, no_nul


class ListingKind(StrEnum):
    DATASET = "dataset"
    SCENARIO = "scenario"
    COMPUTE = "compute"
    MODEL = "model"


class Side(StrEnum):
    NEED = "need"
    OFFER = "offer"


KINDS_BY_SIDE: dict[Side, frozenset[ListingKind]] = {
    Side.NEED: frozenset({ListingKind.DATASET, ListingKind.SCENARIO}),
    Side.OFFER: frozenset({ListingKind.COMPUTE, ListingKind.MODEL}),
}


def side_of(kind: ListingKind) -> Side:
    return Side.NEED if kind in KINDS_BY_SIDE[Side.NEED] else Side.OFFER


class Sector(StrEnum):
    EDUCATION = "education"
    HEALTHCARE = "healthcare"
    BIOMEDICINE = "biomedicine"
    MANUFACTURING = "manufacturing"
    ENERGY_CARBON = "energy_carbon"
    SMART_CITY = "smart_city"
    TRANSPORT = "transport"
    AGRICULTURE = "agriculture"
    FINANCE = "finance"
    CULTURE_TOURISM = "culture_tourism"
    MEDIA = "media"
    GOVERNMENT_SERVICES = "government_services"
    ENVIRONMENT = "environment"
    OTHER = "other"


class ListingStatus(StrEnum):
    DRAFT = "draft"
    PUBLISHED = "published"
    PAUSED = "paused"
    CLOSED = "closed"


class Visibility(StrEnum):
    PUBLIC = "public"
    REGISTERED = "registered"
    PRIVATE = "private"


class Modality(StrEnum):
    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    TABULAR = "tabular"
    TIME_SERIES = "time_series"
    GEOSPATIAL = "geospatial"
    MULTIMODAL = "multimodal"


class DataAccess(StrEnum):
    OPEN = "open"
    ON_REQUEST = "on_request"
    ON_PREMISES_ONLY = "on_premises_only"


class UpdateFrequency(StrEnum):
    STATIC = "static"
    REALTIME = "realtime"
    DAILY = "daily"
    WEEKLY = "weekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    YEARLY = "yearly"
    IRREGULAR = "irregular"


class Deployment(StrEnum):
    API = "api"
    ON_PREMISES = "on_premises"
    OPEN_WEIGHTS = "open_weights"


class Task(StrEnum):
    """AI tasks, shared by scenario capabilities and model tasks so the two can be compared."""

    TEXT_CLASSIFICATION = "text_classification"
    TOKEN_CLASSIFICATION = "token_classification"
    QUESTION_ANSWERING = "question_answering"
    SUMMARIZATION = "summarization"
    TRANSLATION = "translation"
    TEXT_GENERATION = "text_generation"
    CONVERSATIONAL = "conversational"
    SENTENCE_SIMILARITY = "sentence_similarity"
    FEATURE_EXTRACTION = "feature_extraction"
    INFORMATION_RETRIEVAL = "information_retrieval"
    IMAGE_CLASSIFICATION = "image_classification"
    OBJECT_DETECTION = "object_detection"
    IMAGE_SEGMENTATION = "image_segmentation"
    IMAGE_TO_TEXT = "image_to_text"
    TEXT_TO_IMAGE = "text_to_image"
    OCR = "ocr"
    DEPTH_ESTIMATION = "depth_estimation"
    VIDEO_CLASSIFICATION = "video_classification"
    VISUAL_QUESTION_ANSWERING = "visual_question_answering"
    SPEECH_RECOGNITION = "speech_recognition"
    TEXT_TO_SPEECH = "text_to_speech"
    AUDIO_CLASSIFICATION = "audio_classification"
    TABULAR_CLASSIFICATION = "tabular_classification"
    TABULAR_REGRESSION = "tabular_regression"
    TIME_SERIES_FORECASTING = "time_series_forecasting"
    ANOMALY_DETECTION = "anomaly_detection"
    RECOMMENDATION = "recommendation"
    REINFORCEMENT_LEARNING = "reinforcement_learning"
    OPTIMIZATION = "optimization"
    PROTEIN_STRUCTURE = "protein_structure"
    GEOSPATIAL_ANALYSIS = "geospatial_analysis"


Summary = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=500), AfterValidator(no_nul)
]
Tag = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=50),
    AfterValidator(no_nul),
]
Region = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=200), AfterValidator(no_nul)
]
PricingNote = Annotated[
    str, StringConstraints(strip_whitespace=True, max_length=1_000), AfterValidator(no_nul)
]
Keywords = Annotated[str, AfterValidator(no_nul)]
Money = Annotated[Decimal, Field(ge=0, max_digits=14, decimal_places=2)]


class DatasetAttributes(StrictModel):
    modality: Modality
    record_count: int | None = Field(default=None, ge=0)
    size_gb: float | None = Field(default=None, ge=0, le=1e9)
    licence: LicenceId
    contains_personal_data: bool = False
    access: DataAccess = DataAccess.ON_REQUEST
    update_frequency: UpdateFrequency = UpdateFrequency.STATIC
    documentation_url: AnyHttpUrl | None = None


class Site(StrictModel):
    city: ShortText
    facility: ShortText | None = None


class ScenarioAttributes(StrictModel):
    problem_statement: LongText
    desired_outcome: LongText
    site: Site | None = None
    budget_min: Money | None = None
    budget_max: Money | None = None
    currency: CurrencyCode | None = None
    deadline: date | None = None
    required_gpu_hours: float | None = Field(
        default=None, gt=0, le=1e12, description="Compute the scenario needs, if it needs any."
    )
    required_capabilities: Annotated[list[Task], Field(max_length=20)] = Field(default_factory=list)
    linked_dataset_ids: Annotated[list[UUID], Field(max_length=20)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _budget_is_consistent(self) -> "ScenarioAttributes":
        if (self.budget_min is not None or self.budget_max is not None) and self.currency is None:
            raise ValueError("currency is required when a budget is given")
        if (
            self.budget_min is not None
            and self.budget_max is not None
            and self.budget_min > self.budget_max
        ):
            raise ValueError("budget_min must not exceed budget_max")
        return self


class DataCentreLocation(StrictModel):
    country: CountryCode
    city: ShortText | None = None


class ComputeAttributes(StrictModel):
    accelerator_model: ShortText
    accelerator_vendor: ShortText
    accelerator_count: int = Field(ge=1, le=1_000_000)
    memory_per_accelerator_gb: float = Field(gt=0, le=10_000)
    interconnect: ShortText | None = None
    gpu_hours_available: float = Field(ge=0, le=1e12)
    price_per_gpu_hour: Money
    currency: CurrencyCode
    available_from: date | None = None
    available_until: date | None = None
    data_centre: DataCentreLocation
    certifications: Annotated[list[Tag], Field(max_length=20)] = Field(default_factory=list)

    @model_validator(mode="after")
    def _window_is_ordered(self) -> "ComputeAttributes":
        if (
            self.available_from
            and self.available_until
            and self.available_from > self.available_until
        ):
            raise ValueError("available_from must not be after available_until")
        return self


class ModelAttributes(StrictModel):
    tasks: Annotated[list[Task], Field(min_length=1, max_length=20)]
    modality: Modality
    languages: Annotated[list[LanguageCode], Field(max_length=50)] = Field(default_factory=list)
    parameter_count: int | None = Field(default=None, ge=1, le=10**15)
    licence: LicenceId
    deployment: Annotated[list[Deployment], Field(min_length=1, max_length=3)]
    fine_tuning_offered: bool = False
    pricing_note: PricingNote | None = None
    model_card_url: AnyHttpUrl | None = None


class _ListingFields(StrictModel):
    title: Title
    summary: Summary = ""
    description: Markdown = ""
    tags: Annotated[list[Tag], Field(max_length=30)] = Field(default_factory=list)
    sector: Sector
    country: CountryCode
    region: Region = ""
    languages: Annotated[list[LanguageCode], Field(max_length=20)] = Field(default_factory=list)
    status: ListingStatus = ListingStatus.DRAFT
    visibility: Visibility = Visibility.PUBLIC


class DatasetListingCreate(_ListingFields):
    kind: Literal[ListingKind.DATASET]
    attributes: DatasetAttributes


class ScenarioListingCreate(_ListingFields):
    kind: Literal[ListingKind.SCENARIO]
    attributes: ScenarioAttributes


class ComputeListingCreate(_ListingFields):
    kind: Literal[ListingKind.COMPUTE]
    attributes: ComputeAttributes


class ModelListingCreate(_ListingFields):
    kind: Literal[ListingKind.MODEL]
    attributes: ModelAttributes


ListingCreate = Annotated[
    DatasetListingCreate | ScenarioListingCreate | ComputeListingCreate | ModelListingCreate,
    Field(discriminator="kind"),
]

MAX_BATCH_SIZE = 100
"""The most listings one `POST /listings/batch` creates."""


class ListingBatchCreate(StrictModel):
    """Listings posted together (a city's scenario list, a university's catalogue): all of them
    are created, or none."""

    items: Annotated[list[ListingCreate], Field(min_length=1, max_length=MAX_BATCH_SIZE)]


ATTRIBUTES_BY_KIND: dict[ListingKind, type[BaseModel]] = {
    ListingKind.DATASET: DatasetAttributes,
    ListingKind.SCENARIO: ScenarioAttributes,
    ListingKind.COMPUTE: ComputeAttributes,
    ListingKind.MODEL: ModelAttributes,
}


class ListingUpdate(StrictModel):
    """A partial update: fields left out stay; `attributes` replaces the kind's as a whole."""

    title: Omittable[Title] = None
    summary: Omittable[Summary] = None
    description: Omittable[Markdown] = None
    tags: Omittable[Annotated[list[Tag], Field(max_length=30)]] = None
    sector: Omittable[Sector] = None
    country: Omittable[CountryCode] = None
    region: Omittable[Region] = None
    languages: Omittable[Annotated[list[LanguageCode], Field(max_length=20)]] = None
    status: Omittable[ListingStatus] = None
    visibility: Omittable[Visibility] = None
    attributes: Omittable[dict[str, object]] = None


class OrganizationRef(BaseModel):
    id: UUID
    name: str
    slug: str
    kind: OrganizationKind
    verified: bool


class ListingRead(BaseModel):
    id: UUID
    kind: ListingKind
    side: Side
    title: str
    summary: str
    description: str
    tags: list[str]
    sector: Sector
    country: str
    region: str
    languages: list[str]
    status: ListingStatus
    visibility: Visibility
    organization: OrganizationRef
    attributes: DatasetAttributes | ScenarioAttributes | ComputeAttributes | ModelAttributes
    created_at: datetime
    updated_at: datetime
    version: int


class ListingBatch(BaseModel):
    """The listings a batch created, in the order they were posted."""

    items: list[ListingRead]
