"""Which witnesses the exchange asks, and how many must cosign: read once from the
environment and the state folder.

| setting | default | meaning |
|---|---|---|
| ``NSDX_WITNESSES`` | ``$NSDX_HOME/witnesses.txt`` when it exists | a file of ``<URL> <witness verifier key>`` lines (``#`` comments) |
| ``NSDX_WITNESS_QUORUM`` | a majority of the witnesses | distinct witnesses (distinct public keys) that must cosign a checkpoint before it is *witnessed* |
| ``NSDX_WITNESS_TIMEOUT`` | ``5`` | seconds per witness request (the whole request, not each read) |
| ``NSDX_WITNESS_RETRY`` | ``2`` | seconds before a failed witness is asked again; doubled after each failure |
| ``NSDX_WITNESS_RETRY_MAX`` | ``300`` | the longest wait between two attempts |
| ``NSDX_WITNESS_INTERVAL`` | ``30`` | seconds between two looks for a new checkpoint signed by another process |

No witness configured: nothing is witnessed, and nothing else changes.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ExchangeError
from .client import WitnessEndpoint, parse_witness_config
from .cosignature import CosignatureError

__all__ = ["WitnessConfigInvalid", "WitnessingConfig", "load_witnessing"]

DEFAULT_FILE = "witnesses.txt"
MAX_CONFIG_BYTES = 64 * 1024


class WitnessConfigInvalid(ExchangeError):
    """The witness configuration cannot be used (unreadable file, bad line, bad number)."""

    status = 400


@dataclass(frozen=True)
class WitnessingConfig:
    witnesses: tuple[WitnessEndpoint, ...]
    quorum: int
    timeout: float = 5.0
    retry: float = 2.0
    retry_max: float = 300.0
    interval: float = 30.0
    source: str = ""  # the file it came from (for messages)

    def __post_init__(self) -> None:
        seen: dict[bytes, str] = {}
        for w in self.witnesses:  # one key is one witness: never two entries towards a quorum
            if w.key.public in seen:
                raise WitnessConfigInvalid(
                    f"the witnesses {seen[w.key.public]} and {w.key.name} have the same "
                    "public key; each witness counts once towards the quorum",
                    hint="keep one line per witness key",
                )
            seen[w.key.public] = w.key.name
        if not 1 <= self.quorum <= len(self.witnesses):
            raise WitnessConfigInvalid(
                f"witness quorum {self.quorum} must be between 1 and the number of "
                f"witnesses ({len(self.witnesses)})",
                hint="set NSDX_WITNESS_QUORUM to at most the number of configured witnesses",
            )

    @property
    def keys(self):
        return [w.key for w in self.witnesses]

    def distinct_keys(self, names) -> int:
        """How many distinct public keys the configured witnesses ``names`` hold: what
        counts towards the quorum (one key under two names counts once)."""
        public = {w.key.name: w.key.public for w in self.witnesses}
        return len({public[n] for n in names if n in public})

    def backoff(self, failures: int) -> float:
        """Seconds to wait after ``failures`` consecutive failures (0 after none)."""
        if failures <= 0:
            return 0.0
        return min(self.retry_max, self.retry * 2 ** min(failures - 1, 30))

    def to_dict(self) -> dict:
        return {
            "witnesses": [{"url": w.url, "key": w.key.text} for w in self.witnesses],
            "quorum": self.quorum,
            "source": self.source,
        }


def _number(env: Mapping[str, str], name: str, default: float, lo: float, hi: float) -> float:
    raw = (env.get(name) or "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not lo <= value <= hi:  # NaN fails too
        raise WitnessConfigInvalid(
            f"{name}={raw!r} is not a number of seconds between {lo:g} and {hi:g}",
            hint=f"set {name} to a number, or unset it (default {default:g})",
        )
    return value


def parse_config_file(path: Path) -> list[WitnessEndpoint]:
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise WitnessConfigInvalid(
            f"cannot read the witness list {path}: {e.strerror}",
            hint="NSDX_WITNESSES names a file of `<URL> <witness verifier key>` lines",
        ) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise WitnessConfigInvalid(f"the witness list {path} is over {MAX_CONFIG_BYTES} bytes")
    try:
        return parse_witness_config(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WitnessConfigInvalid(f"the witness list {path} is not UTF-8 text") from None
    except CosignatureError as e:
        raise WitnessConfigInvalid(f"{path}: {e}") from None


def load_witnessing(
    home: Path,
    env: Mapping[str, str] | None = None,
    *,
    path: Path | None = None,
    quorum: int | None = None,
) -> WitnessingConfig | None:
    """The deployment's witnesses (``path`` or NSDX_WITNESSES, else ``home``/witnesses.txt
    if it exists), or None when none is configured. ``quorum`` overrides
    NSDX_WITNESS_QUORUM (default: a majority)."""
    env = os.environ if env is None else env
    if path is None:
        named = (env.get("NSDX_WITNESSES") or "").strip()
        if named:
            path = Path(named)
        else:
            path = Path(home) / DEFAULT_FILE
            if not path.exists():
                return None
    endpoints = parse_config_file(path)
    if not endpoints:
        return None
    if quorum is None:
        raw = (env.get("NSDX_WITNESS_QUORUM") or "").strip()
        if raw:
            if not raw.isdigit():
                raise WitnessConfigInvalid(
                    f"NSDX_WITNESS_QUORUM={raw!r} is not a whole number",
                    hint="the number of distinct witnesses that must cosign, e.g. 2",
                )
            quorum = int(raw)
        else:
            quorum = len(endpoints) // 2 + 1
    return WitnessingConfig(
        tuple(endpoints),
        quorum,
        timeout=_number(env, "NSDX_WITNESS_TIMEOUT", 5.0, 0.1, 120),
        retry=_number(env, "NSDX_WITNESS_RETRY", 2.0, 0.01, 3600),
        retry_max=_number(env, "NSDX_WITNESS_RETRY_MAX", 300.0, 0.01, 86400),
        interval=_number(env, "NSDX_WITNESS_INTERVAL", 30.0, 0.05, 86400),
        source=str(path),
    )
