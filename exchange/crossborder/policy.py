"""The cross-border policy (YAML), read like the reward policy: defaults in
``exchange/policy/crossborder.yaml``; a deployment passes its own file with ``--policy`` or
``NSDX_CROSSBORDER_POLICY``. Every rule is required: a missing, unknown or contradictory
rule is a :class:`PolicyError` naming it. ``sha256`` (of the canonical JSON of the parsed
policy) goes into every decision event."""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..errors import PolicyError
from ..ledger.canonical import canonical_json
from .regions import PROVINCES, REGIONS

DEFAULT_POLICY = Path(__file__).resolve().parent.parent / "policy" / "crossborder.yaml"
EVIDENCE_KINDS = ("filing", "gba_filing", "pia", "certification", "approval")
MAX_COUNT = 10**12


@dataclass(frozen=True)
class NegativeEntry:
    domain: str
    categories: tuple[str, ...]

    def covers(self, domain: str, category: str | None) -> bool:
        return self.domain == domain and ("*" in self.categories or category in self.categories)


@dataclass(frozen=True)
class EvidenceFormat:
    pattern: str
    example: str


@dataclass(frozen=True)
class CrossBorderPolicy:
    version: str
    exempt_below: int
    assessment_from: int
    sensitive_assessment_from: int
    ciio_requires_assessment: bool
    gba_enabled: bool
    gba_cities: tuple[str, ...]
    gba_partners: tuple[str, ...]
    gba_filing_working_days: int
    ftz_enabled: bool
    ftz_divisions: tuple[str, ...]
    negative_list: tuple[NegativeEntry, ...]
    evidence: dict[str, EvidenceFormat]
    source: str = ""

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "personal_information": {
                "exempt_below": self.exempt_below,
                "assessment_from": self.assessment_from,
                "sensitive_assessment_from": self.sensitive_assessment_from,
                "ciio_requires_assessment": self.ciio_requires_assessment,
            },
            "gba": {
                "enabled": self.gba_enabled,
                "cities": list(self.gba_cities),
                "partners": list(self.gba_partners),
                "filing_working_days": self.gba_filing_working_days,
            },
            "free_trade_zone": {
                "enabled": self.ftz_enabled,
                "divisions": list(self.ftz_divisions),
                "negative_list": [
                    {"domain": e.domain, "categories": list(e.categories)}
                    for e in self.negative_list
                ],
            },
            "evidence": {
                k: {"pattern": v.pattern, "example": v.example} for k, v in self.evidence.items()
            },
        }

    @property
    def sha256(self) -> str:
        return hashlib.sha256(canonical_json(self.to_dict())).hexdigest()


def load_policy(path: str | Path | None = None) -> CrossBorderPolicy:
    """The policy in ``path``, else in NSDX_CROSSBORDER_POLICY, else the built-in one."""
    p = Path(path or os.environ.get("NSDX_CROSSBORDER_POLICY") or DEFAULT_POLICY)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise PolicyError(
            f"cannot read the cross-border policy {p}: {e.strerror}", file=str(p)
        ) from None
    except yaml.YAMLError as e:
        raise PolicyError(f"{p}: not valid YAML: {e}", file=str(p)) from None
    return parse_policy(raw, source=str(p))


