"""Settings from the environment (all optional); see README 'Configuration'."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    storage_url: str
    datasets_path: Path

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("NSDX_HOME") or ".nsdx").absolute()
        return cls(
            home=home,
            database_url=env.get("NSDX_DATABASE_URL") or f"sqlite:///{home / 'nsdx.db'}",
            storage_url=env.get("NSDX_STORAGE_URL") or f"file://{home / 'objects'}",
            datasets_path=Path(env.get("NSDX_DATASETS") or "datasets.yaml").absolute(),
        )

    def pii_key(
        self, env: Mapping[str, str] | None = None, *, create: bool = True
    ) -> tuple[bytes | None, bool]:
        """The masking key and whether it was just generated (the CLI then says so).
        Without ``create`` (commands that only read) a missing key stays missing: None."""
        env = os.environ if env is None else env
        if env.get("NSDX_PII_KEY"):
            return env["NSDX_PII_KEY"].encode(), False
        path = self.home / "pii.key"
        if path.exists():
            return path.read_bytes().strip(), False
        if not create:
            return None, False
        self.home.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key, True
