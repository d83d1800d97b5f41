"""What the matcher knows about a listing: plain frozen dataclasses, one per kind's attributes.

The same facts as the API's listing schema, without depending on it: the service maps a listing to
`ListingFacts`, the evaluation maps benchmark records to it. Every kind-specific fact is optional,
because a constraint on a missing fact is reported as unknown rather than guessed.
"""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Literal

Kind = Literal["dataset", "scenario", "compute", "model"]
Side = Literal["need", "offer"]
SIDES: tuple[Side, ...] = ("need", "offer")

NEED_KINDS: frozenset[Kind] = frozenset({"dataset", "scenario"})
OFFER_KINDS: frozenset[Kind] = frozenset({"compute", "model"})
KINDS: frozenset[Kind] = NEED_KINDS | OFFER_KINDS


def side_of(kind: Kind) -> Side:
    """The marketplace side a kind belongs to.

    Args:
        kind: a listing kind.

    Returns:
        "need" for datasets and scenarios, "offer" for compute and models.
    """
    return "need" if kind in NEED_KINDS else "offer"


def counterpart_kinds(kind: Kind) -> frozenset[Kind]:
    """The kinds a listing of this kind is matched with by default: those of the other side.

    Args:
        kind: the kind of the listing being matched.

    Returns:
        The other side's kinds.
    """
    return OFFER_KINDS if side_of(kind) == "need" else NEED_KINDS


@dataclass(frozen=True, slots=True)
class DatasetFacts:
    """A dataset's attributes. `access` is "open", "on_request" or "on_premises_only"."""

    modality: str | None = None
    licence: str | None = None
    access: str | None = None
    contains_personal_data: bool | None = None
    record_count: int | None = None


@dataclass(frozen=True, slots=True)
class ScenarioFacts:
    """An application scenario's attributes; money in `currency`, capabilities as task names."""

    problem_statement: str = ""
    desired_outcome: str = ""
    required_capabilities: tuple[str, ...] = ()
    budget_min: Decimal | None = None
    budget_max: Decimal | None = None
    currency: str | None = None
    deadline: date | None = None
    site_city: str | None = None
    required_gpu_hours: float | None = None


@dataclass(frozen=True, slots=True)
class ComputeFacts:
    """A compute offering; `available_from` None means available now, `until` None open-ended."""

    accelerator_model: str | None = None
    accelerator_vendor: str | None = None
    accelerator_count: int | None = None
    memory_per_accelerator_gb: float | None = None
    gpu_hours_available: float | None = None
    price_per_gpu_hour: Decimal | None = None
    currency: str | None = None
    available_from: date | None = None
    available_until: date | None = None
    data_centre_country: str | None = None
    data_centre_city: str | None = None
    certifications: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """A model offering; `deployment` holds "api", "on_premises" and/or "open_weights"."""

    tasks: tuple[str, ...] = ()
    modality: str | None = None
    languages: tuple[str, ...] = ()
    licence: str | None = None
    deployment: tuple[str, ...] = ()
    parameter_count: int | None = None
    fine_tuning_offered: bool | None = None


Attributes = DatasetFacts | ScenarioFacts | ComputeFacts | ModelFacts

_ATTRIBUTES_BY_KIND: dict[Kind, type[Attributes]] = {
    "dataset": DatasetFacts,
    "scenario": ScenarioFacts,
    "compute": ComputeFacts,
    "model": ModelFacts,
}


@dataclass(frozen=True, slots=True)
class ListingFacts:
    """One listing as the matcher sees it.

    Attributes:
        id: the integer key of the listing in the indexes.
        kind: "dataset", "scenario", "compute" or "model".
        title, summary, description: the listing's texts (description may be Markdown).
        tags: free keywords.
        sector: the sector code (e.g. "smart_city"), if given.
        country: ISO 3166-1 alpha-2 code of the poster's listing, if given.
        region: a province, state or city name.
        languages: ISO 639-1 codes of the listing's content.
        attributes: the kind's facts; defaults to an all-unknown instance of the kind's class.
    """

    id: int
    kind: Kind
    title: str
    summary: str = ""
    description: str = ""
    tags: tuple[str, ...] = ()
    sector: str | None = None
    country: str | None = None
    region: str = ""
    languages: tuple[str, ...] = ()
    attributes: Attributes | None = None

    def __post_init__(self) -> None:
        expected = attributes_class(self.kind)
        if self.attributes is None:
            object.__setattr__(self, "attributes", expected())
        elif not isinstance(self.attributes, expected):
            raise ValueError(
                f"a {self.kind} listing needs {expected.__name__}, "
                f"not {type(self.attributes).__name__}"
            )


def attributes_class(kind: str) -> type[Attributes]:
    """The class of a kind's attributes.

    Raises:
        ValueError: the kind is unknown.
    """
    cls = _ATTRIBUTES_BY_KIND.get(kind)  # type: ignore[call-overload]
    if cls is None:
        raise ValueError(f"unknown listing kind {kind!r}")
    return cls
