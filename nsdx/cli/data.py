"""Data commands: ingest, datasets, query, samples, storage, gc."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from . import fail
from .render import arrow_out, echo_json, human_bytes, stderr_console, table

if TYPE_CHECKING:  # rich is imported when a progress display starts
    from rich.progress import TaskID

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _nx(read_only: bool = False):
    """The service root; ``read_only`` for commands that only read: a missing deployment is
    an error that says where nsdx looked, and nothing is created."""
    from nsdx.core import Nsdx

    return Nsdx(read_only=read_only)


class _IngestProgress:
    """A rich progress display: one line per table with rows read and speed."""

    def __init__(self, console, quiet: bool) -> None:
        from rich.progress import (
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.quiet = quiet
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed:>12,.0f} rows"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=quiet,
        )
        self.tasks: dict[str, TaskID] = {}
        self.started: dict[str, float] = {}
        self.dataset = ""

    def __enter__(self):
        self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        self.progress.__exit__(*exc)

    def __call__(self, event: str, **kw) -> None:
        if event == "table":
            key = f"{self.dataset}:{kw['name']}"
            self.tasks[key] = self.progress.add_task(
                f"{self.dataset} [{kw['name']}]", total=None, rate=""
            )
            self.started[key] = time.perf_counter()
            self._cur = key
        elif event == "rows":
            key = self._cur
            secs = max(time.perf_counter() - self.started[key], 1e-6)
            self.progress.update(
                self.tasks[key], completed=kw["rows"], rate=f"{kw['rows'] / secs:,.0f} rows/s"
            )
        elif event == "validate":  # dataset-level checks over the staged table
            self.progress.update(self.tasks[self._cur], rate="checking the whole table")
        elif event == "publish":
            self._total = max(int(kw.get("bytes") or 0), 1)
            self._sent = 0
            self._pub = self.progress.add_task(
                f"{self.dataset} publishing {kw['prefix']}", total=None, rate=self._bytes()
            )
        elif event == "published_bytes":  # bytes written since the last event
            self._sent += int(kw["bytes"])
            self.progress.update(self._pub, rate=self._bytes())

    def _bytes(self) -> str:
        return f"{self._sent / 1e6:,.1f} / {self._total / 1e6:,.1f} MB"


class _QuietProgress:
    """No progress display (``--json``): the events are ignored."""

    dataset = ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return None

    def __call__(self, event: str, **kw) -> None:
        return None


@click.command()
@click.argument("ids", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Every dataset in datasets.yaml.")
@click.option("--force", is_flag=True, help="Publish a new version even if nothing changed.")
@json_option
def ingest(ids: tuple[str, ...], all_: bool, force: bool, as_json: bool) -> None:
    """Read, validate, convert to Parquet and publish datasets (ID... or --all).

    Exits 0 only if every dataset asked for was published or was already up to date.
    """
    if not ids and not all_:
        raise click.UsageError("give dataset ids or --all")
    nx = _nx()
    specs = nx.select_specs(ids, all_)
    nx.warm_validation(specs)  # before the catalogue's imports: they overlap
    key, generated = nx.pii_key()
    if generated:
        click.secho(
            f"Generated a personal-data masking key in {nx.settings.home / 'pii.key'} "
            "(mode 600). Keep it secret and back it up, or set NSDX_PII_KEY.",
            fg="yellow",
            err=True,
        )
    results, errors = [], []
    # --json shows no progress: rich is not even imported
    with _QuietProgress() if as_json else _IngestProgress(stderr_console(), quiet=False) as prog:
        for spec in specs:
            prog.dataset = spec.id
            try:
                r = nx.ingest_one(spec, progress=prog, force=force)
            except Exception as e:  # noqa: BLE001 - reported per dataset, exit code below
                from ingest.errors import as_transient

                from . import _known_errors

                if not isinstance(e, _known_errors()):
                    e = as_transient(e) or e
                    if not isinstance(e, _known_errors()):
                        raise
                errors.append((spec.id, e))
                if not as_json:
                    prog.progress.console.print(f"[red]✗ {spec.id}[/red]: {e}", soft_wrap=True)
                continue
            results.append(r)
            if not as_json:
                prog.progress.console.print(_describe(r), soft_wrap=True)
    if as_json:
        echo_json(
            {
                "results": [r.to_dict() for r in results],
                "errors": [
                    {
                        "dataset": i,
                        **(e.to_dict() if hasattr(e, "to_dict") else {"message": str(e)}),
                    }
                    for i, e in errors
                ],
            }
        )
    if errors:
        if not as_json:
            click.secho(f"{len(errors)} of {len(specs)} dataset(s) failed.", fg="red", err=True)
        raise SystemExit(1)


def _describe(r) -> str:
    if r.status == "up_to_date":
        return f"[dim]= {r.dataset_id} is up to date (v{r.version})[/dim]"
    q = r.validation.get("score") if r.validation else None
    verb = {"adopted": "registered", "published_with_warnings": "published with warnings"}.get(
        r.status, "published"
    )
    line = (
        f"[green]✓ {r.dataset_id}[/green] v{r.version} {verb}: {r.row_count:,} rows, "
        f"{human_bytes(r.bytes)}"
        + (f", quality {q:.1f}" if q is not None else "")
        + f", {r.seconds:.1f} s"
    )
    for w in r.warnings:
        line += f"\n  [yellow]warning:[/yellow] {w}"
    for q in r.quarantine:
        line += f"\n  [yellow]quarantined rows:[/yellow] {q}"
    return line


@click.group()
def datasets() -> None:
    """List and show catalogue entries."""


@datasets.command("list")
@json_option
@click.option("--declared", is_flag=True, help="List datasets.yaml instead of the catalogue.")
def datasets_list(as_json: bool, declared: bool) -> None:
    """Every dataset in the catalogue with its current version."""
    nx = _nx(read_only=not declared)
    if declared:
        specs = nx.specs()
        if as_json:
            echo_json([{"id": s.id, "title": s.title, "domain": s.domain} for s in specs])
        else:
            table(
                [(s.id, s.title, s.domain, s.source.format) for s in specs],
                ["id", "title", "domain", "format"],
            )
        return
    pkgs = nx.datasets()
    if as_json:
        echo_json(pkgs)
        return
    rows = []
    for p in pkgs:
        x = p["nsdx"]
        rows.append(
            (
                p["name"],
                p["title"],
                x["domain"],
                x["access"],
                f"v{x['current_version']}" if x["current_version"] else "-",
                f"{x['row_count']:,}" if x["row_count"] is not None else "-",
                human_bytes(x["bytes"]),
                f"{x['quality_score']:.1f}" if x.get("quality_score") is not None else "-",
            )
        )
    table(
        rows,
        ["id", "title", "domain", "access", "version", "rows", "size", "quality"],
        title=f"nsdx catalogue — {len(rows)} datasets",
    )


@datasets.command("show")
@click.argument("name")
@json_option
def datasets_show(name: str, as_json: bool) -> None:
    """One dataset: metadata, versions, tables, schema and quality."""
    from catalogue.errors import DatasetNotFound

    nx = _nx(read_only=True)
    try:
        p = nx.dataset(name)
    except DatasetNotFound as e:
        _explain_unpublished(nx, name, e)
    if as_json:
        echo_json(p)
        return
    x = p["nsdx"]
    click.secho(f"{p['title']}  ({p['name']})", bold=True)
    if x.get("title_en"):
        click.echo(x["title_en"])
    if p["notes"]:
        click.echo(p["notes"])
    org = p["organization"]["name"] if p["organization"] else "-"
    click.echo(
        f"organisation: {org}   domain: {x['domain']}   access: {x['access']}   "
        f"licence: {p['license_id']}"
    )
    if x.get("attribution"):
        click.echo(f"attribution: {x['attribution']}")
    click.echo(
        f"current version: v{x['current_version']}   rows: {x['row_count']:,}   "
        f"size: {human_bytes(x['bytes'])}   versions: {', '.join(f'v{v}' for v in x['versions'])}"
        if x["current_version"]
        else "not published yet"
    )
    ver = nx.catalogue.current(p["name"]) if x["current_version"] else None
    if ver is not None:  # the operator's view: where the files are (never in an API answer)
        click.echo(f"storage: {ver.storage_url.rstrip('/')}/{ver.prefix}/")
    if x["current_version"] and p["resources"]:
        click.echo(f"download: {nx.public_url(p['resources'][0]['url'])}")
    v = x.get("validation") or {}
    if v:
        status = "passed" if v.get("success") else "FAILED"
        click.echo(f"quality: {v.get('score')} ({status})")
        for exp, n in (v.get("failures_by_expectation") or {}).items():
            click.echo(f"  {exp}: {n} unexpected")
    c = x.get("classification") or {}
    if c:  # GB/T 43697 grade and personal information (the cross-border rules' facts)
        pi = "no"
        if c.get("has_pi"):
            pi = "yes, sensitive" if c.get("sensitive_pi") else "yes"
            if c.get("individuals") is not None:
                pi += f" ({c['individuals']:,} individuals counted at ingest)"
            else:  # the cross-border rules then take the strict route (pi_count_unknown)
                pi += " (individuals not counted: no version ingested with its PI columns)"
        cat = f"   category: {c['data_category']}" if c.get("data_category") else ""
        click.echo(f"grade: {c.get('grade') or 'general'}   personal information: {pi}{cat}")
    if p["tags"]:
        click.echo("tags: " + ", ".join(t["name"] for t in p["tags"]))
    for r in p["resources"]:
        click.secho(
            f"\ntable {r['name']}: {r['nsdx_row_count']:,} rows, {human_bytes(r['size'])}",
            bold=True,
        )
        table([(c["name"], c["type"]) for c in r["nsdx_schema"]], ["column", "type"])


def _explain_unpublished(nx, name: str, err) -> None:
    """A dataset declared in datasets.yaml but never published: say where its reports are."""
    from catalogue.errors import NotPublished
    from ingest.errors import IngestError

    try:
        declared = any(s.id == name for s in nx.specs())
    except IngestError:
        declared = False
    if not declared:
        raise err
    reports = sorted((nx.reports_dir / name).glob("*.html"))
    raise NotPublished(
        f"dataset {name!r} is declared in {nx.settings.datasets_path} but not published yet",
        hint=(
            f"its last ingest failed: read {reports[-1]}"
            if reports
            else f"run `nsdx ingest {name}`"
        ),
    )


@click.command()
@click.argument("sql")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to a file.")
@click.option("--max-rows", type=int, default=None, help="Stop after this many rows.")
@click.option(
    "--remote",
    metavar="URL",
    default=None,
    help="Query a portal over HTTP instead of this deployment (its download URLs).",
)
@click.option(
    "--token",
    envvar="NSDX_TOKEN",
    default=None,
    help="API token for --remote (restricted data); default: NSDX_TOKEN.",
)
def query(
    sql: str,
    fmt: str,
    output: str | None,
    max_rows: int | None,
    remote: str | None,
    token: str | None,
) -> None:
    """Run SQL over published data. Views are <domain>.<id> with '-' as '_', and
    <view>__v<N> for every version, e.g.

    nsdx query "SELECT count(*) FROM transport.nansha_bus_gps"

    nsdx query --remote https://portal --token T "SELECT count(*) FROM transport.nansha_bus_gps__v1"
    """
    if max_rows is None and fmt == "table" and not output:
        max_rows = 1000
    if remote:
        from catalogue.query import run_query
        from nsdx.remote import connect_remote

        tbl = run_query(connect_remote(remote, token), sql, max_rows=max_rows)
    else:
        tbl = _nx(read_only=True).query(sql, max_rows=max_rows)
    arrow_out(tbl, fmt, output)


@click.group()
def samples() -> None:
    """Seeded sample data for Nansha (deterministic, no downloads)."""


@samples.command("generate")
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), default=Path("data/samples")
)
@click.option("--rows", type=int, default=1_000_000, show_default=True, help="Bus GPS rows.")
@click.option("--seed", type=int, default=20261127, show_default=True)
def samples_generate(out: Path, rows: int, seed: int) -> None:
    """Write the sample source files (CSV in UTF-8 and GB18030, Excel, NDJSON)."""
    from nsdx.samples import generate

    console = stderr_console()
    with console.status("generating sample data…"):
        written = generate(out, rows=rows, seed=seed)
    for ds, path in written.items():
        click.echo(f"{ds}: {path}")


@click.group()
def storage() -> None:
    """Check the configured object storage."""


@storage.command("check")
@json_option
def storage_check(as_json: bool) -> None:
    """Write, read back and delete a probe object in the configured storage."""
    nx = _nx()
    try:
        nx.store.check()
    except Exception as e:  # noqa: BLE001
        from . import _known_errors

        if isinstance(e, _known_errors()):
            fail(e, as_json)
        raise
    if as_json:
        echo_json({"ok": True, "storage": nx.store.url})
    else:
        click.secho(f"✓ storage works: {nx.store.url}", fg="green")


@click.command()
@click.option("--older-than", default="24h", show_default=True, help="Age, e.g. 30m, 24h, 7d.")
@json_option
def gc(older_than: str, as_json: bool) -> None:
    """Remove staging leftovers older than a threshold. Committed versions are never touched."""
    seconds = _parse_age(older_than)
    removed = _nx().store.gc(seconds)
    if as_json:
        echo_json({"removed": removed})
    else:
        click.echo(f"removed {len(removed)} staging leftover(s)")
        for r in removed:
            click.echo(f"  {r}")


def _parse_age(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise click.BadParameter(f"{text!r}: use a number with s, m, h or d, e.g. 24h") from None
