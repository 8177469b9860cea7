"""Open-data renderings of package dicts: DCAT-AP JSON-LD (catalogue and dataset) and
schema.org ``Dataset`` JSON-LD for web pages. Pure functions over the package dicts that
every other surface renders."""

from __future__ import annotations

from typing import Any

from .downloads import absolute

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
    pkg = absolute(pkg, site)
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
    pkg = absolute(pkg, site)
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


# -- MLCommons Croissant (for ML users) -------------------------------------------------
CROISSANT_CONTEXT = {
    "@language": "en",
    "@vocab": "https://schema.org/",
    "sc": "https://schema.org/",
    "cr": "http://mlcommons.org/croissant/",
    "dct": "http://purl.org/dc/terms/",
    "citeAs": "cr:citeAs",
    "column": "cr:column",
    "conformsTo": "dct:conformsTo",
    "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
    "examples": {"@id": "cr:examples", "@type": "@json"},
    "extract": "cr:extract",
    "field": "cr:field",
    "fileObject": "cr:fileObject",
    "fileSet": "cr:fileSet",
    "format": "cr:format",
    "includes": "cr:includes",
    "isLiveDataset": "cr:isLiveDataset",
    "key": "cr:key",
    "md5": "cr:md5",
    "recordSet": "cr:recordSet",
    "references": "cr:references",
    "source": "cr:source",
}
_CR_TYPES = {
    "string": "sc:Text",
    "large_string": "sc:Text",
    "integer": "sc:Integer",
    "int32": "sc:Integer",
    "int64": "sc:Integer",
    "float": "sc:Float",
    "double": "sc:Float",
    "decimal": "sc:Float",
    "boolean": "sc:Boolean",
    "bool": "sc:Boolean",
    "date": "sc:Date",
    "timestamp": "sc:DateTime",
    "timestamptz": "sc:DateTime",
    "time": "sc:Time",
}


def _cr_type(t: str | None) -> str:
    t = (t or "string").lower()
    for k, v in _CR_TYPES.items():
        if t == k or t.startswith(k + "[") or t.startswith(k + "("):
            return v
    if t.startswith("timestamp"):
        return "sc:DateTime"
    if t.startswith(("int", "uint")):
        return "sc:Integer"
    return "sc:Text"


def croissant(pkg: dict, site: str) -> dict:
    """MLCommons Croissant 1.0 metadata: the published Parquet tables as file objects and
    one record set per table with its typed columns."""
    pkg = absolute(pkg, site)
    ex = _extras(pkg)
    url = dataset_url(site, pkg["name"])
    lic = pkg.get("license_id")
    files, records = [], []
    for r in pkg.get("resources") or []:
        if not r.get("nsdx_files"):
            continue
        table = r.get("nsdx_table") or pkg["name"]
        ids = []
        for f in r["nsdx_files"]:
            fid = f"{table}/{f['path'].rsplit('/', 1)[-1]}"
            ids.append(fid)
            files.append(
                _drop_empty(
                    {
                        "@type": "cr:FileObject",
                        "@id": fid,
                        "name": fid,
                        "contentUrl": f.get("url"),
                        "contentSize": f"{f.get('bytes', 0)} B",
                        "encodingFormat": "application/x-parquet",
                        "sha256": f.get("sha256"),
                    }
                )
            )
        records.append(
            {
                "@type": "cr:RecordSet",
                "@id": table,
                "name": table,
                "field": [
                    {
                        "@type": "cr:Field",
                        "@id": f"{table}/{c['name']}",
                        "name": c["name"],
                        "dataType": _cr_type(c.get("type")),
                        "source": {"fileObject": {"@id": ids[0]}, "extract": {"column": c["name"]}},
                    }
                    for c in r.get("nsdx_schema") or []
                ],
            }
        )
    return _drop_empty(
        {
            "@context": CROISSANT_CONTEXT,
            "@type": "sc:Dataset",
            "conformsTo": "http://mlcommons.org/croissant/1.0",
            "name": pkg["name"],
            "alternateName": [x for x in (pkg.get("title"), ex.get("title_en")) if x],
            "description": pkg.get("notes") or ex.get("notes_en") or pkg.get("title"),
            "url": url,
            "license": LICENSE_URLS.get(lic, lic),
            "version": pkg.get("version"),
            "datePublished": pkg.get("metadata_created"),
            "dateModified": pkg.get("metadata_modified"),
            "keywords": [t["name"] for t in pkg.get("tags") or []],
            "distribution": files,
            "recordSet": records,
        }
    )
