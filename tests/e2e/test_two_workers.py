"""Two real uvicorn workers over one PostgreSQL: a listing created through the server is matchable
through every worker within a second.

Which worker accepts a connection is the kernel's choice, so the test opens a fresh connection
per request and asks /proc which worker process holds the server end of it.
"""

import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.factories import listing_body, organization_body
from tests.servers import free_port

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MARKETPLACE = str(Path(sys.executable).with_name("marketplace"))
WORKERS = 2
FRESHNESS = 1.0  # seconds from the creating response to being matchable everywhere
STARTUP_LIMIT = 180.0  # two processes loading the model on a busy 2-core machine
CHECKED_REQUESTS = 40


@dataclass(frozen=True)
class Server:
    port: int
    pid: int
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        return [int(pid) for pid in re.findall(r"Started server process \[(\d+)\]", self.output())]


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    worker: int | None


def _hex_port(port: int) -> str:
    return f"{port:04X}"


def _server_socket_inode(server_port: int, client_port: int) -> str | None:
    """The inode of the server end of the local TCP connection from `client_port`."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote, inode = fields[1], fields[2], fields[9]
        if local.endswith(f":{_hex_port(server_port)}") and remote.endswith(
            f":{_hex_port(client_port)}"
        ):
            return inode
    return None


def _holder(inode: str | None, pids: list[int]) -> int | None:
    if inode is None:
        return None
    wanted = f"socket:[{inode}]"
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        try:
            links = [os.readlink(fd_dir / fd) for fd in os.listdir(fd_dir)]
        except OSError:  # an fd closed while we looked
            continue
        if wanted in links:
            return pid
    return None


def request(
    server: Server,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request on a new connection; notes which worker answered it."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.connect()
        assert connection.sock is not None
        client_port = connection.sock.getsockname()[1]
        payload = None if body is None else json.dumps(body)
        sent_headers = {"Content-Type": "application/json", **(headers or {})}
        connection.request(method, path, body=payload, headers=sent_headers)
        response = connection.getresponse()
        data = response.read()
        # The connection is still open (keep-alive): the worker holding it answered.
        worker = _holder(_server_socket_inode(server.port, client_port), server.worker_pids())
        return Answer(response.status, json.loads(data) if data else None, worker)
    finally:
        connection.close()


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


@pytest.fixture
def server(fresh_database_url, tmp_path: Path) -> Iterator[Server]:  # type: ignore[no-untyped-def]
    """`marketplace serve --workers 2` over a fresh, migrated PostgreSQL database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCX_")}
    env["SCX_DATABASE_URL"] = str(fresh_database_url("postgresql"))
    env["SCX_DATA_DIR"] = str(tmp_path / "data")
    env["SCX_WORKER_INTERVAL_SECONDS"] = "0"  # no webhook or deadline sweeps competing for CPU
    subprocess.run([MARKETPLACE, "db", "upgrade"], env=env, check=True, capture_output=True)
    port = free_port()
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [MARKETPLACE, "serve", "--port", str(port), "--workers", str(WORKERS)],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so its workers can be stopped too
        )
    running = Server(port, process.pid, log)
    try:
        deadline = time.monotonic() + STARTUP_LIMIT
        while running.output().count("Application startup complete.") < WORKERS:
            if process.poll() is not None:
                pytest.fail(f"the server exited early:\n{running.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{WORKERS} workers not up in {STARTUP_LIMIT} s:\n{running.output()}")
            time.sleep(0.2)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def sign_up(server: Server, kind: str) -> dict[str, str]:
    body = organization_body(kind=kind)
    created = request(server, "POST", "/api/v1/organizations", body)
    assert created.status == 201, created.body
    credentials = {"email": body["owner"]["email"], "password": body["owner"]["password"]}
    token = request(server, "POST", "/api/v1/auth/tokens", credentials)
    assert token.status == 201, token.body
    return {"Authorization": f"Bearer {token.body['token']}"}


def post_listing(server: Server, headers: dict[str, str], body: dict[str, Any]) -> str:
    created = request(server, "POST", "/api/v1/listings", body, headers)
    assert created.status == 201, created.body
    return str(created.body["id"])


class TestTwoWorkers:
    def test_a_created_listing_is_matchable_through_every_worker_within_a_second(
        self, server: Server
    ) -> None:
        workers = server.worker_pids()
        assert len(set(workers)) == WORKERS, server.output()
        assert {_ppid(pid) for pid in workers} == {server.pid}

        university = sign_up(server, "university")
        company = sign_up(server, "company")
        dataset = post_listing(
            server,
            university,
            listing_body(
                "dataset",
                title="Hefei junction loop detector counts",
                summary="Five-minute vehicle counts from loop detectors at 120 junctions.",
                tags=["traffic", "loop detectors"],
                sector="transport",
            ),
        )
        matches = f"/api/v1/listings/{dataset}/matches?kind=model"

        # Warm every worker up (first requests load the tokenizers) before the clock starts.
        warmed: set[int | None] = set()
        for _ in range(100):
            answer = request(server, "GET", matches)
            assert (answer.status, answer.body) == (200, {"items": []}), answer.body
            warmed.add(answer.worker)
            if warmed >= set(workers):
                break
        assert warmed >= set(workers), f"only {warmed} of {workers} answered 100 requests"

        model = post_listing(
            server,
            company,
            listing_body(
                "model",
                title="Junction traffic flow forecaster",
                summary="Forecasts vehicle flow at junctions from loop detector counts.",
                attributes={
                    **listing_body("model")["attributes"],
                    "tasks": ["time_series_forecasting"],
                    "modality": "time_series",
                },
            ),
        )
        created_at = time.monotonic()

        checked: list[tuple[float, int | None, bool]] = []  # (sent after creation, worker, found)
        deadline = created_at + 60
        while len(checked) < CHECKED_REQUESTS or {w for _, w, _ in checked} < set(workers):
            assert time.monotonic() < deadline, f"too few answers from every worker: {checked}"
            sent = time.monotonic() - created_at
            answer = request(server, "GET", matches)
            assert answer.status == 200, answer.body
            found = [item["listing"]["id"] for item in answer.body["items"]] == [model]
            if sent >= FRESHNESS:
                checked.append((round(sent, 3), answer.worker, found))

        stale = [entry for entry in checked if not entry[2]]
        assert not stale, f"answers without the listing {FRESHNESS} s after creation: {stale}"
        assert {worker for _, worker, _ in checked} == set(workers)
