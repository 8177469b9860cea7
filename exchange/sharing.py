"""Delta Sharing for bought data: profiles bound to an access grant, and the answers of the
Delta Sharing REST protocol (listing, metadata, query) built from the catalogue.

    profile = issue_profile(ex, buyer, order_id, endpoint="https://nsdx.example/delta-sharing/")
    # the buyer: delta_sharing.load_as_pandas(profile_file + "#order-<id>.transport.<dataset>")

Design (see ``docs/delta-sharing.md``):

* **One share per granted order.** A profile's bearer token is bound to one access grant;
  it sees one share, ``order-<order id>``, with one schema (the dataset's domain) and the
  dataset's tables: ``<dataset id>``, or ``<dataset id>__<table>`` for a dataset with several
  tables (a GTFS feed). The DuckDB view spelling (``-`` as ``_``) is accepted too.
* **Tokens** are ``dsp1.<grant>.<expiry>.<nonce>.<HMAC-SHA256>``, keyed by a secret derived
  from the deployment's ``NSDX_PII_KEY`` (so the CLI that issues and the server that checks
  agree without a new table). Every request checks the signature, the token's expiry and
  the grant in the database: unexpired, not revoked (a refund revokes), order not refunded.
* **Versions.** The table version is the catalogue's version number: the granted version for
  a fixed-version offer, the dataset's current version for "latest during the term".
* **Files** are presigned GET URLs from the object store (S3: signed for the endpoint buyers
  reach); for the local-folder store, URLs served by nsdx itself, carrying an HMAC-signed
  expiry (:func:`sign_download` / :func:`verify_download`).
* **Ledger.** Issuing a profile is one ``delivery.made`` event (``channel: delta-sharing``,
  no keys). A query is recorded as a ``delivery.made`` event (with its file keys) only the
  first time a grant receives a given table version; repeated queries of the same files are
  not recorded again, so a polling client does not flood the ledger.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session

from catalogue.db import referenced
from catalogue.errors import DatasetNotFound
from catalogue.models import Dataset, Organization, Resource, Version
from validation.messages import Msg

from .actors import Actor
from .context import Exchange
from .deliveries import covered_version, granted_order, record_delivery, record_delivery_once
from .errors import ExchangeError, InvalidRequest, InvalidState
from .grants import grant_state
from .models import Grant, Order
from .rules import bounded_number

TOKEN_PREFIX = "dsp1"
SHARE_PREFIX = "order-"
URL_SECONDS = 3600  # presigned file URLs live at most this long (and never beyond the grant)
MAX_PAGE = 1000


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _epoch_ms(dt: datetime) -> int:
    return int(dt.replace(tzinfo=UTC).timestamp() * 1000)


# -- errors -------------------------------------------------------------------------------


class SharingError(ExchangeError):
    """An error of the Delta Sharing protocol; ``code`` is its ``errorCode`` (the server
    answers ``{"errorCode", "message"}`` with ``status``; never 5xx for authentication or
    not-found: the official client retries 429/5xx for ~100 s)."""

    status = 400
    code = "INVALID_PARAMETER_VALUE"


class Unauthenticated(SharingError):
    status, code = 401, "UNAUTHENTICATED"


class Forbidden(SharingError):
    status, code = 403, "PERMISSION_DENIED"


class NotFound(SharingError):
    status, code = 404, "RESOURCE_DOES_NOT_EXIST"


class BadRequest(SharingError):
    status, code = 400, "INVALID_PARAMETER_VALUE"


# -- keys and tokens ----------------------------------------------------------------------


def _key(ex: Exchange, purpose: bytes) -> bytes:
    if not ex.pii_key:
        raise InvalidRequest(
            "no deployment secret for Delta Sharing tokens",
            hint="set NSDX_PII_KEY (or let nsdx generate one in NSDX_HOME)",
        )
    return hmac.new(ex.pii_key, b"nsdx/delta-sharing/v1/" + purpose, hashlib.sha256).digest()


def _mac(key: bytes, msg: str) -> str:
    d = hmac.new(key, msg.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(d).rstrip(b"=").decode()


def make_token(ex: Exchange, grant_id: str, expires: datetime) -> str:
    body = f"{TOKEN_PREFIX}.{grant_id}.{int(expires.replace(tzinfo=UTC).timestamp())}"
    body += f".{secrets.token_urlsafe(12).replace('.', '_')}"
    return f"{body}.{_mac(_key(ex, b'token'), body)}"


@dataclass(frozen=True)
class TokenClaims:
    grant_id: str
    expires: datetime
    nonce: str


def parse_token(ex: Exchange, token: str | None) -> TokenClaims:
    """The claims of a well-signed, unexpired token (else :class:`Unauthenticated`)."""
    if not token:
        raise Unauthenticated("send the profile's bearer token: Authorization: Bearer <token>")
    parts = token.strip().split(".")
    if len(parts) != 5 or parts[0] != TOKEN_PREFIX:
        raise Unauthenticated("the bearer token is not an nsdx Delta Sharing token")
    body = ".".join(parts[:4])
    if not hmac.compare_digest(parts[4], _mac(_key(ex, b"token"), body)):
        raise Unauthenticated("the bearer token is not valid")
    try:
        exp = datetime.fromtimestamp(int(parts[2]), UTC).replace(tzinfo=None)
    except ValueError:
        raise Unauthenticated("the bearer token is not valid") from None
    if exp <= _now():
        raise Unauthenticated(
            f"the profile expired at {exp.isoformat(timespec='seconds')}Z; "
            "ask for a new one (`nsdx exchange profile ORDER`)"
        )
    return TokenClaims(parts[1], exp, parts[3])


def token_fingerprint(token_nonce: str) -> str:
    return hashlib.sha256(token_nonce.encode()).hexdigest()[:16]


def sign_download(ex: Exchange, key: str, expires_at: int) -> str:
    """The query string of a local-store download URL: ``e=<unix expiry>&s=<HMAC>``."""
    sig = _mac(_key(ex, b"download"), f"{key}\n{expires_at}")
    return f"e={expires_at}&s={sig}"


def verify_download(ex: Exchange, key: str, e: str | None, s: str | None) -> None:
    try:
        exp = int(e or "")
    except ValueError:
        raise Forbidden("the download URL is not signed") from None
    if not s or not hmac.compare_digest(s, _mac(_key(ex, b"download"), f"{key}\n{exp}")):
        raise Forbidden("the download URL's signature does not match")
    if exp <= time.time():
        raise Forbidden("the download URL has expired; query the table again for fresh URLs")


# -- what a grant covers ------------------------------------------------------------------


@dataclass
class SharedTable:
    name: str  # dataset id, or <dataset id>__<table>
    resource_id: str
    table: str | None
    files: list[dict]
    schema: list[dict]
    rows: int


@dataclass
class GrantView:
    """A live grant seen through a token: its share, schema, version and tables."""

    grant: Grant
    order: Order
    dataset: Dataset
    buyer: str
    claims: TokenClaims
    version: int
    version_created: datetime
    tables: list[SharedTable] = field(default_factory=list)

    @property
    def share(self) -> str:
        return share_name(self.order.id)

    @property
    def schema(self) -> str:
        return self.dataset.domain

    @property
    def expires(self) -> datetime:
        return min(self.grant.expires, self.claims.expires)

    def table(self, name: str) -> SharedTable:
        for t in self.tables:
            if name in (t.name, t.name.replace("-", "_")):
                return t
        raise NotFound(f"table {name!r} is not in share {self.share!r}")


def share_name(order_id: str) -> str:
    return f"{SHARE_PREFIX}{order_id}"


def _active_grant(s: Session, grant_id: str) -> tuple[Grant, Order]:
    g = s.get(Grant, grant_id)
    if g is None:
        raise Unauthenticated("the bearer token does not belong to an access grant")
    order = referenced(s, Order, g.order_id)
    state = grant_state(g, order, _now())
    if state == "revoked":
        raise Forbidden(f"access to order {order.id} was revoked (the order was refunded)")
    if state == "expired":
        raise Forbidden(
            f"the access grant of order {order.id} expired at "
            f"{g.expires.isoformat(timespec='seconds')}Z"
        )
    if state == "not_started":
        raise Forbidden(f"the access grant of order {order.id} starts at {g.starts.isoformat()}Z")
    return g, order


def _tables(s: Session, ds: Dataset, ver: Version) -> list[SharedTable]:
    out = []
    rows = s.scalars(
        select(Resource).where(Resource.version_id == ver.id).order_by(Resource.position)
    )
    for r in rows:
        name = f"{ds.name}__{r.table}" if r.table else ds.name
        out.append(
            SharedTable(
                name=name,
                resource_id=r.id,
                table=r.table,
                files=list(r.files or []),
                schema=list(r.table_schema or []),
                rows=r.row_count or 0,
            )
        )
    return out


def _view(s: Session, claims: TokenClaims) -> GrantView:
    g, order = _active_grant(s, claims.grant_id)
    try:
        ds, ver = covered_version(s, g, order)
    except DatasetNotFound:
        raise NotFound("the granted dataset no longer exists") from None
    except InvalidState as e:
        raise NotFound(e.message) from None
    buyer = referenced(s, Organization, order.buyer_id).name
    return GrantView(g, order, ds, buyer, claims, ver.number, ver.created, _tables(s, ds, ver))


def authorize(ex: Exchange, token: str | None) -> TokenClaims:
    """Check a bearer token now (signature, expiry, and the grant in the database)."""
    claims = parse_token(ex, token)
    with ex.catalogue.Session() as s:
        _active_grant(s, claims.grant_id)
    return claims


# -- profiles -----------------------------------------------------------------------------


def issue_profile(
    ex: Exchange,
    actor: Actor,
    order_id: str,
    *,
    endpoint: str,
    days: float | None = None,
) -> dict:
    """A Delta Sharing profile for the buyer of a granted order (one ledger event).

    The token expires with the grant, or after ``days`` if sooner."""
    from . import trade

    if not endpoint.startswith(("http://", "https://")):
        raise InvalidRequest(
            f"the endpoint {endpoint!r} is not an http(s) URL",
            hint="the URL buyers reach, e.g. https://nsdx.example.cn/delta-sharing/",
        )
    endpoint = endpoint.rstrip("/") + "/"
    if not endpoint.endswith("/delta-sharing/"):
        endpoint += "delta-sharing/"
    days_ = None if days is None else bounded_number(days, "days", 0, ex.rules.max_access_days)
    with ex.ledger.transaction() as s:
        order, g, now = granted_order(
            s,
            actor,
            order_id,
            what=Msg("get a Delta Sharing profile for this order"),
            needs=Msg("Delta Sharing needs"),
        )
        expires = g.expires if days_ is None else min(g.expires, now + timedelta(days=days_))
        expires = expires.replace(microsecond=0)
        token = make_token(ex, g.id, expires)
        ds, ver = covered_version(s, g, order)
        share, schema = share_name(order.id), ds.domain
        a = record_delivery(
            ex,
            s,
            grant=g,
            order=order,
            version=ver.number,
            keys=[],
            expires=expires,
            channel="delta-sharing",
            actor=actor.name,
            detail={
                "what": "profile",
                "share": share,
                "token_fp": token_fingerprint(token.split(".")[3]),
            },
            at=now,
        )
        d = trade.order_dict(s, order)
        tables = [t.name for t in _tables(s, ds, ver)]
    profile = {
        "shareCredentialsVersion": 1,
        "endpoint": endpoint,
        "bearerToken": token,
        "expirationTime": expires.isoformat(timespec="seconds") + "Z",
    }
    return trade._receipt(
        ex,
        a,
        {
            **d,
            "profile": profile,
            "share": share,
            "tables": [f"{share}.{schema}.{t}" for t in tables],
        },
    )


# -- listing ------------------------------------------------------------------------------


def _page(items: list[dict], max_results: Any, page_token: str | None) -> dict:
    try:
        n = MAX_PAGE if max_results in (None, "") else int(max_results)
    except ValueError:
        raise BadRequest("maxResults must be an integer") from None
    if not 0 <= n <= MAX_PAGE:
        raise BadRequest(f"maxResults must be between 0 and {MAX_PAGE}")
    start = 0
    if page_token:
        try:
            start = int(base64.urlsafe_b64decode(page_token.encode() + b"==").decode())
        except (ValueError, UnicodeDecodeError):
            raise BadRequest("pageToken is not valid") from None
    if n == 0:
        n = MAX_PAGE
    chunk = items[start : start + n]
    out: dict[str, Any] = {"items": chunk}
    if start + n < len(items):
        out["nextPageToken"] = base64.urlsafe_b64encode(str(start + n).encode()).decode()
    return out


def _in_session(ex: Exchange, token: str | None, fn: Callable[[Session, GrantView], Any]):
    claims = parse_token(ex, token)
    with ex.catalogue.Session() as s:
        return fn(s, _view(s, claims))


def _share_of(v: GrantView, share: str) -> None:
    if share != v.share:
        raise NotFound(f"share {share!r} does not exist or is not shared with this profile")


def _schema_of(v: GrantView, share: str, schema: str) -> None:
    _share_of(v, share)
    if schema not in (v.schema, v.schema.replace("-", "_")):
        raise NotFound(f"schema {schema!r} is not in share {share!r}")


def _table_item(v: GrantView, t: SharedTable) -> dict:
    return {
        "name": t.name,
        "schema": v.schema,
        "share": v.share,
        "shareId": v.order.id,
        "id": t.resource_id,
    }


def list_shares(ex: Exchange, token: str | None, max_results=None, page_token=None) -> dict:
    return _in_session(
        ex,
        token,
        lambda s, v: _page([{"name": v.share, "id": v.order.id}], max_results, page_token),
    )


def get_share(ex: Exchange, token: str | None, share: str) -> dict:
    def run(s, v):
        _share_of(v, share)
        return {"share": {"name": v.share, "id": v.order.id}}

    return _in_session(ex, token, run)


def list_schemas(ex: Exchange, token, share: str, max_results=None, page_token=None) -> dict:
    def run(s, v):
        _share_of(v, share)
        return _page([{"name": v.schema, "share": v.share}], max_results, page_token)

    return _in_session(ex, token, run)


def list_tables(
    ex: Exchange, token, share: str, schema: str, max_results=None, page_token=None
) -> dict:
    def run(s, v):
        _schema_of(v, share, schema)
        return _page([_table_item(v, t) for t in v.tables], max_results, page_token)

    return _in_session(ex, token, run)


def list_all_tables(ex: Exchange, token, share: str, max_results=None, page_token=None) -> dict:
    def run(s, v):
        _share_of(v, share)
        return _page([_table_item(v, t) for t in v.tables], max_results, page_token)

    return _in_session(ex, token, run)


# -- Spark schema strings from Arrow types ------------------------------------------------

_INTS = {
    pa.int8(): "byte",
    pa.int16(): "short",
    pa.int32(): "integer",
    pa.int64(): "long",
    # unsigned: widened so every value fits (uint64 needs 20 decimal digits)
    pa.uint8(): "short",
    pa.uint16(): "integer",
    pa.uint32(): "long",
    pa.uint64(): "decimal(20,0)",
}


def spark_type(t: pa.DataType) -> str | dict:
    """The Spark SQL type (JSON form) the Delta Sharing client expects for an Arrow type.

    Spark names only (``long``, not ``bigint``; ``string``, not ``varchar``; ``timestamp``
    for every Arrow timestamp, zoned or not). Types Spark lacks: unsigned integers widen,
    ``time``/``duration``/``null`` become ``string``/``long``/``string``."""
    pt = pa.types
    if pt.is_dictionary(t):
        return spark_type(t.value_type)
    if pt.is_boolean(t):
        return "boolean"
    if t in _INTS:
        return _INTS[t]
    if pt.is_float16(t) or pt.is_float32(t):
        return "float"
    if pt.is_float64(t):
        return "double"
    if pt.is_decimal(t):
        return f"decimal({t.precision},{t.scale})" if t.precision <= 38 else "string"
    if pt.is_string(t) or pt.is_large_string(t) or getattr(pt, "is_string_view", bool)(t):
        return "string"
    if pt.is_binary(t) or pt.is_large_binary(t) or pt.is_fixed_size_binary(t):
        return "binary"
    if getattr(pt, "is_binary_view", lambda _t: False)(t):
        return "binary"
    if pt.is_date(t):
        return "date"
    if pt.is_timestamp(t):
        return "timestamp"
    if pt.is_duration(t):
        return "long"
    if pt.is_time(t) or pt.is_null(t):
        return "string"
    if pt.is_list(t) or pt.is_large_list(t) or pt.is_fixed_size_list(t):
        return {
            "type": "array",
            "elementType": spark_type(t.value_type),
            "containsNull": t.value_field.nullable,
        }
    if pt.is_map(t):
        return {
            "type": "map",
            "keyType": spark_type(t.key_type),
            "valueType": spark_type(t.item_type),
            "valueContainsNull": t.item_field.nullable,
        }
    if pt.is_struct(t):
        return {"type": "struct", "fields": [_spark_field(t.field(i)) for i in range(t.num_fields)]}
    return "string"


def _spark_field(f: pa.Field) -> dict:
    return {"name": f.name, "type": spark_type(f.type), "nullable": f.nullable, "metadata": {}}


def schema_string(schema: pa.Schema) -> str:
    """Spark's JSON schema of an Arrow schema (the ``schemaString`` of a metaData line)."""
    return json.dumps(
        {"type": "struct", "fields": [_spark_field(f) for f in schema]},
        ensure_ascii=False,
        separators=(",", ":"),
    )


