"""The registry: datasets, their versions and resources, as CKAN-shaped dicts.

Every surface (CLI, CKAN Action API, web pages, Python API) reads through
:class:`Catalogue`; the package dict built by :func:`package_dict` is the one data dict
they all render.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, Engine, delete, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from ingest import failpoints
from validation.messages import Msg
from validation.money import cny

from .access import ANONYMOUS, see_clause
from .db import make_engine, read_one, rows_changed, sessions
from .errors import CatalogueError, DatasetNotFound
from .licences import licence
from .models import (
    Dataset,
    DatasetTag,
    Organization,
    Resource,
    Version,
    VersionClaim,
    utcnow,
)

_REVISION = text("SELECT rev FROM catalogue_revision WHERE id = 1")


@dataclass(frozen=True)
class PublishedTable:
    """One queryable table of a dataset's current version."""

    dataset: str
    domain: str
    table: str | None  # None for single-table datasets
    uris: tuple[str, ...]  # object keys of the Parquet files
    access: str
    organization: str | None

    @property
    def view_schema(self) -> str:
        return view_stem(self.domain)

    @property
    def view_name(self) -> str:
        return view_of_table(self.dataset, self.table)


def view_stem(name: str) -> str:
    """The DuckDB view name a dataset name becomes (``-`` turned into ``_``)."""
    return name.replace("-", "_")


def view_of_table(dataset: str, table: str | None) -> str:
    """The view (without its schema) of one table: ``<id>`` for single-table datasets,
    ``<id>__<table>`` for the tables of a multi-table one (a GTFS feed)."""
    base = view_stem(dataset)
    return f"{base}__{view_stem(table)}" if table else base


# The unique index on the view stem (migration 0010): the database, not only the check below,
# refuses a second dataset on one view when two are created at the same moment.
VIEW_NAME_INDEX = "ux_datasets_view_name"


def is_view_name_clash(e: IntegrityError) -> bool:
    """Whether ``e`` is the view-stem index refusing a row (SQLite and PostgreSQL both
    name the index in the message)."""
    return VIEW_NAME_INDEX in str(e.orig)


def is_name_taken(e: IntegrityError) -> bool:
    """Whether ``e`` is the unique dataset name refusing a row."""
    msg = str(e.orig)
    return "datasets.name" in msg or "ix_datasets_name" in msg


def view_name_owner(s: Session, name: str, *, dataset_id: str | None = None) -> str | None:
    """The name of another dataset (any organisation, domain or state) whose query view
    would have the same name as ``name``'s, or None. Two such datasets would share one
    DuckDB view and the later would shadow the earlier for every reader, so the second
    may not be created."""
    q = select(Dataset.name).where(
        func.replace(Dataset.name, "-", "_") == view_stem(name), Dataset.name != name
    )
    if dataset_id is not None:
        q = q.where(Dataset.id != dataset_id)
    return s.scalar(q.limit(1))


def view_clash_message(owner: str) -> Msg:
    """What ``package_create``/``package_patch`` say for a name on ``owner``'s view."""
    return Msg(
        "Maps to the same query view as dataset '%(owner)s' ('-' and '_' are the same in "
        "view names); choose another name.",
        owner=owner,
    )


class ViewNameTaken(CatalogueError):
    """A new dataset's name maps to the query view of an existing dataset (HTTP 409)."""

    status = 409

    def __init__(self, name: str, owner: str) -> None:
        super().__init__(
            f"dataset name {name!r} maps to the same query view as the existing dataset "
            f"{owner!r} ('-' and '_' are the same in view names)",
            hint="choose another name (ids in datasets.yaml use '-' only)",
            name=name,
            existing=owner,
        )


def find_dataset(s: Session, name_or_id: str, *, include_deleted: bool = False) -> Dataset:
    """A dataset by name or id; DatasetNotFound if there is none (or it is deleted)."""
    q = select(Dataset).where((Dataset.name == name_or_id) | (Dataset.id == name_or_id))
    if not include_deleted:
        q = q.where(Dataset.state != "deleted")
    ds = s.scalar(q)
    if ds is None:
        raise DatasetNotFound(name_or_id)
    return ds


