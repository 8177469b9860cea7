"""Contract snapshots: the OpenAPI schema and normalised CKAN Action API responses, kept in
``tests/snapshots/`` so that a change to the HTTP contract shows up as a diff in review.

The CKAN responses are taken on SQLite and on PostgreSQL and compared with the same files,
so the two backends must also answer alike. Volatile values are replaced before comparing:
ids (UUIDs) by ``<uuid>``, timestamps by ``<timestamp>``, the server's scheme, host and port
by ``http://<host>``, the test's temporary folder by ``<tmp>``, file hashes by ``<sha256>``,
byte sizes (they move with the Parquet writer's version) by ``<bytes>`` and durations by
``<duration>``.

When a change is meant, rewrite the files and review them like code::

    NSDX_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_snapshots.py
    git diff tests/snapshots/
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from catalogue.ckan import ERROR_TYPES
from tests.test_ckan_api import BUS, _trigger, deployment, make_nsdx  # noqa: F401 - fixture
from tests.test_web import DATASETS_YAML

SNAPSHOTS = Path(__file__).parent / "snapshots"
UPDATE = os.environ.get("NSDX_UPDATE_SNAPSHOTS") == "1"

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
TIMESTAMP = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})?(?![\d:])"
)
HOST = re.compile(r"https?://(127\.0\.0\.1|localhost|testserver|\[::1\])(:\d+)?")
ERROR_ID = re.compile(r"(error id )[0-9a-f]{12}\b")
SHA256 = re.compile(r"\b[0-9a-f]{64}\b")
BYTES_KEYS = {"bytes", "size"}
DURATION_KEYS = {"seconds", "duration", "duration_ms", "elapsed", "took"}


def normalise(value: Any, tmp: str) -> Any:
    """``value`` with the volatile parts replaced by placeholders."""
    if isinstance(value, dict):
        if set(value) == {"key", "value"} and value["key"] in BYTES_KEYS:  # a CKAN extra
            return {"key": value["key"], "value": "<bytes>"}
        out = {}
        for k, v in value.items():
            if k in BYTES_KEYS and isinstance(v, int | float):
                out[k] = "<bytes>"
            elif k in DURATION_KEYS and isinstance(v, int | float):
                out[k] = "<duration>"
            else:
                out[k] = normalise(v, tmp)
        return out
    if isinstance(value, list):
        return [normalise(v, tmp) for v in value]
    if isinstance(value, str):
        value = value.replace(tmp, "<tmp>")
        value = UUID.sub("<uuid>", value)
        value = ERROR_ID.sub(r"\1<error-id>", value)
        value = TIMESTAMP.sub("<timestamp>", value)
        value = HOST.sub("http://<host>", value)
        return SHA256.sub("<sha256>", value)
    return value


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def check_snapshot(name: str, value: Any) -> None:
    """Compare ``value`` with ``tests/snapshots/<name>``; rewrite it when updating."""
    path = SNAPSHOTS / name
    text = dump(value)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(
            f"no snapshot {path.relative_to(SNAPSHOTS.parent.parent)}: run "
            "`NSDX_UPDATE_SNAPSHOTS=1 .venv/bin/python -m pytest tests/test_snapshots.py` "
            "and review the new file",
            pytrace=False,
        )
    expected = path.read_text(encoding="utf-8")
    if expected != text:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                f"tests/snapshots/{name} (snapshot)",
                f"tests/snapshots/{name} (now)",
            )
        )
        if len(diff) > 6000:
            diff = diff[:6000] + "\n… (diff cut)\n"
        pytest.fail(
            f"the HTTP contract changed: {name} differs from its snapshot.\n{diff}\n"
            "If the change is meant, rewrite the snapshots with NSDX_UPDATE_SNAPSHOTS=1 "
            "and commit them with the change.",
            pytrace=False,
        )


# -- the normaliser ----------------------------------------------------------------------
def test_normalise_replaces_only_volatile_values():
    raw = {
        "id": "0b6f3f5e-8c1a-4d1e-9f00-3c1b2a4d5e6f",
        "metadata_modified": "2026-11-27T09:30:33.642786",
        "created": "2026-11-27T09:30:33+08:00",
        "help": "http://127.0.0.1:43123/api/3/action/help_show?name=x",
        "url": "file:///tmp/pytest-1/t0/home/objects/a.parquet",
        "sha256": "ad4de04b3f67737ef7fc70e12e5f4777c29a2d9548f0beb8ae1af61959850ca9",
        "size": 1113,
        "seconds": 0.25,
        "extras": [{"key": "bytes", "value": "1113"}, {"key": "row_count", "value": "3"}],
        "title": "南沙公交 2024-03-01 08:00",
        "count": 3,
        "ts": "2024-03-01 08:00:00",
    }
    assert normalise(raw, "/tmp/pytest-1/t0") == {
        "id": "<uuid>",
        "metadata_modified": "<timestamp>",
        "created": "<timestamp>",
        "help": "http://<host>/api/3/action/help_show?name=x",
        "url": "file://<tmp>/home/objects/a.parquet",
        "sha256": "<sha256>",
        "size": "<bytes>",
        "seconds": "<duration>",
        "extras": [{"key": "bytes", "value": "<bytes>"}, {"key": "row_count", "value": "3"}],
        "title": "南沙公交 2024-03-01 08:00",
        "count": 3,
        "ts": "<timestamp>",
    }


# -- the snapshots -----------------------------------------------------------------------
def test_openapi_schema(tmp_path, nsdx_env):
    from nsdx.web import create_app

    app = create_app(make_nsdx(tmp_path, f"sqlite:///{tmp_path / 'nsdx.db'}"), warm=False)
    check_snapshot("openapi.json", normalise(app.openapi(), str(tmp_path)))


@pytest.fixture
def published(deployment, tmp_path):  # noqa: F811
    """A deployment with a dataset published by the real pipeline and one made by the API."""
    (tmp_path / "bus.csv").write_text(
        "ts,route_id,speed_kmh\n2024-03-01 08:00:00,N4,31.5\n2024-03-01 08:00:30,N8,28.0\n",
        encoding="utf-8",
    )
    (tmp_path / "datasets.yaml").write_text(DATASETS_YAML, encoding="utf-8")
    [result] = deployment.nx.ingest(["bus-gps"])
    assert result.status == "published"
    deployment.ok("package_create", BUS)
    return deployment


def test_ckan_responses(published, tmp_path, monkeypatch):
    d, tmp = published, str(tmp_path)

    def get(action: str, params: dict | None = None) -> dict:
        status, body = d.call(action, params, method="GET", token=None)
        assert status == 200, body
        return normalise(body, tmp)

    check_snapshot("ckan/status_show.json", get("status_show"))
    check_snapshot("ckan/package_show.json", get("package_show", {"id": "bus-gps"}))
    check_snapshot(
        "ckan/package_search.json",
        get(
            "package_search",
            {
                "q": "南沙",
                "sort": "name asc",
                "facet.field": json.dumps(["organization", "tags", "res_format", "license_id"]),
            },
        ),
    )
    errors = {}
    for kind in ERROR_TYPES:
        status, body = _trigger(d, kind, monkeypatch)
        errors[kind] = {"status": status, "body": normalise(body, tmp)}
    check_snapshot("ckan/errors.json", errors)