_PRIMITIVE = {
    "null": pa.null(),
    "bool": pa.bool_(),
    **{n: getattr(pa, n)() for n in ("int8", "int16", "int32", "int64")},
    **{n: getattr(pa, n)() for n in ("uint8", "uint16", "uint32", "uint64")},
    "halffloat": pa.float16(),
    "float": pa.float32(),
    "double": pa.float64(),
    "string": pa.string(),
    "large_string": pa.large_string(),
    "string_view": pa.string(),
    "binary": pa.binary(),
    "large_binary": pa.large_binary(),
    "binary_view": pa.binary(),
}


class _TypeParser:
    """Parses ``str(arrow_type)`` back into the type (what the manifests record)."""

    def __init__(self, s: str) -> None:
        self.s, self.i = s, 0

    def eat(self, tok: str) -> bool:
        if self.s.startswith(tok, self.i):
            self.i += len(tok)
            return True
        return False

    def need(self, tok: str) -> None:
        if not self.eat(tok):
            raise ValueError(f"expected {tok!r} at {self.i} in {self.s!r}")

    def until(self, stop: str) -> str:
        j = self.s.index(stop, self.i)
        out, self.i = self.s[self.i : j], j
        return out

    def name(self) -> str:
        j = self.i
        while j < len(self.s) and (self.s[j].isalnum() or self.s[j] == "_"):
            j += 1
        out, self.i = self.s[self.i : j], j
        return out

    def field(self) -> pa.Field:
        name = self.until(": ")
        self.need(": ")
        t = self.type()
        return pa.field(name, t, nullable=not self.eat(" not null"))

    def type(self) -> pa.DataType:
        n = self.name()
        if n in ("list", "large_list", "fixed_size_list", "list_view", "large_list_view"):
            self.need("<")
            f = self.field()
            self.need(">")
            if n == "fixed_size_list":
                self.need("[")
                size = int(self.until("]"))
                self.need("]")
                return pa.list_(f, size)
            return pa.large_list(f) if n.startswith("large") else pa.list_(f)
        if n == "struct":
            self.need("<")
            fields = []
            while not self.eat(">"):
                fields.append(self.field())
                self.eat(", ")
            return pa.struct(fields)
        if n == "map":
            self.need("<")
            k = self.type()
            self.need(", ")
            v = self.type()
            nullable = not self.eat(" not null")
            self.need(">")
            return pa.map_(k, pa.field("value", v, nullable=nullable))
        if n == "dictionary":
            self.need("<values=")
            v = self.type()
            self.until(">")
            self.need(">")
            return v
        if n == "timestamp":
            self.need("[")
            unit = self.name()
            tz = self.until("]") if self.eat(", tz=") else None
            self.need("]")
            return pa.timestamp(unit, tz=tz or None)
        if n.startswith("decimal"):
            self.need("(")
            p = int(self.until(","))
            self.need(", ")
            sc = int(self.until(")"))
            self.need(")")
            return pa.decimal256(p, sc) if p > 38 else pa.decimal128(p, sc)
        if n in ("date32", "date64", "time32", "time64", "duration"):
            self.need("[")
            unit = self.name()
            self.need("]")
            if n.startswith("date"):
                return pa.date32() if n == "date32" else pa.date64()
            return getattr(pa, n)(unit)
        if n == "fixed_size_binary":
            self.need("[")
            size = int(self.until("]"))
            self.need("]")
            return pa.binary(size)
        if n in _PRIMITIVE:
            return _PRIMITIVE[n]
        raise ValueError(f"unknown Arrow type {n!r} in {self.s!r}")


