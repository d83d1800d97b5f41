"""The service end to end: ingest through the listing service, HTTP latency and restart at 100k.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/service.py ingest  [--count 300] [--smoke]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/service.py http    [--size 100000] [--smoke]
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/service.py restart [--size 100000] [--smoke]

ingest: real ~200-word listings (demo catalogue entries, each description extended with benchmark
texts of its kind to about 200 words), embedded by the app's encoder for writes, created through
`marketplace.services.listings.create` one by one, then through `create_many` in batches (the
bulk path), into a fresh SQLite data dir; the index apply is a `SearchIndex.sync()` timed after
the writes. Then the same through one real uvicorn worker: `POST /listings` one by one from one
client and from 4 concurrent clients (whose texts the server embeds together), and
`POST /listings/batch` of 32 from one client; there the index apply is the wait until a search
finds the last listing.

http and restart use a catalogue of --size listings in a SQLite data dir (default
/tmp/scx-bench-<size>, built once and reused). Embedding 100k texts on two CPU cores takes about
an hour, so the catalogue replicates the ~6,000 needs and offers of ../shared/bench with
variations (title suffix, organization, region, visibility: 80% public, 15% registered, 5%
private) and stores each replica's vector as its original's real embedding plus Gaussian noise
(sigma 0.01 per dimension, cosine to the original about 0.98), renormalised; its sentence vectors
are its original's. Rows, embeddings and organizations are inserted in bulk; attributes come from
demo listings of the same kind.

http: one real uvicorn worker on 127.0.0.1; anonymous `GET /api/v1/listings/{id}/matches` over
random public listings and `POST /api/v1/search` over benchmark need titles, sequentially with
httpx (a bounded request count; latency at one client), then `wrk` for a fixed duration at 4
connections when installed (throughput). restart: a fresh process opens the index, once with the
snapshot removed (a rebuild from the database) and once with it, then loads the embedder for
writes as the app does, after the index (the ONNX export on a CPU without native bf16, else the
model), reporting seconds and peak RSS; then a uvicorn process is timed from spawn until /health
answers.
`--smoke` runs small sizes in seconds.
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from alembic import command
from pydantic import TypeAdapter
from rich.console import Console
from rich.progress import track
from rich.table import Table
from sqlmodel import Session, col, select

ROOT = Path(__file__).resolve().parent.parent
HTTP_CLIENTS = 4
"""Concurrent clients of the ingest row that posts listings one by one from several."""
sys.path.insert(0, str(ROOT))

from marketplace import db, security  # noqa: E402
from marketplace.demo import catalogue  # noqa: E402
from marketplace.embedder import onnx_folder, service_embedder, shared_embedder  # noqa: E402
from marketplace.listing_facts import listing_facts  # noqa: E402
from marketplace.models import Listing, ListingEmbedding, Member  # noqa: E402
from marketplace.search_index import SearchIndex  # noqa: E402
from marketplace.services import embeddings, listings, members, organizations  # noqa: E402
from marketplace.settings import Settings  # noqa: E402
from matching.embedding import DEFAULT_MODEL_NAME, cpu_flags  # noqa: E402
from matching.evaluation import load_bench  # noqa: E402
from matching.facts import ListingFacts  # noqa: E402
from matching.listing_vectors import embed_listings  # noqa: E402
from matching.onnx_encoder import read_config  # noqa: E402
from matching.text import load_chinese_segmenter  # noqa: E402
from schemas.listings import ListingCreate  # noqa: E402
from schemas.members import MemberCreate, Role  # noqa: E402
from schemas.organizations import OrganizationFields  # noqa: E402

BENCH = ROOT.parent / "shared" / "bench"
console = Console(width=max(Console().width, 150))
_PARSE = TypeAdapter(ListingCreate).validate_python
_LOADER_KEYS = ("organization", "ref", "linked_dataset_refs")
NOISE = 0.01
CATALOGUE_FORMAT = 2  # 2: with sentence vectors


# -- shared ----------------------------------------------------------------------------------


def migrated(data_dir: Path) -> Settings:
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = Settings(data_dir=data_dir)
    command.upgrade(db.alembic_config(settings.resolved_database_url), "head")
    return settings


def cheap_hashing() -> None:
    from argon2 import PasswordHasher

    security._hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # type: ignore[attr-defined]


def owners(session: Session, count: int) -> list[Member]:
    created = []
    for n in range(count):
        organization = organizations.create(
            session,
            fields=OrganizationFields(
                name=f"Bench Organization {n} {uuid.uuid4().hex[:6]}",
                kind=["university", "company", "government"][n % 3],  # type: ignore[arg-type]
                country="CN",
            ),
        )
        created.append(
            members.create(
                session,
                organization_id=organization.id,
                data=MemberCreate(
                    email=f"bench{n}-{uuid.uuid4().hex[:6]}@example.org",
                    display_name=f"Owner {n}",
                    password="correct-horse-battery",
                    role=Role.OWNER,
                ),
            )
        )
    return created


def templates() -> dict[str, list[dict[str, Any]]]:
    """Demo listing bodies by kind (valid attributes; scenarios without linked datasets)."""
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for entry in catalogue()[1]:
        body = {k: v for k, v in entry.items() if k not in _LOADER_KEYS}
        if body["kind"] == "scenario":
            body["attributes"] = {**body["attributes"], "linked_dataset_ids": []}
        by_kind.setdefault(body["kind"], []).append(body)
    return by_kind


def bench_listings() -> list[ListingFacts]:
    seen: dict[str, ListingFacts] = {}
    for subset in load_bench(BENCH):
        for facts in (*subset.needs, *subset.offers):
            seen.setdefault(f"{facts.kind}\n{facts.title}\n{facts.description}", facts)
    return list(seen.values())


def stored_form(
    facts: ListingFacts, n: int, by_kind: dict[str, list[dict[str, Any]]]
) -> tuple[ListingFacts, dict[str, Any]]:
    """A benchmark listing as the catalogue stores it (keyed n), and its attributes.

    It gets a summary (its description's first line when it has none), tags and attributes from
    a demo listing of its kind, so that its vectors are embedded from exactly the stored texts.
    """
    template = by_kind[facts.kind][n % len(by_kind[facts.kind])]
    row = Listing(
        row_id=n,
        kind=facts.kind,
        title=facts.title[:200],
        summary=(facts.summary or facts.description.split("\n")[0])[:500],
        description=facts.description[:20000],
        tags=list(facts.tags) or list(template.get("tags", [])),
        languages=["en"],
        attributes=template["attributes"],
    )
    return listing_facts(row), template["attributes"]


def cpu_description() -> str:
    """The CPU's model, cores and bf16 instructions: ingest speed depends on them (on 2 cores the
    model embedded 94-104 200-word texts/s in batches with AMX, 40 with AVX512-BF16 alone)."""
    model = "unknown CPU"
    with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            name, _, value = line.partition(":")
            if name.strip() == "model name":
                model = value.strip()
                break
    bf16 = [label for flag, label in (("amx_bf16", "AMX"), ("avx512_bf16", "AVX512-BF16"),
                                      ("bf16", "BF16")) if flag in cpu_flags()]  # fmt: skip
    return f"{model}, {os.cpu_count()} cores, bf16: {' + '.join(bf16) or 'emulated'}"


def table(title: str, columns: list[str], rows: list[list[str]]) -> None:
    out = Table(title=title)
    for n, name in enumerate(columns):
        out.add_column(name, justify="left" if n == 0 else "right")
    for row in rows:
        out.add_row(*row)
    console.print(out)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


# -- ingest ----------------------------------------------------------------------------------


def ingest_bodies(count: int, seed: int) -> list[dict[str, Any]]:
    """Demo bodies whose descriptions are extended with benchmark texts to about 200 words."""
    rng = random.Random(seed)
    by_kind = templates()
    texts: dict[str, list[str]] = {}
    for facts in bench_listings():
        texts.setdefault(facts.kind, []).append(facts.description)
    kinds = sorted(by_kind)
    bodies = []
    for n in range(count):
        kind = kinds[n % len(kinds)]
        body = json.loads(json.dumps(rng.choice(by_kind[kind])))
        words = f"{body['summary']} {body['description']}".split()
        extra: list[str] = []
        pool = texts.get(kind) or texts["dataset"]
        while len(words) + len(extra) < 200:
            extra += rng.choice(pool).split()
        body["title"] = f"{body['title']} {n}"[:200]
        body["description"] = f"{body['description']}\n\n{' '.join(extra)}"[:20000]
        bodies.append(body)
    return bodies


def run_ingest(args: argparse.Namespace) -> None:
    count = 30 if args.smoke else args.count
    cheap_hashing()
    rows = []
    with tempfile.TemporaryDirectory(prefix="scx-ingest-") as folder:
        settings = migrated(Path(folder) / "data")
        ensure_onnx_export(settings.data_dir)
        embedder = service_embedder(settings).wait()  # the app's encoder for writes
        console.print(f"{cpu_description()}; writes embed with {embedder!r}")
        embedder.encode(["warm up"], bulk=True)
        load_chinese_segmenter()  # as the app does at its start, not in the first write timed
        engine = db.make_engine(settings.resolved_database_url)
        index = SearchIndex(engine, embedder, path=settings.index_path)
        index.open()
        with Session(engine, expire_on_commit=False) as session:
            (actor,) = owners(session, 1)
        bodies = ingest_bodies(3 * count, seed=7)  # the third part: concurrent HTTP clients
        words = statistics.median(len(f"{b['summary']} {b['description']}".split()) for b in bodies)
        for label, part, size in (
            ("create, one by one", bodies[:count], 1),
            ("create_many, batches of 32", bodies[count : 2 * count], 32),
        ):
            started = time.perf_counter()
            latencies = _create_in_calls(engine, actor, part, size, embedder)
            written = time.perf_counter() - started
            applied = time.perf_counter()
            touched = index.sync()
            apply_s = time.perf_counter() - applied
            assert touched == len(part), (touched, len(part))
            rows.append(_ingest_row(label, len(part), words, written, apply_s, latencies))
        engine.dispose()
        http_dir = migrated(Path(folder) / "http").data_dir
        shutil.copytree(settings.data_dir / "models", http_dir / "models")  # its ONNX export
        rows += _ingest_over_http(http_dir, bodies, count, words)
    table(
        "Ingest of ~200-word listings (embed + store + index apply); target >= 60/s",
        [
            "path",
            "listings",
            "median words",
            "call p50 / p99 ms",
            "write s",
            "index apply s",
            "listings/s",
        ],
        rows,
    )


def _ingest_row(
    label: str,
    count: int,
    words: float,
    written: float,
    apply_s: float,
    latencies: list[float],
) -> list[str]:
    """A table row; `latencies` are the seconds each call (a create, a request) took."""
    total = written + apply_s
    calls = [1000 * seconds for seconds in latencies]
    return [
        label,
        str(count),
        f"{words:.0f}",
        f"{percentile(calls, 50):.0f} / {percentile(calls, 99):.0f}",
        f"{written:.1f}",
        f"{apply_s:.2f}",
        f"{count / total:.1f}",
    ]


def _ingest_over_http(
    data_dir: Path, bodies: list[dict[str, Any]], count: int, words: float
) -> list[list[str]]:
    """The same paths through a real uvicorn worker: `POST /listings` one by one from one client
    and from `HTTP_CLIENTS` concurrent clients, then `POST /listings/batch` of 32; "index apply"
    is the wait until search finds the listing whose answer came last (SQLite commits one write
    at a time, and the index applies changes in commit order)."""
    rows = []
    with server(data_dir, "flat") as (base, _), httpx.Client(base_url=base, timeout=60) as http:
        health_ready(base)  # writes embed with the model, as they do after the first seconds
        owner = {"email": f"ingest-{uuid.uuid4().hex[:6]}@example.org", "password": "bench-pass-1"}
        signed_up = http.post(
            "/api/v1/organizations",
            json={
                "organization": {"name": "Ingest Bench University", "kind": "university",
                                 "country": "CN"},
                "owner": {**owner, "display_name": "Owner"},
            },
        )  # fmt: skip
        signed_up.raise_for_status()
        token = http.post("/api/v1/auth/tokens", json=owner).raise_for_status().json()["token"]
        http.headers["Authorization"] = f"Bearer {token}"
        for label, part, size, clients in (
            ("POST /listings (HTTP), one by one", bodies[:count], 1, 1),
            (
                f"POST /listings (HTTP), one by one, {HTTP_CLIENTS} clients",
                bodies[2 * count :],
                1,
                HTTP_CLIENTS,
            ),
            ("POST /listings/batch (HTTP), 32 each", bodies[count : 2 * count], 32, 1),
        ):
            started = time.perf_counter()
            created, latencies = _post_listings(http, part, size, clients)
            written = time.perf_counter() - started
            # Drafts are never indexed: the last published one shows the index followed.
            _wait_until_found(
                http, next(c for c in reversed(created) if c["status"] == "published")
            )
            rows.append(
                _ingest_row(
                    label,
                    len(part),
                    words,
                    written,
                    time.perf_counter() - started - written,
                    latencies,
                )
            )
    return rows


def _post_listings(
    http: httpx.Client, bodies: list[dict[str, Any]], size: int, clients: int
) -> tuple[list[dict[str, Any]], list[float]]:
    """Post the bodies one by one (size 1) or in batches, from `clients` concurrent senders;
    the created listings in the order their answers came, and each request's seconds."""
    created: list[dict[str, Any]] = []
    latencies: list[float] = []

    def post(chunk: list[dict[str, Any]]) -> None:
        sent = time.perf_counter()
        if size == 1:
            answer = http.post("/api/v1/listings", json=chunk[0]).raise_for_status()
            created.append(answer.json())
        else:
            answer = http.post("/api/v1/listings/batch", json={"items": chunk})
            created.extend(answer.raise_for_status().json()["items"])
        latencies.append(time.perf_counter() - sent)

    with ThreadPoolExecutor(clients) as senders:
        list(senders.map(post, [bodies[n : n + size] for n in range(0, len(bodies), size)]))
    return created, latencies


