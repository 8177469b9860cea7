"""One bounded HTTP request to a witness: an overall deadline, a byte cap, no redirects.

``urllib``'s ``timeout`` bounds each socket operation, not the request: a witness sending
one byte a second holds a request for ever. Here a timer shuts the socket down at the
deadline (so a blocked read returns), the body is read in chunks against that deadline and
capped at ``limit`` bytes, and a 3xx answer is a failure (a redirect is never followed: it
would send the request to any address the witness names).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
import urllib.parse

__all__ = ["WitnessHTTPError", "witness_request"]


class WitnessHTTPError(OSError):
    """The witness's answer is unusable: a redirect, too large, late or not HTTP."""


def witness_request(
    url: str,
    *,
    timeout: float,
    limit: int,
    data: bytes | None = None,
    content_type: str = "text/plain",
) -> tuple[int, bytes]:
    """(status, body) of a GET (``data`` None) or POST to ``url``, all within ``timeout``
    seconds; raises :class:`WitnessHTTPError` (an ``OSError``) on anything else."""
    u = urllib.parse.urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise WitnessHTTPError(f"not an http(s) URL: {url[:200]}")
    deadline = time.monotonic() + timeout
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    try:
        conn = cls(u.hostname, u.port, timeout=timeout)
    except ValueError as e:  # a bad port
        raise WitnessHTTPError(f"bad URL: {e}") from None
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # unblocks a read in progress
            except OSError:
                pass

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        path = (u.path or "/") + (f"?{u.query}" if u.query else "")
        headers = {"Content-Type": content_type} if data is not None else {}
        conn.request("GET" if data is None else "POST", path, body=data, headers=headers)
        r = conn.getresponse()
        if 300 <= r.status < 400:
            raise WitnessHTTPError(
                f"HTTP {r.status}: the witness answered with a redirect, which is not followed"
            )
        chunks: list[bytes] = []
        got = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or expired.is_set():
                raise TimeoutError
            if conn.sock is not None:
                conn.sock.settimeout(left)
            chunk = r.read1(min(64 * 1024, limit + 1 - got))
            if not chunk:
                break
            got += len(chunk)
            if got > limit:
                raise WitnessHTTPError(f"HTTP {r.status}: the answer is over {limit} bytes")
            chunks.append(chunk)
        if expired.is_set():  # the shutdown at the deadline ended the read: a cut answer
            raise TimeoutError
        return r.status, b"".join(chunks)
    except (OSError, http.client.HTTPException) as e:
        if expired.is_set() or isinstance(e, TimeoutError):
            raise WitnessHTTPError(f"no complete answer within {timeout:g} s") from None
        if isinstance(e, WitnessHTTPError):
            raise
        if isinstance(e, http.client.HTTPException):
            raise WitnessHTTPError(f"not a valid HTTP answer ({type(e).__name__})") from None
        raise
    finally:
        timer.cancel()
        conn.close()
