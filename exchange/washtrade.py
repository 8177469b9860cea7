"""Wash-trade detection on the trade graph and the related-party graph.

* **mirrored** — A sells to B and B sells to A within ``window_days`` at amounts within
  ``amount_tolerance_pct`` of each other: money went round and came back.
* **cycle** — A→B→…→A (length 3 to ``max_cycle_length``) within the window at similar
  amounts, where each node is a related-party cluster: a ring that closes through a
  sister company (A→B, B→A′ with A′ in A's group) is caught too.
* **split** — ``split_min_count`` or more orders of one dataset between the same buyer
  and seller within ``split_window_days``: one purchase cut into pieces.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal

from validation.messages import Msg
from validation.money import grouped

from .history import History, Trade
from .related import Clusters


@dataclass(frozen=True)
class Flag:
    kind: str  # mirrored | cycle | split
    orders: tuple[str, ...]
    indices: tuple[int, ...]
    parties: tuple[str, ...]
    detail: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["orders"], d["indices"], d["parties"] = (
            list(self.orders),
            list(self.indices),
            list(self.parties),
        )
        return d


def _similar(amounts: list[int], tol: Decimal) -> bool:
    hi, lo = max(amounts), min(amounts)
    return hi == 0 or Decimal(hi - lo) <= tol * hi


def detect(history: History, policy) -> list[Flag]:
    wt = policy.wash_trade
    basis = policy.date_basis
    trades = [t for t in history.paid() if t.day(basis) is not None]

    def day(t: Trade) -> date:
        d = t.day(basis)
        if d is None:  # pragma: no cover - undated trades were left out above
            raise ValueError(f"order {t.order} has no {basis}")
        return d

    trades.sort(key=lambda t: (day(t), t.index))
    clusters = Clusters(history.enterprises, tuple(policy.related_party))
    flags: list[Flag] = []
    seen: set[tuple[str, frozenset[str]]] = set()

    def add(kind: str, ts: list[Trade], detail: str) -> None:
        key = frozenset(t.order for t in ts)
        if (kind, key) in seen:
            return
        seen.add((kind, key))
        ts = sorted(ts, key=lambda t: t.index)
        parties = tuple(dict.fromkeys(p for t in ts for p in (t.seller, t.buyer)))
        flags.append(
            Flag(kind, tuple(t.order for t in ts), tuple(t.index for t in ts), parties, detail)
        )

    # mirrored: direct back-and-forth between two enterprises
    by_pair: dict[tuple[str, str], list[Trade]] = defaultdict(list)
    for t in trades:
        by_pair[(t.seller, t.buyer)].append(t)
    for (s, b), fwd in sorted(by_pair.items()):
        if s >= b:
            continue
        for t1 in fwd:
            for t2 in by_pair.get((b, s), ()):
                days = abs((day(t1) - day(t2)).days)
                if days <= wt.window_days and _similar(
                    [t1.amount_fen, t2.amount_fen], wt.tolerance
                ):
                    add(
                        "mirrored",
                        [t1, t2],
                        Msg(
                            "%(s)s→%(b)s ¥%(x)s and %(b)s→%(s)s ¥%(y)s %(days)s day(s) apart",
                            s=s,
                            b=b,
                            x=grouped(t1.amount_fen),
                            y=grouped(t2.amount_fen),
                            days=days,
                        ),
                    )

    # cycles over related-party clusters (length 2 through a related party, or >= 3)
    out_edges: dict[str, list[Trade]] = defaultdict(list)
    for t in trades:
        cs, cb = clusters.find(t.seller), clusters.find(t.buyer)
        if cs != cb:
            out_edges[cs].append(t)

    def dfs(start: str, node: str, path: list[Trade]) -> None:
        for t in out_edges.get(node, ()):
            if t in path:
                continue
            days = [day(x) for x in (*path, t)]
            if (max(days) - min(days)).days > wt.window_days:
                continue
            if not _similar([x.amount_fen for x in (*path, t)], wt.tolerance):
                continue
            nxt = clusters.find(t.buyer)
            cycle = [*path, t]
            if nxt == start:
                direct = len(cycle) == 2 and {cycle[0].seller, cycle[0].buyer} == {
                    cycle[1].buyer,
                    cycle[1].seller,
                }
                if not direct:  # a direct pair is reported as mirrored
                    route = "→".join([cycle[0].seller, *(x.buyer for x in cycle)])
                    add(
                        "cycle",
                        cycle,
                        Msg(
                            "%(route)s within %(days)s day(s), amounts %(amounts)s",
                            route=route,
                            days=(max(days) - min(days)).days,
                            amounts=", ".join(f"¥{grouped(x.amount_fen)}" for x in cycle),
                        ),
                    )
                continue
            visited = {clusters.find(x.seller) for x in cycle}
            if nxt in visited or len(cycle) >= wt.max_cycle_length:
                continue
            dfs(start, nxt, cycle)

    for node in sorted(out_edges):
        dfs(node, node, [])

    # split orders
    by_deal: dict[tuple[str, str, str], list[Trade]] = defaultdict(list)
    for t in trades:
        by_deal[(t.buyer, t.seller, t.dataset)].append(t)
    for (b, s, ds), ts in sorted(by_deal.items()):
        i = 0
        while i < len(ts):
            j = i
            while j + 1 < len(ts) and (day(ts[j + 1]) - day(ts[i])).days <= wt.split_window_days:
                j += 1
            group = ts[i : j + 1]
            if len(group) >= wt.split_min_count:
                total = sum(t.amount_fen for t in group)
                add(
                    "split",
                    group,
                    Msg(
                        "%(n)s orders of %(ds)s from %(s)s by %(b)s within %(days)s days, "
                        "together ¥%(total)s",
                        n=len(group),
                        ds=ds,
                        s=s,
                        b=b,
                        days=wt.split_window_days,
                        total=grouped(total),
                    ),
                )
                i = j + 1
            else:
                i += 1
    flags.sort(key=lambda f: (f.indices[0], f.kind))
    return flags
