"""Open-data renderings of package dicts: DCAT-AP JSON-LD (catalogue and dataset) and
schema.org ``Dataset`` JSON-LD for web pages. Pure functions over the package dicts that
every other surface renders."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

from .downloads import absolute
from .licences import Licence, document_url, licence
from .registry import media_type

CONTEXT = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dct": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/0.1/",
    "xsd": "http://www.w3.org/2001/XMLSchema#",
    "owl": "http://www.w3.org/2002/07/owl#",
    "adms": "http://www.w3.org/ns/adms#",
    "rdfs": "http://www.w3.org/2000/01/rdf-schema#",
    "skos": "http://www.w3.org/2004/02/skos/core#",
    "vcard": "http://www.w3.org/2006/vcard/ns#",
    "spdx": "http://spdx.org/rdf/terms#",
    "gsp": "http://www.opengis.net/ont/geosparql#",
    "locn": "http://www.w3.org/ns/locn#",
    "nsdx": "https://nsdx.nansha.gov.cn/ns#",
}
PROFILES = ("dcat-ap-3", "dcat-ap-2")  # DCAT-AP 3.0.1 (default) and 2.1.1
EU = "http://publications.europa.eu/resource/authority"
ACCESS_RIGHTS = {
    "open": f"{EU}/access-right/PUBLIC",
    "restricted": f"{EU}/access-right/RESTRICTED",
}
# nsdx domains -> the EU data-theme vocabulary (a domain not listed gets no theme)
DATA_THEMES = {
    "transport": "TRAN",
    "urban-management": "REGI",
    "environment": "ENVI",
    "energy": "ENER",
    "health": "HEAL",
    "education": "EDUC",
    "economy": "ECON",
    "agriculture": "AGRI",
    "government": "GOVE",
    "public-sector": "GOVE",
    "science": "TECH",
    "technology": "TECH",
    "society": "SOCI",
    "population": "SOCI",
    "justice": "JUST",
    "international": "INTR",
}
# resource formats -> the EU file-type vocabulary
FILE_TYPES = {
    "CSV": "CSV",
    "JSON": "JSON",
    "NDJSON": "JSON",
    "GEOJSON": "GEOJSON",
    "XLSX": "XLSX",
    "XLS": "XLS",
    "PARQUET": "PARQUET",
    "ZIP": "ZIP",
    "GTFS": "ZIP",
    "PDF": "PDF",
    "XML": "XML",
    "HTML": "HTML",
}
THEME_LABELS = {  # the EU vocabulary's preferred labels (English), with Chinese
    "AGRI": ("Agriculture, fisheries, forestry and food", "农业、渔业、林业和食品"),
    "ECON": ("Economy and finance", "经济与金融"),
    "EDUC": ("Education, culture and sport", "教育、文化和体育"),
    "ENER": ("Energy", "能源"),
    "ENVI": ("Environment", "环境"),
    "GOVE": ("Government and public sector", "政府与公共部门"),
    "HEAL": ("Health", "卫生"),
    "INTR": ("International issues", "国际事务"),
    "JUST": ("Justice, legal system and public safety", "司法、法律制度与公共安全"),
    "REGI": ("Regions and cities", "区域与城市"),
    "SOCI": ("Population and society", "人口与社会"),
    "TECH": ("Science and technology", "科学技术"),
    "TRAN": ("Transport", "交通运输"),
}
LANGUAGES = [f"{EU}/language/ZHO", f"{EU}/language/ENG"]
IANA = "https://www.iana.org/assignments/media-types/"


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
    if not v:
        return None
    return {"@value": v, "@type": "xsd:dateTime" if "T" in v else "xsd:date"}


def _drop_empty(d: dict) -> dict:
    return {k: v for k, v in d.items() if v not in (None, [], "", {})}


def dataset_url(site: str, name: str) -> str:
    return f"{site.rstrip('/')}/dataset/{name}"


def _org_title(pkg: dict) -> str | None:
    org = pkg.get("organization") or {}
    return org.get("title") or org.get("name")


def descriptions(pkg: dict) -> tuple[str, str]:
    """The dataset's description in Chinese and in English: the provider's notes, or one
    written from what the catalogue knows (publisher, rows, tables, period) when absent."""
    ex = _extras(pkg)
    nsdx = pkg.get("nsdx") or {}
    title = pkg.get("title") or pkg["name"]
    title_en = ex.get("title_en") or pkg["name"]
    org = _org_title(pkg)
    rows = nsdx.get("row_count") if nsdx else ex.get("row_count")
    tables = [r for r in pkg.get("resources") or [] if r.get("nsdx_schema")]
    start, end = ex.get("temporal_start"), ex.get("temporal_end")
    zh = (pkg.get("notes") or "").strip()
    if not zh:
        zh = f"数据集“{title}”" + (f"，由{org}发布" if org else "")
        if rows not in (None, "", "None"):
            zh += f"，共{rows}行"
        if len(tables) > 1:
            zh += f"，含{len(tables)}张表"
        if start and end:
            zh += f"，时间范围{start[:10]}至{end[:10]}"
        zh += "。"
    en = (ex.get("notes_en") or "").strip()
    if not en:
        en = f"The dataset \u201c{title_en}\u201d" + (f" published by {org}" if org else "")
        if rows not in (None, "", "None"):
            en += f", {rows} rows"
        if len(tables) > 1:
            en += f" in {len(tables)} tables"
        if start and end:
            en += f", from {start[:10]} to {end[:10]}"
        en += "."
    return zh, en


def _licence(pkg: dict) -> Licence:
    return licence(pkg.get("license_id"), pkg.get("license_url") or None)


def _licence_url(pkg: dict, site: str) -> str:
    """The licence document: the register's or the publisher's URL, else the portal's page
    of the licence (catalogue.licences.document_url)."""
    return document_url(_licence(pkg), site)


def _licence_node(pkg: dict, site: str) -> dict:
    lic = _licence(pkg)
    return {"@id": document_url(lic, site), "@type": "dct:LicenseDocument", "rdfs:label": lic.title}


def _contact(pkg: dict, site: str) -> dict | None:
    org = pkg.get("organization") or {}
    c = (pkg.get("nsdx") or {}).get("contact") or {}
    name = c.get("name") or pkg.get("maintainer") or _org_title(pkg)
    email = c.get("email") or pkg.get("maintainer_email")
    url = c.get("url") or (f"{site.rstrip('/')}/organization/{org['name']}" if org else None)
    if not name:
        return None
    return _drop_empty(
        {
            "@type": ["vcard:Kind", "vcard:Organization"],
            "vcard:fn": name,
            "vcard:hasEmail": {"@id": f"mailto:{email}"} if email else None,
            "vcard:hasURL": {"@id": url} if url else None,
            "vcard:hasTelephone": {"@id": f"tel:{c['phone'].replace(' ', '')}"}
            if c.get("phone")
            else None,
        }
    )


def _bbox(geojson: str | None) -> dict | None:
    if not geojson:
        return None
    try:
        ring = json.loads(geojson)["coordinates"][0]
        xs, ys = [float(p[0]) for p in ring], [float(p[1]) for p in ring]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    w, e, s, n = min(xs), max(xs), min(ys), max(ys)
    wkt = f"POLYGON(({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))"
    return {"@type": "dct:Location", "dcat:bbox": {"@value": wkt, "@type": "gsp:wktLiteral"}}


def _checksum(r: dict) -> dict | None:
    algo, _, value = (r.get("hash") or "").partition(":")
    if algo.lower() != "sha256" or len(value) != 64:
        return None
    return {
        "@type": "spdx:Checksum",
        "spdx:algorithm": {
            "@id": "spdx:checksumAlgorithm_sha256",
            "@type": "spdx:ChecksumAlgorithm",
        },
        "spdx:checksumValue": {"@value": value, "@type": "xsd:hexBinary"},
    }


def _distribution(pkg: dict, r: dict, url: str, profile: str, site: str) -> dict:
    fmt = (r.get("format") or "").strip().upper()
    mt = r.get("mimetype") or media_type(fmt)
    size = r.get("size")
    return _drop_empty(
        {
            "@id": f"{url}/resource/{r['id']}",
            "@type": "dcat:Distribution",
            "dct:identifier": r["id"],
            "dct:title": _lang(r.get("name"), None) or None,
            "dct:description": _lang(r.get("description"), None) or None,
            "dcat:accessURL": {"@id": r["url"]} if r.get("url") else {"@id": url},
            "dcat:downloadURL": {"@id": r["url"]} if r.get("url") else None,
            "dct:format": {"@id": f"{EU}/file-type/{FILE_TYPES[fmt]}",
                           "@type": "dct:MediaTypeOrExtent"} if fmt in FILE_TYPES else None,
            "dcat:mediaType": {"@id": IANA + mt, "@type": "dct:MediaType"} if mt else None,
            "dcat:byteSize": {
                "@value": str(size),
                "@type": "xsd:decimal" if profile == "dcat-ap-2" else "xsd:nonNegativeInteger",
            } if isinstance(size, int) and size >= 0 else None,
            # DCAT-AP 2 admits SHA-1 checksums only; the manifest has SHA-256
            "spdx:checksum": _checksum(r) if profile != "dcat-ap-2" else None,
            "dct:license": _licence_node(pkg, site),
            "dct:modified": _dt(r.get("last_modified") or r.get("metadata_modified")),
            "nsdx:rowCount": r.get("nsdx_row_count"),
        }
    )  # fmt: skip


def dcat_dataset(pkg: dict, site: str, profile: str = "dcat-ap-3") -> dict:
    """One ``dcat:Dataset`` node (without @context)."""
    pkg = absolute(pkg, site)
    ex = _extras(pkg)
    url = dataset_url(site, pkg["name"])
    org = pkg.get("organization") or {}
    zh, en = descriptions(pkg)
    theme = DATA_THEMES.get(ex.get("domain") or "")
    start, end = ex.get("temporal_start"), ex.get("temporal_end")
    return _drop_empty(
        {
            "@id": url,
            "@type": "dcat:Dataset",
            "dct:identifier": pkg["id"],
            "dct:title": _lang(pkg.get("title") or pkg["name"], ex.get("title_en")),
            "dct:description": _lang(zh, en),
            "dcat:keyword": [t["name"] for t in pkg.get("tags") or []],
            "dcat:theme": {
                "@id": f"{EU}/data-theme/{theme}",
                "@type": "skos:Concept",
                "skos:prefLabel": _lang(THEME_LABELS[theme][1], THEME_LABELS[theme][0]),
                "skos:inScheme": {"@id": f"{EU}/data-theme"},
            }
            if theme
            else None,  # fmt: skip
            "dcat:landingPage": {"@id": url, "@type": "foaf:Document"},
            "dcat:contactPoint": _contact(pkg, site),
            "dct:publisher": _drop_empty(
                {
                    "@id": f"{site.rstrip('/')}/organization/{org['name']}",
                    "@type": ["foaf:Agent", "foaf:Organization"],
                    "foaf:name": org.get("title") or org["name"],
                }
            )
            if org
            else None,
            "dct:language": [{"@id": x, "@type": "dct:LinguisticSystem"} for x in LANGUAGES],
            "dct:spatial": _bbox(ex.get("spatial")),
            "dct:temporal": _drop_empty(
                {
                    "@type": "dct:PeriodOfTime",
                    "dcat:startDate": _dt(start),
                    "dcat:endDate": _dt(end),
                }
            )
            if start or end
            else None,  # fmt: skip
            "dct:issued": _dt(pkg.get("metadata_created")),
            "dct:modified": _dt(pkg.get("metadata_modified")),
            "dct:license": _licence_node(pkg, site),
            "dct:accessRights": {
                "@id": ACCESS_RIGHTS.get(ex.get("access", "open"), ACCESS_RIGHTS["restricted"]),
                "@type": "dct:RightsStatement",
            },
            "dct:rightsHolder": _lang(ex.get("attribution"), None) or None,
            "owl:versionInfo": pkg.get("version"),
            "nsdx:rowCount": ex.get("row_count"),
            "nsdx:qualityScore": ex.get("quality_score"),
            "nsdx:priceCNY": ex.get("price_cny"),
            "dcat:distribution": [
                _distribution(pkg, r, url, profile, site) for r in pkg.get("resources") or []
            ],
        }
    )


def dataset_jsonld(pkg: dict, site: str, profile: str = "dcat-ap-3") -> dict:
    return {"@context": CONTEXT, **dcat_dataset(pkg, site, profile)}


def catalog_jsonld(
    pkgs: list[dict], site: str, *, title: str, title_en: str, profile: str = "dcat-ap-3"
) -> dict:
    """The whole catalogue as one ``dcat:Catalog``."""
    site = site.rstrip("/")
    modified = max((p.get("metadata_modified") or "" for p in pkgs), default="")
    return _drop_empty(
        {
            "@context": CONTEXT,
            "@id": f"{site}/catalog.jsonld",
            "@type": "dcat:Catalog",
            "dct:title": _lang(title, title_en),
            "dct:description": _lang(
                "南沙人工智能产业区开放数据目录与数据交易平台",
                "Open dataset registry and data exchange of the Nansha (Guangzhou) AI zone",
            ),
            "foaf:homepage": {"@id": f"{site}/", "@type": "foaf:Document"},
            "dct:language": [{"@id": x, "@type": "dct:LinguisticSystem"} for x in LANGUAGES],
            "dct:publisher": {
                "@id": f"{site}/#publisher",
                "@type": ["foaf:Agent", "foaf:Organization"],
                "foaf:name": "南沙区 Nansha District",
            },
            "dcat:themeTaxonomy": {
                "@id": f"{EU}/data-theme",
                "@type": "skos:ConceptScheme",
                "dct:title": _lang("数据主题", "Data theme"),
            },
            "dct:modified": _dt(modified or None),
            "dcat:dataset": [dcat_dataset(p, site, profile) for p in pkgs],
        }
    )


def turtle(doc: dict) -> str:
    """A JSON-LD document (its context inline) as Turtle."""
    from rdflib import Graph

    g = Graph()
    g.parse(data=json.dumps(doc, ensure_ascii=False), format="json-ld")
    for prefix, ns in CONTEXT.items():
        g.bind(prefix, ns)
    return g.serialize(format="turtle")


def _google_box(geojson: str | None) -> str | None:
    if geojson is None or _bbox(geojson) is None:
        return None
    ring = json.loads(geojson)["coordinates"][0]
    xs, ys = [float(p[0]) for p in ring], [float(p[1]) for p in ring]
    return f"{min(ys)} {min(xs)} {max(ys)} {max(xs)}"  # south west north east


def schema_description(pkg: dict) -> str:
    """Google Dataset Search wants 50 to 5,000 characters: both languages, then the
    published columns when that is still short."""
    zh, en = descriptions(pkg)
    text = zh if zh == en else f"{zh}\n\n{en}"
    if len(text) < 50:
        cols = [c["name"] for r in pkg.get("resources") or [] for c in r.get("nsdx_schema") or []]
        if cols:
            text += "\n\n字段 Columns: " + ", ".join(cols)
    if len(text) < 50:
        text += "\n\n" + f"南沙开放数据目录 Nansha open data catalogue: {pkg['name']}"
    return text if len(text) <= 5000 else text[:4999] + "…"


def schema_org(pkg: dict, site: str) -> dict[str, Any]:
    """schema.org ``Dataset`` JSON-LD for the dataset's web page (Google Dataset Search)."""
    pkg = absolute(pkg, site)
    ex = _extras(pkg)
    url = dataset_url(site, pkg["name"])
    org = pkg.get("organization") or {}
    lic = licence(pkg.get("license_id"), pkg.get("license_url") or None)
    start, end = ex.get("temporal_start"), ex.get("temporal_end")
    box = _google_box(ex.get("spatial"))
    contact = (pkg.get("nsdx") or {}).get("contact") or {}
    return _drop_empty(
        {
            "@context": "https://schema.org/",
            "@type": "Dataset",
            "@id": url,
            "url": url,
            "identifier": pkg["id"],
            "name": pkg.get("title") or pkg["name"],
            "alternateName": ex.get("title_en"),
            "description": schema_description(pkg),
            "keywords": [t["name"] for t in pkg.get("tags") or []],
            "license": document_url(lic, site),
            "isAccessibleForFree": ex.get("access", "open") == "open",
            "inLanguage": ["zh", "en"],
            "dateCreated": pkg.get("metadata_created"),
            "dateModified": pkg.get("metadata_modified"),
            "version": pkg.get("version"),
            "temporalCoverage": f"{start or '..'}/{end or '..'}" if start or end else None,
            "spatialCoverage": {
                "@type": "Place",
                "geo": {"@type": "GeoShape", "box": box},
            } if box else None,
            "includedInDataCatalog": {
                "@type": "DataCatalog",
                "name": "南沙开放数据目录 Nansha open data catalogue",
                "url": f"{site.rstrip('/')}/",
            },
            "creator": _drop_empty({
                "@type": "Organization",
                "name": org.get("title") or org["name"],
                "url": contact.get("url") or f"{site.rstrip('/')}/organization/{org['name']}",
                "contactPoint": _drop_empty({
                    "@type": "ContactPoint",
                    "contactType": "data publisher",
                    "email": contact.get("email"),
                    "telephone": contact.get("phone"),
                    "url": contact.get("url"),
                }) if contact.get("email") or contact.get("phone") else None,
            }) if org else None,
            "variableMeasured": [
                _drop_empty({"@type": "PropertyValue", "name": c["name"],
                             "description": c.get("description"), "unitText": c.get("unit")})
                for r in pkg.get("resources") or [] for c in r.get("nsdx_schema") or []
            ][:200],
            "distribution": [
                _drop_empty(
                    {
                        "@type": "DataDownload",
                        "name": r.get("name"),
                        "encodingFormat": r.get("mimetype") or media_type(r.get("format"))
                        or r.get("format"),
                        "contentUrl": r.get("url"),
                        "contentSize": f"{r['size']} B" if r.get("size") else None,
                    }
                )
                for r in pkg.get("resources") or []
                if r.get("url")
            ],
        }
    )  # fmt: skip