def _wait_until_found(http: httpx.Client, listing: dict[str, Any]) -> None:
    """Poll search until it finds the listing: by its own title and description, which rank it
    first once the server's index holds it (a title alone ties with its template's replicas)."""
    query = {
        "text": f"{listing['title']} {listing['description']}"[:2000],
        "kinds": [listing["kind"]],
        "limit": 50,
    }
    deadline = time.monotonic() + 60
    while listing["id"] not in {
        item["listing"]["id"]
        for item in http.post("/api/v1/search", json=query).raise_for_status().json()["items"]
    }:
        if time.monotonic() > deadline:
            raise RuntimeError(f"search did not find listing {listing['id']} within 60 s")
        time.sleep(0.01)


def _create_in_calls(
    engine: Any, actor: Member, bodies: list[dict[str, Any]], size: int, embedder: Any
) -> list[float]:
    """Create the listings `size` a call (`create` for one, else `create_many`); the seconds of
    each call."""
    latencies = []
    with Session(engine, expire_on_commit=False) as session:
        for start in track(
            range(0, len(bodies), size), description="create", console=console, transient=True
        ):
            started = time.perf_counter()
            items = [_PARSE(b) for b in bodies[start : start + size]]
            if size == 1:
                listings.create(session, actor=actor, data=items[0], embedder=embedder)
            else:
                listings.create_many(session, actor=actor, items=items, embedder=embedder)
            latencies.append(time.perf_counter() - started)
    return latencies


