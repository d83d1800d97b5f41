"""Matches: a listing's counterparts, free-text search, partner organizations and feedback.

The real model ranks realistic listings on both backends. Each process's index follows the
database from a background thread polling every `index_poll_seconds`, so a test that waits for a
write to reach the results polls (bounded by INDEX_WAIT) instead of sleeping; a test that shows
something stays hidden first waits for a visible control listing written after it.
"""

import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import httpx
import pytest
from fastapi.testclient import TestClient

from marketplace.search_index import SearchIndex
from schemas.matches import MAX_MATCHES, MAX_QUERY_CHARS
from tests.factories import (
    ATTRIBUTES,
    Actor,
    assert_problem,
    listing_body,
    sign_up,
)

SEARCH = "/api/v1/search"
INDEX_WAIT = 5.0  # the index applies writes every 0.25 s; far more than that means it is stuck
T = TypeVar("T")


# -- realistic listings ----------------------------------------------------------------------


def traffic_dataset(**overrides: Any) -> dict[str, Any]:
    """Junction counts that may only be analysed on the city's premises in Hefei (CN)."""
    return listing_body(
        "dataset",
        **{
            "title": "Hefei junction loop detector counts",
            "summary": "Five-minute vehicle counts from loop detectors at 120 signalised "
            "junctions in Hefei.",
            "description": "The traffic police record vehicle counts and lane occupancy at 120 "
            "junctions every five minutes. The archive covers 2019 to 2024. The data may only "
            "be analysed inside the municipal data centre.",
            "tags": ["traffic", "loop detectors", "smart city"],
            "sector": "transport",
            "country": "CN",
            "region": "Hefei",
            "languages": ["zh", "en"],
            "attributes": {
                **ATTRIBUTES["dataset"],
                "modality": "time_series",
                "access": "on_premises_only",
            },
            **overrides,
        },
    )


def gpu_compute(country: str = "CN", city: str = "Hefei", **overrides: Any) -> dict[str, Any]:
    return listing_body(
        "compute",
        **{
            "title": f"H100 GPU cluster in {city}",
            "summary": f"64 NVIDIA H100 accelerators for model training in a {city} data centre.",
            "description": "Rent GPU-hours on 64 H100 80GB accelerators linked by InfiniBand. "
            "The cluster suits training traffic forecasting and vision models on large "
            "datasets. Storage is encrypted and audited.",
            "tags": ["gpu", "h100", "training"],
            "sector": "smart_city",
            "country": country,
            "region": city,
            "attributes": {
                **ATTRIBUTES["compute"],
                "data_centre": {"country": country, "city": city},
            },
            **overrides,
        },
    )


def traffic_model(**overrides: Any) -> dict[str, Any]:
    return listing_body(
        "model",
        **{
            "title": "Junction traffic flow forecaster",
            "summary": "Forecasts vehicle flow at signalised junctions up to one hour ahead "
            "from loop detector counts.",
            "description": "A graph neural network trained on loop detector data from three "
            "cities. It predicts traffic flow and queue lengths for every approach of a "
            "junction. It runs on premises or as an API.",
            "tags": ["traffic", "forecasting", "graph neural network"],
            "sector": "transport",
            "attributes": {
                **ATTRIBUTES["model"],
                "tasks": ["time_series_forecasting"],
                "modality": "time_series",
                "licence": "Apache-2.0",
                "deployment": ["on_premises", "api"],
            },
            **overrides,
        },
    )


def defect_model(**overrides: Any) -> dict[str, Any]:
    return listing_body(
        "model",
        **{
            "title": "Steel surface defect detector",
            "summary": "Detects scratches, inclusions and cracks on hot-rolled steel strip.",
            "description": "Trained on two million line-scan camera images from steel mills. "
            "It marks each defect with a bounding box and a class in under 20 ms.",
            "tags": ["steel", "defect detection", "computer vision"],
            "sector": "manufacturing",
            **overrides,
        },
    )


def signal_scenario(**overrides: Any) -> dict[str, Any]:
    """A scenario with a budget but, unless given, no GPU-hours: the budget check cannot decide."""
    attributes = {
        key: value for key, value in ATTRIBUTES["scenario"].items() if key != "required_gpu_hours"
    }
    return listing_body(
        "scenario",
        **{
            "title": "Adaptive signal timing for Hefei junctions",
            "summary": "Retime the traffic signals of 120 junctions from forecast vehicle flow.",
            "description": "Signal plans are fixed by time of day and queues build up at rush "
            "hour. We want forecasts of junction traffic flow to drive adaptive timing.",
            "tags": ["traffic", "signal timing"],
            "sector": "transport",
            "region": "Hefei",
            "attributes": {
                **attributes,
                "problem_statement": "Fixed signal plans cause long queues at rush hour.",
                "desired_outcome": "Average junction delay down by 15%.",
                "site": {"city": "Hefei"},
                "required_capabilities": ["time_series_forecasting"],
            },
            **overrides,
        },
    )


def chinese_signal_scenario() -> dict[str, Any]:
    return listing_body(
        "scenario",
        title="智慧交通信号优化",
        summary="利用实时交通流量数据优化城市路口信号灯配时。",
        description="合肥市交通管理局计划在120个路口部署自适应信号控制系统。"
        "系统根据线圈检测器和视频数据预测交通流量，减少高峰期拥堵。",
        tags=["智慧交通", "信号优化"],
        sector="transport",
        region="合肥",
        languages=["zh"],
        attributes={
            **ATTRIBUTES["scenario"],
            "problem_statement": "高峰时段路口拥堵严重，信号灯配时固定。",
            "desired_outcome": "路口平均延误降低百分之十五。",
            "site": {"city": "合肥"},
            "required_capabilities": ["time_series_forecasting"],
        },
    )