# -- MLCommons Croissant (for ML users) -------------------------------------------------
CROISSANT_CONTEXT = {  # Croissant 1.0's; our text is Chinese first (inLanguage: zh, en)
    "@language": "zh",
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
    if t.startswith("date"):  # date32[day], date64[ms]
        return "sc:Date"
    if t.startswith("time"):
        return "sc:Time"
    if t.startswith(("int", "uint")):
        return "sc:Integer"
    if t.startswith(("float", "halffloat", "decimal")):
        return "sc:Float"
    return "sc:Text"


def _cr_id(*parts: str) -> str:
    """A Croissant ``@id``: a relative IRI (no spaces or other reserved characters)."""
    return "/".join(quote(p, safe="-_.~") for p in parts)


def croissant(pkg: dict, site: str) -> dict:
    """MLCommons Croissant 1.0 metadata: each published Parquet file as a FileObject (its
    download URL; restricted data needs a token or signed URL there) and one record set per
    table with its typed columns. Text is Chinese and English: ``inLanguage`` says so."""
    pkg = absolute(pkg, site)
    ex = _extras(pkg)
    url = dataset_url(site, pkg["name"])
    files, records = [], []
    for r in pkg.get("resources") or []:
        if not r.get("nsdx_files") or not r.get("nsdx_schema"):
            continue
        table = r.get("nsdx_table") or pkg["name"]
        parts = []
        for f in r["nsdx_files"]:
            name = f["path"].rsplit("/", 1)[-1]
            content = f.get("url")  # the portal's download route (catalogue.downloads)
            if not content:
                continue
            fid = _cr_id(table, name)
            parts.append(fid)
            files.append(
                _drop_empty(
                    {
                        "@type": "cr:FileObject",
                        "@id": fid,
                        "name": fid,
                        "contentUrl": content,
                        "contentSize": f"{f.get('bytes', 0)} B",
                        "encodingFormat": "application/x-parquet",
                        "sha256": f.get("sha256"),
                    }
                )
            )
        for i, fid in enumerate(parts):  # a table written in several files: one set each
            rid = _cr_id(table) if len(parts) == 1 else f"{_cr_id(table)}/{i:05d}"
            records.append(
                {
                    "@type": "cr:RecordSet",
                    "@id": rid,
                    "name": rid,
                    "field": [
                        _drop_empty(
                            {
                                "@type": "cr:Field",
                                "@id": f"{rid}/{_cr_id(c['name'])}",
                                "name": c["name"],
                                "description": c.get("description"),
                                "dataType": _cr_type(c.get("type")),
                                "source": {
                                    "fileObject": {"@id": fid},
                                    "extract": {"column": c["name"]},
                                },
                            }
                        )  # fmt: skip
                        for c in r["nsdx_schema"]
                    ],
                }
            )
    zh, en = descriptions(pkg)
    return _drop_empty(
        {
            "@context": CROISSANT_CONTEXT,
            "@type": "sc:Dataset",
            "conformsTo": "http://mlcommons.org/croissant/1.0",
            "name": pkg["name"],
            "alternateName": [x for x in (pkg.get("title"), ex.get("title_en")) if x],
            "description": zh if zh == en else f"{zh}\n\n{en}",
            "inLanguage": ["zh", "en"],
            "url": url,
            "license": _licence_url(pkg, site),
            "version": pkg.get("version"),
            "datePublished": pkg.get("metadata_created"),
            "dateModified": pkg.get("metadata_modified"),
            "keywords": [t["name"] for t in pkg.get("tags") or []],
            "isAccessibleForFree": ex.get("access", "open") == "open",
            "creator": {"@type": "sc:Organization", "name": _org_title(pkg)}
            if _org_title(pkg)
            else None,
            "distribution": files,
            "recordSet": records,
        }
    )


# -- Frictionless Data Package -------------------------------------------------------------
def _dp_type(t: str | None) -> dict:
    """Table Schema type (and format) of an Arrow type name."""
    t = (t or "string").lower()
    if t.startswith("timestamp"):
        return {"type": "datetime", "format": "any"}  # CSV: 2026-03-02 08:00:00[+08:00]
    if t.startswith("date"):
        return {"type": "date"}
    if t.startswith("time"):
        return {"type": "time", "format": "any"}
    if t.startswith(("int", "uint")):
        return {"type": "integer"}
    if t.startswith(("float", "double", "halffloat", "decimal")):
        return {"type": "number"}
    if t in ("bool", "boolean"):
        return {"type": "boolean"}
    if t in ("string", "large_string", "utf8", "large_utf8"):
        return {"type": "string"}
    return {"type": "any"}


def _dp_name(s: str) -> str:
    """A Data Package name: lower-case letters, digits and -._ only."""
    out = re.sub(r"[^a-z0-9._-]+", "-", s.lower()).strip("-")
    return out or "resource"


def datapackage(pkg: dict, site: str) -> dict:
    """A Frictionless (Tabular) Data Package: each published table as a CSV resource at the
    portal's download URL with a Table Schema from the published schema; link resources as
    they are. Restricted tables need a token or signed URL at those URLs."""
    from .downloads import table_path, url_segment

    pkg = absolute(pkg, site)
    site = site.rstrip("/")
    zh, en = descriptions(pkg)
    lic = licence(pkg.get("license_id"), pkg.get("license_url") or None)
    org = pkg.get("organization") or {}
    resources, seen = [], set()
    for r in pkg.get("resources") or []:
        name = _dp_name(r.get("nsdx_table") or r.get("name") or r["id"])
        while name in seen:
            name += "-1"
        seen.add(name)
        if r.get("nsdx_schema") and pkg.get("version"):
            seg = url_segment(pkg["name"], r.get("nsdx_table"))
            resources.append(
                _drop_empty(
                    {
                        "profile": "tabular-data-resource",
                        "name": name,
                        "title": r.get("name"),
                        "description": r.get("description"),
                        "path": site + table_path(pkg["name"], int(pkg["version"]), seg, "csv"),
                        "format": "csv",
                        "mediatype": "text/csv",
                        "encoding": "utf-8",
                        "schema": {
                            "fields": [
                                _drop_empty(
                                    {
                                        "name": c["name"],
                                        **_dp_type(c.get("type")),
                                        "description": c.get("description"),
                                    }
                                )
                                for c in r["nsdx_schema"]
                            ]
                        },
                    }
                )
            )
        elif r.get("url"):
            fmt = (r.get("format") or "").lower()
            resources.append(
                _drop_empty(
                    {
                        "name": name,
                        "title": r.get("name"),
                        "path": r["url"],
                        "format": fmt or None,
                        "mediatype": r.get("mimetype") or media_type(fmt),
                        "hash": r.get("hash") or None,
                    }
                )
            )
    tabular = bool(resources) and all(
        r.get("profile") == "tabular-data-resource" for r in resources
    )
    return _drop_empty(
        {
            "profile": "tabular-data-package" if tabular else "data-package",
            "name": _dp_name(pkg["name"]),
            "id": pkg["id"],
            "title": pkg.get("title") or pkg["name"],
            "description": zh if zh == en else f"{zh}\n\n{en}",
            "homepage": dataset_url(site, pkg["name"]),
            "version": pkg.get("version"),
            "created": pkg.get("metadata_created"),
            "keywords": [t["name"] for t in pkg.get("tags") or []],
            "licenses": [
                _drop_empty({"name": lic.id, "title": lic.title, "path": document_url(lic, site)})
            ],
            "contributors": [
                _drop_empty(
                    {
                        "title": org.get("title") or org["name"],
                        "role": "publisher",
                        "path": ((pkg.get("nsdx") or {}).get("contact") or {}).get("url"),
                    }
                )
            ]
            if org
            else None,
            "resources": resources,
        }
    )
