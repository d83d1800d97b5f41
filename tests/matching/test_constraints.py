"""Constraints between a need and an offer: each check's pass, fail and unknown."""

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from matching.constraints import Check, check_pair, constraint_score, fails_hard, licence_terms
from matching.facts import ComputeFacts, DatasetFacts, ListingFacts, ModelFacts, ScenarioFacts


def _dataset(**facts: object) -> ListingFacts:
    listing = {k: facts.pop(k) for k in ("country", "region", "languages") if k in facts}
    return ListingFacts(
        id=1, kind="dataset", title="Traffic counts", attributes=DatasetFacts(**facts), **listing
    )


def _scenario(**facts: object) -> ListingFacts:
    listing = {k: facts.pop(k) for k in ("country", "languages") if k in facts}
    return ListingFacts(
        id=2,
        kind="scenario",
        title="Forecast traffic",
        attributes=ScenarioFacts(**facts),
        **listing,
    )


def _compute(**facts: object) -> ListingFacts:
    return ListingFacts(
        id=3, kind="compute", title="H100 cluster", attributes=ComputeFacts(**facts)
    )


def _model(**facts: object) -> ListingFacts:
    listing = {k: facts.pop(k) for k in ("languages",) if k in facts}
    return ListingFacts(
        id=4, kind="model", title="Forecaster", attributes=ModelFacts(**facts), **listing
    )


def _check(first: ListingFacts, second: ListingFacts, name: str) -> Check:
    return next(check for check in check_pair(first, second) if check.name == name)


class TestCheckPair:
    def test_applies_the_checks_of_the_pair_of_kinds(self) -> None:
        names = [check.name for check in check_pair(_scenario(), _compute())]
        assert names == ["location", "budget", "gpu_hours", "schedule"]

    def test_gives_the_same_checks_in_either_order(self) -> None:
        assert check_pair(_dataset(), _model()) == check_pair(_model(), _dataset())

    def test_has_no_checks_between_two_offers(self) -> None:
        assert check_pair(_compute(), _model()) == ()

    def test_marks_deal_breakers_hard(self) -> None:
        hard = {check.name for check in check_pair(_scenario(), _compute()) if check.hard}
        assert hard == {"budget", "gpu_hours", "schedule"}


class TestLocation:
    def test_passes_in_the_same_country_naming_a_shared_city(self) -> None:
        check = _check(
            _dataset(country="cn", region="Shanghai"),
            _compute(data_centre_country="CN", data_centre_city="shanghai"),
            "location",
        )
        assert (check.outcome, check.detail) == ("pass", "both in the same city (shanghai)")

    def test_fails_in_different_countries(self) -> None:
        check = _check(_dataset(country="CN"), _compute(data_centre_country="DE"), "location")
        assert (check.outcome, check.hard) == ("fail", False)

    def test_is_unknown_without_a_country(self) -> None:
        assert _check(_dataset(), _compute(data_centre_country="DE"), "location").outcome == (
            "unknown"
        )


class TestDataResidency:
    def test_passes_for_data_that_may_move(self) -> None:
        check = _check(
            _dataset(access="open"), _compute(data_centre_country="US"), "data_residency"
        )
        assert check.outcome == "pass"

    def test_passes_on_premises_data_with_compute_in_its_country(self) -> None:
        dataset = _dataset(access="on_premises_only", country="CN")
        check = _check(dataset, _compute(data_centre_country="CN"), "data_residency")
        assert check.outcome == "pass"

    def test_fails_on_premises_data_with_compute_abroad(self) -> None:
        dataset = _dataset(access="on_premises_only", country="CN")
        check = _check(dataset, _compute(data_centre_country="US"), "data_residency")
        assert (check.outcome, check.hard) == ("fail", True)
        assert "in CN, but the data centre is in US" in check.detail

    def test_fails_personal_data_with_compute_abroad(self) -> None:
        dataset = _dataset(access="on_request", contains_personal_data=True, country="DE")
        check = _check(dataset, _compute(data_centre_country="US"), "data_residency")
        assert check.outcome == "fail"

    def test_is_unknown_without_access_terms(self) -> None:
        check = _check(_dataset(country="CN"), _compute(data_centre_country="CN"), "data_residency")
        assert check.outcome == "unknown"

    def test_is_unknown_for_restricted_data_without_a_data_centre(self) -> None:
        dataset = _dataset(access="on_premises_only", country="CN")
        assert _check(dataset, _compute(), "data_residency").outcome == "unknown"


