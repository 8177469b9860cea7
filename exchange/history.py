"""The trade history as the ledger records it: rebuilt from leaves [0, tree_size) only.

Rewards, flags and reports read this, never the working tables, so a report computed
from a checkpoint can be recomputed bit for bit from the same checkpoint later.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date


@dataclass
class Trade:
    order: str
    index: int  # ledger index of order.placed
    buyer: str
    seller: str
    dataset: str
    domain: str
    amount_fen: int
    channel: str
    other_support: bool
    ordered_on: date
    paid_on: date | None = None
    payment_index: int | None = None
    refunded_fen: int = 0
    refund_indices: list[int] = field(default_factory=list)

    def day(self, basis: str = "paid_on") -> date | None:
        return self.paid_on if basis == "paid_on" else self.ordered_on


@dataclass
class History:
    tree_size: int
    enterprises: dict[str, dict]  # org -> facts (latest registration up to tree_size)
    trades: dict[str, Trade]  # order id -> trade
    events: int

    def paid(self) -> list[Trade]:
        return sorted(
            (t for t in self.trades.values() if t.paid_on is not None), key=lambda t: t.index
        )


def build_history(events: list[dict], tree_size: int) -> History:
    ents: dict[str, dict] = {}
    trades: dict[str, Trade] = {}
    for e in events:
        kind = e["type"]
        if kind in ("enterprise.registered", "enterprise.updated"):
            ents[e["org"]] = {k: v for k, v in e.items() if k not in ("type", "at", "actor")}
        elif kind == "order.placed":
            trades[e["order"]] = Trade(
                order=e["order"],
                index=e["index"],
                buyer=e["buyer"],
                seller=e["seller"],
                dataset=e["dataset"],
                domain=e.get("domain") or "",
                amount_fen=int(e["amount_fen"]),
                channel=e.get("channel") or "exchange",
                other_support=bool(e.get("other_support")),
                ordered_on=date.fromisoformat(e.get("ordered_on") or e["at"][:10]),
            )
        elif kind == "payment.confirmed" and e["order"] in trades:
            t = trades[e["order"]]
            t.paid_on = date.fromisoformat(e["paid_on"])
            t.payment_index = e["index"]
        elif kind == "refund.issued" and e["order"] in trades:
            t = trades[e["order"]]
            t.refunded_fen += int(e["amount_fen"])
            t.refund_indices.append(e["index"])
    return History(tree_size=tree_size, enterprises=ents, trades=trades, events=len(events))
