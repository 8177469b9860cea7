"""Documentation that cannot drift: the CLI reference and the settings in the README."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))


def test_cli_reference_is_generated_from_help():
    from gen_cli_docs import render

    assert (ROOT / "docs" / "cli.md").read_text(encoding="utf-8") == render(), (
        "docs/cli.md is out of date: run `make docs`"
    )


def test_every_command_is_in_the_readme():
    import click
    from gen_cli_docs import walk  # noqa: F401 - same walk as the generator

    from nsdx.cli import cli

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ctx = click.Context(cli, info_name="nsdx")
    for name in cli.list_commands(ctx):
        if cli.get_command(ctx, name) is not None:
            assert f"nsdx {name}" in readme, f"`nsdx {name}` is not documented in README.md"


def test_top_level_help_matches_each_command():
    """`nsdx --help` lists commands from a table (it must not import them); each line is the
    command's own first help line."""
    import click

    from nsdx.cli import _HELP, cli

    ctx = click.Context(cli, info_name="nsdx")
    for name in cli.list_commands(ctx):
        assert _HELP[name] == cli.get_command(ctx, name).get_short_help_str(200), name


def test_every_setting_is_documented():
    code = "\n".join(
        p.read_text()
        for pkg in ("nsdx", "ingest", "validation", "catalogue", "exchange")
        for p in (ROOT / pkg).rglob("*.py")
    )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    docs = readme + "\n".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    for var in sorted(set(re.findall(r"\bNSDX_[A-Z0-9_]+", code))):
        assert var in docs, f"{var} is read by the code but not documented"


HELP_PROBE = """
import sys
sys.argv = ["nsdx", "--help"]
from nsdx.cli import cli
try:
    cli.main(standalone_mode=False)
except SystemExit:
    pass
heavy = [m for m in ("pyarrow", "duckdb", "great_expectations", "sqlalchemy", "boto3", "pandas")
         if m in sys.modules]
print("HEAVY", heavy)
"""


def test_help_answers_fast_without_heavy_imports():
    """`nsdx --help` must not import pyarrow, duckdb, great-expectations or SQLAlchemy."""
    out = subprocess.run(
        [sys.executable, "-c", HELP_PROBE], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out, out
    t0 = time.perf_counter()
    subprocess.run(
        [str(Path(sys.executable).parent / "nsdx"), "--help"], check=True, capture_output=True
    )
    # a figure for whoever runs with -rP, not an assertion on time
    print(f"nsdx --help took {time.perf_counter() - t0:.3f} s")


def test_unexpected_errors_are_one_line_not_a_traceback(tmp_path):
    """A bug or an unexpected state shows one line and exit code 2 (NSDX_DEBUG=1: traceback)."""
    import os

    # a database URL whose driver is not installed fails in a way nsdx does not expect
    env = {**os.environ, "NSDX_HOME": str(tmp_path), "NSDX_DATABASE_URL": "mysql://n@127.0.0.1:1/x"}
    nsdx = str(Path(sys.executable).parent / "nsdx")
    proc = subprocess.run([nsdx, "datasets", "list"], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("Error: unexpected ModuleNotFoundError")
    assert "NSDX_DEBUG=1" in proc.stderr