# -- a large catalogue -------------------------------------------------------------------------


def catalogue_dir(size: int) -> Path:
    return Path(tempfile.gettempdir()) / f"scx-bench-{size}"


def build_catalogue(size: int, data_dir: Path) -> Path:
    """A SQLite data dir with `size` published listings and stored embeddings (see the module)."""
    marker = data_dir / "catalogue.json"
    if marker.exists() and json.loads(marker.read_text()).get("format") == CATALOGUE_FORMAT:
        return data_dir
    shutil.rmtree(data_dir, ignore_errors=True)
    settings = migrated(data_dir)
    cheap_hashing()
    embedder = shared_embedder(None)
    by_kind = templates()
    stored = [stored_form(facts, n, by_kind) for n, facts in enumerate(bench_listings())]
    base = [facts for facts, _ in stored]
    console.print(f"embedding {len(base)} benchmark listings and their sentences")
    embedded = embed_listings(embedder, base)
    vectors = embedded.listings
    engine = db.make_engine(settings.resolved_database_url)
    with Session(engine, expire_on_commit=False) as session:
        orgs = [m.organization_id for m in owners(session, 60)]
    rng = np.random.default_rng(11)
    regions = ["Anhui", "Beijing", "Shanghai", "Guangdong", "Zhejiang", "Sichuan", "Hubei"]
    sectors = ["manufacturing", "smart_city", "healthcare", "energy_carbon", "agriculture"]
    model = embedder.model_name
    now = datetime.now(UTC)
    listing_table, embedding_table = Listing.__table__, ListingEmbedding.__table__  # type: ignore[attr-defined]
    chunk = 5_000
    with engine.begin() as connection:
        for start in track(range(0, size, chunk), description="inserting", console=console):
            listing_rows, embedding_rows = [], []
            for n in range(start, min(size, start + chunk)):
                facts = base[n % len(base)]
                roll = rng.random()
                visibility = "public" if roll < 0.8 else "registered" if roll < 0.95 else "private"
                copy = n // len(base)
                row_id = n + 1
                listing_rows.append(
                    {
                        "row_id": row_id,
                        "id": uuid.uuid4(),
                        "organization_id": orgs[n % len(orgs)],
                        "kind": facts.kind,
                        "title": (facts.title if copy == 0 else f"{facts.title} ({copy})")[:200],
                        "summary": facts.summary,
                        "description": facts.description,
                        "tags": list(facts.tags),
                        "sector": sectors[n % len(sectors)],
                        "country": "CN",
                        "region": regions[n % len(regions)],
                        "languages": ["en"],
                        "status": "published",
                        "visibility": visibility,
                        "attributes": stored[facts.id][1],
                        "created_at": now,
                        "updated_at": now,
                        "version": 1,
                    }
                )
                vector = vectors[n % len(base)]
                if copy:
                    vector = vector + rng.normal(0, NOISE, vector.shape).astype(np.float32)
                    vector /= np.linalg.norm(vector)
                embedding_rows.append(
                    {
                        "listing_row_id": row_id,
                        "model_name": model,
                        "text_hash": embeddings.text_hash(model, f"{row_id}"),
                        "dimension": vector.size,
                        "vector": embeddings.as_bytes(vector),
                        "sentence_vectors": embeddings.sentences_as_bytes(
                            embedded.sentences[n % len(base)]
                        ),
                        "updated_at": now,
                    }
                )
            connection.execute(listing_table.insert(), listing_rows)
            connection.execute(embedding_table.insert(), embedding_rows)
    engine.dispose()
    marker.write_text(
        json.dumps({"format": CATALOGUE_FORMAT, "size": size, "base": len(base), "noise": NOISE})
    )
    return data_dir