def arrow_type(text: str) -> pa.DataType:
    """The Arrow type whose ``str()`` is ``text`` (raises ValueError if unrecognised)."""
    p = _TypeParser(text.strip())
    t = p.type()
    if p.i != len(p.s):
        raise ValueError(f"trailing text in Arrow type {text!r}")
    return t


def _arrow_schema(ex: Exchange, t: SharedTable) -> pa.Schema:
    """The table's Arrow schema: from the manifest, else from its first file's footer."""
    if t.schema:
        try:
            return pa.schema(
                [
                    pa.field(c["name"], arrow_type(c["type"]), c.get("nullable", True))
                    for c in t.schema
                ]
            )
        except (ValueError, KeyError, TypeError):
            pass
    if not t.files or ex.store is None:
        return pa.schema([])
    import pyarrow.parquet as pq

    return pq.read_schema(pa.BufferReader(ex.store.get_bytes(t.files[0]["key"])))


# -- metadata and query -------------------------------------------------------------------


@dataclass
class TableAnswer:
    version: int
    lines: list[dict]


def _table_id(v: GrantView, t: SharedTable) -> str:
    return str(_uuid_of(f"{v.dataset.id}/{t.table or ''}"))


def _uuid_of(text: str):
    import uuid

    return uuid.uuid5(uuid.NAMESPACE_URL, f"nsdx:{text}")


