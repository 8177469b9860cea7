"""The cross-border audit of a year (``nsdx audit cross-border --year Y``, the portal's
``/audit/cross-border``, ``GET /api/audit/cross-border``): computed only from the ledger
leaves of one signed checkpoint, verified against its root, like the reward report.

Per transfer: exporter, destination (buyer and region), dataset and grade, the route and
the rule that fired, the individuals it added and the exporter's cumulative counts against
the thresholds, the evidence recorded (and a GBA filing's deadline), the policy hash that
decided. Per exporter and destination: transfers and individuals. Every refusal.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING

from validation.messages import Msg

from ..ledger.store import Checkpoint, b64
from ..ledger.verify import verified_events

if TYPE_CHECKING:
    from ..context import Exchange

TRANSFER_COLUMNS = [
    "ledger_index", "decided_on", "order", "exporter", "exporter_region", "destination",
    "destination_region", "dataset", "version", "grade", "route", "rule", "exemption",
    "individuals_added", "cumulative_individuals", "cumulative_sensitive", "exempt_below",
    "assessment_from", "sensitive_assessment_from", "evidence", "missing_evidence",
    "filing_due", "policy_sha256",
]  # fmt: skip
REFUSAL_COLUMNS = [
    "ledger_index", "at", "decided_on", "stage", "order", "exporter", "destination", "dataset",
    "route", "rule", "detail", "policy_sha256",
]  # fmt: skip


def _where(r: dict | None) -> str:
    if not r:
        return ""
    if r.get("region") != "mainland":
        return str(r.get("region"))
    return Msg(
        "mainland %(place)s (%(division)s)",
        place=f"{r.get('province') or ''}{r.get('city') or ''}",
        division=r.get("division"),
    )


def _refusal_detail(e: dict) -> str | None:
    """A refusal's reason as the ledger states it — as a message a surface can translate
    when it is rebuilt from the entry's fields (a missing-evidence refusal from its route,
    rule and required evidence; a refused offer from the buyer's region) into exactly the
    text the entry holds."""
    from .decide import not_offered_reason
    from .record import missing_reason

    detail = e.get("detail")
    need = e.get("requires")
    msg: str | None = None
    if e.get("rule") == "evidence_missing" and isinstance(need, list) and need:
        msg = missing_reason(str(e.get("route")), str(e.get("decision_rule")), need)
    elif e.get("rule") == "offer_not_cross_border":
        msg = not_offered_reason(str((e.get("buyer_region") or {}).get("region")))
    return msg if msg is not None and msg == detail else detail


def compute_crossborder(events: list[dict], checkpoint: Checkpoint, year: int) -> dict:
    """The audit of ``year`` from the leaves of ``checkpoint`` (no clock: the same
    checkpoint always gives the same report)."""
    from .decide import REQUIRES

    events = [e for e in events if e["index"] < checkpoint.tree_size]
    transfers: dict[str, dict] = {}
    refusals: list[dict] = []
    for e in events:
        kind = e["type"]
        if kind == "crossborder.decided" and e.get("year") == year:
            c = e.get("counts") or {}
            transfers[e["order"]] = {
                "ledger_index": e["index"],
                "decided_on": e.get("decided_on"),
                "order": e["order"],
                "exporter": e.get("seller"),
                "exporter_region": _where(e.get("seller_region")),
                "destination": e.get("buyer"),
                "destination_region": _where(e.get("buyer_region")),
                "dataset": e.get("dataset"),
                "version": e.get("version"),
                "grade": e.get("grade"),
                "route": e.get("route"),
                "rule": e.get("rule"),
                "exemption": e.get("exemption"),
                "individuals_added": e.get("individuals_added", 0),
                "cumulative_individuals": c.get("cumulative_individuals", 0),
                "cumulative_sensitive": c.get("cumulative_sensitive", 0),
                "exempt_below": c.get("exempt_below"),
                "assessment_from": c.get("assessment_from"),
                "sensitive_assessment_from": c.get("sensitive_assessment_from"),
                "evidence": {},
                "missing_evidence": list(e.get("requires") or []),
                "filing_due": e.get("filing_due"),
                "policy_sha256": e.get("policy_sha256"),
            }
        elif kind == "crossborder.evidence" and e.get("order") in transfers:
            t = transfers[e["order"]]
            t["evidence"][e["kind"]] = e["reference"]
            t["route"] = e.get("route") or t["route"]
            need = REQUIRES.get(
                "standard_contract" if t["route"] == "certification" else t["route"], ()
            )
            t["missing_evidence"] = [] if any(k in t["evidence"] for k in need) else list(need)
        elif kind == "crossborder.refused" and e.get("year") == year:
            refusals.append(
                {
                    "ledger_index": e["index"],
                    "at": e.get("at"),
                    # the exchange's day of the refused step (an order may be dated a few
                    # days back: its year, not the clock's, files it); older grant-stage
                    # events carry none: the day of their timestamp
                    "decided_on": e.get("decided_on") or (e.get("at") or "")[:10] or None,
                    "stage": e.get("stage"),
                    "order": e.get("order"),
                    "exporter": e.get("seller"),
                    "destination": e.get("buyer"),
                    "dataset": e.get("dataset"),
                    "route": e.get("route"),
                    "rule": e.get("rule"),
                    "detail": _refusal_detail(e),
                    "policy_sha256": e.get("policy_sha256"),
                }
            )
    rows = sorted(transfers.values(), key=lambda t: t["ledger_index"])
    exporters: dict[str, dict] = {}
    pairs: dict[tuple[str, str], dict] = {}
    routes: dict[str, int] = defaultdict(int)
    for t in rows:
        routes[t["route"]] += 1
        x = exporters.setdefault(
            t["exporter"],
            {"exporter": t["exporter"], "region": t["exporter_region"], "transfers": 0},
        )
        x["transfers"] += 1
        # the latest decision holds the year's cumulative counts and the thresholds it used
        for k in ("cumulative_individuals", "cumulative_sensitive", "exempt_below",
                  "assessment_from", "sensitive_assessment_from"):  # fmt: skip
            x[k] = t[k]
        n, sens = x["cumulative_individuals"], x["cumulative_sensitive"]
        if n >= (x["assessment_from"] or 0) or sens >= (x["sensitive_assessment_from"] or 0):
            x["band"] = "assessment"
        elif n >= (x["exempt_below"] or 0) or sens > 0:
            x["band"] = "contract"  # any sensitive PI needs at least a contract
        else:
            x["band"] = "exempt"
        p = pairs.setdefault(
            (t["exporter"], t["destination"]),
            {"exporter": t["exporter"], "destination": t["destination"],
             "destination_region": t["destination_region"], "transfers": 0,
             "individuals": 0, "routes": []},
        )  # fmt: skip
        p["transfers"] += 1
        p["individuals"] += t["individuals_added"]
        if t["route"] not in p["routes"]:
            p["routes"].append(t["route"])
    overdue = [t["order"] for t in rows if t["filing_due"] and "gba_filing" not in t["evidence"]]
    return {
        "year": year,
        "checkpoint": {
            "tree_size": checkpoint.tree_size,
            "root": b64(checkpoint.root),
            "note": checkpoint.note,
        },
        "policies": sorted({t["policy_sha256"] for t in rows if t["policy_sha256"]}),
        "totals": {
            "transfers": len(rows),
            "refusals": len(refusals),
            "routes": dict(sorted(routes.items())),
            "awaiting_evidence": sum(1 for t in rows if t["missing_evidence"]),
            "gba_filings_outstanding": len(overdue),
        },
        "exporters": [exporters[k] for k in sorted(exporters)],
        "destinations": [pairs[k] for k in sorted(pairs)],
        "transfers": rows,
        "refusals": refusals,
    }


def crossborder_report(ex: Exchange, year: int, *, tree_size: int | None = None) -> dict:
    """The audit of ``year`` from the checkpoint of ``tree_size`` (default: the latest
    signed one), from entries verified against its root."""
    cp, events = verified_events(ex.ledger, lambda: ex.signer.verifier_key, tree_size)
    return compute_crossborder(events, cp, year)


def _flat(t: dict) -> dict:
    return {
        **t,
        "evidence": "; ".join(f"{k}={v}" for k, v in sorted(t["evidence"].items())),
        "missing_evidence": " or ".join(t["missing_evidence"]),
    }


def crossborder_csv(rep: dict) -> str:
    """One CSV: a row per transfer (``record=transfer``), then per refusal."""
    buf = io.StringIO()
    cols = ["record", "year", "checkpoint_size", *TRANSFER_COLUMNS, "stage", "detail"]
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    base = {"year": rep["year"], "checkpoint_size": rep["checkpoint"]["tree_size"]}
    for t in rep["transfers"]:
        w.writerow({"record": "transfer", **base, **_flat(t)})
    for r in rep["refusals"]:
        w.writerow({"record": "refusal", **base, **r})
    return buf.getvalue()


def write_crossborder_report(
    ex: Exchange, year: int, out: Path, *, tree_size: int | None = None
) -> list[Path]:
    """The audit as JSON, CSV and Parquet tables and one HTML page, in ``out``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rep = crossborder_report(ex, year, tree_size=tree_size)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    p = out / f"cross-border-{year}.json"
    p.write_text(json.dumps(rep, ensure_ascii=False, indent=2, sort_keys=True) + "\n", "utf-8")
    files.append(p)
    tables = {
        "transfers": ([_flat(t) for t in rep["transfers"]], TRANSFER_COLUMNS),
        "exporters": (rep["exporters"], None),
        "destinations": (
            [{**d, "routes": " ".join(d["routes"])} for d in rep["destinations"]],
            None,
        ),
        "refusals": (rep["refusals"], REFUSAL_COLUMNS),
    }
    for name, (rows, cols) in tables.items():
        cols = cols or (list(rows[0]) if rows else ["empty"])
        data = {c: [r.get(c) for r in rows] for c in cols}
        tbl = pa.table({c: pa.array(v, pa.string() if not any(x is not None for x in v) else None)
                        for c, v in data.items()})  # fmt: skip
        pq.write_table(tbl, out / f"cross-border-{year}-{name}.parquet", compression="zstd")
        files.append(out / f"cross-border-{year}-{name}.parquet")
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
        (out / f"cross-border-{year}-{name}.csv").write_text(buf.getvalue(), encoding="utf-8")
        files.append(out / f"cross-border-{year}-{name}.csv")
    p = out / f"cross-border-{year}.html"
    p.write_text(render_html(rep), encoding="utf-8")
    files.append(p)
    return files


