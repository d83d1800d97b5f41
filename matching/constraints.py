"""Constraints between two listings: each one a check that passes, fails or is unknown.

Which checks apply depends on the pair of kinds (a dataset and a compute offer are checked for
data residency, a scenario and a compute offer for budget, GPU-hours and schedule, ...). A check is
unknown when a fact it needs is missing, never guessed. Hard checks are deal-breakers that strict
matching filters on; every check, hard or soft, contributes to the constraint score.
"""

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from matching.facts import (
    ComputeFacts,
    DatasetFacts,
    Kind,
    ListingFacts,
    ModelFacts,
    ScenarioFacts,
)

Outcome = Literal["pass", "fail", "unknown"]

_OUTCOME_SCORE: dict[Outcome, float] = {"pass": 1.0, "unknown": 0.5, "fail": 0.0}


@dataclass(frozen=True, slots=True)
class Check:
    """The outcome of one constraint for a pair of listings.

    Attributes:
        name: a stable snake_case name, e.g. "data_residency".
        outcome: "pass", "fail" or "unknown" (a fact is missing).
        detail: a sentence saying why, for people.
        hard: whether a failure rules the pair out when matching strictly.
    """

    name: str
    outcome: Outcome
    detail: str
    hard: bool


def constraint_score(checks: Iterable[Check]) -> float:
    """The soft score of a pair: the mean of pass 1, unknown 0.5, fail 0 (0.5 with no checks).

    Args:
        checks: the pair's checks.

    Returns:
        A score in [0, 1].
    """
    scores = [_OUTCOME_SCORE[check.outcome] for check in checks]
    return sum(scores) / len(scores) if scores else 0.5


def fails_hard(checks: Iterable[Check]) -> bool:
    """Whether any hard check failed (unknown does not count as failed).

    Args:
        checks: the pair's checks.

    Returns:
        True when strict matching must drop the pair.
    """
    return any(check.hard and check.outcome == "fail" for check in checks)


def check_pair(first: ListingFacts, second: ListingFacts) -> tuple[Check, ...]:
    """Every constraint that applies between two listings, in either order.

    Args:
        first: one listing (typically the one being matched).
        second: the other listing (typically a candidate counterpart).

    Returns:
        The checks for the pair's kinds; empty when no constraint applies to them.
    """
    for (kind_a, kind_b), rules in _RULES.items():
        if (first.kind, second.kind) == (kind_a, kind_b):
            return tuple(rule(first, second) for rule in rules)
        if (second.kind, first.kind) == (kind_a, kind_b):
            return tuple(rule(second, first) for rule in rules)
    return ()


def _unknown(name: str, hard: bool, detail: str) -> Check:
    return Check(name, "unknown", detail, hard)


def _decide(name: str, hard: bool, ok: bool, passed: str, failed: str) -> Check:
    return Check(name, "pass" if ok else "fail", passed if ok else failed, hard)


def _same_text(a: str | None, b: str | None) -> bool:
    return bool(a and b and a.strip().casefold() == b.strip().casefold())


def _country(listing: ListingFacts) -> str | None:
    """Where the work happens: a compute offer's data centre, else the listing's country."""
    attributes = listing.attributes
    if isinstance(attributes, ComputeFacts) and attributes.data_centre_country:
        return attributes.data_centre_country.upper()
    return listing.country.upper() if listing.country else None


def _city(listing: ListingFacts) -> str | None:
    attributes = listing.attributes
    if isinstance(attributes, ComputeFacts):
        return attributes.data_centre_city
    if isinstance(attributes, ScenarioFacts) and attributes.site_city:
        return attributes.site_city
    return listing.region or None


def _location(need: ListingFacts, offer: ListingFacts) -> Check:
    """Soft: the two listings are in the same country (a compute offer: its data centre)."""
    need_country, offer_country = _country(need), _country(offer)
    if need_country is None or offer_country is None:
        return _unknown("location", False, "the country of one side is not given")
    if need_country != offer_country:
        return Check(
            "location",
            "fail",
            f"{need.kind} in {need_country}, {offer.kind} in {offer_country}",
            False,
        )
    need_city, offer_city = _city(need), _city(offer)
    where = f"the same city ({offer_city})" if _same_text(need_city, offer_city) else need_country
    return Check("location", "pass", f"both in {where}", False)


def _data_residency(dataset: ListingFacts, compute: ListingFacts) -> Check:
    """Hard: data that may not leave its premises, or personal data, stays in its country."""
    facts = dataset.attributes
    assert isinstance(facts, DatasetFacts)
    if facts.access is None and facts.contains_personal_data is None:
        return _unknown("data_residency", True, "the dataset's access terms are not given")
    on_premises = facts.access == "on_premises_only"
    if not on_premises and not facts.contains_personal_data:
        return Check("data_residency", "pass", "the data may be moved to a data centre", True)
    reason = "may only be used on its premises" if on_premises else "contains personal data"
    home, centre = _country(dataset), _country(compute)
    if home is None or centre is None:
        return _unknown("data_residency", True, f"the dataset {reason}; a location is not given")
    if _same_text(_city(dataset), _city(compute)):
        return Check("data_residency", "pass", f"the dataset {reason}; same site", True)
    return _decide(
        "data_residency",
        True,
        home == centre,
        f"the dataset {reason}; the data centre is in the same country ({home})",
        f"the dataset {reason} in {home}, but the data centre is in {centre}",
    )


