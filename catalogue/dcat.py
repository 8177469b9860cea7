"""Open-data renderings of package dicts: DCAT-AP JSON-LD (catalogue and dataset) and
schema.org ``Dataset`` JSON-LD for web pages. Pure functions over the package dicts that
every other surface renders."""

from __future__ import annotations

from typing import Any

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "adms": "http://www.w3.org/ns/adms#",
    "nsdx": "https://nsdx.nansha.gov.cn/ns#",
}
ACCESS_RIGHTS = {
    "open": "http://publications.europa.eu/resource/authority/access-right/PUBLIC",
    "restricted": "http://publications.europa.eu/resource/authority/access-right/RESTRICTED",
}
LICENSE_URLS = {
    "CC-BY-4.0": "https://creativecommons.org/licenses/by/4.0/",
    "CC-BY-SA-4.0": "https://creativecommons.org/licenses/by-sa/4.0/",
    "CC0-1.0": "https://creativecommons.org/publicdomain/zero/1.0/",
    "ODC-BY-1.0": "https://opendatacommons.org/licenses/by/1-0/",
    "ODbL-1.0": "https://opendatacommons.org/licenses/odbl/1-0/",
}
MEDIA_TYPES = {
    "CSV": "text/csv",
    "JSON": "application/json",
    "XLSX": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "PARQUET": "application/vnd.apache.parquet",
    "GTFS": "application/zip",
    "ZIP": "application/zip",
}


def _extras(pkg: dict) -> dict[str, str]:
    return {e["key"]: e["value"] for e in pkg.get("extras") or []}


def _lang(zh: str | None, en: str | None) -> list[dict]:
    out = []
    if zh:
        out.append({"@value": zh, "@language": "zh"})
    if en:
        out.append({"@value": en, "@language": "en"})
    return out


def _dt(v: str | None) -> dict | None:
    return {"@value": v, "@type": "xsd:dateTime"} if v else None


def _drop_empty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (None, [], "", {})}


def dataset_url(site: str, name: str) -> str:
    return f"{site.rstrip('/')}/dataset/{name}"


def dcat_dataset(pkg: dict, site: str) -> dict:
    """One ``dcat:Dataset`` node (without @context)."""
    ex = _extras(pkg)
    url = dataset_url(site, pkg["name"])
    org = pkg.get("organization") or {}
    dists = []
    for r in pkg.get("resources") or []:
        fmt = (r.get("format") or "").upper()
        dists.append(
            _drop_empty(
                {
                    "@id": f"{url}/resource/{r['id']}",
                    "@type": "dcat:Distribution",
                    "dct:identifier": r["id"],
                    "dct:title": r.get("name"),
                    "dct:description": r.get("description"),
                    "dcat:accessURL": {"@id": r["url"]} if r.get("url") else {"@id": url},
                    "dcat:downloadURL": {"@id": r["url"]} if r.get("url") else None,
                    "dct:format": r.get("format"),
                    "dcat:mediaType": MEDIA_TYPES.get(fmt),
                    "dcat:byteSize": (
                        {"@value": str(r["size"]), "@type": "xsd:nonNegativeInteger"}
                        if r.get("size")
                        else None
                    ),
                    "dct:modified": _dt(r.get("last_modified")),
                }
            )
        )
    lic = pkg.get("license_id")
    return _drop_empty(
        {
            "@id": url,
            "@type": "dcat:Dataset",
            "dct:identifier": pkg["id"],
            "dct:title": _lang(pkg.get("title"), ex.get("title_en")),
            "dct:description": _lang(pkg.get("notes"), ex.get("notes_en")),
            "dcat:keyword": [t["name"] for t in pkg.get("tags") or []],
            "dcat:theme": ex.get("domain"),
            "dcat:landingPage": {"@id": url},
            "dct:publisher": _drop_empty(
                {
                    "@id": f"{site.rstrip('/')}/organization/{org['name']}",
                    "@type": "foaf:Organization",
                    "foaf:name": org.get("title") or org["name"],
                }
            )
            if org
            else None,
            "dct:issued": _dt(pkg.get("metadata_created")),
            "dct:modified": _dt(pkg.get("metadata_modified")),
            "dct:license": {"@id": LICENSE_URLS[lic]} if lic in LICENSE_URLS else lic,
            "dct:accessRights": {"@id": ACCESS_RIGHTS.get(ex.get("access", "open"), "")},
            "dct:rightsHolder": ex.get("attribution"),
            "owl:versionInfo": pkg.get("version"),
            "nsdx:rowCount": ex.get("row_count"),
            "nsdx:qualityScore": ex.get("quality_score"),
            "nsdx:priceCNY": ex.get("price_cny"),
            "dcat:distribution": dists,
        }
    )


def dataset_jsonld(pkg: dict, site: str) -> dict:
    return {"@context": CONTEXT, **dcat_dataset(pkg, site)}


def catalog_jsonld(pkgs: list[dict], site: str, *, title: str, title_en: str) -> dict:
    """The whole catalogue as one ``dcat:Catalog``."""
    site = site.rstrip("/")
    return {
        "@context": CONTEXT,
        "@id": f"{site}/catalog.jsonld",
        "@type": "dcat:Catalog",
        "dct:title": _lang(title, title_en),
        "dct:description": _lang(
            "南沙人工智能产业区开放数据目录与数据交易平台",
            "Open dataset registry and data exchange of the Nansha (Guangzhou) AI zone",
        ),
        "foaf:homepage": {"@id": f"{site}/"},
        "dct:language": [
            {"@id": "http://publications.europa.eu/resource/authority/language/ZHO"},
            {"@id": "http://publications.europa.eu/resource/authority/language/ENG"},
        ],
        "dct:publisher": {"@type": "foaf:Organization", "foaf:name": "南沙区 Nansha District"},
        "dcat:dataset": [dcat_dataset(p, site) for p in pkgs],
    }


def schema_org(pkg: dict, site: str) -> dict[str, Any]:
    """schema.org ``Dataset`` JSON-LD for the dataset's web page (Google Dataset Search)."""
    ex = _extras(pkg)
    url = dataset_url(site, pkg["name"])
    org = pkg.get("organization") or {}
    lic = pkg.get("license_id")
    return _drop_empty(
        {
            "@context": "https://schema.org/",
            "@type": "Dataset",
            "@id": url,
            "url": url,
            "identifier": pkg["id"],
            "name": pkg.get("title") or pkg["name"],
            "alternateName": ex.get("title_en"),
            "description": pkg.get("notes") or ex.get("notes_en") or pkg.get("title"),
            "keywords": [t["name"] for t in pkg.get("tags") or []],
            "license": LICENSE_URLS.get(lic, lic),
            "isAccessibleForFree": ex.get("access", "open") == "open",
            "inLanguage": ["zh", "en"] if ex.get("title_en") else ["zh"],
            "dateCreated": pkg.get("metadata_created"),
            "dateModified": pkg.get("metadata_modified"),
            "version": pkg.get("version"),
            "creator": {"@type": "Organization", "name": org.get("title") or org["name"]}
            if org
            else None,
            "distribution": [
                _drop_empty(
                    {
                        "@type": "DataDownload",
                        "name": r.get("name"),
                        "encodingFormat": MEDIA_TYPES.get((r.get("format") or "").upper())
                        or r.get("format"),
                        "contentUrl": r.get("url"),
                        "contentSize": str(r["size"]) if r.get("size") else None,
                    }
                )
                for r in pkg.get("resources") or []
            ],
        }
    )