def _metadata_lines(ex: Exchange, v: GrantView, t: SharedTable) -> list[dict]:
    return [
        {"protocol": {"minReaderVersion": 1}},
        {
            "metaData": {
                "id": _table_id(v, t),
                "name": t.name,
                "description": v.dataset.title_en or v.dataset.title or None,
                "format": {"provider": "parquet", "options": {}},
                "schemaString": schema_string(_arrow_schema(ex, t)),
                "partitionColumns": [],
                "configuration": {},
                "version": v.version,
                "size": sum(int(f.get("bytes") or 0) for f in t.files),
                "numFiles": len(t.files),
            }
        },
    ]


def _locate(v: GrantView, share: str, schema: str, table: str) -> SharedTable:
    _schema_of(v, share, schema)
    return v.table(table)


def check_response_format(capabilities: str | None) -> None:
    """nsdx answers in the parquet response format. A client asking for the delta format
    only (``delta-sharing-capabilities: responseformat=delta``, i.e. ``load_as_pandas(...,
    use_delta_format=True)``) gets a 400 saying so; ``delta,parquet`` (the client's default
    auto-resolve) and no header get parquet. (The 1.4.2 client's delta path reads file
    paths through delta-kernel relative to a local temporary table, so presigned URLs in
    ``add.path`` cannot work with it.)"""
    for part in (capabilities or "").split(";"):
        k, _, val = part.strip().partition("=")
        if k.strip().lower() == "responseformat":
            formats = {x.strip().lower() for x in val.split(",")}
            if "parquet" not in formats:
                raise BadRequest(
                    "nsdx serves the parquet response format only; call load_as_pandas "
                    "without use_delta_format=True (responseformat=parquet)"
                )