class TestDeployment:
    def test_passes_on_premises_data_with_open_weights(self) -> None:
        check = _check(
            _dataset(access="on_premises_only"), _model(deployment=("open_weights",)), "deployment"
        )
        assert check.outcome == "pass"

    def test_fails_on_premises_data_with_an_api_only_model(self) -> None:
        check = _check(
            _dataset(access="on_premises_only"), _model(deployment=("api",)), "deployment"
        )
        assert (check.outcome, check.hard) == ("fail", True)

    def test_is_unknown_without_deployment_options(self) -> None:
        check = _check(_dataset(access="on_premises_only"), _model(), "deployment")
        assert check.outcome == "unknown"


class TestModality:
    def test_passes_for_the_same_modality(self) -> None:
        check = _check(_dataset(modality="image"), _model(modality="Image"), "modality")
        assert check.outcome == "pass"

    def test_passes_for_a_multimodal_model(self) -> None:
        check = _check(_dataset(modality="text"), _model(modality="multimodal"), "modality")
        assert check.outcome == "pass"

    def test_fails_for_different_modalities(self) -> None:
        check = _check(_dataset(modality="audio"), _model(modality="image"), "modality")
        assert (check.outcome, check.detail) == ("fail", "audio data, image model")

    def test_is_unknown_without_a_modality(self) -> None:
        assert _check(_dataset(), _model(modality="image"), "modality").outcome == "unknown"


class TestLanguage:
    def test_passes_for_a_shared_language_by_primary_subtag(self) -> None:
        check = _check(_scenario(languages=("zh-CN",)), _model(languages=("zh", "en")), "language")
        assert (check.outcome, check.detail) == ("pass", "shared languages: zh")

    def test_fails_without_a_shared_language(self) -> None:
        check = _check(_dataset(languages=("fr",)), _model(languages=("en",)), "language")
        assert check.outcome == "fail"

    def test_is_unknown_without_languages(self) -> None:
        assert _check(_dataset(), _model(languages=("en",)), "language").outcome == "unknown"


class TestLicence:
    @pytest.mark.parametrize(
        ("licence", "terms"),
        [
            ("cc-by-nc-sa-4.0", {"non_commercial", "share_alike"}),
            ("CC-BY-ND-4.0", {"no_derivatives"}),
            ("apache-2.0", set()),
            ("gpl-3.0", {"share_alike"}),
            ("other", None),
            (None, None),
        ],
    )
    def test_reads_the_restrictions_of_a_licence(
        self, licence: str | None, terms: set[str] | None
    ) -> None:
        assert licence_terms(licence) == (None if terms is None else frozenset(terms))

    def test_passes_noting_non_commercial_terms(self) -> None:
        check = _check(_dataset(licence="cc-by-nc-4.0"), _model(licence="mit"), "licence")
        assert check.outcome == "pass"
        assert "non-commercial use only" in check.detail

    def test_fails_when_derivatives_are_forbidden(self) -> None:
        check = _check(_dataset(licence="cc-by-nd-4.0"), _model(licence="mit"), "licence")
        assert (check.outcome, check.hard) == ("fail", False)

    def test_is_unknown_for_an_unrecognised_licence(self) -> None:
        check = _check(_dataset(licence="proprietary"), _model(licence="mit"), "licence")
        assert check.outcome == "unknown"


class TestCapabilities:
    def test_passes_naming_covered_and_missing_capabilities(self) -> None:
        scenario = _scenario(required_capabilities=("time_series_forecasting", "ocr"))
        check = _check(scenario, _model(tasks=("time_series_forecasting",)), "capabilities")
        assert (check.outcome, check.detail) == (
            "pass",
            "covers time_series_forecasting; missing ocr",
        )

    def test_fails_when_no_capability_is_covered(self) -> None:
        scenario = _scenario(required_capabilities=("ocr",))
        check = _check(scenario, _model(tasks=("translation",)), "capabilities")
        assert (check.outcome, check.hard) == ("fail", True)

    def test_is_unknown_when_the_scenario_names_none(self) -> None:
        check = _check(_scenario(), _model(tasks=("translation",)), "capabilities")
        assert check.outcome == "unknown"


