"""Remote sources: ``source.path`` as an ``https://`` URL or ``s3://bucket/key`` (globs too).

Bureaus publish on their own web servers and object stores; ``nsdx ingest`` reads from there.

* :func:`list_remote` asks for what is there without downloading: an HTTP ``HEAD`` (size,
  ``ETag``, ``Last-Modified``), or an S3 listing (a glob such as ``s3://b/2024/*.csv`` lists
  the prefix before the first wildcard and matches the keys). The pipeline's fingerprint uses
  these, so an unchanged source is "up to date" without a byte downloaded.
* :func:`download` streams one object into a local file (never whole into memory), hashing it
  on the way, within a size cap; connection failures and 5xx answers are retried with
  exponential backoff (resuming with ``Range`` + ``If-Range`` where the server allows it);
  an object that changes while it is read (another ``ETag`` / ``Last-Modified`` / size than
  listed, or a resumed request the server answers in full) is an error, and the pipeline
  publishes nothing from an interrupted or changed download.

HTTP: ``https://`` only; plain ``http://`` only with ``NSDX_SOURCE_ALLOW_HTTP=1``, and a
redirect from https to http is always refused. At most :data:`MAX_REDIRECTS` redirects, each
target checked again; targets on private, loopback, link-local or other non-public addresses
are refused unless ``NSDX_SOURCE_ALLOW_PRIVATE=1`` (a source on the bureau's own network, or
tests) - an IPv6 address carrying an IPv4 one (IPv4-mapped, NAT64 ``64:ff9b::/96``, 6to4
``2002::/16``, Teredo, IPv4-compatible) is judged by the IPv4 address inside; the address
checked is the address connected to (no second DNS lookup). Each object has a total deadline
(``NSDX_SOURCE_DEADLINE``) over all its attempts, so a server sending a byte now and then
cannot hold a run. A resumed download must get the range it asked for (``Content-Range``);
an answer whose end cannot be told (no ``Content-Length``, no chunked encoding, no size
listed) is refused, since a connection cut short would look complete. S3: the same boto3
settings as storage (``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION``, ``NSDX_S3_ADDRESSING_STYLE``); the endpoint is the operator's setting, so no
address check there (the deadline is checked between blocks of 1 MiB).

Settings: ``NSDX_SOURCE_MAX_BYTES`` (default 20 GiB), ``NSDX_SOURCE_TIMEOUT`` (seconds per
connect or read, default 30), ``NSDX_SOURCE_DEADLINE`` (seconds per object, all attempts,
default 3600), ``NSDX_SOURCE_RETRIES`` (attempts, default 4), ``NSDX_SOURCE_BACKOFF``
(seconds before the first retry, doubled after each, default 0.5),
``NSDX_SOURCE_ALLOW_PRIVATE``, ``NSDX_SOURCE_ALLOW_HTTP``.
"""

from __future__ import annotations

import fnmatch
import hashlib
import http.client
import ipaddress
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from .errors import SourceError

MAX_REDIRECTS = 5
DEFAULT_MAX_BYTES = 20 << 30
CHUNK = 1 << 20
SCHEMES = ("https://", "http://", "s3://")


def is_remote(path: str) -> bool:
    return path.startswith(SCHEMES)


@dataclass(frozen=True)
class Limits:
    max_bytes: int = DEFAULT_MAX_BYTES
    timeout: float = 30.0
    attempts: int = 4
    allow_private: bool = False
    backoff: float = 0.5  # seconds before the 2nd attempt, doubled after each
    deadline: float = 3600.0  # seconds per object, over all its attempts
    allow_http: bool = False  # plain http:// (no TLS) sources

    @classmethod
    def from_env(cls) -> Limits:
        env = os.environ

        def num(name: str, default: float) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = float(raw)
            except ValueError:
                raise SourceError(
                    f"{name}={raw!r} is not a number",
                    hint=f"unset {name} or set it to a positive number",
                ) from None
            if value <= 0:
                raise SourceError(f"{name} must be positive, not {raw!r}")
            return value

        def yes(name: str) -> bool:
            return env.get(name, "").strip().lower() in ("1", "true", "yes")

        return cls(
            max_bytes=int(num("NSDX_SOURCE_MAX_BYTES", DEFAULT_MAX_BYTES)),
            timeout=num("NSDX_SOURCE_TIMEOUT", 30.0),
            attempts=max(1, int(num("NSDX_SOURCE_RETRIES", 4))),
            allow_private=yes("NSDX_SOURCE_ALLOW_PRIVATE"),
            backoff=num("NSDX_SOURCE_BACKOFF", 0.5),
            deadline=num("NSDX_SOURCE_DEADLINE", 3600.0),
            allow_http=yes("NSDX_SOURCE_ALLOW_HTTP"),
        )


