"""Starting a real server in a test: a free port, and `nsdx serve` waited for until it
answers. One place for what several test modules did each on their own."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(env: dict, cwd: Path, *, timeout: float = 60.0) -> tuple[subprocess.Popen, str]:
    """`python -m nsdx serve` on a free port with ``env``: (its process, its base URL),
    once it answers `status_show`; the test fails, naming the exit code, if it does not."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "nsdx", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(base + "/api/3/action/status_show", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    proc.wait()
    pytest.fail(f"nsdx serve did not start (exit code {proc.returncode}) within {timeout:.0f} s")