def render_html(rep: dict) -> str:
    esc = html.escape

    def table(rows: list[dict], cols: list[str]) -> str:
        head = "".join(f"<th>{esc(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(str(r.get(c, '') or ''))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    t = rep["totals"]
    y = rep["year"]
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>数据出境审计 {y} — nsdx cross-border audit</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2em;max-width:1200px;color:#1a202c}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}
td,th{{border:1px solid #cbd5e0;padding:4px 8px;text-align:left}} th{{background:#edf2f7}}
pre{{background:#f7fafc;padding:1em;font-size:12px;overflow:auto}}
</style></head><body>
<h1>数据出境审计 {y}<br><small>Cross-border data transfers — audit {y}</small></h1>
<p>{t["transfers"]} transfers · {t["refusals"]} refusals · {t["awaiting_evidence"]} awaiting
evidence · {t["gba_filings_outstanding"]} GBA filings outstanding · routes:
{esc(", ".join(f"{k} {v}" for k, v in t["routes"].items()) or "-")}</p>
<h2>出境方累计人数 Exporters: cumulative individuals against the thresholds</h2>
{table(rep["exporters"], ["exporter", "region", "transfers", "cumulative_individuals", "cumulative_sensitive", "exempt_below", "assessment_from", "sensitive_assessment_from", "band"])}
<h2>出境方与接收方 Exporter and destination</h2>
{table([{**d, "routes": " ".join(d["routes"])} for d in rep["destinations"]], ["exporter", "destination", "destination_region", "transfers", "individuals", "routes"])}
<h2>每笔出境 Transfers</h2>
{table([_flat(x) for x in rep["transfers"]], TRANSFER_COLUMNS)}
<h2>拒绝 Refusals</h2>
{table(rep["refusals"], REFUSAL_COLUMNS)}
<h2>Provenance</h2>
<p>Computed only from the ledger entries covered by this signed checkpoint (tree size
{rep["checkpoint"]["tree_size"]}); cross-border policies that decided (sha256):
{esc(", ".join(rep["policies"]) or "-")}. Recompute with
<code>nsdx audit cross-border --year {y} --at {rep["checkpoint"]["tree_size"]}</code>.</p>
<pre>{esc(rep["checkpoint"]["note"])}</pre>
</body></html>
"""
