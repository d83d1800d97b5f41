"""Listing facts to compact bytes and back."""

from datetime import date
from decimal import Decimal

import pytest

from matching import facts_codec
from matching.facts import (
    ComputeFacts,
    DatasetFacts,
    ListingFacts,
    ModelFacts,
    ScenarioFacts,
)

EVERY_FIELD = [
    ListingFacts(
        id=1,
        kind="dataset",
        title="Traffic counts",
        summary="Hourly counts.",
        description="From 400 road sensors.\n\n" * 3,
        tags=("traffic", "交通"),
        sector="smart_city",
        country="CN",
        region="Anhui",
        languages=("zh", "en"),
        attributes=DatasetFacts(
            modality="tabular",
            licence="CC-BY-4.0",
            access="on_premises_only",
            contains_personal_data=False,
            record_count=12_000_000_000,
        ),
    ),
    ListingFacts(
        id=2,
        kind="scenario",
        title="公交客流预测",
        description="合肥公交集团希望预测每条线路的次日客流。",
        attributes=ScenarioFacts(
            problem_statement="高峰拥挤",
            desired_outcome="",
            required_capabilities=("time_series_forecasting",),
            budget_min=Decimal("0.01"),
            budget_max=Decimal("80000"),
            currency="CNY",
            deadline=date(2027, 3, 1),
            site_city="Hefei",
            required_gpu_hours=1500.5,
        ),
    ),
    ListingFacts(
        id=3,
        kind="compute",
        title="A100 cluster",
        attributes=ComputeFacts(
            accelerator_model="A100",
            accelerator_vendor="NVIDIA",
            accelerator_count=64,
            memory_per_accelerator_gb=80.0,
            gpu_hours_available=10_000.0,
            price_per_gpu_hour=Decimal("12.345"),
            currency="CNY",
            available_from=date(2026, 1, 1),
            available_until=None,
            data_centre_country="CN",
            data_centre_city="Shanghai",
            certifications=("MLPS-3",),
        ),
    ),
    ListingFacts(id=4, kind="model", title="Bare model"),
    ListingFacts(
        id=5,
        kind="model",
        title="Traffic GNN",
        attributes=ModelFacts(
            tasks=("time_series_forecasting",),
            modality="graph",
            languages=("en",),
            licence="Apache-2.0",
            deployment=("api", "on_premises"),
            parameter_count=7_000_000,
            fine_tuning_offered=True,
        ),
    ),
]


@pytest.mark.parametrize("facts", EVERY_FIELD, ids=lambda f: f"{f.kind}-{f.id}")
def test_round_trips_every_field(facts: ListingFacts) -> None:
    decoded = facts_codec.decode(facts_codec.encode(facts))
    assert decoded == facts
    assert type(decoded.attributes) is type(facts.attributes)


@pytest.mark.parametrize("facts", EVERY_FIELD, ids=lambda f: f"{f.kind}-{f.id}")
def test_without_texts_keeps_every_other_field(facts: ListingFacts) -> None:
    decoded = facts_codec.decode(facts_codec.encode(facts), texts=False)
    assert (decoded.summary, decoded.description) == ("", "")
    assert decoded.title == facts.title and decoded.tags == facts.tags
    assert decoded.attributes is not None and facts.attributes is not None
    for name in type(facts.attributes).__match_args__:
        if name not in ("problem_statement", "desired_outcome"):
            assert getattr(decoded.attributes, name) == getattr(facts.attributes, name)
