"""What a package dict is indexed under: its text tokens and its exact-match fields.

Latin words are lower-cased and lightly stemmed (``buses`` → ``bus``). Chinese, Japanese and
Korean text is indexed as character unigrams and bigrams; a query word is turned into its
bigrams, all of which must match, so ``公交`` finds ``南沙公交车辆GPS轨迹`` without a dictionary.
"""

from __future__ import annotations

import re
import unicodedata

# -- text analysis ---------------------------------------------------------------------
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af"
_RUN_RE = re.compile(rf"[{_CJK}]+|[a-z0-9]+")
_CJK_RE = re.compile(rf"[{_CJK}]")


def _stem(w: str) -> str:
    if len(w) <= 3 or w.isdigit():
        return w
    if w.endswith("ies") and len(w) > 4:
        return w[:-3] + "y"
    if w.endswith(("sses", "shes", "ches", "xes", "zes")):
        return w[:-2]
    if w.endswith("ses") and len(w) > 4:  # buses -> bus
        return w[:-2]
    if w.endswith("s") and not w.endswith(("ss", "us", "is")):
        return w[:-1]
    return w


def _normal(s: str) -> str:
    return unicodedata.normalize("NFKC", s).lower()


def index_tokens(s: str) -> set[str]:
    """Tokens a text is indexed under."""
    out: set[str] = set()
    for run in _RUN_RE.findall(_normal(s)):
        if _CJK_RE.match(run):
            out.update(run)
            out.update(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.add(_stem(run))
    return out


def query_tokens(s: str) -> list[str]:
    """Tokens that must all be present for a query word to match."""
    out: list[str] = []
    for run in _RUN_RE.findall(_normal(s)):
        if _CJK_RE.match(run):
            if len(run) == 1:
                out.append(run)
            else:
                out.extend(run[i : i + 2] for i in range(len(run) - 1))
        else:
            out.append(_stem(run))
    return list(dict.fromkeys(out))


# -- documents -------------------------------------------------------------------------
def _extras(pkg: dict) -> dict[str, str]:
    return {e["key"]: e["value"] for e in pkg.get("extras") or []}


def doc_fields(pkg: dict) -> dict[str, list[str]]:
    """The exact-match fields of a package (for fq, facets and sorting)."""
    org = pkg.get("organization") or {}
    ex = _extras(pkg)
    f: dict[str, list[str]] = {
        "id": [pkg["id"]],
        "name": [pkg["name"]],
        "title_string": [pkg.get("title") or ""],
        "state": [pkg.get("state") or "active"],
        "private": ["true" if pkg.get("private") else "false"],
        "type": [pkg.get("type") or "dataset"],
        "dataset_type": [pkg.get("type") or "dataset"],
        "capacity": ["private" if pkg.get("private") else "public"],
        "license_id": [pkg.get("license_id") or ""],
        "organization": [org["name"]] if org else [],
        "owner_org": [pkg["owner_org"]] if pkg.get("owner_org") else [],
        "tags": [t["name"] for t in pkg.get("tags") or []],
        "groups": [g["name"] for g in pkg.get("groups") or []],
        "res_format": sorted({r["format"] for r in pkg.get("resources") or [] if r.get("format")}),
        "res_name": [r["name"] for r in pkg.get("resources") or [] if r.get("name")],
        "res_url": [r["url"] for r in pkg.get("resources") or [] if r.get("url")],
        "author": [pkg["author"]] if pkg.get("author") else [],
        "url": [pkg["url"]] if pkg.get("url") else [],
        "version": [pkg["version"]] if pkg.get("version") else [],
        "metadata_created": [pkg.get("metadata_created") or ""],
        "metadata_modified": [pkg.get("metadata_modified") or ""],
        "num_resources": [str(pkg.get("num_resources", len(pkg.get("resources") or [])))],
        "num_tags": [str(pkg.get("num_tags", len(pkg.get("tags") or [])))],
    }
    for k, v in ex.items():
        f.setdefault(k, [v])
        f[f"extras_{k}"] = [v]
    return f


def doc_text(pkg: dict) -> tuple[str, str]:
    """(title text, all text) of a package."""
    ex = _extras(pkg)
    org = pkg.get("organization") or {}
    title = " ".join(filter(None, [pkg.get("title"), ex.get("title_en"), pkg.get("name")]))
    parts = [
        title,
        pkg.get("notes") or "",
        ex.get("notes_en") or "",
        " ".join(t["name"] for t in pkg.get("tags") or []),
        org.get("name") or "",
        org.get("title") or "",
        pkg.get("author") or "",
    ]
    for r in pkg.get("resources") or []:
        parts += [r.get("name") or "", r.get("description") or "", r.get("format") or ""]
    parts += [v for k, v in ex.items() if k not in ("title_en", "notes_en", "storage_uri")]
    return title, " ".join(parts)