class Catalogue:
    def __init__(self, database_url: str | Engine) -> None:
        self.engine = (
            database_url if isinstance(database_url, Engine) else make_engine(database_url)
        )
        self.Session = sessions(self.engine)

    @staticmethod
    def revision(conn: Connection) -> int:
        """The catalogue's revision as ``conn`` (a session's connection) sees it: bumped
        (by triggers, migrations 0002 and 0011) in the transaction of every write to a
        dataset, an organisation or a scenario link, so anything derived from those rows
        (the search index, the query API's views) is current while the revision it was
        read at is."""
        return int(conn.execute(_REVISION).scalar_one())

    def current_revision(self) -> int:
        """The catalogue's revision now, read on its own (:func:`~catalogue.db.read_one`:
        one round trip on PostgreSQL)."""
        return int(read_one(self.engine, _REVISION))

    # -- organisations -----------------------------------------------------------------
    def ensure_organization(
        self, s: Session, name: str, title: str | None = None, contact: dict | None = None
    ) -> Organization:
        org = s.scalar(select(Organization).where(Organization.name == name))
        if org is None:
            org = Organization(name=name, title=title or name, description="", extras={})
            s.add(org)
            s.flush()
        elif title and org.title in ("", org.name):  # a title given later fills a bare slug
            org.title = title
        if contact:  # the contact point declared in datasets.yaml
            have = dict(org.extras or {})
            if any(have.get(k) != v for k, v in contact.items()):
                org.extras = {**have, **contact}
        return org

    # -- datasets ----------------------------------------------------------------------
    def check_new_name(self, name: str) -> None:
        """Raise :class:`ViewNameTaken` if there is no dataset ``name`` yet and creating it
        would give it another dataset's query view."""
        with self.Session() as s:
            if s.scalar(select(Dataset.id).where(Dataset.name == name)) is None:
                owner = view_name_owner(s, name)
                if owner is not None:
                    raise ViewNameTaken(name, owner)

    def upsert_from_spec(self, s: Session, spec) -> Dataset:
        """Create or update a dataset's metadata from its datasets.yaml declaration."""
        org = self.ensure_organization(
            s, spec.organization, spec.organization_title, spec.organization_contact
        )
        ds = s.scalar(select(Dataset).where(Dataset.name == spec.id))
        if ds is None:
            owner = view_name_owner(s, spec.id)
            if owner is not None:
                raise ViewNameTaken(spec.id, owner)
            ds = Dataset(name=spec.id, extras={})
            s.add(ds)
        ds.title = spec.title
        ds.title_en = spec.title_en
        ds.notes = spec.notes
        ds.notes_en = spec.notes_en
        ds.domain = spec.domain
        ds.access = spec.access
        ds.license_id = spec.licence
        ds.organization = org
        ds.attribution = spec.attribution
        ds.url = spec.source_url
        ds.price_fen = spec.price_fen
        ds.grade = spec.grade
        ds.has_pi = spec.has_pi
        ds.sensitive_pi = spec.sensitive_pi
        ds.data_category = spec.data_category
        ds.state = "active"
        ds.extras = {**(ds.extras or {}), **{str(k): v for k, v in spec.extras.items()}}
        if not spec.from_catalogue:  # datasets.yaml's columns and checks: shown and edited
            from .declared import declared_from_spec  # in the portal, used by uploads

            kept = {k: v for k, v in ds.extras.items() if k != DECLARED_KEY}
            if spec.schema or spec.expectations:
                kept[DECLARED_KEY] = declared_from_spec(spec)
            ds.extras = kept
        want = list(dict.fromkeys(spec.tags))
        have = {t.tag for t in ds.tags}
        if set(want) != have:
            ds.tags = [DatasetTag(tag=t) for t in want]
        ds.metadata_modified = utcnow()
        s.flush()
        if ds.current_version is not None:  # made restricted: out of the open Iceberg catalog
            from .iceberg import unlist_in

            unlist_in(s, ds)
        return ds

    def current(self, name: str) -> Version | None:
        with self.Session() as s:
            ds = s.scalar(select(Dataset).where(Dataset.name == name))
            if ds is None or ds.current_version is None:
                return None
            return s.scalar(
                select(Version).where(
                    Version.dataset_id == ds.id, Version.number == ds.current_version
                )
            )

    # -- version claims: a publish owns its version number before it writes ----------------
    def claim_version(self, name: str, fingerprint: str, run_id: str) -> int:
        """Take the next version number of dataset ``name`` for run ``run_id``, atomically:
        above every registered version and every claim (a number is never handed out twice,
        whatever runs at the same time). The claim is the run's licence to write
        ``<org>/<dataset>/v<N>/``; nothing else writes there."""
        for _ in range(1000):
            with self.Session() as s:
                top = s.scalar(
                    select(func.max(Version.number))
                    .join(Dataset, Dataset.id == Version.dataset_id)
                    .where(Dataset.name == name)
                )
                cur = s.scalar(select(Dataset.current_version).where(Dataset.name == name))
                claimed = s.scalar(
                    select(func.max(VersionClaim.number)).where(VersionClaim.dataset == name)
                )
                number = max(top or 0, cur or 0, claimed or 0) + 1
                s.add(
                    VersionClaim(
                        dataset=name,
                        number=number,
                        run_id=run_id,
                        fingerprint=fingerprint,
                        state="claimed",
                        claimed=utcnow(),
                    )
                )
                try:
                    s.commit()
                    return number
                except IntegrityError:  # another run took it first: the next one
                    s.rollback()
        raise RuntimeError(f"could not claim a version number of {name!r}")  # pragma: no cover

    def pending_claims(self, name: str) -> list[tuple[int, str, str]]:
        """(number, fingerprint, run id) of claims without a registered version: runs in
        progress, or runs that stopped between writing storage and registering."""
        with self.Session() as s:
            return [
                (c.number, c.fingerprint, c.run_id)
                for c in s.scalars(
                    select(VersionClaim)
                    .where(VersionClaim.dataset == name)
                    .order_by(VersionClaim.number.desc())
                )
            ]

    def adopt_claim(self, name: str, number: int, old_run: str, run_id: str) -> bool:
        """Take over another run's claim (compare-and-set on its run id)."""
        with self.Session.begin() as s:
            r = s.execute(
                update(VersionClaim)
                .where(
                    VersionClaim.dataset == name,
                    VersionClaim.number == number,
                    VersionClaim.run_id == old_run,
                )
                .values(run_id=run_id)
            )
            return rows_changed(r) == 1

    def mark_claim(self, name: str, number: int, run_id: str, state: str) -> None:
        with self.Session.begin() as s:
            s.execute(
                update(VersionClaim)
                .where(
                    VersionClaim.dataset == name,
                    VersionClaim.number == number,
                    VersionClaim.run_id == run_id,
                )
                .values(state=state)
            )

    def release_claim(self, name: str, number: int, run_id: str) -> None:
        """Give a number back: for a run whose prefix is not a committed version."""
        with self.Session.begin() as s:
            s.execute(
                delete(VersionClaim).where(
                    VersionClaim.dataset == name,
                    VersionClaim.number == number,
                    VersionClaim.run_id == run_id,
                )
            )

    def register_version(self, spec, result, storage_url: str) -> tuple[Version, bool]:
        """Record a published version and move the dataset's pointer to it, in one
        transaction: readers see the old version or the new one, never a mix.

        The pointer only moves forward (a compare-and-set on the current number): a run
        that registers v14 after another registered v15 records v14 and leaves v15 current.
        Returns the version and whether it became current."""
        for attempt in range(3):
            try:
                return self._register(spec, result, storage_url)
            except IntegrityError:  # a concurrent first publish created the org or dataset
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _register(self, spec, result, storage_url: str) -> tuple[Version, bool]:
        with self.Session.begin() as s:
            ds = self.upsert_from_spec(s, spec)
            ver = s.scalar(
                select(Version).where(Version.dataset_id == ds.id, Version.number == result.version)
            )
            if ver is not None and ver.fingerprint != result.manifest["fingerprint"]:
                raise RuntimeError(  # claims make this impossible; never overwrite a version
                    f"{spec.id} v{result.version} is registered with another fingerprint"
                )
            if ver is None:
                m = result.manifest
                ver = Version(
                    dataset_id=ds.id,
                    number=result.version,
                    prefix=result.prefix,
                    storage_url=storage_url,
                    fingerprint=m["fingerprint"],
                    row_count=m.get("row_count", 0),
                    bytes=m.get("bytes", 0),
                    manifest=m,
                    validation=m.get("validation") or {},
                    quality_score=(m.get("validation") or {}).get("score"),
                    individuals=(m.get("personal_information") or {}).get("individuals"),
                )
                s.add(ver)
                s.flush()
                multi = len(m["tables"]) > 1 or m["tables"][0]["name"] != "data"
                for i, t in enumerate(m["tables"]):
                    s.add(
                        Resource(
                            version_id=ver.id,
                            dataset_id=ds.id,
                            name=t["name"] if multi else spec.id,
                            table=t["name"] if multi else None,
                            format="Parquet",
                            url=f"{storage_url.rstrip('/')}/{result.prefix}/{t['files'][0]['path']}"
                            if t["files"]
                            else "",
                            position=i,
                            row_count=t["rows"],
                            bytes=t["bytes"],
                            files=[
                                {**f, "key": f"{result.prefix}/{f['path']}"} for f in t["files"]
                            ],
                            table_schema=_described(t["schema"], spec, t["name"]),
                            extras={},
                        )
                    )
            s.flush()
            moved = rows_changed(
                s.execute(
                    update(Dataset)
                    .where(
                        Dataset.id == ds.id,
                        (Dataset.current_version.is_(None))
                        | (Dataset.current_version <= result.version),
                    )
                    .values(current_version=result.version, metadata_modified=utcnow())
                    .execution_options(synchronize_session=False)
                )
            )
            s.execute(
                delete(VersionClaim).where(
                    VersionClaim.dataset == spec.id, VersionClaim.number == result.version
                )
            )
            s.flush()
            failpoints.hit("catalogue.register.tx")
            return ver, moved == 1

    def touch_metadata(self, spec) -> None:
        with self.Session.begin() as s:
            self.upsert_from_spec(s, spec)

    def version_history(self, name: str) -> list[dict]:
        """Every published version of ``name``, newest first: number, when, rows, bytes,
        quality score (callers check read access first, e.g. with ``Packages.show``, which
        lets an organisation's editors see its deleted datasets: so deleted ones count too)."""
        with self.Session() as s:
            ds = find_dataset(s, name, include_deleted=True)
            return [
                {
                    "number": v.number,
                    "created": v.created.isoformat(timespec="seconds"),
                    "row_count": v.row_count,
                    "bytes": v.bytes,
                    "quality_score": v.quality_score,
                }
                for v in sorted(ds.versions, key=lambda v: -v.number)
            ]

    def package(self, name: str) -> dict:
        from .editing import render_packages  # the one renderer, link resources included

        with self.Session() as s:
            return render_packages(s, [find_dataset(s, name)])[0]

    def packages(self, *, include_private: bool = True) -> list[dict]:
        with self.Session() as s:
            q = (
                select(Dataset)
                .where(Dataset.state == "active")
                .options(selectinload(Dataset.organization))
                .order_by(Dataset.name)
            )
            if not include_private:
                q = q.where(see_clause(ANONYMOUS))  # what anyone sees (catalogue.access)
            from .editing import render_packages  # the one renderer, link resources included

            return render_packages(s, list(s.scalars(q)))

    def published_tables(self) -> list[PublishedTable]:
        """The tables of every current version, drafts' included (not deleted datasets')."""
        with self.Session() as s:
            return [t for _, t in self.published_tables_in(s)]

    @staticmethod
    def published_tables_in(s: Session) -> list[tuple[Dataset, PublishedTable]]:
        """:meth:`published_tables` with the dataset row of each, in one query of session
        ``s`` (the query API reads the access facts from the same rows)."""
        rows = s.execute(
            select(Dataset, Version)
            .join(
                Version,
                (Version.dataset_id == Dataset.id) & (Version.number == Dataset.current_version),
            )
            .where(Dataset.state != "deleted")  # who reads which: catalogue.access
            .options(selectinload(Dataset.organization), selectinload(Version.resources))
            .order_by(Dataset.name)
        ).all()
        out = []
        for ds, ver in rows:
            for r in ver.resources:
                out.append(
                    (
                        ds,
                        PublishedTable(
                            dataset=ds.name,
                            domain=ds.domain,
                            table=r.table,
                            uris=tuple(f["key"] for f in r.files),
                            access=ds.access,
                            organization=ds.organization.name if ds.organization else None,
                        ),
                    )
                )
        return out


