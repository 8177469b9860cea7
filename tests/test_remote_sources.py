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
        self.cut_once: int | None = None  # the first GET only is cut after this many bytes
        self.ranges = False  # answer `Range: bytes=N-` with 206
        self.range_from_zero = False  # ... but send the bytes from 0 on, as many as asked
        self.no_length = False  # no Content-Length, no ETag: the body ends at close
        self.trickle: float | None = None  # seconds between two bytes of the body
        self.stop = threading.Event()  # ends a trickle when the test is over


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
            asked = self.headers.get("Range", "")
            if self.command == "GET" and site.ranges and asked.startswith("bytes="):
                start = int(asked[len("bytes=") : -1])
                first = 0 if site.range_from_zero else start
                part = body[first : first + len(body) - start]
                self.send_response(206)
                self.send_header("Content-Length", str(len(part)))
                last = first + len(part) - 1
                self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
                self.send_header("ETag", site.etags.get(self.path, '"x"'))
                self.send_header("Last-Modified", "Mon, 02 Mar 2026 00:00:00 GMT")
                self.end_headers()
                self.wfile.write(part)
                return None
            self.send_response(200)
            if not site.no_length:
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
            if site.cut_after is not None or site.cut_once is not None:
                self.wfile.write(body[: site.cut_after or site.cut_once])
                site.cut_once = None
                self.close_connection = True  # the connection drops mid-body
                return
            if site.trickle is not None:
                for i in range(len(body)):  # a byte now and then: each read succeeds
                    if site.stop.wait(site.trickle):
                        return
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
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
    monkeypatch.setenv("NSDX_SOURCE_ALLOW_HTTP", "1")  # and speaks plain http
    monkeypatch.setenv("NSDX_SOURCE_TIMEOUT", "1")
    monkeypatch.setenv("NSDX_SOURCE_RETRIES", "2")
    monkeypatch.setenv("NSDX_SOURCE_BACKOFF", "0.05")
    yield s
    s.stop.set()
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
    limits = Limits(allow_private=False, allow_http=True)
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


# -- review finding 10 (issue 18): an attacker's server ----------------------------------


