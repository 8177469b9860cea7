"""An ingest that never needs pandas does not import it, and pyarrow still treats pandas
objects as pandas objects once pandas is imported (ingest.arrow_pandas, issue 18's speed).

Each case runs in a fresh interpreter: pandas is already imported in the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT


def _python(code: str, *args: str, env: dict | None = None) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


SEMANTICS = """
import json, sys, threading
import pyarrow as pa, pyarrow.compute as pc
from ingest.arrow_pandas import without_pandas

out = {}
with without_pandas():
    pa.scalar(1); pc.fill_null(pa.array([True, None]), False); pc.equal(pa.array(["a"]), "")
    t = threading.Thread(target=lambda: pa.scalar(2)); t.start(); t.join()
    out["converted_without_pandas"] = "pandas" not in sys.modules
    import pandas as pd  # an import statement in the block still works
    out["imported"] = "pandas" in sys.modules
    # pyarrow was told: NaN in a Series is missing (pandas' meaning), as without the block
    out["nan_is_null"] = pa.array(pd.Series([1.0, float("nan")])).null_count == 1
    out["to_pandas"] = pa.table({"a": [1, None]}).to_pandas().shape == (2, 1)
out["loader"] = type(pd.__spec__.loader).__name__
out["timestamp"] = str(pa.scalar(pd.Timestamp("2026-12-06 12:00")).type)
print(json.dumps(out))
"""

IMPORTED_LATER = """
import json, sys
import pyarrow as pa
from ingest.arrow_pandas import without_pandas

with without_pandas():
    pa.scalar(1)
import pandas as pd  # after the block: pyarrow sees pandas objects again
print(json.dumps({"nan_is_null": pa.array(pd.Series([1.0, float("nan")])).null_count == 1}))
"""


def test_pyarrow_converts_without_pandas_and_recognises_it_once_imported():
    out = json.loads(_python(SEMANTICS))
    assert out == {
        "converted_without_pandas": True,
        "imported": True,
        "nan_is_null": True,
        "to_pandas": True,
        "loader": "SourceFileLoader",  # pandas' own loader, not the hook's
        "timestamp": "timestamp[us]",
    }
    assert json.loads(_python(IMPORTED_LATER)) == {"nan_is_null": True}


INGEST = """
import json, sys, yaml
from pathlib import Path
from ingest.pipeline import run_pipeline
from ingest.spec import parse_specs
from ingest.storage import open_store

work = Path(sys.argv[1])
csv = work / "bus.csv"
csv.write_text(
    "ts,vehicle_id,plate,speed_kmh\\n"
    + "".join(f"2026-03-02 05:30:{i:02d},NSB{10000 + i},粤A{i:05d},{i * 3}\\n" for i in range(40)),
    encoding="utf-8",
)
spec_doc = {"datasets": [{
    "id": "bus", "title": "Bus", "organization": "nansha-bus-company", "domain": "transport",
    "licence": "CC-BY-4.0",
    "source": {"path": str(csv), "format": "csv"},
    "schema": [{"name": "plate", "type": "string", "pii": "plate"}],
    "expectations": json.loads(sys.argv[2]), "on_invalid": sys.argv[3],
}]}
(spec,) = parse_specs(yaml.safe_dump(spec_doc, allow_unicode=True), base_dir=work)
store = open_store(f"file://{work}/objects")
r = run_pipeline(spec, store, previous=None, pii_key=b"k", reports_dir=work / "reports")
print(json.dumps({"status": r.status, "rows": r.row_count,
                  "failures": r.validation.get("failures_by_expectation"),
                  "pandas": "pandas" in sys.modules}))
"""


def test_an_ingest_judged_by_arrow_does_not_import_pandas(tmp_path):
    exps = [
        {"column": "ts", "not_null": True},
        {"column": "speed_kmh", "between": [0, 150]},
        {"column": "vehicle_id", "regex": r"^NSB\d{5}$"},
    ]
    out = json.loads(_python(INGEST, str(tmp_path), json.dumps(exps), "fail"))
    assert out == {"status": "published", "rows": 40, "failures": {}, "pandas": False}


def test_great_expectations_in_the_ingest_process_still_gets_pandas(tmp_path):
    """Checks run by great-expectations in the ingest process (no worker): pandas is
    imported for them, and they fail and pass as before."""
    exps = [
        {"column": "speed_kmh", "between": [0, 100]},  # Arrow: speeds 102..117 fail (6 rows)
        {"gx": "expect_column_values_to_be_between", "column": "speed_kmh", "max_value": 90},
        {"gx": "expect_column_values_to_not_be_null", "column": "ts"},
    ]
    out = json.loads(
        _python(
            INGEST, str(tmp_path), json.dumps(exps), "warn", env={"NSDX_VALIDATION_WORKER": "0"}
        )
    )
    assert (out["status"], out["rows"], out["pandas"]) == ("published_with_warnings", 40, True)
    assert sorted(out["failures"].values()) == [6, 9], out["failures"]


SERVICE = """
import json, sys
from pathlib import Path
from nsdx import Nsdx

work = Path(sys.argv[1])
csv = work / "bus.csv"
csv.write_text(
    "ts,vehicle_id,plate,speed_kmh\\n"
    + "".join(f"2026-03-02 05:30:{i:02d},NSB{10000 + i},粤A{i:05d},{i * 3}\\n" for i in range(40)),
    encoding="utf-8",
)
(work / "datasets.yaml").write_text(json.dumps({"datasets": [{
    "id": "bus", "title": "Bus", "organization": "nansha-bus-company", "domain": "transport",
    "licence": "CC-BY-4.0", "access": "open",
    "source": {"path": str(csv), "format": "csv"},
    "schema": [{"name": "plate", "type": "string", "pii": "plate"}],
    "expectations": [{"column": "speed_kmh", "between": [0, 150]}],
}]}), encoding="utf-8")
nx = Nsdx()
(r,) = nx.ingest(["bus"])
(table,) = nx.iceberg.snapshots("bus")
print(json.dumps({"status": r.status, "warnings": r.warnings,
                  "iceberg": [v["version"] for v in table["versions"]],
                  "pandas": "pandas" in sys.modules}))
"""


def test_a_publish_registered_in_iceberg_imports_no_pandas(tmp_path):
    """The whole publish of an open dataset — pipeline, catalogue, Iceberg snapshot (pyiceberg
    over pyarrow) — without pandas, and the snapshot is there."""
    env = {
        "NSDX_HOME": str(tmp_path / "home"),
        "NSDX_DATASETS": str(tmp_path / "datasets.yaml"),
        "NSDX_PII_KEY": "test",
        "NSDX_ICEBERG": "1",
        "NSDX_DATABASE_URL": "",
        "NSDX_STORAGE_URL": "",
    }
    out = json.loads(_python(SERVICE, str(tmp_path), env=env))
    assert out == {"status": "published", "warnings": [], "iceberg": [1], "pandas": False}