def table_version(ex: Exchange, token, share: str, schema: str, table: str, starting=None):
    def run(s, v):
        _locate(v, share, schema, table)
        if starting:
            raise BadRequest(
                "startingTimestamp is not supported: nsdx shares one version per grant"
            )
        return v.version

    return _in_session(ex, token, run)


def table_metadata(ex: Exchange, token, share: str, schema: str, table: str) -> TableAnswer:
    def run(s, v):
        t = _locate(v, share, schema, table)
        return TableAnswer(v.version, _metadata_lines(ex, v, t))

    return _in_session(ex, token, run)


FileUrl = Callable[[str, int], str]  # (key, expires_seconds) -> URL


def store_file_url(ex: Exchange, base_url: str | None) -> FileUrl:
    """Presigned URLs from the store; for the local folder, nsdx's own signed download
    route under ``base_url`` (``.../delta-sharing/files/<key>?e=..&s=..``)."""
    store = ex.store
    if store is None:
        raise InvalidRequest("no object store configured for deliveries")
    if str(getattr(store, "url", "")).startswith("file://") or not hasattr(store, "presign"):
        if not base_url:
            raise InvalidRequest("the local store needs the server's base URL for downloads")
        root = base_url.rstrip("/")

        def local(key: str, seconds: int) -> str:
            exp = int(time.time()) + seconds
            return (
                f"{root}/delta-sharing/files/{quote(key, safe='/')}?{sign_download(ex, key, exp)}"
            )

        return local
    return lambda key, seconds: store.presign(key, seconds)


