"""Cross-border data transfers (数据出境): regions, the policy, the one decision, and its
record in the ledger. See docs/exchange.md (cross-border transfers)."""

from .decide import GRADES, ROUTES, Decision, Transfer, decide
from .policy import CrossBorderPolicy, load_policy, parse_policy
from .regions import REGIONS, Region, parse_region

__all__ = [
    "GRADES",
    "REGIONS",
    "ROUTES",
    "CrossBorderPolicy",
    "Decision",
    "Region",
    "Transfer",
    "decide",
    "load_policy",
    "parse_policy",
    "parse_region",
]
