"""Remote sources: https:// against a local HTTP server in the test, s3:// against SeaweedFS.

A source changes, 404s, times out, grows past the cap or changes while it is read: a clear
error and nothing published; an unchanged source is up to date without a download.
"""

from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ingest.errors import SourceError
from ingest.pipeline import PreviousVersion, run_pipeline
from ingest.remote import Limits, list_remote
from ingest.spec import parse_specs
from ingest.storage.local import LocalStore

KEY = b"k"
CSV = "station,entries\n蕉门,10\n金洲,20\n".encode()


class Site:
    """Files served by a local http.server, with knobs for misbehaviour."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/flow.csv": CSV}
        self.etags: dict[str, str] = {"/flow.csv": '"v1"'}
        self.gets = 0
        self.delay = 0.0  # seconds before answering (timeouts)
        self.cut_after: int | None = None  # close the body after this many bytes
        self.change_during_get = False  # the file is replaced while being sent
        self.claimed_length: int | None = None  # a Content-Length larger than the file


def _handler(site: Site):
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):  # quiet
            pass

        def _head(self) -> bytes | None:
            time.sleep(site.delay)
            if self.path.startswith("/redirect/"):
                n = int(self.path.rsplit("/", 1)[1])
                self.send_response(302)
                self.send_header("Location", f"/redirect/{n + 1}" if n < 9 else "/flow.csv")
                self.end_headers()
                return None
            body = site.files.get(self.path)
            if body is None:
                self.send_error(404)
                return None
            self.send_response(200)
            self.send_header("Content-Length", str(site.claimed_length or len(body)))
            self.send_header("ETag", site.etags.get(self.path, '"x"'))
            self.send_header("Last-Modified", "Mon, 02 Mar 2026 00:00:00 GMT")
            self.end_headers()
            return body

        def do_HEAD(self):
            self._head()

        def do_GET(self):
            site.gets += 1
            body = self._head()
            if body is None:
                return
            if site.cut_after is not None:
                self.wfile.write(body[: site.cut_after])
                self.close_connection = True  # the connection drops mid-body
                return
            self.wfile.write(body[: len(body) // 2])
            if site.change_during_get:
                site.files[self.path] = body + "南沙,30\n".encode()
                site.etags[self.path] = '"v2"'
            self.wfile.write(body[len(body) // 2 :])

    return H


@pytest.fixture
def site(monkeypatch):
    s = Site()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(s))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    s.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    monkeypatch.setenv("NSDX_SOURCE_ALLOW_PRIVATE", "1")  # the test server is on 127.0.0.1
    monkeypatch.setenv("NSDX_SOURCE_TIMEOUT", "1")
    monkeypatch.setenv("NSDX_SOURCE_RETRIES", "2")
    monkeypatch.setenv("NSDX_SOURCE_BACKOFF", "0.05")
    yield s
    server.shutdown()
    server.server_close()


def spec_for(url: str, tmp_path: Path):
    (spec,) = parse_specs(
        f"""datasets:
  - id: metro-flow
    title: 客流
    domain: transport
    organization: guangzhou-metro
    source: {{path: "{url}", format: csv}}
    schema:
      - {{name: entries, type: integer}}
    expectations:
      - {{column: entries, between: [0, 100]}}
