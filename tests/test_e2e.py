"""End to end through the real `nsdx` command: generated Nansha data and the real files,
on the local folder and on S3 (a real SeaweedFS)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import REAL, ROOT, run_cli

ROWS = 20_000
# one worker builds each module-scoped deployment once (`make test` uses --dist loadgroup)
pytestmark = pytest.mark.xdist_group("e2e")


@pytest.fixture(scope="module")
def samples_dir(tmp_path_factory) -> Path:
    from nsdx.samples import generate

    out = tmp_path_factory.mktemp("samples")
    generate(out, rows=ROWS)
    return out


def write_datasets_yaml(dest: Path, samples: Path, only: list[str] | None = None) -> Path:
    """The repository's datasets.yaml, pointed at `samples` and the real data folder."""
    import yaml

    doc = yaml.safe_load((ROOT / "datasets.yaml").read_text(encoding="utf-8"))
    for ds in doc["datasets"]:
        p = ds["source"]["path"]
        if p.startswith("data/samples/"):
            ds["source"]["path"] = str(samples / p.removeprefix("data/samples/"))
        elif p.startswith("data/real/"):
            ds["source"]["path"] = str(REAL / p.removeprefix("data/real/"))
    if only:
        doc["datasets"] = [d for d in doc["datasets"] if d["id"] in only]
    dest.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return dest


