"""The `marketplace` console command: serve, migrate, administer, load the demo catalogue."""

import json
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated, cast

import typer
import uvicorn
from alembic import command
from pydantic import ValidationError
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlmodel import Session

from marketplace import db, demo
from marketplace.embedder import service_embedder, shared_embedder
from marketplace.errors import DomainError
from marketplace.mappers import member_read, organization_read
from marketplace.search_index import SearchIndex
from marketplace.services import embeddings, matches, members, organizations
from marketplace.settings import Settings
from matching.evaluation import METHODS, evaluate_bench, load_bench
from matching.ranking import Method
from schemas.listings import ListingKind
from schemas.matches import MAX_MATCHES, SearchRequest
from schemas.members import MemberCreate, Role
from schemas.organizations import OrganizationFields, OrganizationKind

app = typer.Typer(help="Scenario Exchange: the marketplace service.", no_args_is_help=True)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
admin_app = typer.Typer(help="Platform administration.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(admin_app, name="admin")
console = Console()
err_console = Console(stderr=True)


class EvalMethod(StrEnum):
    DENSE = "dense"
    LEXICAL = "lexical"
    HYBRID = "hybrid"
    ALL = "all"


def _settings() -> Settings:
    return Settings()


@contextmanager
def _session() -> Iterator[Session]:
    """A session on the configured database; domain and validation errors end the command."""
    engine = db.make_engine(_settings().resolved_database_url)
    try:
        with db.session_scope(engine) as session:
            yield session
    except DomainError as error:
        console.print(f"[red]{error.detail}[/red]")
        raise typer.Exit(1) from error
    except ValidationError as error:
        for problem in error.errors():
            field = ".".join(map(str, problem["loc"]))
            console.print(f"[red]{field}: {problem['msg']}[/red]")
        raise typer.Exit(1) from error
    finally:
        engine.dispose()


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (use PostgreSQL for >1).")] = 1,
    reload: Annotated[bool, typer.Option(help="Reload on code changes (development).")] = False,
) -> None:
    """Run the HTTP API (OpenAPI docs at /docs)."""
    uvicorn.run(
        "marketplace.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        reload=reload,
    )


@db_app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument(help="Target revision.")] = "head") -> None:
    """Apply migrations up to REVISION (default: the latest)."""
    url = _settings().resolved_database_url
    db.make_engine(url).dispose()  # creates the SQLite folder if needed
    command.upgrade(db.alembic_config(url), revision)
    console.print(f"[green]Database is at {revision}[/green]")


@db_app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="Target revision.")]) -> None:
    """Revert migrations down to REVISION (`base` removes every table)."""
    command.downgrade(db.alembic_config(_settings().resolved_database_url), revision)
    console.print(f"[yellow]Database is at {revision}[/yellow]")


@admin_app.command("create-org")
def create_org(
    name: Annotated[str, typer.Option(help="Organization name.")],
    kind: Annotated[OrganizationKind, typer.Option(help="Kind of organization.")],
    country: Annotated[str, typer.Option(help="ISO 3166-1 alpha-2 country code.")],
    slug: Annotated[
        str | None, typer.Option(help="URL slug (derived from the name if unset).")
    ] = None,
    region: Annotated[str, typer.Option(help="Region or city.")] = "",
    verified: Annotated[bool, typer.Option(help="Mark as verified by the platform.")] = False,
) -> None:
    """Create an organization (add its first member with create-member)."""
    with _session() as session:
        fields = OrganizationFields(name=name, slug=slug, kind=kind, country=country, region=region)
        organization = organizations.create(session, fields=fields, verified=verified)
    read = organization_read(organization)
    console.print(f"Created organization {read.slug} ({read.id})")


@admin_app.command("create-member")
def create_member(
    org: Annotated[str, typer.Option(help="Slug of the member's organization.")],
    email: Annotated[str, typer.Option(help="Sign-in email.")],
    display_name: Annotated[str, typer.Option(help="Name shown to others.")],
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, envvar="SCX_NEW_MEMBER_PASSWORD")
    ],
    role: Annotated[Role, typer.Option(help="Role in the organization.")] = Role.MEMBER,
    platform_admin: Annotated[bool, typer.Option(help="Grant platform administration.")] = False,
) -> None:
    """Create a member of an organization; the password is asked for if not given."""
    with _session() as session:
        data = MemberCreate(email=email, display_name=display_name, password=password, role=role)
        organization = organizations.get_by_slug(session, org)
        member = members.create(
            session, organization_id=organization.id, data=data, is_platform_admin=platform_admin
        )
    read = member_read(member)
    console.print(f"Created member {read.email} ({read.role}) in {org}")