def _deployment(dataset: ListingFacts, model: ListingFacts) -> Check:
    """Hard: on-premises-only data needs a model that can run on premises."""
    data, offer = dataset.attributes, model.attributes
    assert isinstance(data, DatasetFacts) and isinstance(offer, ModelFacts)
    if data.access is None:
        return _unknown("deployment", True, "the dataset's access terms are not given")
    if data.access != "on_premises_only":
        return Check("deployment", "pass", f"the dataset's access is {data.access}", True)
    if not offer.deployment:
        return _unknown("deployment", True, "the model's deployment options are not given")
    return _decide(
        "deployment",
        True,
        bool({"on_premises", "open_weights"} & set(offer.deployment)),
        "the model can run on the dataset's premises",
        "the dataset may only be used on its premises, but the model is offered only as an API",
    )


def _modality(dataset: ListingFacts, model: ListingFacts) -> Check:
    """Soft: the model handles the dataset's modality (multimodal handles any)."""
    data, offer = dataset.attributes, model.attributes
    assert isinstance(data, DatasetFacts) and isinstance(offer, ModelFacts)
    if not data.modality or not offer.modality:
        return _unknown("modality", False, "the modality of one side is not given")
    ok = _same_text(data.modality, offer.modality) or "multimodal" in {
        data.modality.casefold(),
        offer.modality.casefold(),
    }
    return _decide(
        "modality",
        False,
        ok,
        f"both handle {data.modality}",
        f"{data.modality} data, {offer.modality} model",
    )


def _languages(listing: ListingFacts) -> frozenset[str]:
    """Primary language subtags; a model's own languages take precedence over the listing's."""
    attributes = listing.attributes
    codes = listing.languages
    if isinstance(attributes, ModelFacts) and attributes.languages:
        codes = attributes.languages
    return _primary_subtags(codes)


@functools.lru_cache(maxsize=1024)
def _primary_subtags(codes: tuple[str, ...]) -> frozenset[str]:
    """The primary subtags of language codes ("zh-Hans", "en_GB": zh, en). Cached: listings
    share a few language lists, and a query checks its own against every candidate's."""
    return frozenset(code.split("-")[0].split("_")[0].casefold() for code in codes if code)


def _language(need: ListingFacts, offer: ListingFacts) -> Check:
    """Soft: the two listings share a language."""
    need_languages, offer_languages = _languages(need), _languages(offer)
    if not need_languages or not offer_languages:
        return _unknown("language", False, "the languages of one side are not given")
    shared = sorted(need_languages & offer_languages)
    return _decide(
        "language",
        False,
        bool(shared),
        f"shared languages: {', '.join(shared)}",
        f"{need.kind} in {', '.join(sorted(need_languages))}, "
        f"{offer.kind} in {', '.join(sorted(offer_languages))}",
    )


_PERMISSIVE_LICENCES = ("cc0", "cc-by-", "mit", "apache-", "bsd-", "isc", "unlicense", "pddl")
_SHARE_ALIKE_LICENCES = ("gpl-", "agpl-", "lgpl-", "odbl", "mpl-")


def licence_terms(licence: str | None) -> frozenset[str] | None:
    """The restrictions of an SPDX-style licence id.

    Args:
        licence: e.g. "cc-by-nc-sa-4.0", "apache-2.0"; case-insensitive.

    Returns:
        A subset of {"non_commercial", "no_derivatives", "share_alike"}, or None when the
        licence is missing or not recognised ("other", "unknown", a proprietary name).
    """
    if not licence:
        return None
    name = licence.strip().casefold()
    if not name.startswith(_PERMISSIVE_LICENCES + _SHARE_ALIKE_LICENCES + ("odc-by",)):
        return None
    terms = set()
    if "-nc" in name:
        terms.add("non_commercial")
    if "-nd" in name:
        terms.add("no_derivatives")
    if "-sa" in name or name.startswith(_SHARE_ALIKE_LICENCES):
        terms.add("share_alike")
    return frozenset(terms)


