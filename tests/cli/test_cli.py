"""The `marketplace` console command against real databases."""

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from marketplace.app import create_app
from marketplace.cli import app
from marketplace.settings import Settings
from tests.conftest import BACKENDS
from tests.factories import PASSWORD, sign_in

runner = CliRunner()


@pytest.fixture(params=BACKENDS)
def database_env(request, fresh_database_url, monkeypatch, tmp_path) -> str:  # type: ignore[no-untyped-def]
    """An empty database on each backend, configured through SCX_ variables as a user would."""
    url = str(fresh_database_url(request.param))
    monkeypatch.setenv("SCX_DATABASE_URL", url)
    monkeypatch.setenv("SCX_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SCX_ONNX", "false")  # tests/e2e cover the ONNX export
    return url


def invoke(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return runner.invoke(app, list(args), env=env, catch_exceptions=False)


class TestDbUpgrade:
    def test_upgrade_lets_the_app_start(self, database_env: str) -> None:
        assert invoke("db", "upgrade").exit_code == 0
        with TestClient(create_app(Settings(database_url=database_env))) as client:
            assert client.get("/api/v1/health").json()["status"] == "ok"

    def test_app_refuses_to_start_before_upgrade(self, database_env: str) -> None:
        with (
            pytest.raises(RuntimeError, match="marketplace db upgrade"),
            TestClient(create_app(Settings(database_url=database_env))),
        ):
            pass


class TestAdminCommands:
    def test_created_member_can_sign_in(self, database_env: str) -> None:
        invoke("db", "upgrade")
        created = invoke(
            "admin",
            "create-org",
            "--name",
            "Demo Lab",
            "--kind",
            "research_institute",
            "--country",
            "cn",
            "--slug",
            "demo-lab",
            "--verified",
        )
        assert created.exit_code == 0, created.output
        member = invoke(
            "admin",
            "create-member",
            "--org",
            "demo-lab",
            "--email",
            "Lead@Lab.example.org",
            "--display-name",
            "Lead",
            "--role",
            "owner",
            "--platform-admin",
            env={"SCX_NEW_MEMBER_PASSWORD": PASSWORD},
        )
        assert member.exit_code == 0, member.output
        with TestClient(create_app(Settings(database_url=database_env))) as client:
            token = sign_in(client, "lead@lab.example.org")
            me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}).json()
        assert me["member"]["is_platform_admin"] is True
        assert me["organization"] | {"slug": "demo-lab", "verified": True} == me["organization"]

    def test_member_of_unknown_org_is_refused(self, database_env: str) -> None:
        invoke("db", "upgrade")
        result = invoke(
            "admin",
            "create-member",
            "--org",
            "nowhere",
            "--email",
            "a@b.example.org",
            "--display-name",
            "A",
            env={"SCX_NEW_MEMBER_PASSWORD": PASSWORD},
        )
        assert result.exit_code == 1
        assert "nowhere" in result.output

    def test_invalid_country_is_refused_without_traceback(self, database_env: str) -> None:
        invoke("db", "upgrade")
        result = runner.invoke(
            app, ["admin", "create-org", "--name", "X Org", "--kind", "company", "--country", "XX"]
        )
        assert result.exit_code == 1
        assert "country" in result.output


class TestDemo:
    def test_demo_loads_a_catalogue_of_every_kind_once(self, database_env: str) -> None:
        invoke("db", "upgrade")
        first = invoke("demo")
        assert first.exit_code == 0, first.output
        with TestClient(create_app(Settings(database_url=database_env))) as client:
            counts = {
                kind: _count(client, kind) for kind in ("dataset", "scenario", "compute", "model")
            }
            chinese = client.get("/api/v1/listings", params={"q": "场景", "limit": 100}).json()
        assert sum(counts.values()) >= 200
        assert min(counts.values()) >= 30  # published public ones; drafts and private stay hidden
        assert len(chinese["items"]) >= 5
        second = invoke("demo")
        assert second.exit_code == 0
        with TestClient(create_app(Settings(database_url=database_env))) as client:
            assert sum(_count(client, k) for k in counts) == sum(counts.values())

    def test_demo_refuses_a_database_that_is_behind(self, database_env: str) -> None:
        result = invoke("demo")
        assert result.exit_code == 1
        assert "marketplace db upgrade" in result.output


def _count(client: TestClient, kind: str) -> int:
    total, cursor = 0, None
    while True:
        params = {"kind": kind, "limit": 100} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/v1/listings", params=params).json()
        total += len(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return total
