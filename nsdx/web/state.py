"""What the HTTP layer holds for one deployment: the service root (:class:`nsdx.core.Nsdx`)
and the request-side helpers every route uses (who is calling, the action context).

``WebState`` builds nothing of its own: the catalogue, accounts, search index, jobs and
exchange are the root's parts (built once, under its lock), so the CLI, the routes, the
pages and Python callers share them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from catalogue.access import Grants
from catalogue.auth import Accounts, Principal
from catalogue.ckan import ActionContext
from catalogue.editing import Packages
from catalogue.jobs import JobDeps, Jobs
from catalogue.search import SearchIndex
from exchange.context import Exchange
from nsdx.core import Nsdx, jobs_mode, make_runner


@dataclass
class WebState:
    nx: Nsdx

    @property
    def cat(self):
        return self.nx.catalogue

    @property
    def accounts(self) -> Accounts:
        return self.nx.accounts

    @property
    def packages(self) -> Packages:
        return self.nx.packages

    @property
    def grants(self) -> Grants:
        """The exchange's live-grant check, for the access rule (:mod:`catalogue.access`)."""
        return self.nx.grants

    @property
    def index(self) -> SearchIndex:
        return self.nx.index

    @property
    def jobs(self) -> Jobs:
        return self.nx.jobs

    @property
    def exchange(self) -> Exchange:
        return self.nx.exchange

    @property
    def uploads_dir(self) -> Path:
        return self.nx.uploads_dir

    def job_deps(self) -> JobDeps:
        return self.nx.job_deps()

    def principal(self, request: Request) -> Principal:
        """The caller, from the raw `Authorization` header (as CKAN does; a `Bearer `
        prefix is accepted) or `X-CKAN-API-Key`."""
        token = request.headers.get("authorization") or request.headers.get("x-ckan-api-key")
        if token and token.lower().startswith("bearer "):
            token = token[7:]
        return self.accounts.authenticate(token)

    async def principal_async(self, request: Request) -> Principal:
        """:meth:`principal` from an async route: a request that sends a token is
        authenticated on a worker thread (a database read); one that sends none is the
        anonymous caller at once, without the thread hop (most reads of a public
        catalogue)."""
        if request.headers.get("authorization") or request.headers.get("x-ckan-api-key"):
            return await run_in_threadpool(self.principal, request)
        return self.principal(request)

    def context(self, request: Request, principal: Principal, files=None) -> ActionContext:
        return ActionContext(
            cat=self.cat,
            packages=self.packages,
            accounts=self.accounts,
            index=self.index,
            principal=principal,
            grants=self.grants,
            jobs=self.jobs,
            files=files or {},
            site_url=site_url(request),
        )


def state_of(request: Request) -> WebState:
    return request.app.state.nsdx


def site_url(request: Request) -> str:
    """This server's public address without the trailing slash: ``NSDX_PUBLIC_URL`` when
    configured (behind a proxy), else the address the client reached it at."""
    state = getattr(request.app.state, "nsdx", None)
    configured = state.nx.settings.public_url if state is not None else None
    return configured or str(request.base_url).rstrip("/")


__all__ = ["WebState", "jobs_mode", "make_runner", "site_url", "state_of"]