# -- http --------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_onnx_export(data_dir: Path) -> None:
    """Write the model's ONNX export for queries, as the service's first start does."""
    folder = onnx_folder(Settings(data_dir=data_dir), DEFAULT_MODEL_NAME)
    if read_config(folder) is None:
        shared_embedder(None).export_onnx(folder)


@contextmanager
def server(data_dir: Path, index_kind: str) -> Iterator[tuple[str, float]]:
    """A real uvicorn worker over the data dir; yields its base URL and seconds until healthy.

    The model's ONNX export is written first, so queries use it as in any later start.
    """
    ensure_onnx_export(data_dir)
    port = free_port()
    env = {
        **os.environ,
        "SCX_DATA_DIR": str(data_dir),
        "SCX_WORKER_INTERVAL_SECONDS": "0",
        "SCX_INDEX_KIND": index_kind,
        "HF_HUB_OFFLINE": "1",
    }
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "marketplace.app:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=ROOT,
        env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError("the server exited")
            try:
                if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        yield base, time.perf_counter() - started
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()


def first_answer(send: Callable[[], httpx.Response]) -> float:
    """When a request first answered 200 (perf_counter seconds)."""
    response = send()
    if response.status_code != 200:
        raise RuntimeError(f"{response.status_code}: {response.text[:200]}")
    return time.perf_counter()