""",
        base_dir=tmp_path,
    )
    return spec


def ingest(spec, tmp_path: Path, previous=None, **kw):
    store = LocalStore(tmp_path / "objects")
    return run_pipeline(
        spec, store, previous=previous, pii_key=KEY, reports_dir=tmp_path / "r", **kw
    )


def rows(tmp_path: Path, result) -> list[dict]:
    [f] = sorted((tmp_path / "objects" / result.prefix / "data").rglob("*.parquet"))
    return pq.read_table(f).to_pylist()


def nothing_published(tmp_path: Path) -> bool:
    return not list((tmp_path / "objects").rglob("manifest.json"))


def test_https_source_published_then_up_to_date_without_download(site, tmp_path):
    spec = spec_for(f"{site.url}/flow.csv", tmp_path)
    r1 = ingest(spec, tmp_path)
    assert (r1.status, r1.row_count) == ("published", 2)
    assert rows(tmp_path, r1) == [
        {"station": "蕉门", "entries": 10},
        {"station": "金洲", "entries": 20},
    ]
    assert r1.manifest["source"]["files"][0]["name"] == "flow.csv"
    gets = site.gets
    previous = PreviousVersion(r1.version, r1.manifest["fingerprint"])
    r2 = ingest(spec, tmp_path, previous=previous)
    assert r2.status == "up_to_date"
    assert site.gets == gets  # the ETag said so: nothing downloaded
    site.etags["/flow.csv"] = '"v2"'  # a new version on the server
    site.files["/flow.csv"] = CSV + "南沙,30\n".encode()
    r3 = ingest(spec, tmp_path, previous=previous)
    assert (r3.status, r3.version, r3.row_count) == ("published", 2, 3)
    assert not list(Path(tmp_path).glob("nsdx-source-*"))


def test_404_names_the_url(site, tmp_path):
    with pytest.raises(SourceError) as e:
        ingest(spec_for(f"{site.url}/gone.csv", tmp_path), tmp_path)
    assert e.value.message == f"{site.url}/gone.csv: not found: HTTP 404 Not Found"
    assert nothing_published(tmp_path)


def test_timeout_is_retried_then_a_clear_error(site, tmp_path):
    site.delay = 1.5
    with pytest.raises(SourceError, match=r"cannot reach the source after 2 attempt\(s\)") as e:
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert "run the command again" in e.value.hint
    assert nothing_published(tmp_path)


def test_change_while_reading_publishes_nothing(site, tmp_path):
    site.change_during_get = True
    with pytest.raises(SourceError, match="changed while it was being read"):
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert nothing_published(tmp_path)


def test_interrupted_download_never_produces_a_version(site, tmp_path):
    site.cut_after = 10  # every attempt: the connection drops after 10 bytes
    with pytest.raises(SourceError, match=r"cannot download the source after 2 attempt\(s\)"):
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert nothing_published(tmp_path)


def test_over_the_size_cap(site, tmp_path, monkeypatch):
    monkeypatch.setenv("NSDX_SOURCE_MAX_BYTES", "20")
    with pytest.raises(SourceError, match="more than the limit of 20") as e:
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert "NSDX_SOURCE_MAX_BYTES" in e.value.hint
    assert nothing_published(tmp_path)


def test_redirects_are_limited(site, tmp_path):
    with pytest.raises(SourceError, match="more than 5 redirects"):
        list_remote(f"{site.url}/redirect/0")
    [obj] = list_remote(f"{site.url}/redirect/7")  # 3 hops: followed
    assert obj.url.endswith("/flow.csv")


def test_private_addresses_are_refused_unless_allowed(site):
    limits = Limits(allow_private=False)
    with pytest.raises(SourceError, match="a private or local address") as e:
        list_remote(f"{site.url}/flow.csv", limits)
    assert "NSDX_SOURCE_ALLOW_PRIVATE=1" in e.value.hint
    with pytest.raises(SourceError, match="globs work on s3:// sources only"):
        list_remote(f"{site.url}/*.csv")


def test_bad_value_in_a_downloaded_file_names_the_url_and_line(site, tmp_path):
    site.files["/flow.csv"] = CSV + "南沙,n/a\n".encode()
    with pytest.raises(SourceError) as e:
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert e.value.message.startswith(f"{site.url}/flow.csv:4 column 'entries': value 'n/a'")
    assert nothing_published(tmp_path)


@pytest.mark.s3
def test_s3_glob_over_a_prefix(seaweedfs, tmp_path, monkeypatch):
    bucket = seaweedfs.bucket()
    for k, v in seaweedfs.env(bucket).items():
        monkeypatch.setenv(k, v)
    store = seaweedfs.store(bucket=bucket, prefix="")
    store.put_bytes("flows/2026-03/a.csv", CSV)
    store.put_bytes("flows/2026-03/b.csv", "station,entries\n黄阁,5\n".encode())
    store.put_bytes("flows/2026-03/notes.txt", b"not data")
    spec = spec_for(f"s3://{bucket}/flows/2026-03/*.csv", tmp_path)
    r1 = ingest(spec, tmp_path)
    assert (r1.status, r1.row_count) == ("published", 3)
    assert [f["name"] for f in r1.manifest["source"]["files"]] == ["a.csv", "b.csv"]
    previous = PreviousVersion(r1.version, r1.manifest["fingerprint"])
    assert ingest(spec, tmp_path, previous=previous).status == "up_to_date"
    store.put_bytes("flows/2026-03/c.csv", "station,entries\n万顷沙,7\n".encode())
    r3 = ingest(spec, tmp_path, previous=previous)
    assert (r3.status, r3.row_count) == ("published", 4)
    with pytest.raises(SourceError, match="no object matches"):
        ingest(spec_for(f"s3://{bucket}/nothing/*.csv", tmp_path), tmp_path)