def _described(schema: list[dict], spec, table: str) -> list[dict]:
    """The published schema with what the provider declared: description, unit, pii kind.
    A declared name may be ``table.column`` to address one table of a multi-table source."""
    out = []
    for col in schema:
        f = spec.field(f"{table}.{col['name']}") or spec.field(col["name"])
        extra = {}
        if f is not None:
            extra = {
                k: v
                for k, v in (("description", f.description), ("unit", f.unit), ("pii", f.pii))
                if v and v != "none"
            }
            if "pii" in extra:  # how it was masked: hmac (a token) or keep (restricted data)
                extra["pii_treatment"] = f.pii_treatment or "hmac"
        out.append({**col, **extra})
    return out


def _iso(dt) -> str | None:
    return dt.isoformat() if dt else None


# CKAN's top-level text fields nsdx keeps in the dataset's extras column (never in `extras`)
CKAN_FIELDS_IN_EXTRAS = ("maintainer", "maintainer_email", "author_email", "license_url")
# a federated or loaded copy: the facts of the origin's published version (never a storage
# location), kept with the dataset by catalogue.editing and shown as if published here
ORIGIN_KEY = "nsdx_origin"
DECLARED_KEY = "nsdx_declared"  # catalogue.declared: the columns and checks a dataset declares
HIDDEN_EXTRAS = (*CKAN_FIELDS_IN_EXTRAS, ORIGIN_KEY, DECLARED_KEY)
MEDIA_TYPES = {  # IANA media types of the formats nsdx publishes or links
    "PARQUET": "application/vnd.apache.parquet",
    "CSV": "text/csv",
    "JSON": "application/json",
    "NDJSON": "application/x-ndjson",
    "GEOJSON": "application/geo+json",
    "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "XLS": "application/vnd.ms-excel",
    "ZIP": "application/zip",
    "GTFS": "application/zip",
    "PDF": "application/pdf",
    "XML": "application/xml",
    "HTML": "text/html",
}