def _licence(dataset: ListingFacts, model: ListingFacts) -> Check:
    """Soft: the licences allow adapting the model to the data (no "no derivatives" terms)."""
    data, offer = dataset.attributes, model.attributes
    assert isinstance(data, DatasetFacts) and isinstance(offer, ModelFacts)
    data_terms, model_terms = licence_terms(data.licence), licence_terms(offer.licence)
    if data_terms is None or model_terms is None:
        return _unknown("licence", False, "a licence is missing or not recognised")
    if "no_derivatives" in data_terms | model_terms:
        forbidding = data.licence if "no_derivatives" in data_terms else offer.licence
        return Check("licence", "fail", f"{forbidding} forbids derivative works", False)
    notes = []
    if "non_commercial" in data_terms | model_terms:
        notes.append("non-commercial use only")
    if "share_alike" in data_terms | model_terms:
        notes.append("adaptations must be shared alike")
    pair = f"{data.licence} data with a {offer.licence} model"
    return Check("licence", "pass", f"{pair}: {'; '.join(notes) or 'no restrictions'}", False)


def _capabilities(scenario: ListingFacts, model: ListingFacts) -> Check:
    """Hard: the model performs at least one capability the scenario requires."""
    need, offer = scenario.attributes, model.attributes
    assert isinstance(need, ScenarioFacts) and isinstance(offer, ModelFacts)
    if not need.required_capabilities:
        return _unknown("capabilities", True, "the scenario names no required capabilities")
    if not offer.tasks:
        return _unknown("capabilities", True, "the model's tasks are not given")
    covered = [task for task in need.required_capabilities if task in offer.tasks]
    missing = [task for task in need.required_capabilities if task not in offer.tasks]
    if not covered:
        return Check(
            "capabilities", "fail", f"the model performs none of: {', '.join(missing)}", True
        )
    detail = f"covers {', '.join(covered)}" + (f"; missing {', '.join(missing)}" if missing else "")
    return Check("capabilities", "pass", detail, True)


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _budget(scenario: ListingFacts, compute: ListingFacts) -> Check:
    """Hard: price per GPU-hour times the required GPU-hours fits the scenario's budget."""
    need, offer = scenario.attributes, compute.attributes
    assert isinstance(need, ScenarioFacts) and isinstance(offer, ComputeFacts)
    if need.budget_max is None or need.required_gpu_hours is None:
        return _unknown("budget", True, "the scenario's budget or GPU-hours are not given")
    if offer.price_per_gpu_hour is None or not offer.currency:
        return _unknown("budget", True, "the compute price is not given")
    if not need.currency or need.currency.upper() != offer.currency.upper():
        return _unknown(
            "budget", True, f"budget in {need.currency}, price in {offer.currency}: not compared"
        )
    currency = offer.currency.upper()
    cost = offer.price_per_gpu_hour * Decimal(str(need.required_gpu_hours))
    estimate = (
        f"{need.required_gpu_hours:g} GPU-hours at {_money(offer.price_per_gpu_hour, currency)}"
        f" = {_money(cost, currency)}"
    )
    limit = _money(need.budget_max, currency)
    return _decide(
        "budget",
        True,
        cost <= need.budget_max,
        f"{estimate}, within the budget of {limit}",
        f"{estimate}, over the budget of {limit}",
    )


def _gpu_hours(scenario: ListingFacts, compute: ListingFacts) -> Check:
    """Hard: the offer has at least the GPU-hours the scenario needs."""
    need, offer = scenario.attributes, compute.attributes
    assert isinstance(need, ScenarioFacts) and isinstance(offer, ComputeFacts)
    if need.required_gpu_hours is None or offer.gpu_hours_available is None:
        return _unknown("gpu_hours", True, "GPU-hours needed or available are not given")
    return _decide(
        "gpu_hours",
        True,
        offer.gpu_hours_available >= need.required_gpu_hours,
        f"{offer.gpu_hours_available:g} GPU-hours available, {need.required_gpu_hours:g} needed",
        f"only {offer.gpu_hours_available:g} GPU-hours available, "
        f"{need.required_gpu_hours:g} needed",
    )


def _schedule(scenario: ListingFacts, compute: ListingFacts) -> Check:
    """Hard: the compute becomes available before the scenario's deadline."""
    need, offer = scenario.attributes, compute.attributes
    assert isinstance(need, ScenarioFacts) and isinstance(offer, ComputeFacts)
    if need.deadline is None:
        return _unknown("schedule", True, "the scenario has no deadline")
    if offer.available_from is None:
        return Check("schedule", "pass", f"available now, deadline {need.deadline}", True)
    return _decide(
        "schedule",
        True,
        offer.available_from <= need.deadline,
        f"available from {offer.available_from}, deadline {need.deadline}",
        f"available only from {offer.available_from}, after the deadline {need.deadline}",
    )


_Rule = Callable[[ListingFacts, ListingFacts], Check]

_RULES: dict[tuple[Kind, Kind], tuple[_Rule, ...]] = {
    ("dataset", "compute"): (_location, _data_residency),
    ("dataset", "model"): (_modality, _language, _licence, _deployment),
    ("scenario", "compute"): (_location, _budget, _gpu_hours, _schedule),
    ("scenario", "model"): (_capabilities, _language),
    ("scenario", "dataset"): (_language, _location),
}
