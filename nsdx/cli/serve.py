"""`nsdx serve` (the HTTP server) and `nsdx worker` (background jobs from the queue)."""

from __future__ import annotations

import click


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="TCP port.")
@click.option("--workers", default=1, show_default=True, type=int, help="Server processes.")
@click.option("--log-level", default="info", show_default=True)
@click.option(
    "--worker/--no-worker",
    "run_worker",
    default=True,
    show_default=True,
    help="On PostgreSQL, also run queued jobs in the server (else only `nsdx worker`s do).",
)
def serve(host: str, port: int, workers: int, log_level: str, run_worker: bool) -> None:
    """Run the HTTP server: CKAN Action API (/api/3/action/), DCAT (/catalog.jsonld),
    OpenAPI (/openapi.json) and the web portal.

    In production run several server processes on PostgreSQL and the job worker in a
    process of its own: `nsdx serve --workers 2 --no-worker` beside `nsdx worker`."""
    import os

    from nsdx.web import server

    if workers < 1:
        raise click.BadParameter("at least 1", param_hint="--workers")
    for name in server.DEFAULTS:
        try:
            server.setting(name)
        except server.ServerSettingError as e:
            raise click.UsageError(f"{e}: fix the setting or unset it") from None
    if not run_worker:
        os.environ["NSDX_SERVE_WORKER"] = "0"

    click.echo(f"nsdx serving on http://{host}:{port}/ (CKAN API at /api/3/action/)", err=True)
    server.run(host, port, workers=workers, log_level=log_level)


@click.command()
@click.option("--concurrency", default=1, show_default=True, type=int, help="Jobs at once.")
@click.option("--once", is_flag=True, help="Run the queued jobs, then exit.")
def worker(concurrency: int, once: bool) -> None:
    """Run background jobs (uploads, re-ingests) from the PostgreSQL job queue.

    It also witnesses each new ledger checkpoint when witnesses are configured
    (docs/ledger.md §6)."""
    from nsdx.core import Nsdx

    nx = Nsdx()
    if not nx.settings.database_url.startswith("postgresql"):
        raise click.UsageError(
            "the job queue needs PostgreSQL: set NSDX_DATABASE_URL=postgresql+psycopg://... "
            "(on the embedded default, `nsdx serve` runs jobs in-process)"
        )
    from catalogue.jobs import run_worker

    # the worker also witnesses each new checkpoint (when witnesses are configured)
    pump = None if once else nx.exchange.start_witnessing()
    try:
        run_worker(nx.settings.database_url, nx.job_deps, concurrency=concurrency, once=once)
    finally:
        if pump is not None:
            pump.stop()
