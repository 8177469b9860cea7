"""`nsdx iceberg`: the open Iceberg catalog (catalogue.iceberg) — backfill and the mapping
between nsdx versions and Iceberg snapshot ids."""

from __future__ import annotations

import click

from . import fail
from .render import echo_json, table

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _nx(read_only: bool = False):
    from nsdx.core import Nsdx

    return Nsdx(read_only=read_only)


@click.group()
def iceberg() -> None:
    """Open published tables as Apache Iceberg tables: sync, show, which."""


@iceberg.command("sync")
@click.argument("ids", nargs=-1)
@json_option
def iceberg_sync(ids: tuple[str, ...], as_json: bool) -> None:
    """Register missing versions (all datasets, or ID...) as Iceberg snapshots, oldest
    first; drop the tables of datasets that are no longer open. The backfill of existing
    versions, and the retry of a registration that failed at publish time."""
    from catalogue.errors import DatasetNotFound

    nx = _nx(read_only=True)
    with nx.catalogue.Session() as s:
        from catalogue.registry import find_dataset

        for i in ids:
            try:
                find_dataset(s, i, include_deleted=True)
            except DatasetNotFound as e:
                fail(e, as_json)
    report = nx.iceberg.sync(list(ids))
    if as_json:
        echo_json(report.as_dict())
    else:
        for r in report.registered:
            click.echo(f"✓ {r['table']} v{r['version']} → snapshot {r['snapshot_id']}")
        for d in report.dropped:
            click.echo(f"- {d} dropped (its dataset is no longer open)")
        for err in report.errors:
            click.secho(f"✗ {err['table']} v{err['version']}: {err['error']}", fg="red", err=True)
        from catalogue.iceberg import MAX_COLUMNS

        for sk in report.skipped:
            click.echo(
                f"- {sk['table']} v{sk['version']} not registered: {sk['columns']:,} columns, "
                f"more than {MAX_COLUMNS:,}"
            )
        if not (report.registered or report.dropped or report.errors or report.skipped):
            click.echo("every open version is registered")
    if report.errors:
        raise SystemExit(1)


@iceberg.command("show")
@click.argument("name")
@json_option
def iceberg_show(name: str, as_json: bool) -> None:
    """A dataset's Iceberg tables: each version's snapshot id and the metadata file."""
    nx = _nx(read_only=True)
    try:
        tables = nx.iceberg.snapshots(name)
    except Exception as e:  # noqa: BLE001
        from . import _known_errors

        if isinstance(e, _known_errors()):
            fail(e, as_json)
        raise
    if as_json:
        echo_json({"dataset": name, "catalog": "nsdx", "tables": tables})
        return
    if not tables:
        click.echo(f"{name} has no Iceberg table (restricted, private or not synced)")
    for t in tables:
        click.secho(t["table"], bold=True)
        click.echo(f"metadata: {t['metadata_location']}")
        table(
            [
                (f"v{v['version']}", str(v["snapshot_id"]), "current" if v["current"] else "")
                for v in t["versions"]
            ],
            ["version", "snapshot id", ""],
        )


@iceberg.command("which")
@click.argument("snapshot_id", type=int)
@json_option
def iceberg_which(snapshot_id: int, as_json: bool) -> None:
    """The dataset and nsdx version of an Iceberg snapshot id."""
    from catalogue.iceberg import IcebergError

    nx = _nx(read_only=True)
    try:
        found = nx.iceberg.version_of(snapshot_id)
    except IcebergError as e:
        fail(e, as_json)
    if as_json:
        echo_json(found)
    else:
        click.echo(f"{found['dataset']} v{found['version']} ({found['table']})")
