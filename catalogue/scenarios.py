"""Application scenarios (应用场景库): what AI firms build over the zone's published data.

A scenario has a title and a description in Chinese and English, a sector, the datasets it
uses (each at a version, or the current one), an example query over them, an evaluation
task where one exists (a metric and a held-out split defined by a query over published
data), who proposed it, and a status. One place writes them (:func:`save_scenarios`, from
``scenarios.yaml`` through ``nsdx scenario load``) and one renders them
(:func:`scenario_dict`); the CKAN API shows them as groups (``group_list``, ``group_show``,
a dataset's ``groups``, ``fq=groups:NAME``), the portal at ``/scenario/NAME`` and as a
search facet, and the exchange requires one for every registered product
(:mod:`exchange.registration`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from .errors import CatalogueError
from .models import Dataset, Scenario, ScenarioDataset, Version, utcnow
from .registry import Catalogue, find_dataset

# sector id -> (Chinese, English)
SECTORS: dict[str, tuple[str, str]] = {
    "traffic-signal": ("交通信号优化", "traffic-signal optimisation"),
    "bus-arrival": ("公交到站预测", "bus-arrival prediction"),
    "low-altitude": ("低空飞行安全", "low-altitude flight safety"),
    "city-management": ("城市管理工单派单", "city-management case routing"),
    "mobility-demand": ("出行需求预测", "travel-demand forecasting"),
    "logistics": ("港航物流", "port and logistics"),
    "other": ("其他", "other"),
}
# proposed: open for comment; open: data ready, firms may work on it; closed: finished
STATUSES = ("proposed", "open", "closed")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,99}$")
MAX_SCENARIOS = 1000  # per file
MAX_DATASETS = 50  # per scenario
FIELDS = frozenset(
    "name title title_en description description_en sector proposer status datasets "
    "query evaluation".split()
)
EVAL_FIELDS = frozenset("metric description split_query".split())


class ScenarioError(CatalogueError):
    """A scenario (or scenarios.yaml) that cannot be saved: says which entry and field."""

    status = 422


class ScenarioNotFound(CatalogueError):
    status = 404


@dataclass
class ScenarioSpec:
    name: str
    title: str
    title_en: str
    sector: str
    proposer: str
    description: str = ""
    description_en: str = ""
    status: str = "open"
    datasets: list[tuple[str, int | None]] = field(default_factory=list)
    query: str = ""
    evaluation: dict[str, str] = field(default_factory=dict)
    line: int | None = None  # where it starts in its file


def _text(v: Any, where: str, limit: int, *, required: bool = False) -> str:
    if v is None:
        v = ""
    if not isinstance(v, str):
        raise ScenarioError(f"{where}: must be text, not {type(v).__name__}")
    v = v.strip()
    if required and not v:
        raise ScenarioError(f"{where}: missing", hint="every scenario needs it")
    if len(v) > limit:
        raise ScenarioError(f"{where}: longer than {limit} characters")
    return v


def _dataset_ref(v: Any, where: str) -> tuple[str, int | None]:
    """``nansha-bus-gps``, ``nansha-bus-gps@2`` or ``{id: ..., version: 2}``."""
    if isinstance(v, dict):
        unknown = set(v) - {"id", "version"}
        if unknown:
            raise ScenarioError(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
        name, ver = v.get("id"), v.get("version")
    elif isinstance(v, str):
        name, _, raw = v.partition("@")
        ver = raw or None
    else:
        raise ScenarioError(f"{where}: a dataset id, 'id@version' or {{id, version}}")
    name = _text(name, f"{where} id", 100, required=True)
    if ver is not None:
        try:
            ver = int(ver)
        except (TypeError, ValueError):
            raise ScenarioError(f"{where}: version {ver!r} is not a whole number") from None
        if not 1 <= ver <= 2**31 - 1:
            raise ScenarioError(f"{where}: version {ver} is out of range")
    return name, ver


def parse_scenario(raw: Any, where: str = "scenario", line: int | None = None) -> ScenarioSpec:
    """One scenario from a mapping (a scenarios.yaml entry or an API body), checked."""
    if not isinstance(raw, dict):
        raise ScenarioError(f"{where}: expected a mapping of field: value")
    unknown = set(map(str, raw)) - FIELDS
    if unknown:
        raise ScenarioError(
            f"{where}: unknown field(s) {', '.join(sorted(unknown))}",
            hint="fields: " + ", ".join(sorted(FIELDS)),
        )
    name = _text(raw.get("name"), f"{where} name", 100, required=True)
    where = f"{where} ({name})"
    if not NAME_RE.fullmatch(name) or "--" in name:
        raise ScenarioError(
            f"{where}: the name must be 2-100 characters of a-z, 0-9 and '-' (no '--')"
        )
    sector = _text(raw.get("sector"), f"{where} sector", 50, required=True)
    if sector not in SECTORS:
        raise ScenarioError(
            f"{where}: unknown sector {sector!r}", hint="sectors: " + ", ".join(SECTORS)
        )
    status = _text(raw.get("status") or "open", f"{where} status", 20)
    if status not in STATUSES:
        raise ScenarioError(f"{where}: status {status!r} is not one of {', '.join(STATUSES)}")
    refs = raw.get("datasets") or []
    if not isinstance(refs, list) or not refs:
        raise ScenarioError(f"{where}: datasets: list the datasets the scenario uses")
    if len(refs) > MAX_DATASETS:
        raise ScenarioError(f"{where}: more than {MAX_DATASETS} datasets")
    datasets = [_dataset_ref(r, f"{where} datasets[{i}]") for i, r in enumerate(refs)]
    if len({n for n, _ in datasets}) != len(datasets):
        raise ScenarioError(f"{where}: a dataset is listed twice")
    ev = raw.get("evaluation") or {}
    if not isinstance(ev, dict):
        raise ScenarioError(f"{where} evaluation: expected metric, description, split_query")
    bad = set(map(str, ev)) - EVAL_FIELDS
    if bad:
        raise ScenarioError(
            f"{where} evaluation: unknown field(s) {', '.join(sorted(bad))}",
            hint="fields: " + ", ".join(sorted(EVAL_FIELDS)),
        )
    evaluation = {k: _text(ev.get(k), f"{where} evaluation.{k}", 10_000) for k in ev}
    if evaluation and not (evaluation.get("metric") and evaluation.get("split_query")):
        raise ScenarioError(
            f"{where} evaluation: needs a metric and a split_query (the held-out split, "
            "a SELECT over published data)"
        )
    query = _text(raw.get("query"), f"{where} query", 10_000)
    for what, sql in (("query", query), ("evaluation.split_query", evaluation.get("split_query"))):
        if sql:
            _check_sql(sql, f"{where} {what}")
    return ScenarioSpec(
        name=name,
        title=_text(raw.get("title"), f"{where} title", 300, required=True),
        title_en=_text(raw.get("title_en"), f"{where} title_en", 300, required=True),
        description=_text(raw.get("description"), f"{where} description", 10_000),
        description_en=_text(raw.get("description_en"), f"{where} description_en", 10_000),
        sector=sector,
        proposer=_text(raw.get("proposer"), f"{where} proposer", 300, required=True),
        status=status,
        datasets=datasets,
        query=query,
        evaluation=evaluation,
        line=line,
    )


def _check_sql(sql: str, where: str) -> None:
    """A scenario's queries are single SELECTs over the catalogue's views (the query API's
    own parse-tree check), so anyone may run them where they may read the data."""
    from .sql_guard import check_select

    try:
        check_select(sql)
    except CatalogueError as e:
        raise ScenarioError(f"{where}: {e.message}", hint=e.hint) from None


def load_file(path: Path | str) -> list[ScenarioSpec]:
    """The scenarios of a ``scenarios.yaml`` (``scenarios:`` list); errors name the file
    and the line of the entry."""
    p = Path(path)
    try:
        if p.stat().st_size > 4 * 1024 * 1024:
            raise ScenarioError(f"{p}: larger than 4 MiB")
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ScenarioError(
            f"cannot read {p}: {e.strerror}", hint="give the path of scenarios.yaml"
        ) from None
    except UnicodeDecodeError:
        raise ScenarioError(f"{p}: not UTF-8 text") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ScenarioError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("scenarios"), list):
        raise ScenarioError(f"{p}: expected a mapping with a 'scenarios:' list")
    lines: list[int | None] = []
    for k, v in getattr(node, "value", []):
        if getattr(k, "value", None) == "scenarios":
            lines = [item.start_mark.line + 1 for item in v.value]
    items = raw["scenarios"]
    if len(items) > MAX_SCENARIOS:
        raise ScenarioError(f"{p}: more than {MAX_SCENARIOS} scenarios")
    out = []
    for i, item in enumerate(items):
        line = lines[i] if i < len(lines) else None
        out.append(parse_scenario(item, f"{p}:{line}" if line else f"{p} entry {i + 1}", line))
    if len({s.name for s in out}) != len(out):
        raise ScenarioError(f"{p}: a scenario name is used twice")
    return out


def save_scenarios(cat: Catalogue, specs: Iterable[ScenarioSpec]) -> list[dict]:
    """Create or update scenarios by name, in one transaction: every dataset (and version)
    must exist, or nothing is saved."""
    with cat.Session.begin() as s:
        return [save_scenario(s, spec) for spec in specs]


def save_scenario(s: Session, spec: ScenarioSpec) -> dict:
    links = []
    for i, (name, ver) in enumerate(spec.datasets):
        try:
            ds = find_dataset(s, name)
        except CatalogueError:
            raise ScenarioError(
                f"scenario {spec.name}: uses dataset {name!r}, which is not in the catalogue",
                hint="publish it first (`nsdx ingest`), or correct the id",
                scenario=spec.name,
            ) from None
        if ver is not None and not s.scalar(
            select(Version.id).where(Version.dataset_id == ds.id, Version.number == ver)
        ):
            raise ScenarioError(
                f"scenario {spec.name}: dataset {name!r} has no version {ver}",
                hint=f"`nsdx datasets show {name}` lists its versions",
                scenario=spec.name,
            )
        links.append(ScenarioDataset(dataset_id=ds.id, version=ver, position=i))
    sc = s.scalar(select(Scenario).where(Scenario.name == spec.name))
    if sc is None:
        sc = Scenario(name=spec.name)
        s.add(sc)
    for attr in ("title", "title_en", "description", "description_en", "sector", "proposer",
                 "status", "query", "evaluation"):  # fmt: skip
        setattr(sc, attr, getattr(spec, attr))
    sc.modified = utcnow()
    s.flush()
    keep = {(lk.dataset_id, lk.version, lk.position) for lk in links}
    have = {(u.dataset_id, u.version, u.position) for u in sc.uses}
    if keep != have:  # only a real change re-renders the datasets (index triggers)
        sc.uses.clear()
        s.flush()
        for lk in links:
            lk.scenario_id = sc.id
            s.add(lk)
        s.flush()
        s.expire(sc, ["uses"])
    return scenario_dict(s, sc)


def get(s: Session, name: str) -> Scenario:
    sc = s.scalar(select(Scenario).where((Scenario.name == name) | (Scenario.id == name)))
    if sc is None:
        raise ScenarioNotFound(
            f"scenario {name!r} not found",
            hint="`nsdx scenario list` names them (scenarios come from `nsdx scenario load`)",
            scenario=name,
        )
    return sc


def scenario_dict(s: Session, sc: Scenario, *, visible: Iterable[str] | None = None) -> dict:
    """The scenario as every surface shows it. ``visible``: the dataset names the viewer
    may see (others are left out, as if unlisted); ``None`` lists all (local CLI)."""
    names = dict(
        s.execute(
            select(Dataset.id, Dataset.name).where(Dataset.id.in_([u.dataset_id for u in sc.uses]))
        ).all()
    )
    seen = None if visible is None else set(visible)
    datasets = [
        {"name": names[u.dataset_id], "version": u.version}
        for u in sc.uses
        if u.dataset_id in names and (seen is None or names[u.dataset_id] in seen)
    ]
    zh, en = SECTORS.get(sc.sector, (sc.sector, sc.sector))
    return {
        "id": sc.id,
        "name": sc.name,
        "title": sc.title,
        "title_en": sc.title_en,
        "description": sc.description,
        "description_en": sc.description_en,
        "sector": sc.sector,
        "sector_title": zh,
        "sector_title_en": en,
        "proposer": sc.proposer,
        "status": sc.status,
        "datasets": datasets,
        "query": sc.query,
        "evaluation": dict(sc.evaluation or {}),
        "created": sc.created.isoformat(timespec="seconds"),
        "modified": sc.modified.isoformat(timespec="seconds"),
    }


def list_scenarios(cat: Catalogue, *, sector: str | None = None) -> list[dict]:
    with cat.Session() as s:
        q = select(Scenario).order_by(Scenario.name)
        if sector:
            q = q.where(Scenario.sector == sector)
        return [scenario_dict(s, sc) for sc in s.scalars(q)]


def show(cat: Catalogue, name: str) -> dict:
    with cat.Session() as s:
        return scenario_dict(s, get(s, name))


def groups_of(s: Session, dataset_ids: list[str]) -> dict[str, list[dict]]:
    """The CKAN ``groups`` of each dataset: the scenarios that use it (in a package dict)."""
    out: dict[str, list[dict]] = {}
    if not dataset_ids:
        return out
    rows = s.execute(
        select(ScenarioDataset.dataset_id, Scenario)
        .join(Scenario, Scenario.id == ScenarioDataset.scenario_id)
        .where(ScenarioDataset.dataset_id.in_(dataset_ids))
        .order_by(Scenario.name)
    ).all()
    for ds_id, sc in rows:
        out.setdefault(ds_id, []).append(
            {
                "id": sc.id,
                "name": sc.name,
                "title": sc.title,
                "display_name": sc.title,
                "description": sc.description,
                "image_display_url": "",
            }
        )
    return out


def group_dict(d: dict, package_count: int) -> dict:
    """A scenario as a CKAN group (``group_show``/``group_list all_fields``): CKAN's fields,
    the scenario's own as extras (strings), and typed under ``nsdx``."""
    import json

    extras = {
        "title_en": d["title_en"],
        "description_en": d["description_en"],
        "sector": d["sector"],
        "proposer": d["proposer"],
        "status": d["status"],
        "query": d["query"],
        "evaluation": json.dumps(d["evaluation"], ensure_ascii=False) if d["evaluation"] else "",
        "datasets": json.dumps(d["datasets"], ensure_ascii=False),
    }
    return {
        "id": d["id"],
        "name": d["name"],
        "title": d["title"],
        "display_name": d["title"],
        "description": d["description"],
        "type": "group",
        "is_organization": False,
        "state": "active",
        "approval_status": "approved",
        "image_url": "",
        "image_display_url": "",
        "created": d["created"],
        "package_count": package_count,
        "extras": [{"key": k, "value": v} for k, v in sorted(extras.items()) if v],
        "nsdx": {"kind": "scenario", **d},
    }
