"""A stored listing as the matching library sees it (`matching.facts.ListingFacts`)."""

from datetime import date
from decimal import Decimal
from typing import Any

from marketplace.models import Listing
from matching.facts import (
    Attributes,
    ComputeFacts,
    DatasetFacts,
    ListingFacts,
    ModelFacts,
    ScenarioFacts,
)


def _date(value: str | None) -> date | None:
    return date.fromisoformat(value) if value else None


def _decimal(value: str | float | None) -> Decimal | None:
    return Decimal(str(value)) if value is not None else None


def _attributes(kind: str, a: dict[str, Any]) -> Attributes:
    if kind == "dataset":
        return DatasetFacts(
            modality=a.get("modality"),
            licence=a.get("licence"),
            access=a.get("access"),
            contains_personal_data=a.get("contains_personal_data"),
            record_count=a.get("record_count"),
        )
    if kind == "scenario":
        site = a.get("site") or {}
        return ScenarioFacts(
            problem_statement=a.get("problem_statement", ""),
            desired_outcome=a.get("desired_outcome", ""),
            required_capabilities=tuple(a.get("required_capabilities", ())),
            budget_min=_decimal(a.get("budget_min")),
            budget_max=_decimal(a.get("budget_max")),
            currency=a.get("currency"),
            deadline=_date(a.get("deadline")),
            site_city=site.get("city"),
            required_gpu_hours=a.get("required_gpu_hours"),
        )
    if kind == "compute":
        centre = a.get("data_centre") or {}
        return ComputeFacts(
            accelerator_model=a.get("accelerator_model"),
            accelerator_vendor=a.get("accelerator_vendor"),
            accelerator_count=a.get("accelerator_count"),
            memory_per_accelerator_gb=a.get("memory_per_accelerator_gb"),
            gpu_hours_available=a.get("gpu_hours_available"),
            price_per_gpu_hour=_decimal(a.get("price_per_gpu_hour")),
            currency=a.get("currency"),
            available_from=_date(a.get("available_from")),
            available_until=_date(a.get("available_until")),
            data_centre_country=centre.get("country"),
            data_centre_city=centre.get("city"),
            certifications=tuple(a.get("certifications", ())),
        )
    return ModelFacts(
        tasks=tuple(a.get("tasks", ())),
        modality=a.get("modality"),
        languages=tuple(a.get("languages", ())),
        licence=a.get("licence"),
        deployment=tuple(a.get("deployment", ())),
        parameter_count=a.get("parameter_count"),
        fine_tuning_offered=a.get("fine_tuning_offered"),
    )


def listing_facts(row: Listing) -> ListingFacts:
    """The facts of a stored listing, keyed by its integer row id."""
    assert row.row_id is not None, "only stored listings have facts"
    return _facts(row, row.row_id)


def listing_document_facts(row: Listing) -> ListingFacts:
    """The facts of a listing that may not be stored yet, for what reads only its content (its
    documents): a new listing has no row id, and gets the id -1, which no stored listing has."""
    return _facts(row, -1 if row.row_id is None else row.row_id)


def _facts(row: Listing, row_id: int) -> ListingFacts:
    return ListingFacts(
        id=row_id,
        kind=row.kind,  # type: ignore[arg-type]
        title=row.title,
        summary=row.summary,
        description=row.description,
        tags=tuple(row.tags),
        sector=row.sector,
        country=row.country,
        region=row.region,
        languages=tuple(row.languages),
        attributes=_attributes(row.kind, row.attributes),
    )
