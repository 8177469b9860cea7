"""The in-memory index behind ``package_search`` and ``package_show``, and one index per
database.

How it stays current
--------------------
Migration 0002 installs triggers that bump ``catalogue_revision.rev`` and log the changed
dataset id in ``catalogue_changes`` on every write to ``datasets`` (and ``organizations``).
Before answering, :meth:`SearchIndex.refresh` reads the revision (one indexed one-row query)
and re-renders only the datasets changed since. Every process (server, worker) keeps its own
index; all of them see every writer, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection, Iterable

import numpy as np
from sqlalchemy import select, text

from ..access import (
    NO_GRANTS,
    DatasetFacts,
    Grants,
    IndexColumns,
    Principal,
    granted_for,
    require_see,
    see_mask,
)
from ..errors import DatasetNotFound
from ..models import Dataset
from ..registry import Catalogue
from .analysis import _normal, doc_fields, doc_text, index_tokens, query_tokens
from .query import (
    All,
    And,
    Not,
    Or,
    Range,
    SearchQueryError,
    Term,
    _canon,
    _num,
    _try_num,
    parse_query,
    parse_sort,
)

MAX_ROWS = 1000
KEEP_CHANGES = 5000  # change-log rows kept; an index further behind rebuilds from scratch
DEFAULT_FACET_LIMIT = 50
TEXT_FIELDS = {"text", "title", "notes", "title_en", "notes_en"}
# fields of CKAN's search schema: sorting on one no dataset has is still a valid query
SCHEMA_FIELDS = frozenset(
    """id name title title_string state private type dataset_type capacity license_id
    license organization owner_org tags groups res_format res_name res_url res_description
    res_type author author_email maintainer maintainer_email url version notes text
    metadata_created metadata_modified num_resources num_tags score indexed_ts site_id
    entity_type views_total views_recent""".split()
)
DEFAULT_SORT = "score desc, metadata_modified desc"


# -- the index -------------------------------------------------------------------------
class _Field:
    """One exact-match field compiled to arrays: (doc slot, value code) pairs."""

    def __init__(self, values: list[str], docs: np.ndarray, codes: np.ndarray) -> None:
        self.values = values
        self.code_of = {v: i for i, v in enumerate(values)}
        self.docs = docs
        self.codes = codes
        self._nums: np.ndarray | None = None

    @property
    def nums(self) -> np.ndarray:
        if self._nums is None:
            self._nums = np.array([_try_num(v) for v in self.values], dtype=float)
        return self._nums

    def mask_for_codes(self, sel: np.ndarray, n: int) -> np.ndarray:
        """Docs having any value whose code is selected (``sel`` is a bool per value)."""
        out = np.zeros(n, dtype=bool)
        if len(self.codes):
            out[self.docs[sel[self.codes]]] = True
        return out


class SearchIndex:
    def __init__(self, cat: Catalogue, render_many: Callable) -> None:
        self.cat = cat
        self.render_many = render_many  # (Session, [Dataset]) -> [package dict]
        self.lock = threading.RLock()
        self.rev = -1
        self.docs: list[dict | None] = []
        self.slot_of: dict[str, int] = {}
        self.id_of: dict[str, str] = {}  # name -> id
        self.free: list[int] = []
        self.tokens: list[frozenset[str]] = []
        self.title_tokens: list[frozenset[str]] = []
        self.fields: list[dict[str, list[str]]] = []
        self.postings: dict[str, set[int]] = {}
        self.title_postings: dict[str, set[int]] = {}
        self._compiled: dict = {}

    # -- keeping current ---------------------------------------------------------------
    def _db_rev(self, conn) -> int:
        return Catalogue.revision(conn)

    def refresh(self) -> None:
        rev = self.cat.current_revision()
        if rev == self.rev:
            return
        with self.lock:
            if rev == self.rev:
                return
            if self.rev < 0 or rev - self.rev > KEEP_CHANGES:
                self._rebuild()
                return
            with self.cat.Session() as s:
                rev = self._db_rev(s.connection())
                changed = [
                    r[0]
                    for r in s.execute(
                        text(
                            "SELECT DISTINCT dataset_id FROM catalogue_changes "
                            "WHERE rev > :a AND rev <= :b"
                        ),
                        {"a": self.rev, "b": rev},
                    )
                ]
                ids: set[str] = set()
                for c in changed:
                    if c.startswith("org:"):
                        ids.update(
                            s.scalars(select(Dataset.id).where(Dataset.organization_id == c[4:]))
                        )
                    else:
                        ids.add(c)
                if len(ids) > 2000:
                    self._rebuild()
                    return
                found = list(s.scalars(select(Dataset).where(Dataset.id.in_(list(ids)))))
                for ds_id in ids - {d.id for d in found}:
                    self._remove(ds_id)
                for pkg in self.render_many(s, found):
                    self._put(pkg)
                if rev // 1000 != self.rev // 1000:
                    self._prune(rev)
                self.rev = rev
                self._compiled = {}

    def _prune(self, rev: int) -> None:
        """Forget change-log rows no index needs (an index further behind rebuilds)."""
        with self.cat.engine.begin() as conn:
            conn.execute(
                text("DELETE FROM catalogue_changes WHERE rev < :r"), {"r": rev - KEEP_CHANGES}
            )

    def _rebuild(self) -> None:
        with self.cat.Session() as s:
            rev = self._db_rev(s.connection())
            pkgs = []
            ids = list(s.scalars(select(Dataset.id).order_by(Dataset.id)))
            for i in range(0, len(ids), 500):
                batch = list(s.scalars(select(Dataset).where(Dataset.id.in_(ids[i : i + 500]))))
                pkgs.extend(self.render_many(s, batch))
                s.expunge_all()
        self.docs, self.slot_of, self.free, self.id_of = [], {}, [], {}
        self.tokens, self.title_tokens, self.fields = [], [], []
        self.postings, self.title_postings = {}, {}
        for p in pkgs:
            self._put(p)
        self.rev = rev
        self._compiled = {}
        self._prune(rev)

    def _remove(self, ds_id: str) -> None:
        slot = self.slot_of.pop(ds_id, None)
        if slot is None:
            return
        name = (self.docs[slot] or {}).get("name")
        if name and self.id_of.get(name) == ds_id:
            del self.id_of[name]
        for t in self.tokens[slot]:
            self.postings[t].discard(slot)
        for t in self.title_tokens[slot]:
            self.title_postings[t].discard(slot)
        self.docs[slot] = None
        self.tokens[slot] = frozenset()
        self.title_tokens[slot] = frozenset()
        self.fields[slot] = {}
        self.free.append(slot)

    def _put(self, pkg: dict) -> None:
        self._remove(pkg["id"])
        slot = self.free.pop() if self.free else len(self.docs)
        if slot == len(self.docs):
            self.docs.append(None)
            self.tokens.append(frozenset())
            self.title_tokens.append(frozenset())
            self.fields.append({})
        title, body = doc_text(pkg)
        tt = frozenset(index_tokens(title))
        at = frozenset(index_tokens(body)) | tt
        for t in at:
            self.postings.setdefault(t, set()).add(slot)
        for t in tt:
            self.title_postings.setdefault(t, set()).add(slot)
        self.docs[slot] = pkg
        self.tokens[slot] = at
        self.title_tokens[slot] = tt
        self.fields[slot] = doc_fields(pkg)
        self.slot_of[pkg["id"]] = slot
        self.id_of[pkg["name"]] = pkg["id"]

    # -- compiled arrays ---------------------------------------------------------------
    def _field(self, name: str) -> _Field:
        key = ("f", name)
        f = self._compiled.get(key)
        if f is None:
            values: dict[str, int] = {}
            docs, codes = [], []
            for slot, fields in enumerate(self.fields):
                for v in fields.get(name, ()):
                    docs.append(slot)
                    codes.append(values.setdefault(v, len(values)))
            f = _Field(
                list(values), np.array(docs, dtype=np.int64), np.array(codes, dtype=np.int64)
            )
            self._compiled[key] = f
        return f

    def _posting(self, token: str, title: bool = False) -> np.ndarray:
        key = ("t" if title else "p", token)
        arr = self._compiled.get(key)
        if arr is None:
            src = (self.title_postings if title else self.postings).get(token) or ()
            arr = np.fromiter(src, dtype=np.int64, count=len(src))
            self._compiled[key] = arr
        return arr

    def _sortable(self, name: str) -> bool:
        """A field of the (CKAN) search schema, or one some dataset has."""
        if name in SCHEMA_FIELDS or name.startswith("extras_"):
            return True
        return len(self._field(name).values) > 0

    def _sort_key(self, name: str) -> np.ndarray:
        """Per-slot sort key: a number (dates as epoch) or the rank of a string value."""
        key = ("s", name)
        arr = self._compiled.get(key)
        if arr is None:
            n = len(self.docs)
            f = self._field(name)
            nums = f.nums
            numeric = len(f.values) > 0 and not np.isnan(nums).any()
            if numeric:
                vals = nums
            else:
                order = sorted(range(len(f.values)), key=lambda i: f.values[i].lower())
                vals = np.empty(len(f.values), dtype=float)
                vals[np.array(order, dtype=np.int64)] = np.arange(len(order), dtype=float)
            arr = np.full(n, np.nan)
            if len(f.codes):
                arr[f.docs] = vals[f.codes]
            self._compiled[key] = arr
        return arr

    # -- evaluation --------------------------------------------------------------------
    def _n(self) -> int:
        return len(self.docs)

    def _text_mask(self, value: str, field: str | None, score: np.ndarray | None) -> np.ndarray:
        n = self._n()
        if value == "*":
            return self._alive()
        title_only = field in ("title", "title_en", "name")
        if value.endswith("*") and len(value) > 1:
            prefix = _normal(value[:-1])
            mask = np.zeros(n, dtype=bool)
            post = self.title_postings if title_only else self.postings
            for tok, slots in post.items():
                if tok.startswith(prefix) and slots:
                    mask[self._posting(tok, title_only)] = True
            return mask
        toks = query_tokens(value)
        if not toks:
            return np.zeros(n, dtype=bool)
        mask = np.ones(n, dtype=bool)
        for t in toks:
            m = np.zeros(n, dtype=bool)
            m[self._posting(t, title_only)] = True
            mask &= m
        if score is not None:
            alive = max(len(self.slot_of), 1)
            for t in toks:
                p = self._posting(t)
                idf = math.log(1 + alive / (1 + len(p)))
                score[p] += idf
                score[self._posting(t, True)] += 2 * idf
        return mask

    def _alive(self) -> np.ndarray:
        m = np.zeros(self._n(), dtype=bool)
        if self.slot_of:
            m[np.fromiter(self.slot_of.values(), dtype=np.int64, count=len(self.slot_of))] = True
        return m

    def _eval(self, node, score: np.ndarray | None) -> np.ndarray:
        n = self._n()
        if isinstance(node, All):
            return self._alive()
        if isinstance(node, And):
            pos = [x for x in node.nodes if not isinstance(x, Not)]
            neg = [x for x in node.nodes if isinstance(x, Not)]
            mask = self._alive() if not pos else np.ones(n, dtype=bool)
            for x in pos:
                mask = mask & self._eval(x, score)
            for x in neg:
                mask &= ~self._eval(x.node, None)
            return mask
        if isinstance(node, Or):
            mask = np.zeros(n, dtype=bool)
            for x in node.nodes:
                mask |= self._eval(x, score)
            return mask
        if isinstance(node, Not):
            return self._alive() & ~self._eval(node.node, None)
        if isinstance(node, Range):
            f = self._field(_canon(node.field))
            lo, hi = _num(node.lo), _num(node.hi, upper=True)
            nums = f.nums
            with np.errstate(invalid="ignore"):
                sel = (nums >= lo if node.lo_incl else nums > lo) & (
                    nums <= hi if node.hi_incl else nums < hi
                )
            return f.mask_for_codes(sel, n)
        if isinstance(node, Term):
            field = _canon(node.field) if node.field else None
            if field is None or field in TEXT_FIELDS:
                return self._text_mask(node.value, field if field != "text" else None, score)
            f = self._field(field)
            if node.value == "*":
                return f.mask_for_codes(np.ones(len(f.values), dtype=bool), n)
            if node.value.endswith("*") and not node.phrase:
                pre = node.value[:-1]
                sel = np.array([v.startswith(pre) for v in f.values], dtype=bool)
                return f.mask_for_codes(sel, n)
            code = f.code_of.get(node.value)
            if code is None and field == "organization":  # accept the id or the title too
                code = f.code_of.get(self._org_name(node.value))
            sel = np.zeros(len(f.values), dtype=bool)
            if code is not None:
                sel[code] = True
            return f.mask_for_codes(sel, n)
        raise SearchQueryError(f"Search Query is invalid: {node!r}")  # pragma: no cover

    def _org_name(self, v: str) -> str:
        for d in self.docs:
            org = (d or {}).get("organization")
            if org and v in (org["id"], org.get("title")):
                return org["name"]
        return v

    def _columns(self) -> IndexColumns:
        cols = self._compiled.get(("acl",))
        if cols is None:
            cols = self._compiled[("acl",)] = IndexColumns.of(self.docs)
        return cols

    def _visible(self, principal: Principal, granted: Collection[str], include_private: bool,
                 include_drafts: bool, include_deleted: bool) -> np.ndarray:  # fmt: skip
        """What ``principal`` may see (:func:`catalogue.access.see_mask`), narrowed to what
        was asked for: active public datasets, plus private ones, drafts, deleted ones."""
        cols = self._columns()
        wanted = (cols.states == "active") & (include_private | ~cols.private)
        if include_drafts:
            wanted |= cols.states == "draft"
        if include_deleted:
            wanted |= cols.states == "deleted"
        return wanted & see_mask(principal, cols, granted)

    # -- one dataset -------------------------------------------------------------------
    def show(self, principal: Principal, key: str, grants: Grants = NO_GRANTS) -> dict:
        """The package dict of a dataset by id or name, as package_show returns it."""
        self.refresh()
        with self.lock:
            slot = self.slot_of.get(key)
            if slot is None:
                slot = self.slot_of.get(self.id_of.get(key, ""))
            pkg = self.docs[slot] if slot is not None else None
        if pkg is None:
            raise DatasetNotFound(key)
        require_see(principal, DatasetFacts.of_package(pkg), grants, key)
        return pkg

    # -- the search --------------------------------------------------------------------
    def search(
        self,
        *,
        q: str | None = None,
        fq: str | Iterable[str] | None = None,
        rows: int = 10,
        start: int = 0,
        sort: str | None = None,
        facet_fields: Iterable[str] = (),
        facet_limit: int = DEFAULT_FACET_LIMIT,
        facet_mincount: int = 1,
        include_private: bool = False,
        include_drafts: bool = False,
        include_deleted: bool = False,
        principal: Principal | None = None,
        fl: list[str] | None = None,
        grants: Grants = NO_GRANTS,
    ) -> dict:
        """Search what ``principal`` may see (with ``grants``, the exchange's live grants:
        a private dataset bought earlier stays visible to its buyer)."""
        principal = principal or Principal()
        # grants add only datasets that are not public: private ones and drafts
        granted = granted_for(principal, grants) if include_private or include_drafts else ()
        if not 0 <= rows <= MAX_ROWS:
            raise SearchQueryError(f"rows must be between 0 and {MAX_ROWS}, got {rows}")
        if start < 0:
            raise SearchQueryError(f"start must be 0 or more, got {start}")
        q_node = parse_query(q if q and q.strip() not in ("*:*", "") else None)
        fqs = [fq] if isinstance(fq, str) else list(fq or [])
        fq_nodes = [parse_query(x) for x in fqs if x and x.strip()]
        sort_keys = parse_sort(sort or DEFAULT_SORT)
        self.refresh()
        with self.lock:
            for name, _desc in sort_keys:
                if not self._sortable(name):
                    raise SearchQueryError(
                        f"Search Query is invalid: can not sort on undefined field: {name}",
                        hint="sort by e.g. name, title, metadata_modified, metadata_created, "
                        "score, num_resources or an extras_<key> field",
                    )
            n = self._n()
            score = np.zeros(n)
            mask = self._eval(q_node, score)
            for node in fq_nodes:
                mask &= self._eval(node, None)
            mask &= self._visible(
                principal, granted, include_private, include_drafts, include_deleted
            )
            idx = np.nonzero(mask)[0]
            count = int(len(idx))
            facets, search_facets = {}, {}
            for name in facet_fields:
                facets[name], search_facets[name] = self._facet(
                    name, mask, facet_limit, facet_mincount
                )
            page = self._order(idx, score, sort_keys)[start : start + rows]
            results = [self.docs[i] for i in page]
        if fl:
            results = [{k: r.get(k) for k in fl} for r in results]
        return {
            "count": count,
            "sort": sort or DEFAULT_SORT,
            "facets": facets,
            "search_facets": search_facets,
            "results": results,
        }

    def _order(self, idx: np.ndarray, score: np.ndarray, keys: list[tuple[str, bool]]):
        if len(idx) == 0:
            return idx
        cols = []
        for name, desc in keys:
            if name == "score":
                v = score[idx]
            else:
                v = self._sort_key(name)[idx]
                v = np.where(np.isnan(v), -np.inf if desc else np.inf, v)
            cols.append(-v if desc else v)
        cols.append(self._sort_key("name")[idx])  # stable tie-break
        order = np.lexsort(tuple(reversed(cols)))
        return idx[order]

    def _facet(self, name: str, mask: np.ndarray, limit: int, mincount: int):
        field = _canon(name)
        f = self._field(field)
        if len(f.codes):
            counts = np.bincount(f.codes[mask[f.docs]], minlength=len(f.values))
        else:
            counts = np.zeros(0, dtype=np.int64)
        picked = [i for i in np.nonzero(counts >= max(mincount, 1))[0]]
        picked.sort(key=lambda i: (-counts[i], f.values[i]))
        if limit is not None and limit >= 0:
            picked = picked[:limit]
        titles = (
            self._org_titles()
            if field == "organization"
            else self._group_titles()
            if field == "groups"
            else {}
        )
        items = [
            {
                "name": f.values[i],
                "display_name": titles.get(f.values[i], f.values[i]),
                "count": int(counts[i]),
            }
            for i in picked
        ]
        return {x["name"]: x["count"] for x in items}, {"title": name, "items": items}

    def _org_titles(self) -> dict[str, str]:
        key = ("orgtitles",)
        t = self._compiled.get(key)
        if t is None:
            t = {}
            for d in self.docs:
                org = (d or {}).get("organization")
                if org:
                    t[org["name"]] = org.get("title") or org["name"]
            self._compiled[key] = t
        return t

    def _group_titles(self) -> dict[str, str]:
        """Scenario (CKAN group) titles, for the ``groups`` facet's display names."""
        key = ("grouptitles",)
        t = self._compiled.get(key)
        if t is None:
            t = {}
            for d in self.docs:
                for g in (d or {}).get("groups") or []:
                    t[g["name"]] = g.get("title") or g["name"]
            self._compiled[key] = t
        return t

    def tags(self, principal: Principal | None = None, query: str | None = None) -> list[str]:
        self.refresh()
        with self.lock:
            mask = self._visible(principal or Principal(), (), False, False, False)
            f = self._field("tags")
            used = set(f.codes[mask[f.docs]].tolist()) if len(f.codes) else set()
        names = sorted(f.values[i] for i in used)
        if query:
            ql = query.lower()
            names = [t for t in names if ql in t.lower()]
        return names


# -- one index per database ------------------------------------------------------------
_indexes: dict[str, SearchIndex] = {}
_lock = threading.Lock()


def index_for(cat: Catalogue, render_many: Callable) -> SearchIndex:
    """The process-wide index of ``cat``'s database (built on first use)."""
    key = cat.engine.url.render_as_string(hide_password=False)
    with _lock:
        idx = _indexes.get(key)
        if idx is None:
            idx = _indexes[key] = SearchIndex(cat, render_many)
        return idx


def drop_indexes() -> None:
    with _lock:
        _indexes.clear()
