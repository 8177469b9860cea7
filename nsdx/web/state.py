"""What the HTTP layer holds for one deployment: the core objects every route calls."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from fastapi import Request

from catalogue.access import Grants
from catalogue.auth import Accounts, Principal
from catalogue.ckan import ActionContext
from catalogue.editing import Packages, render_packages
from catalogue.jobs import JobDeps, Jobs, ThreadRunner
from catalogue.search import SearchIndex, index_for
from nsdx.access import exchange_grants
from nsdx.core import Nsdx


@dataclass
class WebState:
    nx: Nsdx

    @property
    def cat(self):
        return self.nx.catalogue

    @cached_property
    def accounts(self) -> Accounts:
        return Accounts(self.cat)

    @cached_property
    def packages(self) -> Packages:
        return Packages(self.cat)

    @cached_property
    def grants(self) -> Grants:
        """The exchange's live-grant check, for the access rule (:mod:`catalogue.access`)."""
        return exchange_grants(self.cat)

    @cached_property
    def index(self) -> SearchIndex:
        return index_for(self.cat, render_packages)

    @cached_property
    def jobs(self) -> Jobs:
        return Jobs(self.cat, runner_factory=lambda j: make_runner(self.nx, j, self.job_deps))

    @property
    def uploads_dir(self) -> Path:
        return self.nx.settings.home / "uploads"

    def job_deps(self) -> JobDeps:
        key, _ = self.nx.pii_key()
        return JobDeps(self.cat, self.nx.store, key, self.nx.reports_dir)

    def principal(self, request: Request) -> Principal:
        """The caller, from the raw `Authorization` header (as CKAN does; a `Bearer `
        prefix is accepted) or `X-CKAN-API-Key`."""
        token = request.headers.get("authorization") or request.headers.get("x-ckan-api-key")
        if token and token.lower().startswith("bearer "):
            token = token[7:]
        return self.accounts.authenticate(token)

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


def jobs_mode(nx: Nsdx) -> str:
    """``queue`` (procrastinate on PostgreSQL) or ``thread`` (in-process). NSDX_JOBS
    chooses; by default PostgreSQL deployments queue and SQLite ones use threads."""
    import os

    from catalogue.errors import CatalogueError

    mode = os.environ.get("NSDX_JOBS", "").strip().lower()
    on_pg = nx.settings.database_url.startswith("postgresql")
    if mode not in ("", "queue", "thread"):
        raise CatalogueError(
            f"NSDX_JOBS={mode!r} is not a job mode",
            hint="set NSDX_JOBS=queue (PostgreSQL) or thread, or leave it unset",
        )
    if mode == "queue" and not on_pg:
        raise CatalogueError(
            "NSDX_JOBS=queue needs PostgreSQL",
            hint="set NSDX_DATABASE_URL=postgresql+psycopg://..., or NSDX_JOBS=thread",
        )
    return mode or ("queue" if on_pg else "thread")


def make_runner(nx: Nsdx, jobs: Jobs, deps):
    if jobs_mode(nx) == "queue":
        from catalogue.jobs import ProcrastinateRunner

        return ProcrastinateRunner(nx.settings.database_url)
    return ThreadRunner(jobs, deps)


def state_of(request: Request) -> WebState:
    return request.app.state.nsdx


def site_url(request: Request) -> str:
    """This server's public address as the client reached it, without the trailing slash."""
    return str(request.base_url).rstrip("/")


__all__ = ["WebState", "jobs_mode", "make_runner", "site_url", "state_of"]