@app.command("demo")
def load_demo(
    password: Annotated[
        str, typer.Option(help="Password given to every demo member.", envvar="SCX_DEMO_PASSWORD")
    ] = "demo-password-123",
) -> None:
    """Load the fictional demo catalogue (idempotent: existing demo organizations are skipped)."""
    with _session() as session:
        if db.migrations_pending(session.get_bind()):  # type: ignore[arg-type]
            console.print("[red]The database is behind; run `marketplace db upgrade` first.[/red]")
            raise typer.Exit(1)
        embedder = service_embedder(_settings())
        summary = demo.load(session, password=password, embedder=embedder, progress=console)
    table = Table(title="Demo catalogue")
    table.add_column("what")
    table.add_column("loaded", justify="right")
    table.add_column("already there", justify="right")
    for row in summary.rows():
        table.add_row(*row)
    console.print(table)
    console.print(f"Sign in as any demo owner (e.g. {summary.example_email}) with the password.")


@app.command()
def reindex(
    batch: Annotated[int, typer.Option(help="Listings embedded per batch.")] = 128,
) -> None:
    """Embed listings whose text or model changed, then rebuild and save the vector index."""
    settings = _settings()
    embedder = service_embedder(settings)
    with _session() as session:
        total = embeddings.listing_count(session)
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("Embedding listings", total=total)
            embedded = embeddings.refresh_all(
                session,
                embedder=embedder,
                batch=batch,
                progress=lambda n: progress.advance(task, n),
            )
        index = SearchIndex.configured(session.get_bind(), embedder, settings)  # type: ignore[arg-type]
        report = index.reload()  # from the database, never from an old snapshot
        index.save()
    table = Table(title="Reindex")
    table.add_column("listings", justify="right")
    table.add_column("embedded", justify="right")
    table.add_column("unchanged", justify="right")
    table.add_column("indexed (published)", justify="right")
    table.add_column("index build s", justify="right")
    table.add_row(
        str(total),
        str(embedded),
        str(total - embedded),
        str(report.listings),
        f"{report.seconds:.1f}",
    )
    console.print(table)
    console.print(f"Index saved to {settings.index_path}")


@app.command()
def match(
    text: Annotated[str, typer.Argument(help="What to look for, in English or Chinese.")],
    kind: Annotated[list[ListingKind] | None, typer.Option(help="Only these kinds.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_MATCHES)] = 10,
) -> None:
    """Search the public catalogue with free text; prints scores and reasons."""
    settings = _settings()
    with _session() as session:
        index = SearchIndex.configured(
            session.get_bind(),  # type: ignore[arg-type]
            service_embedder(settings),  # the query alone needs no model when exported
            settings,
        )
        index.open()
        request = SearchRequest(text=text, kinds=kind or None, limit=limit)
        found = matches.search(session, viewer=None, request=request, index=index)
    table = Table(title=f"Matches for {text!r}")
    for column in ("score", "kind", "title", "organization", "why"):
        table.add_column(column, justify="right" if column == "score" else "left")
    for item in found:
        why = ", ".join(item.matched_terms[:6]) or item.evidence[:80]
        if item.components.mentions:
            why += f"; named by {item.components.mentions} other organizations"
        table.add_row(
            f"{item.score:.3f}",
            item.listing.kind,
            item.listing.title,
            item.listing.organization.name,
            why,
        )
    console.print(table)


@app.command("eval")
def evaluate(
    bench_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="Bench folder.")],
    method: Annotated[
        EvalMethod, typer.Option(help="Retrieval method; `hybrid` is what the API uses.")
    ] = EvalMethod.ALL,
    as_json: Annotated[bool, typer.Option("--json", help="Print the numbers as JSON.")] = False,
) -> None:
    """Score matching on a benchmark: nDCG@10, Recall@10 and MRR@10 per subset and method."""
    try:
        subsets = load_bench(bench_dir)
    except (FileNotFoundError, ValueError, KeyError) as error:  # not a bench: say so, no traceback
        err_console.print(f"[red]{bench_dir} is not a readable bench: {error}[/red]")
        raise typer.Exit(1) from error
    methods: tuple[Method, ...] = (
        METHODS if method == EvalMethod.ALL else (cast(Method, method.value),)
    )
    embedder = shared_embedder(_settings().embedding_model)
    total = sum(len(subset.needs) for subset in subsets) * len(methods)
    with Progress(console=err_console, transient=True, disable=as_json) as progress:
        task = progress.add_task("Matching needs", total=total)
        results = evaluate_bench(
            subsets, embedder, methods, progress=lambda n: progress.advance(task, n)
        )
    if as_json:
        typer.echo(json.dumps(results, indent=2))
        return
    table = Table(title=f"Matching quality on {bench_dir}")
    for column in ("subset", "method", "nDCG@10", "Recall@10", "MRR@10"):
        table.add_column(column, justify="left" if column in ("subset", "method") else "right")
    for subset, by_method in results.items():
        for name, metrics in by_method.items():
            table.add_row(
                subset,
                name,
                f"{metrics['ndcg@10']:.3f}",
                f"{metrics['recall@10']:.3f}",
                f"{metrics['mrr@10']:.3f}",
            )
    console.print(table)
