"""The repository is self-contained: every file a user or a test needs is tracked in it, and
no tracked file points at a development machine's folders.

A path outside the repository works only on the machine it was written on: a fresh clone then
fails (`make demo` found no real data, four e2e tests stopped). The rule, applied to every
tracked text file (`git ls-files`):

* the development machines' shared folder (``..`` + ``/shared``, outside any clone) is never named;
* no absolute path of a machine's folders is used as a root (the development machines' work
  folder, ``/home/<user>/…``,
  ``/root/…``, ``/Users/<user>/…`` at the start of a path (not inside a URL or after a
  placeholder like ``<tmp>/home/...``);
* Python files do not build data roots under ``/tmp`` (``Path("/tmp…")``, ``dir="/tmp…"``,
  an ``NSDX_*`` setting of ``/tmp…``): temporary folders come from ``tmp_path``/``tempfile``.
  SQL strings that *attack* ``/tmp`` (the SQL guard's refusals) are legitimate and untouched;
* every ``source.path`` in ``datasets.yaml`` is relative and resolves inside the repository.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.conftest import REAL, ROOT, VECTORS

SHARED = re.compile(r"\.\./shared\b")
# An absolute machine folder at the start of a path token: not preceded by a word character,
# a placeholder's ">", another path segment, a dot or a URL's host.
MACHINE_ROOT = re.compile(
    r"(?<![\w>/.:~-])/(?:work|root|home/[A-Za-z0-9_.-]+|Users/[A-Za-z0-9_.-]+)/"
)
TMP_ROOT = re.compile(
    r"""(?:Path\(\s*|\b(?:dir|root|home|base_dir|out|prefix)\s*=\s*|NSDX_\w+["']?\]?\s*[:=,]\s*)["']/tmp\b"""
)
SELF = "tests/test_self_contained.py"  # states the patterns it looks for


def tracked_text_files() -> dict[str, str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    files = {}
    for rel in filter(None, out.split("\0")):
        path = ROOT / rel
        if rel == SELF or not path.is_file():
            continue
        raw = path.read_bytes()
        if b"\0" in raw[:8192]:
            continue  # binary (zip, parquet, images)
        files[rel] = raw.decode("utf-8", errors="replace")
    return files


def offending_lines(files: dict[str, str]) -> list[str]:
    bad = []
    for rel, text in files.items():
        for no, line in enumerate(text.splitlines(), 1):
            hit = SHARED.search(line) or MACHINE_ROOT.search(line)
            if not hit and rel.endswith(".py"):
                hit = TMP_ROOT.search(line)
            if hit:
                bad.append(f"{rel}:{no}: {hit.group(0)!r} in {line.strip()[:120]}")
    return bad


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: nothing tracked to check")  # e.g. an unpacked sdist
    return tracked_text_files()


def test_no_tracked_file_points_outside_the_repository(files):
    assert len(files) > 100  # the whole project was read, not an empty listing
    assert offending_lines(files) == []


@pytest.mark.parametrize(
    "line",
    [
        # built here so that this file names no machine path itself
        "      path: " + ".." + "/shared/data/real/gtfs_cairns/cairns_gtfs.zip",
        'REAL = Path("' + "/wo" + 'rk/shared/data/real")',
        "see /home/alice/nsdx/data",
        "copy it to /root/data first",
        'VECTORS = Path("/tmp/vectors")',
        'env["NSDX_HOME"] = "/tmp/nsdx"',
        "tempfile.mkdtemp(dir='/tmp/x')",
    ],
)
def test_the_rule_catches_machine_paths(line):
    assert offending_lines({"x.py": line}), line


@pytest.mark.parametrize(
    "line",
    [
        '"url": "file://<tmp>/home/objects/bureau/bus-gps/v1/"',
        """("SELECT * FROM glob('/home/*')", "table_function"),""",
        """("COPY transport.bus_gps TO '/tmp/out.csv'", "statement_type"),""",
        "https://example.org/" + "work/items and https://example.org/home/alice/",
        "`$NSDX_HOME/tmp/query`",
        "shared bikes, cooking fumes",
    ],
)
def test_the_rule_leaves_legitimate_strings_alone(line):
    assert offending_lines({"x.py": line}) == [], line


def test_datasets_yaml_sources_are_inside_the_repository():
    from ingest.spec import load_specs

    specs = load_specs(ROOT / "datasets.yaml")
    assert len(specs) == 14
    for spec in specs:
        assert not spec.source.path.startswith("/"), spec.id
        files = spec.source.resolve()
        assert isinstance(files, list), spec.id
        for p in files:
            assert p.resolve().is_relative_to(ROOT), (spec.id, p)
    real = [s for s in specs if s.source.path.startswith("data/real/")]
    assert len(real) == 6
    for spec in real:
        assert all(p.is_file() for p in spec.source.resolve()), spec.id


def test_copied_data_and_vectors_keep_their_source_and_licence(files):
    for rel in (
        "data/real/SOURCES.md",
        "data/real/gtfs_cairns/LICENSE-gtfs_kit.txt",
        "tests/vectors/rfc6962/SOURCE.md",
        "tests/vectors/rfc6962/LICENSE",
        "tests/vectors/dcat-ap/SOURCE.md",
    ):
        assert rel in files, f"{rel} is not tracked"
    tracked = set(
        subprocess.run(
            ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.split()
    )
    real = {p.relative_to(ROOT).as_posix() for p in REAL.rglob("*") if p.is_file()}
    assert len(real) >= 8 and real <= tracked, sorted(real - tracked)
    vectors = {p.relative_to(ROOT).as_posix() for p in VECTORS.rglob("*.json")}
    assert len(vectors) > 500 and vectors <= tracked, sorted(vectors - tracked)[:5]
    sources = files["data/real/SOURCES.md"]
    for publisher in ("TransLink", "NYC Open Data", "DATA.GOV.HK", "Montréal"):
        assert publisher in sources
