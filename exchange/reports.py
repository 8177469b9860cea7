"""Reports for officials, all computed from one signed checkpoint's ledger leaves.

* :func:`rewards_report` — the reward report (see :mod:`exchange.rewards.compute`);
* :func:`wash_flags` — wash-trade flags;
* :func:`yearly_summary` — volume, count, by domain, by enterprise, rewards, flags;
* :func:`write_yearly_report` — the summary as CSV, Parquet, JSON and an HTML page with
  inline SVG charts (no JavaScript, no network).
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from pathlib import Path

from validation.money import cny, to_fen, yuan

from .context import Exchange
from .history import build_history
from .ledger.store import b64
from .ledger.verify import verified_events
from .rewards.compute import compute_rewards
from .rewards.policy import load_policy
from .washtrade import detect


def _checkpoint_and_events(ex: Exchange, tree_size: int | None):
    """The checkpoint of ``tree_size`` (default: the latest signed one — a report never
    signs or writes anything) and its entries, verified against its signed root."""
    return verified_events(ex.ledger, lambda: ex.signer.verifier_key, tree_size)


def rewards_report(
    ex: Exchange, year: int, *, policy_path: str | Path | None = None, tree_size: int | None = None
) -> dict:
    """The reward report of ``year`` from the checkpoint of ``tree_size`` (default: the
    latest signed checkpoint), computed only from entries that hash to its signed root."""
    policy = load_policy(policy_path)
    cp, events = _checkpoint_and_events(ex, tree_size)
    return compute_rewards(events, cp, policy, year)


def wash_flags(
    ex: Exchange, *, policy_path: str | Path | None = None, tree_size: int | None = None
) -> dict:
    policy = load_policy(policy_path)
    cp, events = _checkpoint_and_events(ex, tree_size)
    h = build_history(events, cp.tree_size)
    return {
        "checkpoint": {"tree_size": cp.tree_size, "root": b64(cp.root), "note": cp.note},
        "flags": [f.to_dict() for f in detect(h, policy)],
    }


def rewards_csv(rep: dict) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(
        ["record", "year", "checkpoint_size", "org", "credit_code", "group", "trades",
         "eligible_cny", "reward_cny", "capped_reward_cny", "ledger_index", "order", "seller",
         "buyer", "dataset", "amount_cny", "date", "eligible", "contribution_cny",
         "excluded_because"]
    )  # fmt: skip
    y, size = rep["year"], rep["checkpoint"]["tree_size"]
    for e in rep["enterprises"]:
        w.writerow(
            ["enterprise", y, size, e["org"], e["credit_code"], e["group"], e["trades"],
             e["eligible_cny"], e["reward_cny"], e["capped_reward_cny"]] + [""] * 10
        )  # fmt: skip
    for t in rep["transactions"]:
        w.writerow(
            ["transaction", y, size, t["beneficiary"], "", "", "", "", "", "", t["ledger_index"],
             t["order"], t["seller"], t["buyer"], t["dataset"], t["amount_cny"], t["date"] or "",
             "yes" if t["eligible"] else "no", t["contribution_cny"],
             "; ".join(f"{r['code']}: {r['detail']}" for r in t["excluded_because"])]
        )  # fmt: skip
    return buf.getvalue()


def yearly_summary(
    ex: Exchange, year: int, *, policy_path: str | Path | None = None, tree_size: int | None = None
) -> dict:
    rep = rewards_report(ex, year, policy_path=policy_path, tree_size=tree_size)
    in_year = [t for t in rep["transactions"] if t["date"] and t["date"].startswith(str(year))]
    by_domain: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    by_ent: dict[str, dict] = {}
    by_month = [[0, 0] for _ in range(12)]
    for t in in_year:
        fen = to_fen(t["amount_cny"])
        by_domain[t["domain"] or "-"][0] += 1
        by_domain[t["domain"] or "-"][1] += fen
        m = int(t["date"][5:7]) - 1
        by_month[m][0] += 1
        by_month[m][1] += fen
        for role, org in (("bought", t["buyer"]), ("sold", t["seller"])):
            e = by_ent.setdefault(org, {"org": org, "bought_cny": 0, "sold_cny": 0, "trades": 0})
            e[f"{role}_cny"] += fen
            e["trades"] += 1
    rewards = {e["org"]: e for e in rep["enterprises"]}
    for org, e in by_ent.items():
        r = rewards.get(org)
        e["reward_cny"] = r["reward_cny"] if r else "0.00"
        e["capped_reward_cny"] = r["capped_reward_cny"] if r else "0.00"
    # per reason, the number of trades it excludes (a trade excluded for two related-party
    # rules counts once under related_party); and each excluded trade with all its reasons
    excluded: dict[str, int] = defaultdict(int)
    excluded_trades = []
    for t in in_year:
        if not t["excluded_because"]:
            continue
        for family in sorted({r["code"].split(":")[0] for r in t["excluded_because"]}):
            excluded[family] += 1
        excluded_trades.append(
            {
                "ledger_index": t["ledger_index"],
                "order": t["order"],
                "date": t["date"],
                "seller": t["seller"],
                "buyer": t["buyer"],
                "amount_cny": t["amount_cny"],
                "reasons": [r["code"] for r in t["excluded_because"]],
            }
        )
    return {
        "year": year,
        "checkpoint": rep["checkpoint"],
        "policy_sha256": rep["policy"]["sha256"],
        "totals": {**rep["totals"], "flags": len(rep["flags"])},
        "by_month": [
            {"month": f"{year}-{i + 1:02d}", "trades": c, "volume_cny": cny(v)}
            for i, (c, v) in enumerate(by_month)
        ],
        "by_domain": [
            {"domain": d, "trades": c, "volume_cny": cny(v)}
            for d, (c, v) in sorted(by_domain.items())
        ],
        "by_enterprise": [
            {**e, "bought_cny": cny(e["bought_cny"]), "sold_cny": cny(e["sold_cny"])}
            for _, e in sorted(by_ent.items())
        ],
        "exclusions": dict(sorted(excluded.items())),
        "excluded_trades": excluded_trades,
        "rewards": rep["enterprises"],
        "flags": rep["flags"],
        "transactions": rep["transactions"],
    }


def write_yearly_report(
    ex: Exchange,
    year: int,
    out: Path,
    *,
    policy_path: str | Path | None = None,
    tree_size: int | None = None,
) -> list[Path]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    s = yearly_summary(ex, year, policy_path=policy_path, tree_size=tree_size)
    out.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    p = out / f"exchange-{year}.json"
    p.write_text(
        json.dumps(s, ensure_ascii=False, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    files.append(p)
    tx_rows = [
        {
            "year": year,
            "checkpoint_size": s["checkpoint"]["tree_size"],
            "ledger_index": t["ledger_index"],
            "order": t["order"],
            "seller": t["seller"],
            "buyer": t["buyer"],
            "dataset": t["dataset"],
            "domain": t["domain"],
            "amount_cny": t["amount_cny"],
            "date": t["date"] or "",
            "eligible": t["eligible"],
            "contribution_cny": t["contribution_cny"],
            "excluded_because": "; ".join(r["code"] for r in t["excluded_because"]),
        }
        for t in s["transactions"]
    ]
    tables = {
        "transactions": tx_rows,
        "enterprises": s["by_enterprise"],
        "domains": s["by_domain"],
        "months": s["by_month"],
        "rewards": s["rewards"],
    }
    for name, rows in tables.items():
        tbl = pa.Table.from_pylist(rows) if rows else pa.table({"empty": pa.array([], pa.string())})
        pq.write_table(tbl, out / f"exchange-{year}-{name}.parquet", compression="zstd")
        files.append(out / f"exchange-{year}-{name}.parquet")
        buf = io.StringIO()
        if rows:
            w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
        (out / f"exchange-{year}-{name}.csv").write_text(buf.getvalue(), encoding="utf-8")
        files.append(out / f"exchange-{year}-{name}.csv")
    p = out / f"exchange-{year}.html"
    p.write_text(render_html(s), encoding="utf-8")
    files.append(p)
    return files


def _bars(items: list[tuple[str, float]], *, width: int = 640, unit: str = "¥") -> str:
    """A horizontal bar chart as inline SVG."""
    if not items:
        return "<p>(no data)</p>"
    top = max(v for _, v in items) or 1
    row, label_w = 22, 200
    h = row * len(items) + 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{h}" role="img">']
    for i, (label, v) in enumerate(items):
        y = 5 + i * row
        w = int((width - label_w - 120) * v / top)
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{html.escape(label)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1)}" height="16" fill="#2b6cb0"/>'
            f'<text x="{label_w + w + 6}" y="{y + 15}" font-size="12">{unit}{v:,.2f}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def render_html(s: dict) -> str:
    esc = html.escape
    t = s["totals"]
    cp = s["checkpoint"]
    months = [(m["month"][5:], to_fen(m["volume_cny"]) / 100) for m in s["by_month"]]
    domains = [(d["domain"], to_fen(d["volume_cny"]) / 100) for d in s["by_domain"]]
    rewards = [(r["org"], to_fen(r["capped_reward_cny"]) / 100) for r in s["rewards"]]

    def table(rows: list[dict], cols: list[str]) -> str:
        head = "".join(f"<th>{esc(c)}</th>" for c in cols)
        body = "".join(
            "<tr>" + "".join(f"<td>{esc(str(r.get(c, '')))}</td>" for c in cols) + "</tr>"
            for r in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    tx = [
        {
            **x,
            "reason": "; ".join(f"{r['code']} ({r['detail']})" for r in x["excluded_because"]),
        }
        for x in s["transactions"]
        if x["date"] and x["date"].startswith(str(s["year"]))
    ]
    excluded = [{**x, "reasons": "; ".join(x["reasons"])} for x in s["excluded_trades"]]
    flags = [
        {**f, "entries": ", ".join(map(str, f["indices"])), "who": " ".join(f["parties"])}
        for f in s["flags"]
    ]
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8">
<title>南沙数据交易年度报告 {s["year"]} — nsdx exchange report</title>
<style>
body{{font-family:system-ui,"Noto Sans CJK SC",sans-serif;margin:2em;max-width:1100px;color:#1a202c}}
table{{border-collapse:collapse;margin:1em 0;font-size:13px}}
td,th{{border:1px solid #cbd5e0;padding:4px 8px;text-align:left}} th{{background:#edf2f7}}
.kpi{{display:inline-block;margin:0 2em 1em 0}} .kpi b{{font-size:1.6em;display:block}}
pre{{background:#f7fafc;padding:1em;font-size:12px;overflow:auto}}
</style></head><body>
<h1>南沙数据交易年度报告 {s["year"]}<br><small>Nansha data exchange — yearly report</small></h1>
<div class="kpi"><b>{t["trades_in_year"]}</b>trades</div>
<div class="kpi"><b>{esc(yuan(to_fen(t["volume_cny"])))}</b>volume</div>
<div class="kpi"><b>{t["eligible_trades"]}</b>eligible for reward</div>
<div class="kpi"><b>{esc(yuan(to_fen(t["capped_reward_cny"])))}</b>rewards (after caps)</div>
<div class="kpi"><b>{t["flags"]}</b>wash-trade flags</div>
<h2>Volume by month</h2>{_bars(months)}
<h2>Volume by domain</h2>{_bars(domains)}
{table(s["by_domain"], ["domain", "trades", "volume_cny"])}
<h2>Rewards by enterprise (after caps)</h2>{_bars(rewards)}
{table(s["rewards"], ["org", "credit_code", "group", "trades", "eligible_cny", "reward_cny", "capped_reward_cny"])}
<h2>Enterprises</h2>
{table(s["by_enterprise"], ["org", "trades", "sold_cny", "bought_cny", "reward_cny", "capped_reward_cny"])}
<h2>Exclusions</h2>
<p>{len(s["excluded_trades"])} trade(s) excluded; a trade excluded for several reasons is
counted once under each.</p>
{table([{"reason": k, "trades": v} for k, v in s["exclusions"].items()], ["reason", "trades"])}
{table(excluded, ["ledger_index", "date", "seller", "buyer", "amount_cny", "reasons"])}
<h2>Wash-trade flags</h2>
{table(flags, ["kind", "entries", "who", "detail"])}
<h2>Transactions</h2>
{table(tx, ["ledger_index", "date", "seller", "buyer", "dataset", "amount_cny", "contribution_cny", "reason"])}
<h2>Provenance</h2>
<p>Computed only from the ledger entries covered by this signed checkpoint (tree size
{cp["tree_size"]}); policy sha256 <code>{esc(s["policy_sha256"])}</code>. Check it with
<code>nsdx audit verify</code> and recompute with
<code>nsdx audit report --year {s["year"]} --at {cp["tree_size"]}</code>.</p>
<pre>{esc(cp["note"])}</pre>
</body></html>
"""
