"""The SQL console: one SELECT over the views the signed-in user (or a visitor) may read,
run by the query API's own function (:func:`nsdx.web.query.execute`: the same sandbox,
limits and access rule, grants included), shown as a table or downloaded as CSV."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool

from catalogue import jsonout
from catalogue.access import DatasetRestricted
from catalogue.errors import CatalogueError
from catalogue.query import check_access, queryable_tables

from .i18n import core
from .i18n import gettext as _
from .query import execute
from .query import render as render_result
from .render import render
from .session import viewer
from .state import state_of

router = APIRouter(include_in_schema=False)
SHOW_ROWS = 200
MAX_SQL = 20_000


def readable_views(request: Request) -> list[dict]:
    """The views the viewer may query, by the query API's own access check."""
    st = state_of(request)
    who = viewer(request)
    out = []
    for t in queryable_tables(st.nx.catalogue).values():
        try:
            check_access(who, [t], st.grants)
        except DatasetRestricted:
            continue
        out.append({"view": t.view, "dataset": t.table.dataset, "access": t.table.access})
    return sorted(out, key=lambda d: d["view"])


@router.get("/console")
def console(request: Request, dataset: str = ""):
    views = readable_views(request)
    sql = ""
    pick = [v for v in views if v["dataset"] == dataset] or views[:1]
    if pick:
        sql = f"SELECT * FROM {pick[0]['view']} LIMIT 20"
    return render(request, "console.html", {"views": views, "sql": sql})


@router.post("/console")
async def console_run(request: Request):
    form = await request.form()
    sql = str(form.get("sql") or "")
    want_csv = form.get("format") == "csv"
    views = await run_in_threadpool(readable_views, request)
    ctx = {"views": views, "sql": sql}
    if not sql.strip():
        return render(request, "console.html", {**ctx, "error": _("Write a SELECT first.")}, 422)
    if len(sql) > MAX_SQL:
        return render(
            request,
            "console.html",
            {**ctx, "error": _("The query is too long (at most 20,000 characters).")},
            422,
        )
    st = state_of(request)
    who = await run_in_threadpool(viewer, request)
    try:
        result, cap = await run_in_threadpool(
            execute, st, who, sql, None if want_csv else SHOW_ROWS
        )
        if want_csv:
            resp = render_result(result, "csv", cap)
            resp.headers["content-disposition"] = 'attachment; filename="nsdx-query.csv"'
            return resp
    except CatalogueError as e:
        return render(
            request,
            "console.html",
            {**ctx, "error": core(e.message), "hint": core(getattr(e, "hint", None)) or None},
            getattr(e, "status", 400),
        )
    t = result.table
    return render(
        request,
        "console.html",
        {
            **ctx,
            "columns": [f.name for f in t.schema],
            "rows": jsonout.rows(t),
            "truncated": result.truncated,
            "elapsed_ms": result.elapsed_ms,
        },
    )


__all__ = ["readable_views", "router"]