def chinese_flow_model() -> dict[str, Any]:
    return listing_body(
        "model",
        title="交通流量预测模型",
        summary="基于图神经网络的城市路网交通流量预测模型。",
        description="模型根据路口线圈检测器的历史数据，预测未来一小时的交通流量和拥堵指数。"
        "支持私有化部署。",
        tags=["交通流量", "预测"],
        sector="transport",
        languages=["zh"],
        attributes={
            **ATTRIBUTES["model"],
            "tasks": ["time_series_forecasting"],
            "modality": "time_series",
            "languages": ["zh"],
            "licence": "Apache-2.0",
            "deployment": ["on_premises"],
        },
    )


def chinese_medical_dataset() -> dict[str, Any]:
    return listing_body(
        "dataset",
        title="胸部CT影像数据集",
        summary="三甲医院脱敏的胸部CT影像，带有肺结节标注。",
        description="数据集包含两万例胸部CT扫描，由放射科医生标注肺结节的位置和大小。",
        tags=["医学影像", "肺结节"],
        sector="healthcare",
        languages=["zh"],
    )


# -- HTTP helpers ----------------------------------------------------------------------------


def post(client: TestClient, actor: Actor, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/listings", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def headers_of(actor: Actor | None) -> dict[str, str]:
    return actor.headers if actor else {}


def matches_url(listing_id: str) -> str:
    return f"/api/v1/listings/{listing_id}/matches"


def get_matches(
    client: TestClient, listing_id: str, actor: Actor | None, **params: Any
) -> httpx.Response:
    return client.get(matches_url(listing_id), params=params, headers=headers_of(actor))


def match_items(
    client: TestClient, listing_id: str, actor: Actor | None, **params: Any
) -> list[dict[str, Any]]:
    response = get_matches(client, listing_id, actor, **params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def match_ids(client: TestClient, listing_id: str, actor: Actor | None, **params: Any) -> list[str]:
    return [item["listing"]["id"] for item in match_items(client, listing_id, actor, **params)]


def search_items(
    client: TestClient, actor: Actor | None, text: str, **body: Any
) -> list[dict[str, Any]]:
    response = client.post(SEARCH, json={"text": text, **body}, headers=headers_of(actor))
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def search_ids(client: TestClient, actor: Actor | None, text: str, **body: Any) -> list[str]:
    return [item["listing"]["id"] for item in search_items(client, actor, text, **body)]


def partners_url(organization_id: str) -> str:
    return f"/api/v1/organizations/{organization_id}/partners"


def partner_items(client: TestClient, actor: Actor, **params: Any) -> list[dict[str, Any]]:
    response = client.get(partners_url(actor.organization_id), params=params, headers=actor.headers)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def feedback_url(listing_id: str, counterpart_id: str) -> str:
    return f"/api/v1/listings/{listing_id}/matches/{counterpart_id}/feedback"


def give_feedback(
    client: TestClient, actor: Actor | None, listing_id: str, counterpart_id: str, body: Any
) -> httpx.Response:
    return client.post(
        feedback_url(listing_id, counterpart_id), json=body, headers=headers_of(actor)
    )


def update(client: TestClient, actor: Actor, listing: dict[str, Any], **changes: Any) -> None:
    response = client.patch(
        f"/api/v1/listings/{listing['id']}",
        json=changes,
        headers={**actor.headers, "If-Match": f'"{listing["version"]}"'},
    )
    assert response.status_code == 200, response.text
    listing.update(response.json())


def eventually(probe: Callable[[], T], done: Callable[[T], bool]) -> T:
    """Probe until `done` holds or INDEX_WAIT passes; returns the last value for the assert."""
    deadline = time.monotonic() + INDEX_WAIT
    while True:
        value = probe()
        if done(value) or time.monotonic() >= deadline:
            return value
        time.sleep(0.05)


def index_ids(client: TestClient, actor: Actor | None) -> set[str]:
    """The listings the app's index itself would propose to the actor, before any database check.

    Results are checked against the database too, so only this shows the index followed a write.
    """
    index: SearchIndex = client.app.state.search_index  # type: ignore[attr-defined]
    viewer = uuid.UUID(actor.organization_id) if actor else None
    entries = [index.listing(row_id) for row_id in list(index.visible_ids(viewer))]
    return {str(entry.id) for entry in entries if entry is not None}


def university(client: TestClient) -> Actor:
    return sign_up(client, kind="university", country="CN", region="Hefei")


def company(client: TestClient, country: str = "CN") -> Actor:
    return sign_up(client, kind="company", country=country, region="")


def sentences_of(listing: dict[str, Any]) -> str:
    return f"{listing['summary']} {listing['description']}"


# -- the endpoints ---------------------------------------------------------------------------


class TestListingMatches:
    def test_ranks_counterparts_of_the_other_side_best_first(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        post(client, need_side, signal_scenario())
        forecaster = post(client, offer_side, traffic_model())
        detector = post(client, offer_side, defect_model())
        compute = post(client, offer_side, gpu_compute())
        items = eventually(
            lambda: match_items(client, dataset["id"], need_side),
            lambda items: len(items) == 3,
        )
        assert [item["listing"]["side"] for item in items] == ["offer"] * 3
        assert {item["listing"]["id"] for item in items} == {
            forecaster["id"],
            detector["id"],
            compute["id"],
        }
        scores = [item["score"] for item in items]
        assert scores == sorted(scores, reverse=True)
        assert items[0]["listing"]["id"] != detector["id"]

    def test_reports_how_many_listings_name_a_match(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        forecaster = post(client, offer_side, traffic_model())
        follower = post(
            client,
            company(client),  # another organization: its own would not count
            traffic_model(
                title="Junction queue forecaster",
                description=f"Fine-tuned from {forecaster['title']} for queue lengths.",
            ),
        )
        own_follower = traffic_model(
            title="Junction flow dashboard", description=f"Built on {forecaster['title']}."
        )
        post(client, offer_side, own_follower)  # its own organization's: no mention
        eventually(
            lambda: match_items(client, dataset["id"], need_side),
            lambda items: len(items) == 3,
        )
        index: SearchIndex = client.app.state.search_index  # type: ignore[attr-defined]
        index.recount_mentions()  # the app's background thread does this within 30 s

        items = match_items(client, dataset["id"], need_side)
        by_id = {item["listing"]["id"]: item["components"] for item in items}
        assert by_id[forecaster["id"]]["mentions"] == 1
        assert by_id[forecaster["id"]]["prominence"] > 0.0
        assert by_id[follower["id"]]["mentions"] == 0
        assert all(0.0 < item["score"] <= 1.0 for item in items)

    def test_explains_each_match_with_components_terms_evidence_and_checks(
        self, client: TestClient
    ) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        forecaster = post(client, offer_side, traffic_model())
        [item] = eventually(
            lambda: match_items(client, dataset["id"], need_side),
            lambda items: len(items) == 1,
        )
        assert item["listing"]["organization"]["id"] == offer_side.organization_id
        components = item["components"]
        assert set(components) == {"semantic", "lexical", "constraints", "prominence", "mentions"}
        scores = [components[name] for name in ("semantic", "lexical", "constraints")]
        assert all(0.0 < value <= 1.0 for value in scores), components
        assert components["prominence"] == 0.0 and components["mentions"] == 0  # nobody names it
        assert 0.0 < item["score"] <= 1.0
        assert {"traffic", "junction", "loop", "detector"} <= set(item["matched_terms"])
        assert item["evidence"] and item["evidence"] in sentences_of(forecaster)
        checks = {check["name"]: check for check in item["checks"]}
        assert set(checks) == {"modality", "language", "licence", "deployment"}
        assert checks["deployment"] == {
            "name": "deployment",
            "outcome": "pass",
            "detail": "the model can run on the dataset's premises",
            "hard": True,
        }
        assert item["feedback"] is None

    def test_data_residency_fails_for_on_premises_data_and_a_foreign_data_centre(
        self, client: TestClient
    ) -> None:
        need_side, offer_side = university(client), company(client, "DE")
        dataset = post(client, need_side, traffic_dataset())
        abroad = post(client, offer_side, gpu_compute("DE", "Frankfurt"))
        at_home = post(client, offer_side, gpu_compute("CN", "Hefei"))
        items = eventually(
            lambda: match_items(client, dataset["id"], need_side),
            lambda items: len(items) == 2,
        )
        checks = {
            item["listing"]["id"]: {check["name"]: check for check in item["checks"]}
            for item in items
        }
        assert checks[abroad["id"]]["data_residency"]["outcome"] == "fail"
        assert checks[abroad["id"]]["data_residency"]["hard"] is True
        assert "DE" in checks[abroad["id"]]["data_residency"]["detail"]
        assert checks[abroad["id"]]["location"]["outcome"] == "fail"
        assert checks[at_home["id"]]["data_residency"]["outcome"] == "pass"
        assert checks[at_home["id"]]["location"]["outcome"] == "pass"
        by_id = {item["listing"]["id"]: item for item in items}
        assert by_id[at_home["id"]]["components"]["constraints"] == 1.0
        assert by_id[abroad["id"]]["components"]["constraints"] == 0.0

    def test_strict_drops_counterparts_failing_a_hard_check(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client, "DE")
        dataset = post(client, need_side, traffic_dataset())
        abroad = post(client, offer_side, gpu_compute("DE", "Frankfurt"))
        at_home = post(client, offer_side, gpu_compute("CN", "Hefei"))
        both = eventually(
            lambda: match_ids(client, dataset["id"], need_side),
            lambda ids: len(ids) == 2,
        )
        assert set(both) == {abroad["id"], at_home["id"]}
        assert match_ids(client, dataset["id"], need_side, strict=True) == [at_home["id"]]

    def test_reports_unknown_when_a_fact_is_missing(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        scenario = post(client, need_side, signal_scenario())
        compute = post(client, offer_side, gpu_compute())
        [item] = eventually(
            lambda: match_items(client, scenario["id"], need_side, kind="compute"),
            lambda items: len(items) == 1,
        )
        assert item["listing"]["id"] == compute["id"]
        outcomes = {check["name"]: check["outcome"] for check in item["checks"]}
        # The scenario states a budget but not the GPU-hours it needs; the deadline
        # (2027-06-30) is after the cluster becomes available (2026-12-01).
        assert outcomes == {
            "location": "pass",
            "budget": "unknown",
            "gpu_hours": "unknown",
            "schedule": "pass",
        }
        assert item["components"]["constraints"] == pytest.approx((1 + 0.5 + 0.5 + 1) / 4)
        # Unknown is not failed: strict matching keeps the counterpart.
        assert match_ids(client, scenario["id"], need_side, strict=True) == [compute["id"]]

    def test_checks_the_cost_of_the_needed_gpu_hours_against_the_budget(
        self, client: TestClient
    ) -> None:
        need_side, offer_side = university(client), company(client)
        attributes = {**signal_scenario()["attributes"], "required_gpu_hours": 2000}
        scenario = post(client, need_side, signal_scenario(attributes=attributes))
        cheap = post(client, offer_side, gpu_compute())  # 18.50 CNY per GPU-hour
        dear = post(
            client,
            offer_side,
            gpu_compute(attributes={**gpu_compute()["attributes"], "price_per_gpu_hour": "300"}),
        )
        items = eventually(
            lambda: match_items(client, scenario["id"], need_side, kind="compute"),
            lambda items: len(items) == 2,
        )
        budget = {
            item["listing"]["id"]: next(c for c in item["checks"] if c["name"] == "budget")
            for item in items
        }
        # 2,000 GPU-hours against a budget of at most 500,000 CNY.
        assert budget[cheap["id"]]["outcome"] == "pass"
        assert "37,000.00 CNY" in budget[cheap["id"]]["detail"]
        assert budget[dear["id"]]["outcome"] == "fail"
        assert "600,000.00 CNY" in budget[dear["id"]]["detail"]
        assert match_ids(client, scenario["id"], need_side, strict=True) == [cheap["id"]]

    def test_kind_keeps_only_that_counterpart_kind(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        post(client, offer_side, traffic_model())
        compute = post(client, offer_side, gpu_compute())
        eventually(
            lambda: match_ids(client, dataset["id"], need_side),
            lambda ids: len(ids) == 2,
        )
        assert match_ids(client, dataset["id"], need_side, kind="compute") == [compute["id"]]

    def test_limit_caps_the_results(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        for _ in range(3):
            post(client, offer_side, traffic_model())
        eventually(
            lambda: match_ids(client, dataset["id"], need_side),
            lambda ids: len(ids) == 3,
        )
        assert len(match_ids(client, dataset["id"], need_side, limit=2)) == 2

    def test_min_score_drops_weaker_matches(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        post(client, offer_side, traffic_model())
        post(client, offer_side, defect_model())
        items = eventually(
            lambda: match_items(client, dataset["id"], need_side),
            lambda items: len(items) == 2,
        )
        threshold = (items[0]["score"] + items[1]["score"]) / 2
        kept = match_ids(client, dataset["id"], need_side, min_score=threshold)
        assert kept == [items[0]["listing"]["id"]]

    def test_anyone_may_match_a_public_listing(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        assert eventually(
            lambda: match_ids(client, dataset["id"], None),
            lambda ids: ids == [model["id"]],
        ) == [model["id"]]

    def test_an_owner_may_match_its_own_draft(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        draft = post(client, need_side, traffic_dataset(status="draft"))
        model = post(client, offer_side, traffic_model())
        assert eventually(
            lambda: match_ids(client, draft["id"], need_side),
            lambda ids: ids == [model["id"]],
        ) == [model["id"]]

    @pytest.mark.parametrize(
        ("params", "field"),
        [
            ({"kind": "spaceship"}, "query.kind"),
            ({"limit": MAX_MATCHES + 1}, "query.limit"),
            ({"limit": 0}, "query.limit"),
            ({"min_score": 1.5}, "query.min_score"),
            ({"strict": "perhaps"}, "query.strict"),
        ],
        ids=["unknown-kind", "limit-over-max", "limit-zero", "min-score-over-one", "bad-strict"],
    )
    def test_invalid_parameters_are_a_validation_problem(
        self, client: TestClient, params: dict[str, Any], field: str
    ) -> None:
        response = get_matches(client, str(uuid.uuid4()), None, **params)
        assert_problem(response, 422, "validation_failed", field=field)

    def test_a_kind_of_the_same_side_is_refused(self, client: TestClient) -> None:
        owner = university(client)
        dataset = post(client, owner, traffic_dataset())
        response = get_matches(client, dataset["id"], owner, kind="scenario")
        assert_problem(response, 422, "kind_not_counterpart", field="query.kind")

    def test_a_malformed_listing_id_is_a_validation_problem(self, client: TestClient) -> None:
        response = client.get(matches_url("not-a-uuid"))
        assert_problem(response, 422, "validation_failed", field="path.listing_id")

    def test_an_unknown_listing_is_not_found(self, client: TestClient) -> None:
        response = client.get(matches_url("00000000-0000-4000-8000-000000000000"))
        assert_problem(response, 404, "not_found")

    def test_an_invalid_token_is_unauthenticated(self, client: TestClient) -> None:
        owner = university(client)
        dataset = post(client, owner, traffic_dataset())
        response = client.get(
            matches_url(dataset["id"]), headers={"Authorization": "Bearer scx_not-a-token"}
        )
        assert_problem(response, 401, "invalid_token")


class TestSearch:
    def test_finds_listings_by_free_text_with_their_explanation(self, client: TestClient) -> None:
        offer_side = company(client)
        forecaster = post(client, offer_side, traffic_model())
        post(client, offer_side, defect_model())
        post(client, offer_side, gpu_compute())
        items = eventually(
            lambda: search_items(client, None, "forecast traffic flow at junctions"),
            lambda items: len(items) == 3,
        )
        best = items[0]
        assert best["listing"]["id"] == forecaster["id"]
        assert {"traffic", "flow", "junction"} <= set(best["matched_terms"])
        assert best["evidence"] in sentences_of(forecaster)
        assert best["checks"] == []  # free text states no facts to check
        assert best["components"]["lexical"] == 1.0

    def test_chinese_query_finds_chinese_listings(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        scenario = post(client, need_side, chinese_signal_scenario())
        flow_model = post(client, offer_side, chinese_flow_model())
        post(client, need_side, chinese_medical_dataset())
        post(client, offer_side, traffic_model())
        post(client, offer_side, defect_model())
        items = eventually(
            lambda: search_items(client, None, "交通流量预测"),
            lambda items: len(items) >= 2,
        )
        assert items[0]["listing"]["id"] == flow_model["id"]
        assert {"交通流量", "预测"} <= set(items[0]["matched_terms"])
        assert items[0]["evidence"] in sentences_of(flow_model)
        assert search_ids(client, None, "智慧交通信号优化", side="need")[0] == scenario["id"]

    def test_chinese_scenario_is_matched_with_the_chinese_model(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        scenario = post(client, need_side, chinese_signal_scenario())
        flow_model = post(client, offer_side, chinese_flow_model())
        post(client, offer_side, defect_model())
        items = eventually(
            lambda: match_items(client, scenario["id"], need_side, kind="model"),
            lambda items: len(items) == 2,
        )
        assert items[0]["listing"]["id"] == flow_model["id"]
        assert "交通" in items[0]["matched_terms"]

    def test_filters_narrow_the_results(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client, "DE")
        post(client, need_side, traffic_dataset())
        post(client, offer_side, traffic_model())
        post(client, offer_side, gpu_compute("DE", "Frankfurt"))
        eventually(lambda: search_ids(client, None, "traffic"), lambda ids: len(ids) == 3)
        kinds_found = {
            name: {item["listing"]["kind"] for item in search_items(client, None, "traffic", **f)}
            for name, f in {
                "side": {"side": "need"},
                "kinds": {"kinds": ["compute"]},
                "kinds and side": {"kinds": ["model", "compute"], "side": "offer"},
                "kinds of the other side": {"kinds": ["model"], "side": "need"},
                "country": {"country": "DE"},
                "sector": {"sector": "transport"},
                "organization kind": {"organization_kind": "university"},
            }.items()
        }
        assert kinds_found == {
            "side": {"dataset"},
            "kinds": {"compute"},
            "kinds and side": {"model", "compute"},
            "kinds of the other side": set(),
            "country": {"compute"},
            "sector": {"dataset", "model"},
            "organization kind": {"dataset"},
        }

    def test_limit_caps_the_results(self, client: TestClient) -> None:
        offer_side = company(client)
        for _ in range(3):
            post(client, offer_side, traffic_model())
        eventually(lambda: search_ids(client, None, "traffic"), lambda ids: len(ids) == 3)
        assert len(search_ids(client, None, "traffic", limit=2)) == 2

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"text": ""}, "body.text"),
            ({"text": "   "}, "body.text"),
            ({"text": "traffic " * 1250}, "body.text"),
            ({"text": "x" * (MAX_QUERY_CHARS + 1)}, "body.text"),
            ({"text": "traffic\x00flow"}, "body.text"),
            ({}, "body.text"),
            ({"text": "traffic", "kinds": ["spaceship"]}, "body.kinds.0"),
            ({"text": "traffic", "side": "middle"}, "body.side"),
            ({"text": "traffic", "limit": MAX_MATCHES + 1}, "body.limit"),
            ({"text": "traffic", "limit": 0}, "body.limit"),
            ({"text": "traffic", "country": "XX"}, "body.country"),
            ({"text": "traffic", "min_score": -0.1}, "body.min_score"),
            ({"text": "traffic", "owner": "me"}, "body.owner"),
        ],
        ids=[
            "empty",
            "blank",
            "ten-thousand-chars",
            "one-over-max",
            "nul",
            "missing",
            "unknown-kind",
            "unknown-side",
            "limit-over-max",
            "limit-zero",
            "unknown-country",
            "negative-min-score",
            "unknown-field",
        ],
    )
    def test_invalid_requests_are_a_validation_problem(
        self, client: TestClient, body: dict[str, Any], field: str
    ) -> None:
        response = client.post(SEARCH, json=body)
        assert_problem(response, 422, "validation_failed", field=field)

    def test_malformed_json_is_a_bad_request(self, client: TestClient) -> None:
        response = client.post(
            SEARCH, content=b'{"text": "traffic"', headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 400, "malformed_json")

    def test_an_invalid_token_is_unauthenticated(self, client: TestClient) -> None:
        response = client.post(
            SEARCH, json={"text": "traffic"}, headers={"Authorization": "Bearer scx_nope"}
        )
        assert_problem(response, 401, "invalid_token")

    def test_a_member_finds_its_own_private_listing(self, client: TestClient) -> None:
        owner = company(client)
        private = post(client, owner, traffic_model(visibility="private"))
        assert eventually(
            lambda: search_ids(client, owner, "traffic flow forecaster"),
            lambda ids: ids == [private["id"]],
        ) == [private["id"]]


class TestPartners:
    def test_recommends_organizations_with_the_listing_pairs_that_justify_them(
        self, client: TestClient
    ) -> None:
        need_side, traffic_firm, steel_firm = university(client), company(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        forecaster = post(client, traffic_firm, traffic_model())
        compute = post(client, traffic_firm, gpu_compute())
        detector = post(client, steel_firm, defect_model())
        items = eventually(
            lambda: partner_items(client, need_side),
            lambda items: len(items) == 2,
        )
        assert [item["organization"]["id"] for item in items] == [
            traffic_firm.organization_id,
            steel_firm.organization_id,
        ]
        assert items[0]["score"] > items[1]["score"]
        pairs = {(p["listing_id"], p["counterpart_id"]) for p in items[0]["pairs"]}
        assert pairs == {(dataset["id"], forecaster["id"]), (dataset["id"], compute["id"])}
        assert items[0]["pairs"][0]["listing_title"] == dataset["title"]
        assert [p["counterpart_id"] for p in items[1]["pairs"]] == [detector["id"]]

    def test_never_recommends_the_organization_itself(self, client: TestClient) -> None:
        both_sides = company(client)
        post(client, both_sides, traffic_dataset())
        model = post(client, both_sides, traffic_model())
        other = company(client)
        post(client, other, traffic_dataset())
        eventually(
            lambda: search_ids(client, None, "traffic", kinds=["dataset"]),
            lambda ids: len(ids) == 2,
        )
        items = partner_items(client, both_sides)
        assert [item["organization"]["id"] for item in items] == [other.organization_id]
        assert model["id"] not in {p["counterpart_id"] for i in items for p in i["pairs"]}

    def test_limit_caps_the_organizations(self, client: TestClient) -> None:
        need_side = university(client)
        post(client, need_side, traffic_dataset())
        for _ in range(3):
            post(client, company(client), traffic_model())
        eventually(lambda: partner_items(client, need_side), lambda items: len(items) == 3)
        assert len(partner_items(client, need_side, limit=1)) == 1

    def test_another_organizations_partners_are_forbidden(self, client: TestClient) -> None:
        need_side, stranger = university(client), company(client)
        response = client.get(partners_url(need_side.organization_id), headers=stranger.headers)
        assert_problem(response, 403, "forbidden")

    def test_anonymous_callers_are_unauthenticated(self, client: TestClient) -> None:
        need_side = university(client)
        response = client.get(partners_url(need_side.organization_id))
        assert_problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize(
        ("path", "params", "field"),
        [
            ("{org}", {"limit": MAX_MATCHES + 1}, "query.limit"),
            ("{org}", {"limit": 0}, "query.limit"),
            ("not-a-uuid", {}, "path.organization_id"),
        ],
        ids=["limit-over-max", "limit-zero", "malformed-id"],
    )
    def test_invalid_parameters_are_a_validation_problem(
        self, client: TestClient, path: str, params: dict[str, Any], field: str
    ) -> None:
        member = university(client)
        response = client.get(
            partners_url(path.format(org=member.organization_id)),
            params=params,
            headers=member.headers,
        )
        assert_problem(response, 422, "validation_failed", field=field)


class TestFeedback:
    def test_records_the_organizations_verdict(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        body = {"verdict": "relevant", "reason": "  Exactly our junction data.  "}
        response = give_feedback(client, need_side, dataset["id"], model["id"], body)
        assert response.status_code == 200, response.text
        assert response.json() == {
            "listing_id": dataset["id"],
            "counterpart_id": model["id"],
            "verdict": "relevant",
            "reason": "Exactly our junction data.",
        }

    def test_relevant_counterparts_are_marked_in_the_matches(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        compute = post(client, offer_side, gpu_compute())
        eventually(lambda: match_ids(client, dataset["id"], need_side), lambda ids: len(ids) == 2)
        give_feedback(client, need_side, dataset["id"], model["id"], {"verdict": "relevant"})
        verdicts = {
            item["listing"]["id"]: item["feedback"]
            for item in match_items(client, dataset["id"], need_side)
        }
        assert verdicts == {model["id"]: "relevant", compute["id"]: None}

    def test_dismissed_counterparts_leave_that_organizations_matches(
        self, client: TestClient
    ) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        compute = post(client, offer_side, gpu_compute())
        eventually(lambda: match_ids(client, dataset["id"], need_side), lambda ids: len(ids) == 2)
        response = give_feedback(
            client, need_side, dataset["id"], compute["id"], {"verdict": "dismissed"}
        )
        assert response.status_code == 200, response.text
        assert match_ids(client, dataset["id"], need_side) == [model["id"]]
        assert match_ids(client, dataset["id"], need_side, limit=1) == [model["id"]]

    def test_a_dismissal_leaves_other_organizations_matches_alone(self, client: TestClient) -> None:
        need_side, offer_side, onlooker = university(client), company(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        compute = post(client, offer_side, gpu_compute())
        eventually(lambda: match_ids(client, dataset["id"], need_side), lambda ids: len(ids) == 2)
        give_feedback(client, need_side, dataset["id"], compute["id"], {"verdict": "dismissed"})
        assert set(match_ids(client, dataset["id"], onlooker)) == {model["id"], compute["id"]}
        assert set(match_ids(client, dataset["id"], None)) == {model["id"], compute["id"]}

    def test_a_dismissed_counterpart_no_longer_justifies_a_partner(
        self, client: TestClient
    ) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        eventually(lambda: partner_items(client, need_side), lambda items: len(items) == 1)
        give_feedback(client, need_side, dataset["id"], model["id"], {"verdict": "dismissed"})
        assert partner_items(client, need_side) == []

    def test_a_changed_verdict_brings_the_counterpart_back(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        eventually(lambda: match_ids(client, dataset["id"], need_side), lambda ids: len(ids) == 1)
        give_feedback(client, need_side, dataset["id"], model["id"], {"verdict": "dismissed"})
        assert match_ids(client, dataset["id"], need_side) == []
        give_feedback(client, need_side, dataset["id"], model["id"], {"verdict": "relevant"})
        [item] = match_items(client, dataset["id"], need_side)
        assert (item["listing"]["id"], item["feedback"]) == (model["id"], "relevant")

    @pytest.mark.parametrize("hidden", ["listing", "counterpart"])
    def test_feedback_involving_an_invisible_listing_is_not_found(
        self, client: TestClient, hidden: str
    ) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset(visibility="private"))
        model = post(client, offer_side, traffic_model(visibility="private"))
        # Each side sees only its own private listing.
        actor = offer_side if hidden == "listing" else need_side
        response = give_feedback(
            client, actor, dataset["id"], model["id"], {"verdict": "dismissed"}
        )
        assert_problem(response, 404, "not_found")

    def test_a_listing_of_the_same_side_is_not_a_counterpart(self, client: TestClient) -> None:
        need_side = university(client)
        dataset = post(client, need_side, traffic_dataset())
        scenario = post(client, need_side, signal_scenario())
        response = give_feedback(
            client, need_side, dataset["id"], scenario["id"], {"verdict": "relevant"}
        )
        assert_problem(response, 404, "not_found")

    def test_anonymous_callers_are_unauthenticated(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        response = give_feedback(client, None, dataset["id"], model["id"], {"verdict": "relevant"})
        assert_problem(response, 401, "unauthenticated")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"verdict": "maybe"}, "body.verdict"),
            ({}, "body.verdict"),
            ({"verdict": "relevant", "reason": "bad\x00byte"}, "body.reason"),
            ({"verdict": "relevant", "reason": "x" * 1001}, "body.reason"),
            ({"verdict": "relevant", "member_id": "me"}, "body.member_id"),
        ],
        ids=["unknown-verdict", "missing-verdict", "nul-reason", "long-reason", "unknown-field"],
    )
    def test_invalid_bodies_are_a_validation_problem(
        self, client: TestClient, body: dict[str, Any], field: str
    ) -> None:
        member = university(client)
        response = give_feedback(client, member, str(uuid.uuid4()), str(uuid.uuid4()), body)
        assert_problem(response, 422, "validation_failed", field=field)


# -- the index follows listing writes --------------------------------------------------------


class TestIndexFollowsListingWrites:
    def test_a_created_listing_becomes_matchable(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        assert match_ids(client, dataset["id"], need_side) == []
        model = post(client, offer_side, traffic_model())
        assert eventually(
            lambda: match_ids(client, dataset["id"], need_side),
            lambda ids: ids == [model["id"]],
        ) == [model["id"]]

    def test_listings_posted_in_a_batch_become_matchable(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        response = client.post(
            "/api/v1/listings/batch",
            json={"items": [traffic_model(), defect_model()]},
            headers=offer_side.headers,
        )
        assert response.status_code == 201, response.text
        forecaster, detector = response.json()["items"]
        assert eventually(
            lambda: match_ids(client, dataset["id"], need_side),
            lambda ids: len(ids) == 2,
        ) == [forecaster["id"], detector["id"]]

    def test_a_text_change_changes_the_results(self, client: TestClient) -> None:
        offer_side = company(client)
        model = post(client, offer_side, defect_model())
        post(client, offer_side, traffic_model())
        [steel] = eventually(
            lambda: search_items(client, None, "steel surface defects", kinds=["model"], limit=1),
            lambda items: bool(items) and items[0]["listing"]["id"] == model["id"],
        )
        assert "steel" in steel["matched_terms"]
        update(
            client,
            offer_side,
            model,
            title="Protein structure predictor",
            summary="Predicts the folded structure of proteins from amino acid sequences.",
            description="Trained on experimental structures. It outputs atom coordinates.",
            tags=["protein", "structure"],
        )
        [protein] = eventually(
            lambda: search_items(client, None, "protein structure", kinds=["model"], limit=1),
            lambda items: "protein" in items[0]["matched_terms"],
        )
        assert protein["listing"]["id"] == model["id"]
        assert protein["evidence"] in sentences_of(model)
        by_id = {
            item["listing"]["id"]: item
            for item in search_items(client, None, "steel surface defects", kinds=["model"])
        }
        assert by_id[model["id"]]["matched_terms"] == []
        assert by_id[model["id"]]["components"]["lexical"] == 0.0

    @pytest.mark.parametrize("status", ["draft", "paused"])
    def test_leaving_published_removes_it_from_results(
        self, client: TestClient, status: str
    ) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        eventually(
            lambda: match_ids(client, dataset["id"], need_side), lambda ids: ids == [model["id"]]
        )
        update(client, offer_side, model, status=status)
        assert match_ids(client, dataset["id"], need_side) == []
        assert search_ids(client, need_side, "traffic flow forecaster", kinds=["model"]) == []
        remaining = eventually(lambda: index_ids(client, offer_side), lambda ids: len(ids) == 1)
        assert remaining == {dataset["id"]}

    def test_publishing_again_brings_it_back(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model(status="draft"))
        sentinel = post(client, offer_side, gpu_compute())
        eventually(
            lambda: match_ids(client, dataset["id"], need_side),
            lambda ids: ids == [sentinel["id"]],
        )
        update(client, offer_side, model, status="published")
        assert eventually(
            lambda: match_ids(client, dataset["id"], need_side, kind="model"),
            lambda ids: ids == [model["id"]],
        ) == [model["id"]]

    def test_a_visibility_change_decides_who_finds_it(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        model = post(client, offer_side, traffic_model())
        query = "traffic flow forecaster"
        eventually(lambda: search_ids(client, None, query), lambda ids: ids == [model["id"]])
        update(client, offer_side, model, visibility="registered")
        assert search_ids(client, None, query) == []
        assert search_ids(client, need_side, query) == [model["id"]]
        update(client, offer_side, model, visibility="private")
        assert search_ids(client, need_side, query) == []
        assert search_ids(client, offer_side, query) == [model["id"]]
        update(client, offer_side, model, visibility="public")
        assert eventually(
            lambda: search_ids(client, None, query), lambda ids: ids == [model["id"]]
        ) == [model["id"]]

    def test_the_index_itself_moves_a_listing_made_private(self, client: TestClient) -> None:
        offer_side = company(client)
        model = post(client, offer_side, traffic_model())
        eventually(lambda: index_ids(client, None), lambda ids: ids == {model["id"]})
        update(client, offer_side, model, visibility="private")
        assert eventually(lambda: index_ids(client, None), lambda ids: not ids) == set()
        assert index_ids(client, offer_side) == {model["id"]}

    def test_a_deleted_listing_leaves_the_results(self, client: TestClient) -> None:
        need_side, offer_side = university(client), company(client)
        dataset = post(client, need_side, traffic_dataset())
        model = post(client, offer_side, traffic_model())
        eventually(
            lambda: match_ids(client, dataset["id"], need_side), lambda ids: ids == [model["id"]]
        )
        response = client.delete(f"/api/v1/listings/{model['id']}", headers=offer_side.headers)
        assert response.status_code == 204, response.text
        assert match_ids(client, dataset["id"], need_side) == []
        remaining = eventually(lambda: index_ids(client, offer_side), lambda ids: len(ids) == 1)
        assert remaining == {dataset["id"]}


# -- visibility never leaks ------------------------------------------------------------------

# (how the other organization's listing is hidden, who looks): drafts, paused and private
# listings are hidden from members of other organizations, registered ones from anonymous callers.
HIDDEN_FROM = [
    ({"status": "draft"}, "member"),
    ({"status": "paused"}, "member"),
    ({"visibility": "private"}, "member"),
    ({"visibility": "registered"}, "anonymous"),
]
HIDDEN_IDS = ["draft", "paused", "private", "registered-to-anonymous"]


class TestVisibilityNeverLeaks:
    """Another organization's hidden listing next to a public twin with the same text.

    The twin is posted after the hidden one, so once the twin shows, the index has seen both.
    """

    @pytest.mark.parametrize(("hiding", "looker"), HIDDEN_FROM, ids=HIDDEN_IDS)
    def test_never_among_a_listings_matches(
        self, client: TestClient, hiding: dict[str, str], looker: str
    ) -> None:
        need_side, offer_side = university(client), company(client)
        viewer = need_side if looker == "member" else None
        dataset = post(client, need_side, traffic_dataset())
        hidden = post(client, offer_side, traffic_model(**hiding))
        twin = post(client, offer_side, traffic_model())
        ids = eventually(
            lambda: match_ids(client, dataset["id"], viewer), lambda ids: twin["id"] in ids
        )
        assert ids == [twin["id"]]
        assert hidden["id"] not in match_ids(client, dataset["id"], viewer, limit=MAX_MATCHES)

    @pytest.mark.parametrize(("hiding", "looker"), HIDDEN_FROM, ids=HIDDEN_IDS)
    def test_never_in_search_results(
        self, client: TestClient, hiding: dict[str, str], looker: str
    ) -> None:
        need_side, offer_side = university(client), company(client)
        viewer = need_side if looker == "member" else None
        hidden = post(client, offer_side, traffic_model(**hiding))
        twin = post(client, offer_side, traffic_model())
        query = "traffic flow forecaster for junctions"
        ids = eventually(lambda: search_ids(client, viewer, query), lambda ids: twin["id"] in ids)
        assert ids == [twin["id"]]
        filtered = search_ids(client, viewer, query, kinds=["model"], country="CN", limit=50)
        assert hidden["id"] not in filtered

    @pytest.mark.parametrize(("hiding", "looker"), HIDDEN_FROM[:3], ids=HIDDEN_IDS[:3])
    def test_never_among_partners(
        self, client: TestClient, hiding: dict[str, str], looker: str
    ) -> None:
        need_side, hiding_firm, open_firm = university(client), company(client), company(client)
        post(client, need_side, traffic_dataset())
        hidden = post(client, hiding_firm, traffic_model(**hiding))
        twin = post(client, open_firm, traffic_model())
        items = eventually(lambda: partner_items(client, need_side), lambda items: bool(items))
        assert [item["organization"]["id"] for item in items] == [open_firm.organization_id]
        assert [p["counterpart_id"] for p in items[0]["pairs"]] == [twin["id"]]
        assert hidden["id"] not in str(partner_items(client, need_side, limit=MAX_MATCHES))

    @pytest.mark.parametrize(("hiding", "looker"), HIDDEN_FROM, ids=HIDDEN_IDS)
    def test_a_hidden_listings_matches_are_not_found(
        self, client: TestClient, hiding: dict[str, str], looker: str
    ) -> None:
        need_side, offer_side = university(client), company(client)
        viewer = need_side if looker == "member" else None
        hidden = post(client, offer_side, traffic_model(**hiding))
        response = get_matches(client, hidden["id"], viewer)
        assert_problem(response, 404, "not_found")
        assert get_matches(client, hidden["id"], offer_side).status_code == 200