def health_ready(base: str, part: str = "model") -> float:
    """When /health first reported a part ("model", "search", "writes") ready (perf_counter
    seconds)."""
    while httpx.get(f"{base}/api/v1/health", timeout=5).json().get(part) != "ready":
        time.sleep(0.02)
    return time.perf_counter()


def sample_requests(data_dir: Path, count: int, seed: int) -> tuple[list[str], list[str]]:
    """Paths of public listings' matches, and search texts from benchmark needs."""
    engine = db.make_engine(Settings(data_dir=data_dir).resolved_database_url)
    with Session(engine) as session:
        ids = list(
            session.exec(
                select(Listing.id).where(col(Listing.visibility) == "public").limit(50_000)
            )
        )
    engine.dispose()
    rng = random.Random(seed)
    paths = [f"/api/v1/listings/{listing_id}/matches" for listing_id in rng.sample(ids, count)]
    needs = [f for subset in load_bench(BENCH) for f in subset.needs]
    texts = [" ".join(f.title.split()[:12]) for f in rng.sample(needs, min(count, len(needs)))]
    return paths, texts


def timed(requests: list[Callable[[], httpx.Response]]) -> tuple[list[float], int]:
    latencies, errors = [], 0
    for send in track(requests, description="requests", console=console, transient=True):
        started = time.perf_counter()
        response = send()
        latencies.append((time.perf_counter() - started) * 1000)
        errors += response.status_code != 200
    return latencies, errors


