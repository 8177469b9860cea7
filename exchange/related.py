"""Related parties (关联方): buyer and seller of a rewarded trade must not be related.

Two enterprises are related when any enabled rule holds: the same corporate group; a
shared actual controller; a shareholder in common, or one holding shares in the other;
the same legal representative; the same registered address, phone or bank account
(phones and bank accounts are compared as keyed fingerprints — the ledger never holds
the numbers). Text is compared after NFKC normalisation without spaces, case-folded.
"""

from __future__ import annotations

from validation.messages import Msg

from .trade import norm_text


def _identities(f: dict) -> set[str]:
    """Names an enterprise is known by in shareholder lists."""
    return {
        x
        for x in (
            norm_text(f.get("org")),
            norm_text(f.get("legal_name")),
            norm_text(f.get("credit_code")),
        )
        if x
    }


def related_reasons(a: dict, b: dict, rules: tuple[str, ...]) -> list[dict]:
    """Why enterprises ``a`` and ``b`` (ledger facts) are related, one dict per rule hit."""
    out: list[dict] = []

    def hit(rule: str, detail: str) -> None:  # a Msg: translatable by a surface
        if rule in rules:
            out.append({"code": f"related_party:{rule}", "detail": detail})

    if a.get("corporate_group") and a.get("corporate_group") == b.get("corporate_group"):
        hit("same_group", Msg("both in group '%(group)s'", group=a["corporate_group"]))
    shared = set(a.get("controllers") or ()) & set(b.get("controllers") or ())
    if shared:
        hit(
            "shared_controller",
            Msg("shared controller(s): %(names)s", names=", ".join(sorted(shared))),
        )
    sa, sb = set(a.get("shareholders") or ()), set(b.get("shareholders") or ())
    overlap = sa & sb
    cross = (sa & _identities(b)) | (sb & _identities(a))
    if overlap or cross:
        if overlap and cross:
            why = Msg(
                "shared shareholder(s): %(names)s; one holds shares in the other: %(cross)s",
                names=", ".join(sorted(overlap)),
                cross=", ".join(sorted(cross)),
            )
        elif overlap:
            why = Msg("shared shareholder(s): %(names)s", names=", ".join(sorted(overlap)))
        else:
            why = Msg("one holds shares in the other: %(cross)s", cross=", ".join(sorted(cross)))
        hit("shareholder_overlap", why)
    if a.get("legal_representative") and a["legal_representative"] == b.get("legal_representative"):
        hit(
            "same_legal_representative",
            Msg("same legal representative: %(who)s", who=a["legal_representative"]),
        )
    if a.get("registered_address") and a["registered_address"] == b.get("registered_address"):
        hit(
            "same_address", Msg("same registered address: %(where)s", where=a["registered_address"])
        )
    if a.get("phone_fp") and a["phone_fp"] == b.get("phone_fp"):
        hit("same_phone", Msg("same phone number"))
    if a.get("bank_account_fp") and a["bank_account_fp"] == b.get("bank_account_fp"):
        hit("same_bank_account", Msg("same bank account"))
    return out


class Clusters:
    """Union-find of enterprises joined by any related-party rule (for the wash-trade
    graph: a cycle that closes through a related party is still a cycle)."""

    def __init__(self, enterprises: dict[str, dict], rules: tuple[str, ...]) -> None:
        self.parent = {o: o for o in enterprises}
        names = sorted(enterprises)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                if related_reasons(enterprises[a], enterprises[b], rules):
                    self.union(a, b)

    def find(self, x: str) -> str:
        self.parent.setdefault(x, x)
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            lo, hi = sorted((ra, rb))
            self.parent[hi] = lo