@pytest.fixture(scope="module", params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def published(request, tmp_path_factory, samples_dir):
    """A deployment (local folder, or S3) where `nsdx ingest --all` published every dataset
    of the repository's datasets.yaml, once per module; its environment and that first
    ingest's JSON report. The tests that use it only read (a re-ingest finds nothing new)."""
    root = tmp_path_factory.mktemp(f"e2e-{request.param}")
    env = {
        "NSDX_HOME": str(root / "home"),
        "NSDX_DATASETS": str(write_datasets_yaml(root / "datasets.yaml", samples_dir)),
        "NSDX_PII_KEY": "test-pii-key",
    }
    if request.param == "s3":
        sw = request.getfixturevalue("seaweedfs")
        env.update(sw.env(sw.bucket(), "nsdx"))
    with pytest.MonkeyPatch.context() as mp:
        for k in ("NSDX_DATABASE_URL", "NSDX_STORAGE_URL"):
            mp.delenv(k, raising=False)
        yield env, ingest_all(env)


def ingest_all(env) -> dict:
    out = run_cli("ingest", "--all", "--json", env=env)
    return json.loads(out.stdout)


def declare_speeding_bus(tmp_path: Path, env: dict, rows: str) -> None:
    """A one-dataset datasets.yaml: bus speeds that must lie in [0, 150] km/h."""
    csv = tmp_path / "gps.csv"
    csv.write_text(rows, encoding="utf-8")
    Path(env["NSDX_DATASETS"]).write_text(
        f"""datasets:
  - id: gps
    title: GPS
    domain: transport
    organization: nansha-bus-company
    source: {{path: {csv}, format: csv}}
    expectations:
      - {{column: speed_kmh, between: [0, 150]}}
""",
        encoding="utf-8",
    )


@pytest.mark.slow  # builds the module's deployments: `nsdx ingest --all`, local and S3
def test_ingest_everything_then_query_then_rerun(published):
    env, first = published
    assert first["errors"] == []
    by_id = {r["dataset"]: r for r in first["results"]}
    assert len(by_id) >= 14
    assert all(r["status"] in ("published", "published_with_warnings") for r in by_id.values())
    assert by_id["nansha-bus-gps"]["rows"] == ROWS
    # every GTFS file is a table: stop_times, stops, routes, trips, shapes, calendar...
    assert by_id["cairns-gtfs"]["rows"] >= 37_790 + 416 + 22 + 1_339 + 22_784

    listing = json.loads(run_cli("datasets", "list", "--json", env=env).stdout)
    assert {p["name"] for p in listing} == set(by_id)
    bus = next(p for p in listing if p["name"] == "nansha-bus-gps")
    assert bus["nsdx"]["current_version"] == 1 and bus["nsdx"]["row_count"] == ROWS

    # views named <domain>.<id>, '-' as '_'; GTFS gives one view per table
    q = run_cli(
        "query",
        "SELECT (SELECT count(*) FROM transport.nansha_bus_gps) AS bus, "
        "(SELECT count(*) FROM transport.cairns_gtfs__stop_times) AS stop_times, "
        "(SELECT count(*) FROM transport.cairns_gtfs__stops) AS stops, "
        "(SELECT count(*) FROM urban_management.nyc_311_animal_complaints) AS nyc, "
        "(SELECT count(*) FROM transport.montreal_bike_counts) AS montreal",
        "--format",
        "json",
        env=env,
    )
    assert json.loads(q.stdout) == [
        {"bus": ROWS, "stop_times": 37_790, "stops": 416, "nyc": 4_969, "montreal": 310}
    ]

    # personal data never reaches open data raw: plates are HMAC tokens
    q = run_cli(
        "query",
        "SELECT count(*) AS raw FROM transport.nansha_bus_gps WHERE plate LIKE '粤%'",
        "--format",
        "json",
        env=env,
    )
    assert json.loads(q.stdout) == [{"raw": 0}]

    # unchanged input: nothing new
    second = ingest_all(env)
    assert second["errors"] == []
    assert {r["status"] for r in second["results"]} == {"up_to_date"}
    assert all(r["version"] == 1 for r in second["results"])


def test_real_files_decode_correctly(published):
    env, _ = published  # the real files, published by `nsdx ingest --all`
    q = run_cli(
        "query",
        "SELECT * FROM transport.montreal_bike_counts ORDER BY 1 LIMIT 1",
        "--format",
        "json",
        env=env,
    )
    row = json.loads(q.stdout)[0]
    assert row[next(iter(row))] == "2012-01-01"  # day-first date, Latin-1 header decoded
    assert any("é" in k for k in row), row.keys()  # e.g. 'Côte-Sainte-Catherine', 'Méson'
    show = json.loads(
        run_cli("datasets", "show", "hk-mtr-lines-and-stations", "--json", env=env).stdout
    )
    assert show["nsdx"]["row_count"] == 270  # 273 records, the last three blank (skipped)
    assert "MTR" in show["nsdx"]["attribution"]


def test_bad_data_publishes_nothing_and_says_where(tmp_path, nsdx_env):
    csv = tmp_path / "counts.csv"
    csv.write_text("station,count\n蕉门,12\n金洲,N/A\n", encoding="utf-8")
    Path(nsdx_env["NSDX_DATASETS"]).write_text(
        f"""datasets:
  - id: metro-counts
    title: 地铁客流
    domain: transport
    organization: guangzhou-metro
    source: {{path: {csv}, format: csv}}
    schema:
      - {{name: count, type: integer}}
""",
        encoding="utf-8",
    )
    proc = run_cli("ingest", "metro-counts", env=nsdx_env, check=False)
    assert proc.returncode == 1
    assert f"{csv}:3 column 'count': value 'N/A' is not a valid integer" in proc.stderr
    assert "hint:" in proc.stderr
    listing = json.loads(run_cli("datasets", "list", "--json", env=nsdx_env).stdout)
    assert listing == []


def test_failed_expectation_publishes_nothing_and_keeps_report(tmp_path, nsdx_env):
    declare_speeding_bus(tmp_path, nsdx_env, "bus,speed_kmh\nB1,30\nB2,400\nB3,20\n")
    proc = run_cli("ingest", "gps", "--json", env=nsdx_env, check=False)
    assert proc.returncode == 1
    err = json.loads(proc.stdout)["errors"][0]
    assert err["dataset"] == "gps"
    assert err["error"] == "ValidationFailed"
    assert err["failures"] == {"speed_kmh between [0, 150]": 1}
    assert json.loads(run_cli("datasets", "list", "--json", env=nsdx_env).stdout) == []
    reports = list((Path(nsdx_env["NSDX_HOME"]) / "reports" / "gps").glob("*.json"))
    assert reports, "the failing report is kept for the provider"
    report = json.loads(reports[0].read_text(encoding="utf-8"))
    (res,) = report["results"]
    assert res["expectation_config"]["type"] == "expect_column_values_to_be_between"
    assert res["result"]["unexpected_count"] == 1
    assert res["result"]["partial_unexpected_list"] == [400]
    objects = Path(nsdx_env["NSDX_HOME"]) / "objects"
    assert not list(objects.glob("nansha-bus-company/gps/v*")), "nothing published"


def test_unknown_dataset_and_bad_sql_errors(nsdx_env, tmp_path, samples_dir):
    write_datasets_yaml(Path(nsdx_env["NSDX_DATASETS"]), samples_dir, only=["nansha-hotline-cases"])
    proc = run_cli("ingest", "no-such-dataset", env=nsdx_env, check=False)
    assert proc.returncode == 1
    assert "not declared in" in proc.stderr and "no-such-dataset" in proc.stderr
    run_cli("org", "create", "bureau", env=nsdx_env)  # a deployment to query (reads create none)
    proc = run_cli("query", "SELECT * FROM transport.nope", env=nsdx_env, check=False)
    assert proc.returncode == 1 and "query failed" in proc.stderr
    proc = run_cli("datasets", "show", "nope", env=nsdx_env, check=False)
    assert proc.returncode == 1 and "dataset 'nope' not found" in proc.stderr


def test_show_after_a_failed_first_ingest_points_at_the_report(tmp_path, nsdx_env):
    declare_speeding_bus(tmp_path, nsdx_env, "bus,speed_kmh\nB1,30\nB2,400\n")
    assert run_cli("ingest", "gps", env=nsdx_env, check=False).returncode == 1
    proc = run_cli("datasets", "show", "gps", env=nsdx_env, check=False)
    assert proc.returncode == 1
    assert "is declared in" in proc.stderr and "but not published yet" in proc.stderr
    assert "its last ingest failed: read " in proc.stderr and ".html" in proc.stderr