def wrk(base: str, script: str, seconds: int) -> dict[str, float] | None:
    if shutil.which("wrk") is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write(script)
    try:
        result = subprocess.run(
            ["wrk", "-t", "1", "-c", "4", "-d", f"{seconds}s", "--latency", "-s", file.name, base],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(file.name)
    out = result.stdout
    stats: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if parts[:1] in (["50%"], ["99%"]):
            stats[parts[0]] = _ms(parts[1])
        if line.startswith("Requests/sec:"):
            stats["rps"] = float(parts[1])
        if "requests in" in line:
            stats["requests"] = float(parts[0])
        if line.strip().startswith("Non-2xx"):
            stats["errors"] = float(parts[-1])
    stats.setdefault("errors", 0.0)
    return stats


def _ms(value: str) -> float:
    for suffix, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if value.endswith(suffix):
            return float(value[: -len(suffix)]) * scale
    return float(value)


def _lua(paths: list[str], bodies: list[str] | None) -> str:
    items = json.dumps(paths if bodies is None else bodies)
    lua_list = "{" + ",".join(json.dumps(x) for x in json.loads(items)) + "}"
    if bodies is None:
        return (
            f"local p = {lua_list}\nlocal i = 0\nrequest = function()\n"
            "  i = i % #p + 1\n  return wrk.format('GET', p[i])\nend\n"
        )
    return (
        f"local b = {lua_list}\nlocal i = 0\nwrk.headers['Content-Type'] = 'application/json'\n"
        "request = function()\n  i = i % #b + 1\n"
        "  return wrk.format('POST', '/api/v1/search', nil, b[i])\nend\n"
    )


def run_http(args: argparse.Namespace) -> None:
    size = 2_000 if args.smoke else args.size
    count = 50 if args.smoke else args.requests
    data_dir = build_catalogue(size, args.data_dir or catalogue_dir(size))
    paths, texts = sample_requests(data_dir, count, seed=3)
    bodies = [json.dumps({"text": t, "limit": 10}) for t in texts]
    rows = []
    with (
        server(data_dir, args.index_kind) as (base, _),
        httpx.Client(base_url=base, timeout=30) as client,
    ):
        health_ready(base)  # measure the steady state, not the model loading beside it
        for send in ([lambda p=p: client.get(p) for p in paths[:20]]
                     + [lambda b=b: client.post("/api/v1/search", content=b,
                                               headers={"Content-Type": "application/json"})
                        for b in bodies[:20]]):  # fmt: skip
            send()  # warm-up: caches, first-call costs
        for label, requests, target in (
            ("GET matches", [lambda p=p: client.get(p) for p in paths], "p50<=10 p99<=40"),
            (
                "POST search",
                [
                    lambda b=b: client.post(
                        "/api/v1/search", content=b, headers={"Content-Type": "application/json"}
                    )
                    for b in bodies
                ],
                "p50<=15",
            ),
        ):
            latencies, errors = timed(requests)
            rows.append(
                [label, "httpx, 1 client", str(len(latencies)), f"{percentile(latencies, 50):.1f}",
                 f"{percentile(latencies, 99):.1f}", str(errors), "-", target]
            )  # fmt: skip
        for label, script in (
            ("GET matches", _lua(paths, None)),
            ("POST search", _lua([], bodies)),
        ):
            stats = wrk(base, script, 5 if args.smoke else args.seconds)
            if stats is not None:
                rows.append(
                    [label, "wrk, 4 connections", f"{stats.get('requests', 0):.0f}",
                     f"{stats['50%']:.1f}", f"{stats['99%']:.1f}", f"{stats['errors']:.0f}",
                     f"{stats['rps']:.0f}", ""]
                )  # fmt: skip
    table(
        f"HTTP at {size:,} listings, one uvicorn worker on 127.0.0.1 (anonymous)",
        ["request", "load", "requests", "p50 ms", "p99 ms", "errors", "req/s", "target"],
        rows,
    )


# -- restart -----------------------------------------------------------------------------------

# Peak RSS from VmHWM: ru_maxrss would carry the parent's high-water mark into the child.
_OPEN = """
import json, sys, time
def peak_rss_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024
from marketplace import db
from marketplace.embedder import service_embedder
from marketplace.search_index import SearchIndex
from marketplace.settings import Settings
from matching.text import load_chinese_segmenter
imported = time.perf_counter()
settings = Settings(data_dir=sys.argv[1], index_kind=sys.argv[3])
embedder = service_embedder(settings)
engine = db.make_engine(settings.resolved_database_url)
index = SearchIndex.configured(engine, embedder, settings)
report = index.open()
opened = time.perf_counter()
if sys.argv[2] == "save":
    index.save()
saved = time.perf_counter()
# Then the model for writes, as the app loads it: after the index (with its ONNX export, if made),
# and jieba's dictionary (~60 MB), which the app loads at every start and a rebuild has loaded.
embedder.wait()
load_chinese_segmenter()
print(json.dumps({"model_s": time.perf_counter() - saved, "open_s": opened - imported,
                  "listings": report.listings, "embedded": report.embedded,
                  "snapshot": report.from_snapshot, "save_s": saved - opened,
                  "rss_mb": peak_rss_mb()}))
"""


def open_in_fresh_process(data_dir: Path, save: bool, index_kind: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", _OPEN, str(data_dir), "save" if save else "-", index_kind],
        cwd=ROOT,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def run_restart(args: argparse.Namespace) -> None:
    size = 2_000 if args.smoke else args.size
    data_dir = build_catalogue(size, args.data_dir or catalogue_dir(size))
    ensure_onnx_export(data_dir)
    settings = Settings(data_dir=data_dir)
    snapshot = settings.index_path.with_name(settings.index_path.stem + ".snapshot")
    runs = [("no snapshot (rebuild from DB)", True), ("with snapshot", False)]
    if args.reuse_snapshot and snapshot.exists():
        runs = runs[1:]  # a rebuild at 1M listings takes 10-20 min
    else:
        snapshot.unlink(missing_ok=True)
        settings.index_path.unlink(missing_ok=True)
    rows = []
    for label, save in runs:
        with console.status(label):
            r = open_in_fresh_process(data_dir, save, args.index_kind)
        rows.append(
            [label, f"{r['listings']:,}", str(r["embedded"]), str(r["snapshot"]),
             f"{r['model_s']:.1f}", f"{r['open_s']:.2f}", f"{r['save_s']:.2f}",
             f"{r['rss_mb']:.0f}"]
        )  # fmt: skip
    paths, texts = sample_requests(data_dir, 1, seed=11)
    spawned = time.perf_counter()
    with (
        console.status("uvicorn from spawn to /health"),
        server(data_dir, args.index_kind) as (base, seconds),
    ):
        served = first_answer(lambda: httpx.get(base + paths[0], timeout=60)) - spawned
        search_body = {"text": texts[0]}
        searched = (
            first_answer(lambda: httpx.post(f"{base}/api/v1/search", json=search_body, timeout=60))
            - spawned
        )
        writes = health_ready(base, "writes") - spawned
        model = health_ready(base) - spawned
    for label, value in (
        ("uvicorn spawn -> /health 200", seconds),
        ("  -> first GET .../matches answered", served),
        ("  -> first POST /search answered", searched),
        ("  -> /health: writes ready", writes),
        ("  -> /health: model loaded", model),
    ):
        rows.append([label, f"{size:,}", "-", "True", "-", f"{value:.2f} total", "-", "-"])
    table(
        f"Restart at {size:,} listings (target: ready <= 5 s without re-embedding)",
        ["start", "listings", "embedded", "from snapshot", "model load s", "index open s",
         "save s", "peak RSS MB"],
        rows,
    )  # fmt: skip
    console.print(f"snapshot {snapshot.stat().st_size / 1e6:.0f} MB, "
                  f"vectors {settings.index_path.stat().st_size / 1e6:.0f} MB")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["ingest", "http", "restart"])
    parser.add_argument("--count", type=int, default=300, help="ingest: listings per path")
    parser.add_argument("--size", type=int, default=100_000, help="catalogue size")
    parser.add_argument("--requests", type=int, default=300, help="http: requests per kind")
    parser.add_argument("--seconds", type=int, default=10, help="http: wrk duration")
    parser.add_argument("--data-dir", type=Path, default=None, help="catalogue data dir")
    parser.add_argument("--smoke", action="store_true", help="small sizes, in seconds")
    parser.add_argument(
        "--reuse-snapshot", action="store_true", help="restart: skip the rebuild when saved"
    )
    parser.add_argument(
        "--index-kind", choices=["flat", "hnsw"], default="flat", help="SCX_INDEX_KIND"
    )
    args = parser.parse_args()
    {"ingest": run_ingest, "http": run_http, "restart": run_restart}[args.what](args)


if __name__ == "__main__":
    main()
