"""`marketplace serve` as a user runs it: a real uvicorn process on a free local port."""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.factories import listing_body, organization_body

MARKETPLACE = str(Path(sys.executable).with_name("marketplace"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def server_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCX_")}
    env["SCX_DATA_DIR"] = str(tmp_path / "data")
    return env


@pytest.fixture
def port() -> int:
    return _free_port()


def _spawn(env: dict[str, str], port: int, output: int) -> subprocess.Popen[str]:
    """`marketplace serve` on the port, its output to `output` (stderr with it)."""
    return subprocess.Popen(
        [MARKETPLACE, "serve", "--port", str(port)],
        env=env,
        stdout=output,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture
def serve(server_env: dict[str, str], port: int) -> Iterator[subprocess.Popen[str]]:
    process = _spawn(server_env, port, subprocess.PIPE)
    yield process
    process.terminate()
    process.wait(timeout=20)
    if process.stdout:
        process.stdout.close()


def _wait_until_up(url: str, process: subprocess.Popen[str]) -> httpx.Response:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail("the server exited early")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.2)
    pytest.fail("the server did not come up within 30 s")


@contextmanager
def _served(env: dict[str, str], port: int) -> Iterator[str]:
    """`marketplace serve` running until the block ends; yields its base URL once it answers."""
    process = _spawn(env, port, subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_until_up(f"{base}/api/v1/health", process)
        yield base
    finally:
        process.terminate()
        process.wait(timeout=20)


def _signed_up(base: str) -> dict[str, str]:
    """A new organization's owner's bearer header."""
    body = organization_body()
    assert httpx.post(f"{base}/api/v1/organizations", json=body, timeout=30).status_code == 201
    owner = {"email": body["owner"]["email"], "password": body["owner"]["password"]}
    token = httpx.post(f"{base}/api/v1/auth/tokens", json=owner, timeout=30).json()["token"]
    return {"Authorization": f"Bearer {token}"}


def _model_ready_within(url: str, *, seconds: float) -> bool:
    """Whether /health reports the background-loaded model ready within the time."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if httpx.get(url).json().get("model") == "ready":
            return True
        time.sleep(0.2)
    return False


class TestServe:
    def test_refuses_to_start_on_a_database_that_is_behind(
        self, serve: subprocess.Popen[str]
    ) -> None:
        output, _ = serve.communicate(timeout=30)
        assert serve.returncode != 0
        assert "marketplace db upgrade" in output

    def test_serves_the_api_and_its_docs_after_upgrade(
        self, server_env: dict[str, str], port: int
    ) -> None:
        subprocess.run(
            [MARKETPLACE, "db", "upgrade"], env=server_env, check=True, capture_output=True
        )
        with _served(server_env, port) as base:
            health = httpx.get(f"{base}/api/v1/health").json()
            assert health["status"] == "ok"
            # The first start has no ONNX export yet: search waits for the model, which
            # writes one once loaded.
            assert _model_ready_within(f"{base}/api/v1/health", seconds=60)
            assert httpx.get(f"{base}/docs").status_code == 200
            assert "/api/v1/listings" in httpx.get(f"{base}/openapi.json").json()["paths"]
        exports = list(Path(server_env["SCX_DATA_DIR"]).glob("models/*/model.onnx"))
        assert len(exports) == 1

        with _served(server_env, port) as base:
            health = httpx.get(f"{base}/api/v1/health").json()
            # Searches and writes from the export, whatever the model's state.
            assert health["search"] == health["writes"] == "ready"
            found = httpx.post(f"{base}/api/v1/search", json={"text": "traffic"}, timeout=30)
            assert found.status_code == 200 and found.json()["items"] == []
            # A write embeds the listing (with the export, or the model once in where faster).
            headers = _signed_up(base)
            body = listing_body("dataset", title="Hefei junction loop detector counts")
            created = httpx.post(f"{base}/api/v1/listings", json=body, headers=headers, timeout=60)
            assert created.status_code == 201, created.text
            assert _model_ready_within(f"{base}/api/v1/health", seconds=5)
