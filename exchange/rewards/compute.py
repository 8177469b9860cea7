"""Compute the data-transaction reward for one year from a signed checkpoint.

Only ledger leaves [0, tree_size) of the named checkpoint are read, so the same checkpoint
always gives the same report (byte for byte as JSON: no clock, no database order).

Per trade (paid orders; unpaid ones are listed as ``unpaid``), the exclusion rules in order:
``outside_year``, ``not_exchange_trade``, ``refunded``, ``stacking``, ``below_minimum``,
``not_in_district``, ``related_party:<rule>``, ``wash_trade:<kind>``. A trade with no
reason contributes ``amount × rate`` to its beneficiary (the buyer by default).

Per corporate group (an enterprise without a group is its own group): contracts are summed
over the year, so splitting a contract cannot beat the cap; the group's reward is capped at
``annual_cap_per_group`` and at what is left of ``programme_cap_per_group`` after the capped
rewards of earlier programme years (computed by the same rules from the same checkpoint);
the capped amount is shared among the group's enterprises in proportion to their rewards
(largest remainder, in fen).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from validation.messages import Msg
from validation.money import cny, grouped, rate_of

from ..history import History, Trade, build_history
from ..ledger.store import Checkpoint, b64
from ..related import related_reasons
from ..washtrade import Flag, detect
from .policy import Policy


@dataclass
class _Year:
    transactions: list[dict]
    enterprises: dict[str, dict]
    groups: dict[str, dict]


def _group_of(f: dict | None, org: str) -> str:
    if f and f.get("corporate_group"):
        return f["corporate_group"]
    return Msg("%(org)s (no group)", org=org)


def _reasons(t: Trade, year: int, h: History, p: Policy, flags_by_order: dict) -> list[dict]:
    r: list[dict] = []
    day = t.day(p.date_basis)
    if day is None:
        return [{"code": "unpaid", "detail": Msg("no payment confirmed")}]
    if day.year != year:
        r.append(
            {
                "code": "outside_year",
                "detail": Msg("%(basis)s %(day)s", basis=p.date_basis, day=day.isoformat()),
            }
        )
    if p.only_exchange_trades and t.channel != "exchange":
        r.append(
            {"code": "not_exchange_trade", "detail": Msg("channel %(channel)s", channel=t.channel)}
        )
    if p.exclude_refunded and t.refunded_fen:
        r.append(
            {
                "code": "refunded",
                "detail": Msg(
                    "¥%(amount)s refunded (ledger %(entries)s)",
                    amount=grouped(t.refunded_fen),
                    entries=", ".join(map(str, t.refund_indices)),
                ),
            }
        )
    if p.no_stacking and t.other_support:
        r.append({"code": "stacking", "detail": Msg("the contract declared other public support")})
    if t.amount_fen < p.min_contract_fen:
        r.append(
            {
                "code": "below_minimum",
                "detail": Msg("below ¥%(min)s", min=grouped(p.min_contract_fen)),
            }
        )
    buyer, seller = h.enterprises.get(t.buyer), h.enterprises.get(t.seller)
    ben = t.buyer if p.beneficiary == "buyer" else t.seller
    who = {
        "buyer": [t.buyer],
        "seller": [t.seller],
        "beneficiary": [ben],
        "both": [t.buyer, t.seller],
    }[p.district_party]
    for org in who:
        f = h.enterprises.get(org)
        if not (f and f.get("in_nansha")):
            r.append(
                {
                    "code": "not_in_district",
                    "detail": Msg("%(org)s is not registered in the district", org=org),
                }
            )
    if buyer and seller:
        r.extend(related_reasons(buyer, seller, tuple(p.related_party)))
    for fl in flags_by_order.get(t.order, ()):
        if fl.kind in p.wash_trade.exclude:
            r.append({"code": f"wash_trade:{fl.kind}", "detail": fl.detail})
    return r


def _share(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split ``total`` fen in proportion to ``weights`` (largest remainder, ties by name)."""
    wsum = sum(weights.values())
    if wsum == 0:
        return {k: 0 for k in weights}
    base = {k: total * w // wsum for k, w in weights.items()}
    rest = total - sum(base.values())
    order = sorted(weights, key=lambda k: (-(total * weights[k] % wsum), k))
    for k in order[:rest]:
        base[k] += 1
    return base


def _year(
    h: History, p: Policy, year: int, flags: list[Flag], prior_capped: dict[str, int]
) -> _Year:
    flags_by_order: dict[str, list[Flag]] = defaultdict(list)
    for fl in flags:
        for o in fl.orders:
            flags_by_order[o].append(fl)
    txs: list[dict] = []
    elig: dict[str, int] = defaultdict(int)
    n_trades: dict[str, int] = defaultdict(int)
    for t in sorted(h.trades.values(), key=lambda t: t.index):
        reasons = _reasons(t, year, h, p, flags_by_order)
        ben = t.buyer if p.beneficiary == "buyer" else t.seller
        ok = not reasons
        if ok:
            elig[ben] += t.amount_fen
            n_trades[ben] += 1
        day = t.day(p.date_basis)
        txs.append(
            {
                "order": t.order,
                "ledger_index": t.index,
                "buyer": t.buyer,
                "seller": t.seller,
                "dataset": t.dataset,
                "domain": t.domain,
                "amount_cny": cny(t.amount_fen),
                "date": day.isoformat() if day else None,
                "beneficiary": ben,
                "eligible": ok,
                "contribution_cny": cny(rate_of(t.amount_fen, p.rate_d)) if ok else "0.00",
                "excluded_because": reasons,
            }
        )
    ents: dict[str, dict] = {}
    groups: dict[str, dict] = {}
    for org in sorted(elig):
        f = h.enterprises.get(org) or {}
        g = _group_of(f, org)
        reward = rate_of(elig[org], p.rate_d)
        ents[org] = {
            "org": org,
            "credit_code": f.get("credit_code"),
            "legal_name": f.get("legal_name"),
            "group": g,
            "trades": n_trades[org],
            "eligible_fen": elig[org],
            "reward_fen": reward,
        }
        grp = groups.setdefault(g, {"group": g, "members": [], "eligible_fen": 0, "reward_fen": 0})
        grp["members"].append(org)
        grp["eligible_fen"] += elig[org]
    for g, grp in groups.items():
        # contracts summed per group: the group's reward is rate x its summed contracts
        grp["reward_fen"] = rate_of(grp["eligible_fen"], p.rate_d)
        annual = min(grp["reward_fen"], p.annual_cap_fen)
        prior = prior_capped.get(g, 0)
        left = max(0, p.programme_cap_fen - prior)
        grp["annual_capped_fen"] = annual
        grp["prior_years_fen"] = prior
        grp["programme_left_fen"] = left
        grp["capped_fen"] = min(annual, left)
        grp["cap_applied"] = (
            "programme" if left < annual else "annual" if annual < grp["reward_fen"] else None
        )
        shares = _share(grp["capped_fen"], {m: ents[m]["reward_fen"] for m in grp["members"]})
        for m, v in shares.items():
            ents[m]["capped_reward_fen"] = v
    return _Year(txs, ents, groups)


def compute_rewards(events: list[dict], checkpoint: Checkpoint, policy: Policy, year: int) -> dict:
    """The reward report of ``year`` from the ledger leaves of ``checkpoint``."""
    events = [e for e in events if e["index"] < checkpoint.tree_size]
    h = build_history(events, checkpoint.tree_size)
    flags = detect(h, policy)
    prior: dict[str, int] = defaultdict(int)
    for y in range(policy.programme_start_year, year):
        py = _year(h, policy, y, flags, dict(prior))
        for g, grp in py.groups.items():
            prior[g] += grp["capped_fen"]
    cur = _year(h, policy, year, flags, dict(prior))
    in_year = [t for t in cur.transactions if t["date"] and t["date"][:4] == str(year)]
    return {
        "year": year,
        "programme": policy.programme,
        "policy": {**policy.to_dict(), "sha256": policy.sha256},
        "checkpoint": {
            "tree_size": checkpoint.tree_size,
            "root": b64(checkpoint.root),
            "note": checkpoint.note,
        },
        "totals": {
            "trades_in_year": len(in_year),
            "volume_cny": cny(
                sum(
                    t.amount_fen
                    for t in h.trades.values()
                    if (day := t.day(policy.date_basis)) is not None and day.year == year
                )
            ),
            "eligible_trades": sum(1 for t in cur.transactions if t["eligible"]),
            "eligible_cny": cny(sum(e["eligible_fen"] for e in cur.enterprises.values())),
            "reward_cny": cny(sum(e["reward_fen"] for e in cur.enterprises.values())),
            "capped_reward_cny": cny(sum(g["capped_fen"] for g in cur.groups.values())),
        },
        "enterprises": [
            {
                "org": e["org"],
                "credit_code": e["credit_code"],
                "legal_name": e["legal_name"],
                "group": e["group"],
                "trades": e["trades"],
                "eligible_cny": cny(e["eligible_fen"]),
                "reward_cny": cny(e["reward_fen"]),
                "capped_reward_cny": cny(e["capped_reward_fen"]),
            }
            for e in cur.enterprises.values()
        ],
        "groups": [
            {
                "group": g["group"],
                "members": g["members"],
                "eligible_cny": cny(g["eligible_fen"]),
                "reward_cny": cny(g["reward_fen"]),
                "annual_capped_cny": cny(g["annual_capped_fen"]),
                "prior_years_cny": cny(g["prior_years_fen"]),
                "programme_left_cny": cny(g["programme_left_fen"]),
                "capped_reward_cny": cny(g["capped_fen"]),
                "cap_applied": g["cap_applied"],
            }
            for g in sorted(cur.groups.values(), key=lambda g: g["group"])
        ],
        "transactions": cur.transactions,
        "flags": [f.to_dict() for f in flags],
    }
