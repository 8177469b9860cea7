"""datasets.yaml: the declaration of what a deployment publishes.

``load_specs(path)`` parses and checks the file and returns one :class:`DatasetSpec` per
dataset. Every mistake is reported with the file, line and column of the offending node.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from validation.messages import Msg
from validation.money import InvalidAmount, to_fen

from .errors import ConfigError
from .storage.base import reserved_prefix

ID_RE = re.compile(r"^[a-z0-9-]{2,100}$")
# A table name (a GTFS member's file name) becomes a storage folder and a SQL view name:
# the rule of dataset ids, with '_' and capitals (GTFS names such as stop_times).
TABLE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
FORMATS = ("csv", "json", "ndjson", "xlsx", "parquet", "gtfs")
ACCESS = ("open", "restricted")
ON_INVALID = ("fail", "warn", "quarantine_rows")
SCHEMA_CHANGES = ("refuse", "allow")
NUL_BYTES = ("refuse", "strip")
# A GTFS feed member (or any archive member) may unpack to at most this many bytes, at most
# this many times its compressed size: the largest real feeds (all of a country's buses,
# stop_times.txt ~2-3 GB, deflate ratio ~5-12) fit with room to spare; a zip bomb does not.
MAX_UNPACKED_BYTES = 8 << 30
MAX_COMPRESSION_RATIO = 100
TYPES = (
    "string",
    "integer",
    "int32",
    "float",
    "boolean",
    "timestamp",
    "timestamptz",
    "date",
    "time",
    "decimal",
    "geometry",
)
#: GB/T 43697-2024 grades (数据分级): when in doubt, the higher.
GRADES = ("general", "important", "core")
PII_KINDS = ("plate", "phone", "id_card", "name", "address", "free_text", "none")
PII_TREATMENTS = ("hmac", "drop", "keep")


@dataclass(frozen=True)
class FieldSpec:
    name: str
    type: str | None = None  # None: infer
    pii: str | None = None  # plate | phone | id_card | name | address | free_text | none
    pii_treatment: str = "hmac"  # hmac (keyed token) | drop | keep (restricted data only)
    format: str | None = None  # strptime format for timestamps/dates, e.g. "%d/%m/%Y"
    description: str | None = None
    unit: str | None = None
    sensitive: bool = False  # sensitive personal information (PIPL art. 28): ID numbers...


@dataclass(frozen=True)
class SourceSpec:
    path: str
    format: str
    encoding: str = "auto"
    delimiter: str | None = None  # None: sniff
    skip_rows: int = 0
    thousands: str | None = None
    currency: tuple[str, ...] = ()  # csv: signs removed from numbers ("¥", "$", "HK$")
    percent: bool = False  # csv: a trailing % removed from numbers (12.5% is 12.5)
    null_values: tuple[str, ...] = ()
    date_formats: tuple[str, ...] = ()
    day_first: bool = False
    sheet: str | int | None = None  # xlsx
    tables: tuple[str, ...] = ()  # gtfs: limit to these files (without .txt)
    base_dir: Path = Path(".")
    # a symlinked source is read only when it points inside base_dir (or one of these roots);
    # ``follow_symlinks: true`` reads it wherever it points
    follow_symlinks: bool = False
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES  # gtfs: per member, after unzipping
    max_compression_ratio: float = MAX_COMPRESSION_RATIO  # gtfs: per member
    nul_bytes: str = "refuse"  # refuse | strip (csv/json text fields holding U+0000)

    def resolve(self) -> list[Path] | str:
        """Local paths matching ``path`` (a glob is allowed), or the URL untouched."""
        if "://" in self.path:
            return self.path
        p = Path(self.path)
        if not p.is_absolute():
            p = self.base_dir / p
        if any(ch in self.path for ch in "*?["):
            return sorted(p.parent.glob(p.name))
        return [p]


@dataclass(frozen=True)
class DatasetSpec:
    id: str
    title: str
    domain: str
    organization: str
    source: SourceSpec
    title_en: str | None = None
    notes: str | None = None
    notes_en: str | None = None
    licence: str = "CC-BY-4.0"
    access: str = "open"
    tags: tuple[str, ...] = ()
    schema: tuple[FieldSpec, ...] = ()
    expectations: tuple[dict, ...] = ()
    on_invalid: str = "fail"
    attribution: str | None = None
    source_url: str | None = None
    price_fen: int | None = None  # the list price (datasets.yaml price_cny), in fen
    extras: dict = field(default_factory=dict)
    allow_empty: bool = False  # may a version have 0 rows?
    schema_changes: str = "refuse"  # refuse | allow (type changes / removed columns)
    # classification (GB/T 43697-2024) for the cross-border rules (exchange.crossborder)
    grade: str = "general"  # general | important | core
    data_category: str | None = None  # the data category within the domain (negative lists)
    sensitive_pi: bool = False  # holds sensitive personal information
    line: int | None = None  # where it is declared, for messages
    # built from what the catalogue keeps (an upload: catalogue.jobs.spec_for_upload), so
    # publishing it does not write its columns and checks back over a newer declaration
    from_catalogue: bool = False
    organization_title: str | None = None  # from the top-level `organizations:` list
    organization_contact: dict = field(default_factory=dict)  # email, url, phone (ditto)

    @property
    def has_pi(self) -> bool:
        """Whether published data holds personal information: a column declared with a
        personal-data kind that is not dropped (masked tokens are still personal
        information: they single a person out)."""
        return (
            any(f.pii and f.pii != "none" and f.pii_treatment != "drop" for f in self.schema)
            or self.sensitive_pi
        )

    @property
    def sql_schema(self) -> str:
        return self.domain.replace("-", "_")

    @property
    def sql_name(self) -> str:
        return self.id.replace("-", "_")

    def field(self, name: str) -> FieldSpec | None:
        for f in self.schema:
            if f.name == name:
                return f
        return None


def _mark(node: yaml.Node | None) -> tuple[int | None, int | None]:
    if node is None:
        return None, None
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Ctx:
    def __init__(self, file: str):
        self.file = file

    def err(self, node: yaml.Node | None, message: str, hint: str | None = None) -> ConfigError:
        line, col = _mark(node)
        return ConfigError(message, file=self.file, line=line, column=col, hint=hint)


def _child(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    for k, v in mapping.value:
        if k.value == key:
            return v
    return None


def load_specs(path: str | Path) -> list[DatasetSpec]:
    """Parse datasets.yaml at ``path``; raise :class:`ConfigError` naming line and column."""
    path = Path(path)
    ctx = _Ctx(str(path))
    if not path.exists():
        raise ConfigError(
            "file not found",
            file=str(path),
            hint="create datasets.yaml (see README 'datasets.yaml reference') or set NSDX_DATASETS",
        )
    text = path.read_text(encoding="utf-8")
    return parse_specs(text, file=str(path), base_dir=path.parent, _ctx=ctx)


def parse_specs(
    text: str, *, file: str = "datasets.yaml", base_dir: Path = Path("."), _ctx: _Ctx | None = None
) -> list[DatasetSpec]:
    ctx = _ctx or _Ctx(file)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        raise ConfigError(
            f"not valid YAML: {e.problem}",
            file=file,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
        ) from None
    if root is None or not isinstance(root, yaml.MappingNode):
        raise ctx.err(root, "expected a mapping with a 'datasets:' list")
    ds_node = _child(root, "datasets")
    if not isinstance(ds_node, yaml.SequenceNode):
        raise ctx.err(ds_node or root, "expected 'datasets:' to be a list of datasets")
    doc = yaml.safe_load(text)
    data = doc["datasets"]
    orgs = _organizations(ctx, _child(root, "organizations"), doc.get("organizations"))
    specs: list[DatasetSpec] = []
    seen: dict[str, int] = {}
    for node, raw in zip(ds_node.value, data, strict=True):
        spec = _dataset(ctx, node, raw, base_dir)
        if spec.id in seen:
            raise ctx.err(
                _child(node, "id"),
                f"dataset id {spec.id!r} is declared twice (first at line {seen[spec.id]})",
                hint="ids must be unique",
            )
        seen[spec.id] = spec.line or 0
        if spec.organization in orgs:
            title, contact = orgs[spec.organization]
            spec = replace(spec, organization_title=title, organization_contact=contact)
        specs.append(spec)
    return specs


ORG_KEYS = ("name", "title", "email", "url", "phone")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _organizations(ctx: _Ctx, node, raw) -> dict[str, tuple[str, dict]]:
    """Optional top-level list: ``organizations: [{name: slug, title: 南沙区交通运输局,
    email: data@…, url: https://…, phone: …}]`` — title and contact point of each."""
    if raw is None:
        return {}
    if not isinstance(raw, list) or not all(isinstance(o, dict) for o in raw):
        raise ctx.err(node, "organizations: must be a list of {name:, title:} mappings")
    out = {}
    for onode, o in zip(node.value, raw, strict=True):
        if not o.get("name") or not ID_RE.fullmatch(str(o["name"])):
            raise ctx.err(onode, "each organisation needs a name: matching [a-z0-9-]{2,100}")
        for k, _v in onode.value:
            if k.value not in ORG_KEYS:
                raise ctx.err(k, f"unknown key {k.value!r} in an organisation",
                              hint=f"known keys: {', '.join(ORG_KEYS)}")  # fmt: skip
        contact = {k: str(o[k]).strip() for k in ("email", "url", "phone") if o.get(k)}
        if "email" in contact and not EMAIL_RE.fullmatch(contact["email"]):
            raise ctx.err(_child(onode, "email"), f"email {contact['email']!r} is not an address")
        if "url" in contact and not contact["url"].startswith(("https://", "http://")):
            raise ctx.err(_child(onode, "url"), "url: must start with https:// or http://")
        out[str(o["name"])] = (str(o.get("title") or o["name"]), contact)
    return out


def _require(ctx: _Ctx, node: yaml.MappingNode, raw: dict, key: str, what: str) -> Any:
    if key not in raw or raw[key] in (None, ""):
        raise ctx.err(node, f"{what} is missing its '{key}:'", hint=f"add '{key}:' to this entry")
    return raw[key]


def _choice(ctx: _Ctx, node, raw: dict, key: str, allowed: tuple, default: Any) -> Any:
    value = raw.get(key, default)
    if value not in allowed:
        raise ctx.err(
            _child(node, key) or node,
            f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}",
        )
    return value


def _dataset(ctx: _Ctx, node: yaml.Node, raw: Any, base_dir: Path) -> DatasetSpec:
    if not isinstance(node, yaml.MappingNode) or not isinstance(raw, dict):
        raise ctx.err(node, "each dataset must be a mapping (id:, title:, source: ...)")
    ds_id = str(_require(ctx, node, raw, "id", "dataset"))
    if not ID_RE.fullmatch(ds_id):
        raise ctx.err(
            _child(node, "id"),
            f"id {ds_id!r} must match [a-z0-9-]{{2,100}}",
            hint="use lower-case letters, digits and '-', e.g. nansha-bus-gps",
        )
    if "--" in ds_id:  # its view would be <a>__<b>: the name of a table or a version's view
        raise ctx.err(
            _child(node, "id"),
            f"id {ds_id!r} must not contain '--'",
            hint="in query view names '--' becomes '__', which separates a dataset from its "
            "tables (<id>__<table>) and versions (<id>__v<N>): use a single '-'",
        )
    what = f"dataset {ds_id!r}"
    title = str(_require(ctx, node, raw, "title", what))
    domain = str(_require(ctx, node, raw, "domain", what))
    if not re.fullmatch(r"[a-z][a-z0-9-]*", domain):
        raise ctx.err(_child(node, "domain"), f"domain {domain!r} must be lower-case words and '-'")
    org = str(_require(ctx, node, raw, "organization", what))
    if not ID_RE.fullmatch(org):
        raise ctx.err(
            _child(node, "organization"),
            f"organization {org!r} must match [a-z0-9-]{{2,100}}",
            hint="use lower-case letters, digits and '-', e.g. nansha-transport-bureau "
            "(the organisation names the storage folder <org>/<dataset>/)",
        )
    if reserved_prefix(org):
        raise ctx.err(
            _child(node, "organization"),
            f"organization {org!r} is a name the store keeps for itself",
            hint="choose another name for the organisation (it names the storage folder "
            "<org>/<dataset>/)",
        )
    src_raw = _require(ctx, node, raw, "source", what)
    src_node = _child(node, "source")
    if not isinstance(src_raw, dict):
        raise ctx.err(src_node, "source: must be a mapping with path: and format:")
    source = _source(ctx, src_node, src_raw, base_dir, what)
    schema = tuple(_fields(ctx, _child(node, "schema"), raw.get("schema") or [], what))
    exps_raw = raw.get("expectations") or []
    if not isinstance(exps_raw, list) or not all(isinstance(e, dict) for e in exps_raw):
        raise ctx.err(_child(node, "expectations"), "expectations: must be a list of mappings")
    known = {
        "id",
        "title",
        "title_en",
        "notes",
        "notes_en",
        "description",
        "domain",
        "organization",
        "licence",
        "license",
        "licence_url",
        "spatial",
        "temporal",
        "access",
        "tags",
        "source",
        "schema",
        "expectations",
        "on_invalid",
        "attribution",
        "source_url",
        "price_cny",
        "extras",
        "allow_empty",
        "schema_changes",
        "grade",
        "data_category",
        "sensitive_pi",
    }
    for k, _v in node.value:
        if k.value not in known:
            raise ctx.err(
                k, f"unknown key {k.value!r} in {what}", hint=f"known keys: {sorted(known)}"
            )
    tags = raw.get("tags") or []
    if isinstance(tags, str):
        tags = [t.strip() for t in tags.split(",") if t.strip()]
    return DatasetSpec(
        id=ds_id,
        title=title,
        title_en=raw.get("title_en"),
        notes=raw.get("notes") or raw.get("description"),
        notes_en=raw.get("notes_en"),
        domain=domain,
        organization=org,
        licence=str(raw.get("licence") or raw.get("license") or "CC-BY-4.0"),
        access=_choice(ctx, node, raw, "access", ACCESS, "open"),
        tags=tuple(str(t) for t in tags),
        source=source,
        schema=schema,
        expectations=tuple(exps_raw),
        on_invalid=_choice(ctx, node, raw, "on_invalid", ON_INVALID, "fail"),
        attribution=raw.get("attribution"),
        source_url=raw.get("source_url"),
        price_fen=_price(ctx, node, raw),
        extras={**dict(raw.get("extras") or {}), **_coverage(ctx, node, raw)},
        allow_empty=_bool(ctx, node, raw, "allow_empty", False),
        schema_changes=_choice(ctx, node, raw, "schema_changes", SCHEMA_CHANGES, "refuse"),
        grade=_choice(ctx, node, raw, "grade", GRADES, "general"),
        data_category=_category(ctx, node, raw),
        sensitive_pi=_bool(ctx, node, raw, "sensitive_pi", False)
        or any(f.sensitive for f in schema),
        line=_mark(node)[0],
    )


def _category(ctx: _Ctx, node, raw: dict) -> str | None:
    v = raw.get("data_category")
    if v is None:
        return None
    if not isinstance(v, str) or not 0 < len(v.strip()) <= 100:
        raise ctx.err(
            _child(node, "data_category") or node,
            f"data_category: {str(v)[:40]!r} must be text of 1 to 100 characters",
        )
    return v.strip()


def _price(ctx: _Ctx, node, raw: dict) -> int | None:
    """``price_cny`` read exactly from the YAML text (``2800.10`` is never a binary float):
    whole fen, not negative, finite."""
    if raw.get("price_cny") is None:
        return None
    pnode = _child(node, "price_cny")
    text = pnode.value if isinstance(pnode, yaml.ScalarNode) else None
    if text is None or isinstance(raw["price_cny"], bool):
        raise ctx.err(pnode or node, "price_cny: write the list price as a number of yuan")
    try:
        return to_fen(str(text), what="price_cny")
    except InvalidAmount as e:
        raise ctx.err(pnode, e.message, hint=e.hint) from None


def _coverage(ctx: _Ctx, node, raw: dict) -> dict[str, str]:
    """Declared licence URL and coverage, kept as the extras CKAN's DCAT extension reads:
    ``license_url``; ``spatial: [west, south, east, north]`` (WGS-84 degrees) as a GeoJSON
    polygon; ``temporal: [start, end]`` (ISO dates or times) as temporal_start/_end. Coverage
    computed from the published data (timestamp, longitude/latitude columns) comes first."""
    out: dict[str, str] = {}
    url = raw.get("licence_url")
    if url is not None:
        if not str(url).startswith(("https://", "http://")):
            raise ctx.err(_child(node, "licence_url"), "licence_url: must be an http(s) URL")
        out["license_url"] = str(url)
    box = raw.get("spatial")
    if box is not None:
        try:
            w, s, e, n = (float(v) for v in box)
            ok = -180 <= w <= e <= 180 and -90 <= s <= n <= 90
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ctx.err(
                _child(node, "spatial"),
                "spatial: must be [west, south, east, north] in WGS-84 degrees",
                hint="e.g. spatial: [113.3, 22.55, 113.7, 22.95]",
            )
        import json

        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        out["spatial"] = json.dumps({"type": "Polygon", "coordinates": [ring]})
    period = raw.get("temporal")
    if period is not None:
        from datetime import date, datetime

        def iso(v) -> str:
            if isinstance(v, datetime | date):
                return v.isoformat()
            return (datetime.fromisoformat(str(v)) if "T" in str(v) or " " in str(v)
                    else date.fromisoformat(str(v))).isoformat()  # fmt: skip

        try:
            start, end = (iso(v) for v in period)
            ok = start <= end
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ctx.err(
                _child(node, "temporal"),
                "temporal: must be [start, end], ISO dates or times, start first",
                hint="e.g. temporal: [2024-01-01, 2024-12-31]",
            )
        out["temporal_start"], out["temporal_end"] = start, end
    return out


def _source(ctx: _Ctx, node, raw: dict, base_dir: Path, what: str) -> SourceSpec:
    path = str(_require(ctx, node, raw, "path", f"source of {what}"))
    fmt = _choice(ctx, node, raw, "format", FORMATS, None)
    nulls = raw.get("null_values") or ()
    if isinstance(nulls, str):
        nulls = (nulls,)
    dates = raw.get("date_formats") or ()
    if isinstance(dates, str):
        dates = (dates,)
    delim = raw.get("delimiter")
    if delim is not None and (not isinstance(delim, str) or len(delim) != 1):
        raise ctx.err(_child(node, "delimiter"), f"delimiter must be one character, got {delim!r}")
    tables = raw.get("tables") or ()
    for k, _v in node.value:
        if k.value not in SOURCE_KEYS:
            raise ctx.err(
                k,
                f"unknown key {k.value!r} in the source of {what}",
                hint=f"known keys: {sorted(SOURCE_KEYS)}",
            )
    return SourceSpec(
        path=path,
        format=fmt,
        encoding=str(raw.get("encoding") or "auto"),
        delimiter=delim,
        skip_rows=int(raw.get("skip_rows") or 0),
        thousands=_thousands(ctx, node, raw),
        currency=_currency(ctx, node, raw),
        percent=_bool(ctx, node, raw, "percent", False),
        null_values=tuple(str(v) for v in nulls),
        date_formats=tuple(str(v) for v in dates),
        day_first=bool(raw.get("day_first", False)),
        sheet=raw.get("sheet"),
        tables=tuple(tables),
        base_dir=base_dir,
        follow_symlinks=_bool(ctx, node, raw, "follow_symlinks", False),
        max_unpacked_bytes=_positive(ctx, node, raw, "max_unpacked_bytes", MAX_UNPACKED_BYTES),
        max_compression_ratio=_positive(
            ctx, node, raw, "max_compression_ratio", MAX_COMPRESSION_RATIO
        ),
        nul_bytes=_choice(ctx, node, raw, "nul_bytes", NUL_BYTES, "refuse"),
    )


SOURCE_KEYS = {
    "path",
    "format",
    "encoding",
    "delimiter",
    "skip_rows",
    "thousands",
    "currency",
    "percent",
    "null_values",
    "date_formats",
    "day_first",
    "sheet",
    "tables",
    "follow_symlinks",
    "max_unpacked_bytes",
    "max_compression_ratio",
    "nul_bytes",
}


def _thousands(ctx: _Ctx, node, raw: dict) -> str | None:
    value = raw.get("thousands")
    if value is None:
        return None
    if value not in (",", ".", " ", "'", "\u00a0", "\u202f"):
        raise ctx.err(
            _child(node, "thousands") or node,
            f"thousands: {value!r} is not a thousands separator",
            hint="use one of ',' '.' ' ' or \"'\" (the full-width '，' is read as ',')",
        )
    return str(value)


_CURRENCY_RE = re.compile(r"^[^\w\s]{1,4}$|^[A-Z]{1,3}\$$")


def valid_currency(sym: str) -> bool:
    """A currency sign as declared in datasets.yaml: 1-4 signs (``¥``, ``$``, ``€``), or up
    to three capitals and ``$`` (``HK$``, ``US$``)."""
    return bool(_CURRENCY_RE.match(sym))


def _currency(ctx: _Ctx, node, raw: dict) -> tuple[str, ...]:
    value = raw.get("currency")
    if value is None:
        return ()
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(
        isinstance(v, str) and valid_currency(v) for v in values
    ):
        raise ctx.err(
            _child(node, "currency") or node,
            f"currency: {value!r} must be a sign or a list of signs such as '¥', '$', 'HK$'",
            hint="the signs are removed from numbers before they are read",
        )
    return tuple(values)


def _bool(ctx: _Ctx, node, raw: dict, key: str, default: bool) -> bool:
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ctx.err(_child(node, key) or node, f"{key}: must be true or false, not {value!r}")
    return value


def _positive(ctx: _Ctx, node, raw: dict, key: str, default):
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ctx.err(_child(node, key) or node, f"{key}: must be a positive number, not {value!r}")
    return value


def _fields(ctx: _Ctx, node, raw: list, what: str) -> list[FieldSpec]:
    """``schema:`` of datasets.yaml: :func:`fields_from_list`, its refusal placed at the
    line and column of the offending node."""
    try:
        return fields_from_list(raw)
    except FieldError as e:
        fnode = (
            node.value[e.index]
            if isinstance(node, yaml.SequenceNode)
            and e.index is not None
            and e.index < len(node.value)
            else node
        )
        at = _child(fnode, e.key) if e.key and isinstance(fnode, yaml.MappingNode) else None
        raise ctx.err(at or fnode, str(e.reason)) from None


#: bounds of one declaration (datasets.yaml, the Action API, the portal's form)
MAX_COLUMNS = 1000
MAX_TEXT = 2000  # a description, a unit, a timestamp format
MAX_NAME = 200  # a column name


class FieldError(ValueError):
    """One entry of a ``schema:`` declaration is refused: its position, the key at fault
    (None: the whole entry) and the reason (a :class:`validation.messages.Msg`)."""

    def __init__(self, index: int | None, key: str | None, reason: str) -> None:
        super().__init__(str(reason))
        self.index, self.key, self.reason = index, key, reason


def fields_from_list(raw: Any) -> list[FieldSpec]:
    """The columns a dataset declares (``schema:`` of datasets.yaml, ``schema`` of the
    Action API's package_create/package_patch and of the portal's form): one rule for every
    surface. Raises :class:`FieldError` on the first refused entry."""
    fields, problems = check_fields(raw)
    if problems:
        raise problems[0]
    return fields


def check_fields(raw: Any) -> tuple[list[FieldSpec], list[FieldError]]:
    """:func:`fields_from_list` that goes on past a refused entry: the columns and every
    refusal (a form marks each refused row)."""
    if not isinstance(raw, list):
        return [], [
            FieldError(None, None, Msg("schema: must be a list of {name:, type:} mappings"))
        ]
    if len(raw) > MAX_COLUMNS:
        return [], [FieldError(None, None, Msg("At most %(n)s columns.", n=MAX_COLUMNS))]
    out: list[FieldSpec] = []
    problems: list[FieldError] = []
    seen: set[str] = set()
    for i, f in enumerate(raw):
        try:
            fs = field_from_dict(f, i)
        except FieldError as e:
            problems.append(e)
            continue
        if fs.name in seen:
            problems.append(
                FieldError(i, "name", Msg("Column %(name)s is declared twice.", name=fs.name))
            )
        seen.add(fs.name)
        out.append(fs)
    return out, problems


def field_from_dict(f: Any, i: int | None = None) -> FieldSpec:
    """One declared column, checked (see :func:`fields_from_list`)."""
    if not isinstance(f, dict) or not isinstance(f.get("name"), str | int) or f.get("name") == "":
        raise FieldError(i, None, Msg("each schema entry needs at least name:"))
    name = str(f["name"])
    if len(name) > MAX_NAME or name != name.strip() or any(ord(ch) < 32 for ch in name):
        raise FieldError(
            i,
            "name",
            Msg(
                "A column name has at most %(n)s characters, no control characters and no "
                "spaces around it.",
                n=MAX_NAME,
            ),
        )
    ftype = f.get("type")
    if ftype is not None and (
        not isinstance(ftype, str) or (ftype not in TYPES and not ftype.startswith("decimal("))
    ):
        raise FieldError(
            i,
            "type",
            Msg(
                "type %(type)s of column %(name)s is not one of %(choices)s",
                type=repr(ftype),
                name=repr(name),
                choices=", ".join(TYPES),
            ),
        )
    pii = f.get("pii")
    if pii is not None and pii not in PII_KINDS:
        raise FieldError(
            i,
            "pii",
            Msg(
                "pii %(pii)s is not one of %(choices)s", pii=repr(pii), choices=", ".join(PII_KINDS)
            ),
        )
    treat = f.get("pii_treatment", f.get("mask", "hmac"))
    if treat not in PII_TREATMENTS:
        raise FieldError(
            i,
            "pii_treatment",
            Msg(
                "pii_treatment %(treatment)s is not one of %(choices)s",
                treatment=repr(treat),
                choices=", ".join(PII_TREATMENTS),
            ),
        )
    sensitive = f.get("sensitive", False)
    if not isinstance(sensitive, bool):
        raise FieldError(i, "sensitive", Msg("sensitive: must be true or false"))
    if sensitive and (pii is None or pii == "none"):
        raise FieldError(
            i,
            "sensitive",
            Msg(
                "Only a column declared as personal data (pii: a kind other than none) can be "
                "sensitive personal information."
            ),
        )
    texts = {}
    for k in ("format", "description", "unit"):
        v = f.get(k)
        if v is not None and (not isinstance(v, str) or len(v) > MAX_TEXT):
            raise FieldError(
                i, k, Msg("%(key)s: must be text of at most %(n)s characters", key=k, n=MAX_TEXT)
            )
        texts[k] = v or None
    return FieldSpec(
        name=name,
        type=ftype,
        pii=pii,
        pii_treatment=treat,
        format=texts["format"],
        description=texts["description"],
        unit=texts["unit"],
        sensitive=sensitive,
    )


def field_to_dict(f: FieldSpec) -> dict[str, Any]:
    """A declared column as datasets.yaml writes it (only the keys that are set): what the
    catalogue keeps and the Action API shows; :func:`field_from_dict` reads it back."""
    d: dict[str, Any] = {"name": f.name}
    for k in ("type", "pii", "format", "description", "unit"):
        if getattr(f, k) is not None:
            d[k] = getattr(f, k)
    if f.pii and f.pii != "none":
        d["pii_treatment"] = f.pii_treatment
        if f.sensitive:
            d["sensitive"] = True
    return d
