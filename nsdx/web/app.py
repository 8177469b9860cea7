"""Assembly of the HTTP app: one FastAPI application over one Nsdx deployment."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
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
    quality,
    query,
    registration,
    sharing,
    tlog,
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
    tlog.router,
    trade_pages.router,
    console.router,
    provider.router,
    registration.router,
    registration.pages,
    quality.router,
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
        _on_stop_signal(lambda: query.close(state))
        if warm:
            threading.Thread(target=state.index.refresh, daemon=True, name="nsdx-index").start()
        task = None
        if worker and mode == "queue":
            from catalogue.jobs import ensure_queue_schema, run_worker_async

            await asyncio.to_thread(ensure_queue_schema, nx.settings.database_url)
            task = asyncio.create_task(run_worker_async(nx.settings.database_url, state.job_deps))
        # witnessing each new checkpoint is the job worker's (docs/ledger.md §6)
        pump = await asyncio.to_thread(state.exchange.start_witnessing) if worker else None
        yield
        if pump is not None:
            await asyncio.to_thread(pump.stop)
        query.close(state)  # running queries end now (503), not when their time is up
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
        docs_url=None,  # served below from installed files, not from a CDN
        redoc_url=None,
    )
    app.state.nsdx = state
    errors.install(app)  # one error shape per surface; nothing escapes as a bare 500
    for r in ROUTERS:
        app.include_router(r)
    _api_docs(app)
    errorpages.install(app)
    # outermost last: the language is known before the CSRF check answers in it
    app.add_middleware(
        CSRFMiddleware,
        secret=portal_secret(nx.settings.home),
        secure=os.environ.get("NSDX_COOKIE_SECURE", "") == "1",
    )
    # a request past the server's connection cap: answered in its dialect, nothing else run
    app.add_middleware(errors.Overloaded)
    app.add_middleware(LanguageMiddleware)
    static = Path(__file__).parent / "static"
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=str(static)), name="static")
    return app


def _on_stop_signal(stop) -> None:
    """Call ``stop`` (on a thread of its own) as soon as SIGTERM or SIGINT arrives, before
    the server's own handler starts its graceful shutdown: running queries then end at
    once (503) instead of holding the shutdown until their time is up. Only where the
    server installed handlers (the main thread of `nsdx serve`); elsewhere nothing."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return
    for sig in (signal.SIGTERM, signal.SIGINT):
        before = signal.getsignal(sig)
        if not callable(before):
            continue

        def handler(signum, frame, before=before) -> None:
            threading.Thread(target=stop, daemon=True, name="nsdx-stop").start()
            before(signum, frame)

        signal.signal(sig, handler)


# Swagger UI and ReDoc as the fastapi-offline package ships them: FastAPI's own pages load
# their scripts, styles and fonts from CDNs and stay blank on a machine without internet.
API_DOCS_ASSETS = "/static/api-docs"


def _api_docs(app: FastAPI) -> None:
    from importlib.resources import files

    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )

    assets = Path(str(files("fastapi_offline") / "static"))
    app.mount(API_DOCS_ASSETS, StaticFiles(directory=str(assets)), name="api-docs")
    redirect = app.swagger_ui_oauth2_redirect_url or "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="nsdx API — Swagger UI",
            oauth2_redirect_url=f"{root}{redirect}",
            swagger_js_url=f"{root}{API_DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{API_DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{API_DOCS_ASSETS}/favicon.png",
            # no badge image from the public validator
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get(redirect, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title="nsdx API — ReDoc",
            redoc_js_url=f"{root}{API_DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{API_DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
