"""Assembly of the HTTP app: one FastAPI application over one Nsdx deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from nsdx.core import Nsdx, jobs_mode

from . import (
    account,
    audit,
    ckan,
    console,
    dcat,
    download,
    errorpages,
    errors,
    exchange,
    pages,
    provider,
    query,
    sharing,
    trade_pages,
)
from .csrf import CSRFMiddleware, portal_secret
from .i18n import LanguageMiddleware
from .state import WebState

log = logging.getLogger("nsdx.web")

# The routers the app serves, in order. Other packages add theirs here (one line each).
ROUTERS = [
    ckan.router,
    exchange.router,
    query.router,
    sharing.router,
    download.router,
    dcat.router,
    account.router,
    audit.router,
    trade_pages.router,
    console.router,
    provider.router,
    pages.router,
]


def create_app(
    nsdx: Nsdx | None = None, *, warm: bool = True, worker: bool | None = None
) -> FastAPI:
    """The nsdx HTTP app.

    ``warm`` builds the search index in the background at start-up. ``worker`` runs a job
    queue worker inside the server when jobs are queued (PostgreSQL); by default it does
    unless ``NSDX_SERVE_WORKER=0`` (then only `nsdx worker` processes run them).
    """
    nx = nsdx or Nsdx()
    state = WebState(nx)
    mode = jobs_mode(nx)  # a wrong NSDX_JOBS stops the server here, not its first upload
    if worker is None:
        worker = os.environ.get("NSDX_SERVE_WORKER", "1") != "0"

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if warm:
            threading.Thread(target=state.index.refresh, daemon=True, name="nsdx-index").start()
        task = None
        if worker and mode == "queue":
            from catalogue.jobs import ensure_queue_schema, run_worker_async

            await asyncio.to_thread(ensure_queue_schema, nx.settings.database_url)
            task = asyncio.create_task(run_worker_async(nx.settings.database_url, state.job_deps))
        yield
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        jobs = nx.built("jobs")
        runner = jobs.runner if jobs is not None else None
        if runner is not None and hasattr(runner, "shutdown"):
            runner.shutdown()

    app = FastAPI(
        title="nsdx",
        description="Nansha open dataset registry and data exchange: CKAN-compatible "
        "Action API, DCAT-AP and the portal.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.nsdx = state
    errors.install(app)  # one error shape per surface; nothing escapes as a bare 500
    for r in ROUTERS:
        app.include_router(r)
    errorpages.install(app)
    # outermost last: the language is known before the CSRF check answers in it
    app.add_middleware(
        CSRFMiddleware,
        secret=portal_secret(nx.settings.home),
        secure=os.environ.get("NSDX_COOKIE_SECURE", "") == "1",
    )
    app.add_middleware(LanguageMiddleware)
    static = Path(__file__).parent / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app