def _tls_files(tmp: Path) -> tuple[Path, Path, Path]:
    """A CA (trusted through SSL_CERT_FILE) and a certificate for 127.0.0.1 it signed."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nsdx test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(2)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    files = (tmp / "ca.pem", tmp / "cert.pem", tmp / "key.pem")
    files[0].write_bytes(ca.public_bytes(pem))
    files[1].write_bytes(leaf.public_bytes(pem))
    files[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return files


@pytest.fixture
def tls_site(site, tmp_path, monkeypatch):
    """An https server (its CA trusted) that serves flow.csv and redirects /down to the
    plain http site."""
    import ssl

    ca, cert, key = _tls_files(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))

    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_HEAD(self):
            if self.path == "/down":
                self.send_response(302)
                self.send_header("Location", f"{site.url}/flow.csv")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(CSV)))
            self.send_header("ETag", '"v1"')
            self.end_headers()

        def do_GET(self):
            self.do_HEAD()
            if self.path != "/down":
                self.wfile.write(CSV)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    server.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_plain_http_needs_an_opt_in_and_https_is_never_downgraded(
    site, tls_site, tmp_path, monkeypatch
):
    """http:// is refused unless NSDX_SOURCE_ALLOW_HTTP=1; an https source redirected to
    http is refused even then (before, both were read, unencrypted)."""
    r = ingest(spec_for(f"{tls_site}/flow.csv", tmp_path / "a"), tmp_path / "a")
    assert (r.status, r.row_count) == ("published", 2)  # https: read
    with pytest.raises(SourceError, match="refused a redirect from https to plain http") as e:
        ingest(spec_for(f"{tls_site}/down", tmp_path / "b"), tmp_path / "b")
    assert e.value.message.startswith(f"{tls_site}/down: ")
    assert f"{tls_site}/down" in e.value.hint
    assert nothing_published(tmp_path / "b")
    monkeypatch.delenv("NSDX_SOURCE_ALLOW_HTTP")
    with pytest.raises(SourceError, match="plain http:// is refused") as e:
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path / "c"), tmp_path / "c")
    assert e.value.message.startswith(f"{site.url}/flow.csv: ")
    assert "NSDX_SOURCE_ALLOW_HTTP=1" in e.value.hint and f"{site.url}/flow.csv" in e.value.hint
    assert site.gets == 0 and nothing_published(tmp_path / "c")


@pytest.mark.parametrize(
    "host",
    [
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254 (cloud metadata)
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "64:ff9b:1::a00:1",  # local-use NAT64
    ],
)
def test_ipv6_addresses_carrying_a_private_ipv4_are_refused(host):
    """Python 3.11's is_global calls NAT64 and 6to4 addresses of private IPv4 ones public;
    the IPv4 address inside decides (refused before any connection is tried)."""
    limits = Limits(allow_private=False, allow_http=True, attempts=1, timeout=1, deadline=5)
    url = f"http://[{host}]:9/flow.csv"
    with pytest.raises(SourceError, match="a private or local address") as e:
        list_remote(url, limits)
    assert e.value.message.startswith(url)


def test_ipv6_addresses_carrying_a_public_ipv4_pass_the_check():
    from ingest.remote import _check_address

    limits = Limits(allow_private=False)
    for ip in ("64:ff9b::808:808", "2002:808:808::1", "2400:3200::1", "8.8.8.8"):
        _check_address(ip, "example", limits, "https://example/x.csv")  # no error


def test_a_server_trickling_bytes_meets_the_deadline(site, tmp_path, monkeypatch):
    """A byte every 0.2 s never trips the 1 s read timeout; before, such a server held the
    run for as long as it liked. Now the object's total deadline stops it."""
    monkeypatch.setenv("NSDX_SOURCE_DEADLINE", "1")
    site.trickle = 0.2
    with pytest.raises(SourceError, match="longer than the 1 s allowed per object") as e:
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert e.value.message.startswith(f"{site.url}/flow.csv: ")
    assert "NSDX_SOURCE_DEADLINE" in e.value.hint and f"{site.url}/flow.csv" in e.value.hint
    assert nothing_published(tmp_path)


def test_a_resumed_download_must_get_the_range_it_asked_for(site, tmp_path):
    """Cut after 20 bytes, resumed with Range: a 206 for the right offset is spliced in
    (the rows are whole); a 206 carrying the bytes from 0 (the same length: sizes match)
    is refused - before, it was spliced in and published as the file."""
    site.ranges, site.cut_once = True, 20
    r = ingest(spec_for(f"{site.url}/flow.csv", tmp_path / "a"), tmp_path / "a")
    assert (r.status, r.row_count) == ("published", 2)
    assert rows(tmp_path / "a", r)[1] == {"station": "金洲", "entries": 20}
    site.range_from_zero, site.cut_once = True, 20
    with pytest.raises(SourceError, match="resume from byte 20, the server sent the bytes from 0"):
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path / "b"), tmp_path / "b")
    assert nothing_published(tmp_path / "b")


def test_an_answer_whose_end_cannot_be_told_is_refused(site, tmp_path):
    """No Content-Length, no ETag, no chunked encoding, cut after the first row: before,
    the one row was published as the whole file."""
    site.no_length = True
    site.cut_after = len("station,entries\n蕉门,10\n".encode())
    with pytest.raises(SourceError, match="neither a Content-Length nor chunked") as e:
        ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert f"{site.url}/flow.csv" in e.value.hint
    assert nothing_published(tmp_path)


def test_a_download_started_again_from_zero_has_the_files_own_digest(site, tmp_path):
    """Cut after 10 bytes by a server without ranges: the whole file again. The digest in
    the manifest is the file's (before, the hash kept the first 10 bytes too)."""
    import hashlib

    site.cut_once = 10
    r = ingest(spec_for(f"{site.url}/flow.csv", tmp_path), tmp_path)
    assert (r.status, r.row_count) == ("published", 2) and site.gets >= 2
    [f] = r.manifest["source"]["files"]
    assert f["sha256"] == hashlib.sha256(CSV).hexdigest()
