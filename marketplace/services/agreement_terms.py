"""Terms of an agreement: the rules a version must meet, its hash and the diff of two versions."""

import uuid
from decimal import Decimal
from typing import Any

from marketplace.canonical import sha256_hex
from marketplace.errors import InvalidInput
from marketplace.models import Listing
from schemas.agreements import AgreementType, ChangeKind, ComputeTerms, Terms, TermsChange
from schemas.errors import FieldError
from schemas.listings import ComputeAttributes, ListingKind

# Sections an agreement of a type cannot do without.
REQUIRED_SECTIONS: dict[AgreementType, tuple[str, ...]] = {
    AgreementType.COMPUTE_RENTAL: ("compute", "price"),
    AgreementType.DATA_USE: ("data_use",),
    AgreementType.DATA_LICENCE: ("data_use",),
}


def checked(
    terms: Terms, *, agreement_type: AgreementType, listings: dict[uuid.UUID, Listing]
) -> dict[str, Any]:
    """The terms as stored and hashed (canonical JSON values), or a 422 naming every bad field.

    `listings` are the agreement's listings by id; compute terms must rent one of them.
    """
    errors: list[FieldError] = []
    prefix = "body.terms"
    if terms.end_date < terms.start_date:
        errors.append(
            FieldError(field=f"{prefix}.end_date", message="must not be before start_date")
        )
    for position, milestone in enumerate(terms.milestones):
        if not terms.start_date <= milestone.due <= terms.end_date:
            errors.append(
                FieldError(
                    field=f"{prefix}.milestones.{position}.due",
                    message="must fall between start_date and end_date",
                )
            )
    for section in REQUIRED_SECTIONS.get(agreement_type, ()):
        if getattr(terms, section) is None:
            errors.append(
                FieldError(
                    field=f"{prefix}.{section}", message=f"required in a {agreement_type} agreement"
                )
            )
    if terms.compute is not None:
        errors.extend(_compute_errors(terms.compute, listings, f"{prefix}.compute"))
    if errors:
        raise InvalidInput("The terms are not valid.", code="invalid_terms", errors=errors)
    return terms.model_dump(mode="json")


def _compute_errors(
    compute: ComputeTerms, listings: dict[uuid.UUID, Listing], prefix: str
) -> list[FieldError]:
    errors = []
    if compute.window_end < compute.window_start:
        errors.append(
            FieldError(field=f"{prefix}.window_end", message="must not be before window_start")
        )
    listing = listings.get(compute.listing_id)
    if listing is None or listing.kind != ListingKind.COMPUTE:
        errors.append(
            FieldError(
                field=f"{prefix}.listing_id", message="not a compute listing of this agreement"
            )
        )
        return errors
    available = Decimal(str(listing.attributes["gpu_hours_available"]))
    if compute.gpu_hours > available:
        errors.append(
            FieldError(
                field=f"{prefix}.gpu_hours",
                message=f"exceeds the {available} GPU-hours the listing offers",
            )
        )
    # The rental must fall within the listing's availability, where it states one.
    attributes = ComputeAttributes.model_validate(listing.attributes)
    available_from, available_until = attributes.available_from, attributes.available_until
    if available_from is not None and compute.window_start < available_from:
        errors.append(
            FieldError(
                field=f"{prefix}.window_start",
                message=f"before the listing is available (from {available_from})",
            )
        )
    if available_until is not None and compute.window_end > available_until:
        errors.append(
            FieldError(
                field=f"{prefix}.window_end",
                message=f"after the listing stops being available (until {available_until})",
            )
        )
    return errors


def terms_hash(stored: dict[str, Any]) -> str:
    return sha256_hex(stored)


def diff(before: Any, after: Any, path: str = "") -> list[TermsChange]:
    """What changed from `before` to `after`, by dotted path (list items by position)."""
    if isinstance(before, dict) and isinstance(after, dict):
        keys: list[Any] = sorted(before.keys() | after.keys())
    elif isinstance(before, list) and isinstance(after, list):
        keys = list(range(max(len(before), len(after))))
    else:
        return _leaf_change(before, after, path)
    changes: list[TermsChange] = []
    for key in keys:
        child = f"{path}.{key}" if path else str(key)
        changes.extend(diff(_at(before, key), _at(after, key), child))
    return changes


def _at(container: dict[str, Any] | list[Any], key: Any) -> Any:
    if isinstance(container, dict):
        return container.get(key)
    return container[key] if key < len(container) else None


def _leaf_change(before: Any, after: Any, path: str) -> list[TermsChange]:
    if before == after:
        return []
    if before is None:
        return [TermsChange(path=path, change=ChangeKind.ADDED, after=after)]
    if after is None:
        return [TermsChange(path=path, change=ChangeKind.REMOVED, before=before)]
    return [TermsChange(path=path, change=ChangeKind.CHANGED, before=before, after=after)]
