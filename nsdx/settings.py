"""Settings from the environment (all optional); see README 'Configuration'."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, overload


@dataclass(frozen=True)
class Settings:
    home: Path
    database_url: str
    storage_url: str
    datasets_path: Path
    public_url: str | None = None  # NSDX_PUBLIC_URL: the portal's address for clients
    signed_url_ttl: str | None = None  # NSDX_SIGNED_URL_TTL (checked where it is used)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        home = Path(env.get("NSDX_HOME") or ".nsdx").absolute()
        return cls(
            home=home,
            database_url=env.get("NSDX_DATABASE_URL") or f"sqlite:///{home / 'nsdx.db'}",
            storage_url=env.get("NSDX_STORAGE_URL") or f"file://{home / 'objects'}",
            datasets_path=Path(env.get("NSDX_DATASETS") or "datasets.yaml").absolute(),
            public_url=(env.get("NSDX_PUBLIC_URL") or "").strip().rstrip("/") or None,
            signed_url_ttl=env.get("NSDX_SIGNED_URL_TTL"),
        )

    def pii_key(
        self, env: Mapping[str, str] | None = None, *, create: bool = True
    ) -> tuple[bytes | None, bool]:
        """The masking key and whether it was just generated (the CLI then says so).
        Without ``create`` (commands that only read) a missing key stays missing: None."""
        return self._secret("NSDX_PII_KEY", "pii.key", env, create=create)

    def url_signing_key(self, env: Mapping[str, str] | None = None) -> bytes:
        """The secret signed download URLs are made with (``NSDX_URL_SIGNING_KEY``, or
        generated once into ``$NSDX_HOME/url-signing.key``, mode 600)."""
        return self._secret("NSDX_URL_SIGNING_KEY", "url-signing.key", env)[0]

    @overload
    def _secret(
        self, var: str, filename: str, env: Mapping[str, str] | None, *, create: Literal[True] = ...
    ) -> tuple[bytes, bool]: ...

    @overload
    def _secret(
        self, var: str, filename: str, env: Mapping[str, str] | None, *, create: bool
    ) -> tuple[bytes | None, bool]: ...

    def _secret(
        self, var: str, filename: str, env: Mapping[str, str] | None, *, create: bool = True
    ) -> tuple[bytes | None, bool]:
        env = os.environ if env is None else env
        if env.get(var):
            return env[var].encode(), False
        path = self.home / filename
        if path.exists():
            return path.read_bytes().strip(), False
        if not create:
            return None, False
        self.home.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32).encode()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: use theirs
            return path.read_bytes().strip(), False
        with os.fdopen(fd, "wb") as f:
            f.write(key)
        return key, True
