"""Property-based test of every HTTP operation from the OpenAPI document (schemathesis):
generated requests, anonymous and with a sysadmin token, never get a 5xx, and every answer
has a status, content type and body the document lists for that operation. Bounded: a few
examples per operation, derandomised, so the suite stays fast and repeatable.

This is the test that would have found the 5xx of issue 11 (hole 13)."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import schemathesis
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis import GenerationMode
    from schemathesis.checks import (
        content_type_conformance,
        not_a_server_error,
        response_schema_conformance,
        status_code_conformance,
    )

EXAMPLES = 6  # per operation and caller


@pytest.fixture(scope="module")
def fuzz_site(tmp_path_factory):
    import os

    from nsdx.core import Nsdx
    from nsdx.settings import Settings
    from nsdx.web.app import create_app
    from tests.test_ckan_api import BUS

    root = tmp_path_factory.mktemp("fuzz")
    home = root / "home"
    saved = os.environ.get("NSDX_HOME")
    os.environ["NSDX_HOME"] = str(home)
    nx = Nsdx(
        Settings(
            home=home,
            database_url=f"sqlite:///{home / 'nsdx.db'}",
            storage_url=f"file://{home / 'objects'}",
            datasets_path=root / "datasets.yaml",
        )
    )
    nx.accounts.create_user("admin", sysadmin=True)
    nx.accounts.create_org("bureau", title="南沙区交通运输局")
    token, _ = nx.accounts.create_token("admin")
    app = create_app(nx, warm=False, worker=False)
    from fastapi.testclient import TestClient

    with TestClient(app) as c:
        r = c.post("/api/3/action/package_create", json=BUS, headers={"Authorization": token})
        assert r.status_code == 200, r.text
        yield app, token
    if saved is None:
        os.environ.pop("NSDX_HOME", None)
    else:
        os.environ["NSDX_HOME"] = saved


@pytest.fixture(scope="module")
def api_schema(fuzz_site):
    app, _ = fuzz_site
    return schemathesis.openapi.from_asgi("/openapi.json", app)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(schema, headers: dict, mode=None) -> list[str]:
    """Run every operation with generated requests (valid ones, or with ``mode`` NEGATIVE
    invalid ones: wrong types, missing fields, out-of-range numbers); the failures, one
    line each."""
    mode = mode or GenerationMode.POSITIVE
    failures: list[str] = []
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) > 30  # the CKAN, exchange, audit, query, sharing, open-data routes
    for op in operations:
        takes_input = list(op.iter_parameters()) or op.get_request_payload_content_types()
        if mode == GenerationMode.NEGATIVE and not takes_input:
            continue  # nothing to make invalid

        @given(case=op.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def run(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # nothing of this operation can be made invalid (no inputs)
            continue
        except (Exception, BaseExceptionGroup) as e:  # noqa: BLE001 - collect them all
            failures.append(f"{op.label}: {' '.join(str(e).split())[:400]}")
    return failures


def test_no_5xx_and_every_answer_is_documented_anonymous(api_schema):
    failures = _fuzz(api_schema, {})
    assert not failures, "\n".join(failures)


def test_no_5xx_and_every_answer_is_documented_sysadmin(api_schema, fuzz_site):
    _, token = fuzz_site
    failures = _fuzz(api_schema, {"Authorization": token})
    assert not failures, "\n".join(failures)


def test_every_operation_lists_its_errors(api_schema, fuzz_site):
    """The document lists the 4xx (and the 500) of each operation, in its dialect."""
    app, _ = fuzz_site
    spec = app.openapi()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            codes = set(op["responses"])
            assert {"400", "403", "404", "414", "500"} <= codes, (method, path)
            if method == "post":
                assert "413" in codes, (method, path)
            for code in codes - {"200", "201", "206", "300", "302"}:
                content = op["responses"][code].get("content", {})
                if content:
                    assert "application/json" in content, (method, path, code)