def media_type(fmt: str | None) -> str | None:
    return MEDIA_TYPES.get((fmt or "").strip().upper())


def format_of_url(url: str) -> str:
    """The format a link's file name says (``.../timetable.csv`` -> ``CSV``), or "": CKAN
    guesses an empty format the same way (``if_empty_guess_format``), and clients such as
    ``ckanapi dump --datapackages`` need one to name the file they download."""
    from urllib.parse import urlsplit

    try:
        name = urlsplit(url).path.rsplit("/", 1)[-1]
    except ValueError:
        return ""
    ext = name.rpartition(".")[2].upper() if "." in name else ""
    return ext if ext in MEDIA_TYPES and ext != "GTFS" else ""


def _coverage(ver, own: dict) -> dict[str, str]:
    """temporal_start/_end and spatial (a GeoJSON polygon) as CKAN's DCAT and spatial
    extensions name them: computed from the published version, else as declared."""
    cov = ((ver.manifest or {}).get("coverage") if ver else None) or {}
    out = {k: own[k] for k in ("temporal_start", "temporal_end", "spatial") if own.get(k)}
    if cov.get("temporal"):
        out["temporal_start"] = cov["temporal"]["start"]
        out["temporal_end"] = cov["temporal"]["end"]
    if cov.get("spatial"):
        import json

        b = cov["spatial"]
        w, s, e, n = b["west"], b["south"], b["east"], b["north"]
        ring = [[w, s], [e, s], [e, n], [w, n], [w, s]]
        out["spatial"] = json.dumps({"type": "Polygon", "coordinates": [ring]})
    return out