@dataclass(frozen=True)
class RemoteObject:
    url: str
    name: str  # the last part of the path: the local file's name
    size: int | None
    etag: str | None
    last_modified: str | None

    def describe(self) -> dict[str, Any]:
        """What the fingerprint uses (no download needed)."""
        return {
            "url": self.url,
            "size": self.size,
            "etag": self.etag,
            "last_modified": self.last_modified,
        }

    @property
    def versioned(self) -> bool:
        """Does the server say which version this is (ETag or Last-Modified)?"""
        return bool(self.etag or self.last_modified)


class _Transient(Exception):
    """A failure worth another attempt (connection, timeout, 5xx)."""


# -- HTTP -----------------------------------------------------------------------------------


_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # RFC 6052: the IPv4 address in the low 32 bits
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: local-use, never public
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d (also :: and ::1)


def _public(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Is ``addr`` a public address, an IPv4 one carried inside IPv6 judged by itself?
    (Python 3.11's ``is_global`` calls NAT64 and 6to4 addresses of 127.0.0.1 or 10.0.0.1
    public.)"""
    if isinstance(addr, ipaddress.IPv6Address):
        if addr in _NAT64_LOCAL:
            return False
        inner: ipaddress.IPv4Address | None = addr.ipv4_mapped or addr.sixtofour
        if inner is None and addr.teredo:
            inner = addr.teredo[1]
        if inner is None and (addr in _NAT64 or addr in _V4_COMPATIBLE):
            inner = ipaddress.IPv4Address(int(addr) & 0xFFFFFFFF)
        if inner is not None:
            return inner.is_global
    return addr.is_global


def _check_address(ip: str, host: str, limits: Limits, url: str) -> None:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if limits.allow_private or _public(addr):
        return
    raise SourceError(
        f"refused to read {url}: {host} is at {ip}, a private or local address",
        file=url,
        hint="sources are read from public addresses only; if this server is on your own "
        "network on purpose, set NSDX_SOURCE_ALLOW_PRIVATE=1",
    )


class _Clock:
    """The total deadline of one object (all its attempts): past it, the connection in use
    is shut down, so a server sending a byte now and then cannot hold a read forever."""

    def __init__(self, url: str, limits: Limits) -> None:
        self.url = url
        self.seconds = limits.deadline
        self.end = time.monotonic() + limits.deadline
        self.expired = False
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(limits.deadline, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            self._cut()

    def _cut(self) -> None:
        if self._sock is not None:
            try:  # the plain socket's shutdown, under TLS too: a blocked read returns
                socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
            except OSError:
                pass

    def watch(self, sock: socket.socket | None) -> None:
        with self._lock:
            self._sock = sock
            if self.expired:
                self._cut()

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        if self.expired or self.left() <= 0:
            self.expired = True
            raise self.error()

    def error(self) -> SourceError:
        return SourceError(
            f"reading the source took longer than the {self.seconds:g} s allowed per object "
            "(NSDX_SOURCE_DEADLINE): nothing was published",
            file=self.url,
            hint=f"the server at {self.url} is too slow or stalling; raise "
            "NSDX_SOURCE_DEADLINE if the file is large and the server slow but steady",
        )

    def close(self) -> None:
        self._timer.cancel()


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._ip = ip

    def connect(self) -> None:
        self.sock = socket.create_connection((self._ip, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, ip: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._ip = ip

    def connect(self) -> None:
        sock = socket.create_connection((self._ip, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


def _check_scheme(url: str, previous: str | None, limits: Limits) -> None:
    """https only; http with NSDX_SOURCE_ALLOW_HTTP=1; never https redirected to http."""
    scheme = urlsplit(url).scheme
    if scheme == "https":
        return
    if previous is not None and urlsplit(previous).scheme == "https":
        raise SourceError(
            f"refused a redirect from https to plain http ({url}): the file would travel "
            "unencrypted and could be changed on the way",
            file=previous,
            hint=f"ask the publisher of {previous} to serve the file over https, or point "
            "source.path at another https address",
        )
    if not limits.allow_http:
        raise SourceError(
            "plain http:// is refused: the file would travel unencrypted and could be "
            "changed on the way",
            file=url,
            hint=f"use https:// for {url}; if this server has no TLS on purpose (your own "
            "network), set NSDX_SOURCE_ALLOW_HTTP=1",
        )


def _open(
    url: str,
    method: str,
    limits: Limits,
    headers: dict[str, str] | None = None,
    clock: _Clock | None = None,
) -> tuple[http.client.HTTPResponse, str]:
    """The response to ``method url`` after redirects (checked, at most MAX_REDIRECTS), and
    the final URL. Raises SourceError for answers that will not change, _Transient else."""
    previous: str | None = None
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SourceError(f"not an http(s) URL: {url}", file=url)
        _check_scheme(url, previous, limits)
        if clock is not None:
            clock.check()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise SourceError(
                f"cannot resolve {parts.hostname} ({e})",
                file=url,
                hint="check the host name in source.path",
            ) from None
        ip = str(infos[0][4][0])
        for info in infos:
            _check_address(str(info[4][0]), parts.hostname, limits, url)
        cls = _PinnedHTTPS if parts.scheme == "https" else _PinnedHTTP
        timeout = limits.timeout if clock is None else max(0.01, min(limits.timeout, clock.left()))
        conn = cls(parts.hostname, port, ip, timeout)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        try:
            conn.connect()
            if clock is not None:
                clock.watch(conn.sock)
            conn.request(
                method,
                target,
                headers={"User-Agent": "nsdx", "Accept-Encoding": "identity", **(headers or {})},
            )
            resp = conn.getresponse()
        except ssl.SSLCertVerificationError as e:
            conn.close()
            raise SourceError(
                f"TLS certificate of {parts.hostname} refused: {e}", file=url
            ) from None
        except (OSError, http.client.HTTPException) as e:
            conn.close()
            raise _Transient(f"{type(e).__name__}: {e}") from None
        if resp.status in (301, 302, 303, 307, 308):
            location = resp.getheader("Location")
            resp.close()
            conn.close()
            if not location:
                raise SourceError(f"HTTP {resp.status} without a Location from {url}", file=url)
            previous, url = url, urljoin(url, location)
            continue
        if resp.status >= 500 or resp.status == 429:
            resp.close()
            conn.close()
            raise _Transient(f"HTTP {resp.status} {resp.reason}")
        if resp.status >= 400:
            resp.close()
            conn.close()
            word = "not found" if resp.status in (404, 410) else "refused"
            raise SourceError(
                f"{word}: HTTP {resp.status} {resp.reason}",
                file=url,
                hint="check source.path in datasets.yaml (the URL, and that the file is public)",
            )
        return resp, url
    raise SourceError(
        f"more than {MAX_REDIRECTS} redirects from {url}",
        file=url,
        hint="point source.path at the file's final address",
    )


def _retrying(what: str, url: str, limits: Limits, fn, clock: _Clock | None = None):
    delay = limits.backoff
    for attempt in range(1, limits.attempts + 1):
        try:
            return fn()
        except _Transient as e:
            if clock is not None:
                clock.check()  # past the deadline: that, not the symptom, is the error
            if attempt == limits.attempts:
                raise SourceError(
                    f"cannot {what} the source after {attempt} attempt(s): {e}",
                    file=url,
                    hint="the server is unreachable, too slow (NSDX_SOURCE_TIMEOUT) or failing; "
                    "nothing was published - run the command again later",
                ) from None
            time.sleep(delay if clock is None else max(0.0, min(delay, clock.left())))
            delay *= 2
    raise AssertionError("unreachable")


def _http_object(url: str, limits: Limits) -> RemoteObject:
    clock = _Clock(url, limits)

    def head() -> RemoteObject:
        resp, final = _open(url, "HEAD", limits, clock=clock)
        resp.close()
        size = resp.getheader("Content-Length")
        return RemoteObject(
            url=final,
            name=_name(urlsplit(url).path, url),
            size=int(size) if size and size.isdigit() else None,
            etag=resp.getheader("ETag"),
            last_modified=resp.getheader("Last-Modified"),
        )

    try:
        obj = _retrying("reach", url, limits, head, clock)
    finally:
        clock.close()
    _check_size(obj.size, limits, url)
    return obj


def _check_size(size: int | None, limits: Limits, url: str) -> None:
    if size is not None and size > limits.max_bytes:
        raise SourceError(
            f"{url} is {size:,} bytes, more than the limit of {limits.max_bytes:,}",
            file=url,
            hint="raise NSDX_SOURCE_MAX_BYTES if this source is expected to be that large",
        )


def _changed(url: str) -> SourceError:
    return SourceError(
        "the source changed while it was being read (its ETag, Last-Modified or size is not "
        "the one listed at the start): nothing was published",
        file=url,
        hint="run the command again once the publisher has finished writing the file",
    )


def _content_range(resp: http.client.HTTPResponse, url: str) -> tuple[int, int | None]:
    """(first byte, whole size or None for ``*``) of a 206 answer, from its
    ``Content-Range: bytes a-b/n``."""
    value = (resp.getheader("Content-Range") or "").strip()
    unit, _, rest = value.partition(" ")
    first, dash, rest = rest.partition("-")
    last, slash, size = rest.partition("/")
    if (
        unit.lower() != "bytes"
        or not dash
        or not slash
        or not first.isdigit()
        or not last.isdigit()
        or not (size.isdigit() or size == "*")
    ):
        raise SourceError(
            f"a resumed download was answered 206 with the Content-Range {value!r}, not "
            "'bytes <start>-<end>/<size>': nothing was published",
            file=url,
            hint=f"the server of {url} answers ranges wrongly; run the command again (or "
            "ask the publisher to fix the server)",
        )
    return int(first), int(size) if size.isdigit() else None


def _http_download(obj: RemoteObject, dest: Path, limits: Limits) -> str:
    """Stream ``obj`` into ``dest``; returns its SHA-256."""
    clock = _Clock(obj.url, limits)
    try:
        digest = _http_fetch(obj, dest, limits, clock)
    finally:
        clock.close()
    done = dest.stat().st_size
    after = _http_object(obj.url, limits)  # the object is still the one read?
    if (obj.etag, obj.last_modified) != (after.etag, after.last_modified) or (
        after.size is not None and after.size != done
    ):
        raise _changed(obj.url)
    return digest


def _http_fetch(obj: RemoteObject, dest: Path, limits: Limits, clock: _Clock) -> str:
    """The attempts of one download into ``dest``; returns its SHA-256."""
    done = 0
    h = hashlib.sha256()
    with open(dest, "wb") as out:

        def attempt() -> None:
            nonlocal done, h
            headers = {}
            if done:
                headers["Range"] = f"bytes={done}-"
                if obj.etag or obj.last_modified:
                    headers["If-Range"] = obj.etag or obj.last_modified or ""
            try:
                resp, _final = _open(obj.url, "GET", limits, headers, clock)
            except _Transient:
                clock.check()
                raise
            try:
                for name, seen in (("ETag", obj.etag), ("Last-Modified", obj.last_modified)):
                    now = resp.getheader(name)
                    if seen and now and now != seen:
                        raise _changed(obj.url)
                whole = None
                if resp.status == 206:
                    start, whole = _content_range(resp, obj.url)
                    if start != done:  # another part than asked for: never spliced in
                        raise SourceError(
                            f"asked to resume from byte {done:,}, the server sent the bytes "
                            f"from {start:,} (Content-Range): nothing was published",
                            file=obj.url,
                            hint=f"the server of {obj.url} answers ranges wrongly; run the "
                            "command again",
                        )
                elif done:  # no ranges here: the whole object again
                    out.seek(0)
                    out.truncate()
                    h = hashlib.sha256()  # (h.__init__() does not reset a hash)
                    done = 0
                total = resp.getheader("Content-Length")
                expected = obj.size
                if not done and total and total.isdigit():
                    _check_size(int(total), limits, obj.url)
                    if expected is not None and int(total) != expected:
                        raise _changed(obj.url)
                    expected = int(total)
                if expected is None and whole is not None:
                    _check_size(whole, limits, obj.url)
                    expected = whole
                if expected is not None and whole is not None and whole != expected:
                    raise _changed(obj.url)
                if expected is None and resp.length is None and not resp.chunked:
                    raise SourceError(
                        "the server sent neither a Content-Length nor chunked encoding, and "
                        "listed no size: a download cut short could not be told from a "
                        "complete one, so nothing was published",
                        file=obj.url,
                        hint=f"ask the publisher of {obj.url} to send Content-Length (or "
                        "chunked encoding), or copy the file to storage you control",
                    )
                while True:
                    try:
                        block = resp.read(CHUNK)
                    except (OSError, http.client.HTTPException) as e:
                        clock.check()
                        raise _Transient(f"reading: {type(e).__name__}: {e}") from None
                    clock.check()  # cut by the deadline: what came is not the whole
                    if not block:
                        break
                    done += len(block)
                    if done > limits.max_bytes:
                        raise SourceError(
                            f"{obj.url} is more than the limit of {limits.max_bytes:,} bytes",
                            file=obj.url,
                            hint="raise NSDX_SOURCE_MAX_BYTES if this source is expected to "
                            "be that large",
                        )
                    h.update(block)
                    out.write(block)
                if expected is not None and done < expected:
                    raise _Transient(f"the connection ended after {done:,} of {expected:,} bytes")
                if expected is not None and done > expected:
                    raise _changed(obj.url)
            finally:
                resp.close()

        _retrying("download", obj.url, limits, attempt, clock)
    return h.hexdigest()


def _name(path: str, url: str) -> str:
    name = path.rstrip("/").rsplit("/", 1)[-1]
    if not name:
        raise SourceError(
            f"{url} names no file", file=url, hint="source.path must end in the file's name"
        )
    return name


# -- S3 -------------------------------------------------------------------------------------


def _s3_client(limits: Limits) -> Any:
    from .storage.s3 import S3Store  # the same settings as storage (one boto3 module)

    store = S3Store.from_url("s3://nsdx-source", read_timeout=limits.timeout)
    return store._client, store


def _split(url: str) -> tuple[str, str]:
    bucket, _, key = url[len("s3://") :].partition("/")
    if not bucket or not key:
        raise SourceError(
            f"{url} must name a bucket and a key: s3://bucket/path/file.csv", file=url
        )
    return bucket, key


def _s3_objects(url: str, limits: Limits) -> list[RemoteObject]:
    client, store = _s3_client(limits)
    bucket, key = _split(url)
    out: list[RemoteObject] = []
    try:
        if any(ch in key for ch in "*?["):
            prefix = key[: min(key.index(ch) for ch in "*?[" if ch in key)]
            paginator = client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
                for o in page.get("Contents", []):
                    if fnmatch.fnmatchcase(o["Key"], key) and not o["Key"].endswith("/"):
                        out.append(
                            RemoteObject(
                                url=f"s3://{bucket}/{o['Key']}",
                                name=_name(o["Key"], url),
                                size=int(o["Size"]),
                                etag=o.get("ETag"),
                                last_modified=o["LastModified"].isoformat(),
                            )
                        )
            out.sort(key=lambda o: o.url)
        else:
            r = client.head_object(Bucket=bucket, Key=key)
            out.append(
                RemoteObject(
                    url=url,
                    name=_name(key, url),
                    size=int(r["ContentLength"]),
                    etag=r.get("ETag"),
                    last_modified=r["LastModified"].isoformat(),
                )
            )
    except SourceError:
        raise
    except Exception as e:  # noqa: BLE001 - boto3's errors, said as storage says them
        err = store._error(e, f"reading source {url}", key)
        raise SourceError(
            err.message,
            file=url,
            hint="check source.path and the AWS_* settings (the same as for storage)",
        ) from e
    for o in out:
        _check_size(o.size, limits, o.url)
    return out


def _s3_download(obj: RemoteObject, dest: Path, limits: Limits) -> str:
    client, store = _s3_client(limits)
    bucket, key = _split(obj.url)
    h = hashlib.sha256()
    done = 0

    def attempt() -> None:
        nonlocal done, h
        done = 0
        h = hashlib.sha256()  # a fresh hash for a fresh attempt
        try:
            kw: dict[str, Any] = {"Bucket": bucket, "Key": key}
            if obj.etag:
                kw["IfMatch"] = obj.etag
            r = client.get_object(**kw)
        except Exception as e:  # noqa: BLE001
            code = str(getattr(e, "response", {}).get("Error", {}).get("Code", ""))
            if code in ("PreconditionFailed", "412"):
                raise _changed(obj.url) from None
            err = store._error(e, f"reading source {obj.url}", key)
            if err.transient:
                raise _Transient(err.message) from None
            raise SourceError(err.message, file=obj.url) from None
        if r.get("ETag") and obj.etag and r["ETag"] != obj.etag:
            raise _changed(obj.url)
        body = r["Body"]
        with open(dest, "wb") as out:
            try:
                for block in body.iter_chunks(CHUNK):
                    clock.check()
                    done += len(block)
                    if done > limits.max_bytes:
                        raise SourceError(
                            f"{obj.url} is more than the limit of {limits.max_bytes:,} bytes",
                            file=obj.url,
                        )
                    h.update(block)
                    out.write(block)
            except SourceError:
                raise
            except Exception as e:  # noqa: BLE001 - a connection lost mid-body
                raise _Transient(f"reading: {type(e).__name__}: {e}") from None
            finally:
                body.close()
        if obj.size is not None and done != obj.size:
            raise _Transient(f"got {done:,} of {obj.size:,} bytes")

    clock = _Clock(obj.url, limits)
    try:
        _retrying("download", obj.url, limits, attempt, clock)
    finally:
        clock.close()
    return h.hexdigest()


# -- the entry points -----------------------------------------------------------------------


def list_remote(path: str, limits: Limits | None = None) -> list[RemoteObject]:
    """The objects a remote ``source.path`` names (a glob may name several, sorted)."""
    limits = limits or Limits.from_env()
    if path.startswith("s3://"):
        objects = _s3_objects(path, limits)
        if not objects:
            raise SourceError(
                f"no object matches {path}",
                file=path,
                hint="check source.path in datasets.yaml (a glob must match at least one key)",
            )
        return objects
    if any(ch in urlsplit(path).path for ch in "*?["):
        raise SourceError(
            f"{path}: a web server cannot be listed, so globs work on s3:// sources only",
            file=path,
            hint="name each file, or publish them in an S3 bucket",
        )
    return [_http_object(path, limits)]


def download(obj: RemoteObject, dest_dir: Path, limits: Limits | None = None) -> tuple[Path, str]:
    """Stream ``obj`` into ``dest_dir``; (local path, SHA-256). Removes a partial file."""
    limits = limits or Limits.from_env()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / obj.name
    n = 2
    while dest.exists():  # two keys with the same name (a glob over folders)
        dest = dest_dir / f"{n}-{obj.name}"
        n += 1
    try:
        if obj.url.startswith("s3://"):
            digest = _s3_download(obj, dest, limits)
        else:
            digest = _http_download(obj, dest, limits)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest, digest


__all__ = ["Limits", "RemoteObject", "download", "is_remote", "list_remote"]