def _file_size(ex: Exchange, f: dict) -> int:
    if f.get("bytes") is not None:
        return int(f["bytes"])
    for info in ex.store.list(f["key"]):
        if info.key == f["key"]:
            return info.size
    return 0


def query_table(
    ex: Exchange,
    token,
    share: str,
    schema: str,
    table: str,
    body: dict | None,
    *,
    file_url: FileUrl,
    url_seconds: int = URL_SECONDS,
) -> TableAnswer:
    """The query answer: protocol, metaData and one file line per Parquet file, each with
    a presigned URL valid for ``url_seconds`` at most (never beyond the grant or token)."""
    body = body or {}
    if not isinstance(body, dict):
        raise BadRequest("the request body must be a JSON object")
    for k in ("timestamp", "startingVersion", "endingVersion", "startingTimestamp"):
        if body.get(k) is not None:
            raise BadRequest(f"{k} is not supported: nsdx shares one version per grant")
    limit = body.get("limitHint")
    if limit is not None and (not isinstance(limit, int) or limit < 0):
        raise BadRequest("limitHint must be a non-negative integer")

    def run(s, v):
        t = _locate(v, share, schema, table)
        want = body.get("version")
        if want is not None and want != v.version:
            raise BadRequest(f"version {want} is not shared: this grant covers version {v.version}")
        now = _now()
        seconds = int(min(url_seconds, (v.expires - now).total_seconds()))
        if seconds <= 0:
            raise Forbidden("the access grant has expired")
        exp_ms = int((time.time() + seconds) * 1000)
        lines = _metadata_lines(ex, v, t)
        for f in t.files:
            line = {
                "url": file_url(f["key"], seconds),
                "id": f.get("sha256") or hashlib.sha256(f["key"].encode()).hexdigest(),
                "partitionValues": {},
                "size": _file_size(ex, f),
                "version": v.version,
                "timestamp": _epoch_ms(v.version_created),
                "expirationTimestamp": exp_ms,
            }
            if f.get("rows") is not None:
                line["stats"] = json.dumps({"numRecords": int(f["rows"])})
            lines.append({"file": line})
        return v, t, TableAnswer(v.version, lines), now + timedelta(seconds=seconds)

    v, t, answer, url_expires = _in_session(ex, token, run)
    record_query(ex, v.claims, t, v.version, url_expires)
    return answer


# -- the ledger record of queries ---------------------------------------------------------


def record_query(
    ex: Exchange, claims: TokenClaims, t: SharedTable, version: int, url_expires: datetime
) -> int | None:
    """Record a served query as ``delivery.made`` (channel ``delta-sharing``) the first time
    this grant receives these files (this table at this version); later queries of the same
    files add nothing. Returns the ledger index of a new event, or None."""
    fp = token_fingerprint(claims.nonce)
    return record_delivery_once(
        ex,
        grant_id=claims.grant_id,
        version=version,
        keys=[f["key"] for f in t.files],
        expires=url_expires,
        channel="delta-sharing",
        actor=f"delta-sharing:{fp}",
        detail={"what": "query", "table": t.name, "token_fp": fp},
    )


def ndjson(lines: list[dict]) -> Iterator[bytes]:
    for line in lines:
        yield (json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n").encode()