def contact_point(org) -> dict:
    """The organisation's contact point (declared in datasets.yaml's `organizations:`)."""
    if org is None:
        return {}
    ex = org.extras or {}
    return {
        "name": org.title or org.name,
        **{k: ex[k] for k in ("email", "url", "phone") if ex.get(k)},
    }


def package_dict(ds: Dataset, s: Session) -> dict:
    """The CKAN package dict of a dataset, with nsdx's own fields as extras."""
    ver = None
    if ds.current_version is not None:  # versions are loaded with the dataset (selectin)
        ver = next((v for v in ds.versions if v.number == ds.current_version), None)
    org = ds.organization
    own = dict(ds.extras or {})
    origin = (own.get(ORIGIN_KEY) or {}) if ver is None else {}
    contact = origin.get("contact") or contact_point(org)
    lic = licence(ds.license_id, own.get("license_url"))
    # Resource URLs are the portal's download routes (catalogue.downloads), as paths that
    # every surface makes absolute; no storage location (file://, bucket, key) is shown.
    # Restricted data answers them only to those the access rule allows.
    from .downloads import resource_paths

    resources = []
    if ver is not None:
        for r in ver.resources:
            url, files = resource_paths(ds.name, ver.number, r)
            one = r.files[0] if len(r.files) == 1 else None  # the checksum of what is served
            resources.append(
                {
                    "id": r.id,
                    "package_id": ds.id,
                    "name": r.name,
                    "description": r.description or "",
                    "format": r.format,
                    "mimetype": media_type(r.format),
                    "url": url,
                    "url_type": "upload",  # published by this portal, not a link
                    "hash": f"sha256:{one['sha256']}" if one and one.get("sha256") else "",
                    "position": r.position,
                    "size": r.bytes,
                    "state": r.state,
                    "created": _iso(r.created),
                    "last_modified": _iso(ver.created),
                    "metadata_modified": _iso(ver.created),
                    "nsdx_table": r.table,
                    "nsdx_row_count": r.row_count,
                    "nsdx_files": files,
                    "nsdx_schema": r.table_schema,
                }
            )
    extras = {
        **{k: v for k, v in own.items() if k not in HIDDEN_EXTRAS},
        **_coverage(ver, own),
        "domain": ds.domain,
        "access": ds.access,
        "title_en": ds.title_en,
        "notes_en": ds.notes_en,
        "attribution": ds.attribution,
        "current_version": ver.number if ver else origin.get("current_version"),
        "row_count": ver.row_count if ver else origin.get("row_count"),
        "bytes": ver.bytes if ver else origin.get("bytes"),
        "quality_score": ver.quality_score if ver else origin.get("quality_score"),
        "price_cny": cny(ds.price_fen) if ds.price_fen is not None else None,
    }
    return {
        "id": ds.id,
        "name": ds.name,
        "title": ds.title,
        "notes": ds.notes or "",
        "type": "dataset",
        "state": ds.state,
        "private": ds.private,
        "license_id": ds.license_id,
        "license_title": lic.title,
        "license_url": lic.url or "",
        "isopen": lic.open,
        "url": ds.url or "",
        "version": str(extras["current_version"])
        if extras["current_version"] is not None
        else None,
        "author": ds.author,
        "author_email": own.get("author_email") or None,
        "maintainer": own.get("maintainer") or contact.get("name"),
        "maintainer_email": own.get("maintainer_email") or contact.get("email"),
        "metadata_created": _iso(ds.metadata_created),
        "metadata_modified": _iso(ds.metadata_modified),
        "owner_org": org.id if org else None,
        "organization": (
            {"id": org.id, "name": org.name, "title": org.title, "type": "organization"}
            if org
            else None
        ),
        "tags": [{"name": t.tag, "display_name": t.tag} for t in ds.tags],
        "num_tags": len(ds.tags),
        "groups": [],  # the scenarios that use it: filled in by editing.render_packages
        "resources": resources,
        "num_resources": len(resources),
        "extras": [  # sorted by key, as CKAN does
            {"key": k, "value": v if isinstance(v, str) else _json(v)}
            for k, v in sorted(extras.items())
            if v is not None
        ],
        # nsdx's own view of the same facts, typed (CKAN extras are strings)
        "nsdx": {
            **{k: v for k, v in extras.items()},
            "validation": ver.validation if ver else origin.get("validation"),
            "schema": resources[0]["nsdx_schema"] if len(resources) == 1 else None,
            # what the dataset declares for its next upload (catalogue.declared)
            **({"declared": own[DECLARED_KEY]} if isinstance(own.get(DECLARED_KEY), dict) else {}),
            "versions": [v.number for v in ds.versions] or origin.get("versions") or [],
            "contact": contact or None,
            # GB/T 43697-2024 grade and personal information, for the cross-border rules;
            # individuals: counted at ingest in the current version (None: not counted)
            "classification": origin.get("classification")
            or {
                "grade": ds.grade,
                "data_category": ds.data_category,
                "has_pi": bool(ds.has_pi),
                "sensitive_pi": bool(ds.sensitive_pi),
                "individuals": ver.individuals if ver else None,
            },
        },
    }


def _json(v) -> str:
    import json

    return json.dumps(v, ensure_ascii=False, default=str)