def parse_policy(raw: Any, source: str = "") -> CrossBorderPolicy:
    where = source or "cross-border policy"

    def bad(msg: str, field: str) -> PolicyError:
        return PolicyError(
            f"{where}: {field}: {msg}",
            hint=f"compare with the defaults in {DEFAULT_POLICY.name} (docs/exchange.md)",
            file=source,
            field=field,
        )

    def section(d: Any, key: str, keys: tuple[str, ...], path: str = "") -> dict:
        name = f"{path}{key}"
        if not isinstance(d, dict):
            raise bad("expected a mapping", path.rstrip(".") or "policy")
        if key not in d:
            raise bad("missing", name)
        v = d[key]
        if not isinstance(v, dict):
            raise bad("expected a mapping", name)
        missing = [k for k in keys if k not in v]
        if missing:
            raise bad("missing", f"{name}.{missing[0]}")
        unknown = sorted(map(str, set(v) - set(keys)))
        if unknown:
            raise bad("unknown key", f"{name}.{unknown[0]}")
        return v

    def count(v: Any, field: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not 0 < v <= MAX_COUNT:
            raise bad(f"{v!r} must be a whole number from 1 to {MAX_COUNT}", field)
        return v

    def flag(v: Any, field: str) -> bool:
        if not isinstance(v, bool):
            raise bad(f"{v!r} must be true or false", field)
        return v

    def strings(v: Any, field: str, pattern: str = r".{1,100}") -> tuple[str, ...]:
        if not isinstance(v, list) or not all(
            isinstance(x, str) and re.fullmatch(pattern, x) for x in v
        ):
            raise bad("expected a list of strings", field)
        return tuple(v)

    if not isinstance(raw, dict):
        raise bad("expected a mapping of rules", "policy")
    top = ("version", "personal_information", "gba", "free_trade_zone", "evidence")
    for k in top:
        if k not in raw:
            raise bad("missing", k)
    unknown = sorted(map(str, set(raw) - set(top)))
    if unknown:
        raise bad("unknown key", unknown[0])
    if not isinstance(raw["version"], str | int) or not str(raw["version"]).strip():
        raise bad("give the policy a version label", "version")
    pi = section(
        raw,
        "personal_information",
        (
            "exempt_below",
            "assessment_from",
            "sensitive_assessment_from",
            "ciio_requires_assessment",
        ),
    )
    exempt = count(pi["exempt_below"], "personal_information.exempt_below")
    assess = count(pi["assessment_from"], "personal_information.assessment_from")
    sens = count(pi["sensitive_assessment_from"], "personal_information.sensitive_assessment_from")
    if exempt > assess:
        raise bad(
            f"{exempt} is above assessment_from ({assess}): a count could be both exempt and "
            "need a security assessment",
            "personal_information.exempt_below",
        )
    if sens > assess:
        raise bad(
            f"{sens} is above assessment_from ({assess}): sensitive PI would be treated more "
            "leniently than other PI",
            "personal_information.sensitive_assessment_from",
        )
    gba = section(raw, "gba", ("enabled", "cities", "partners", "filing_working_days"))
    partners = strings(gba["partners"], "gba.partners")
    if set(partners) - {"hong-kong", "macao"}:
        raise bad(f"partners are hong-kong and/or macao, not {list(partners)}", "gba.partners")
    cities = strings(gba["cities"], "gba.cities", r"[0-9]{4}")
    if any(c[:2] not in PROVINCES for c in cities):
        raise bad("each city is a four-digit GB/T 2260 code, e.g. 4401", "gba.cities")
    days = gba["filing_working_days"]
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 365:
        raise bad(f"{days!r} must be a whole number from 1 to 365", "gba.filing_working_days")
    if flag(gba["enabled"], "gba.enabled") and not (cities and partners):
        raise bad("an enabled GBA route needs cities and partners", "gba.cities")
    ftz = section(raw, "free_trade_zone", ("enabled", "divisions", "negative_list"))
    divisions = strings(ftz["divisions"], "free_trade_zone.divisions", r"[0-9]{6}")
    entries = []
    if not isinstance(ftz["negative_list"], list):
        raise bad("expected a list of {domain, categories}", "free_trade_zone.negative_list")
    for i, e in enumerate(ftz["negative_list"]):
        f = f"free_trade_zone.negative_list[{i}]"
        if not isinstance(e, dict) or set(e) != {"domain", "categories"}:
            raise bad("each entry is {domain: ..., categories: [...]}", f)
        if not isinstance(e["domain"], str) or not re.fullmatch(r"[a-z0-9-]{1,100}", e["domain"]):
            raise bad(f"domain {e['domain']!r} is not a domain name", f"{f}.domain")
        cats = strings(e["categories"], f"{f}.categories")
        if not cats:
            raise bad("list the categories, or '*' for all", f"{f}.categories")
        entries.append(NegativeEntry(e["domain"], cats))
    if flag(ftz["enabled"], "free_trade_zone.enabled") and not divisions:
        raise bad("an enabled free-trade-zone rule needs the zone's divisions", "free_trade_zone")
    ev = section(raw, "evidence", EVIDENCE_KINDS)
    formats: dict[str, EvidenceFormat] = {}
    for k in EVIDENCE_KINDS:
        f = f"evidence.{k}"
        v = ev[k]
        if not isinstance(v, dict) or set(v) != {"pattern", "example"}:
            raise bad("expected {pattern: ..., example: ...}", f)
        pat, ex = v["pattern"], v["example"]
        if not isinstance(pat, str) or not 0 < len(pat) <= 200:
            raise bad("the pattern is a regular expression of at most 200 characters", f)
        try:
            rx = re.compile(pat)
        except re.error as e:
            raise bad(f"the pattern is not a regular expression: {e}", f) from None
        if not isinstance(ex, str) or not rx.fullmatch(ex):
            raise bad(f"the example {ex!r} does not match its own pattern", f)
        formats[k] = EvidenceFormat(pat, ex)
    assert set(REGIONS) >= set(partners)
    return CrossBorderPolicy(
        version=str(raw["version"]),
        exempt_below=exempt,
        assessment_from=assess,
        sensitive_assessment_from=sens,
        ciio_requires_assessment=flag(
            pi["ciio_requires_assessment"], "personal_information.ciio_requires_assessment"
        ),
        gba_enabled=gba["enabled"],
        gba_cities=cities,
        gba_partners=partners,
        gba_filing_working_days=days,
        ftz_enabled=ftz["enabled"],
        ftz_divisions=divisions,
        negative_list=tuple(entries),
        evidence=formats,
        source=source,
    )