_FUNDED = {"budget_max": Decimal("10000"), "currency": "USD", "required_gpu_hours": 1000.0}


class TestBudget:
    def test_passes_when_price_times_hours_fits(self) -> None:
        compute = _compute(price_per_gpu_hour=Decimal("8"), currency="USD")
        check = _check(_scenario(**_FUNDED), compute, "budget")
        assert check.outcome == "pass"
        assert check.detail == (
            "1000 GPU-hours at 8.00 USD = 8,000.00 USD, within the budget of 10,000.00 USD"
        )

    def test_fails_when_over_budget(self) -> None:
        compute = _compute(price_per_gpu_hour=Decimal("12.5"), currency="usd")
        check = _check(_scenario(**_FUNDED), compute, "budget")
        assert (check.outcome, check.hard) == ("fail", True)

    def test_is_unknown_across_currencies(self) -> None:
        compute = _compute(price_per_gpu_hour=Decimal("1"), currency="EUR")
        assert _check(_scenario(**_FUNDED), compute, "budget").outcome == "unknown"

    def test_is_unknown_without_required_hours(self) -> None:
        scenario = _scenario(budget_max=Decimal("10"), currency="USD")
        compute = _compute(price_per_gpu_hour=Decimal("1"), currency="USD")
        assert _check(scenario, compute, "budget").outcome == "unknown"


class TestGpuHours:
    def test_passes_when_enough_hours_are_available(self) -> None:
        check = _check(_scenario(**_FUNDED), _compute(gpu_hours_available=5000.0), "gpu_hours")
        assert check.outcome == "pass"

    def test_fails_when_too_few_hours_are_available(self) -> None:
        check = _check(_scenario(**_FUNDED), _compute(gpu_hours_available=10.0), "gpu_hours")
        assert (check.outcome, check.detail) == (
            "fail",
            "only 10 GPU-hours available, 1000 needed",
        )

    def test_is_unknown_without_availability(self) -> None:
        assert _check(_scenario(**_FUNDED), _compute(), "gpu_hours").outcome == "unknown"


class TestSchedule:
    def test_passes_when_available_before_the_deadline(self) -> None:
        scenario = _scenario(deadline=date(2027, 6, 30))
        check = _check(scenario, _compute(available_from=date(2027, 1, 1)), "schedule")
        assert check.outcome == "pass"

    def test_passes_when_available_now(self) -> None:
        assert _check(_scenario(deadline=date(2027, 6, 30)), _compute(), "schedule").outcome == (
            "pass"
        )

    def test_fails_when_available_only_after_the_deadline(self) -> None:
        scenario = _scenario(deadline=date(2027, 6, 30))
        check = _check(scenario, _compute(available_from=date(2027, 7, 1)), "schedule")
        assert (check.outcome, check.hard) == ("fail", True)

    def test_is_unknown_without_a_deadline(self) -> None:
        check = _check(_scenario(), _compute(available_from=date(2027, 7, 1)), "schedule")
        assert check.outcome == "unknown"


class TestScores:
    def test_constraint_score_averages_pass_unknown_and_fail(self) -> None:
        checks = [
            Check("a", "pass", "", False),
            Check("b", "unknown", "", True),
            Check("c", "fail", "", False),
        ]
        assert constraint_score(checks) == pytest.approx(0.5)
        assert constraint_score([checks[0], checks[0], checks[1]]) == pytest.approx(2.5 / 3)

    def test_constraint_score_is_neutral_without_checks(self) -> None:
        assert constraint_score([]) == 0.5

    def test_only_a_failed_hard_check_fails_hard(self) -> None:
        soft_fail = Check("language", "fail", "", False)
        hard_unknown = Check("budget", "unknown", "", True)
        assert not fails_hard([soft_fail, hard_unknown])
        assert fails_hard([replace(hard_unknown, outcome="fail")])
