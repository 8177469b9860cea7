"""The HTTP face of a witness (``nsdx witness serve``): C2SP tlog-witness ``add-checkpoint``.

``POST /add-checkpoint`` takes the request body the protocol defines and answers the
cosignature line (200) or the protocol's status with a plain-text reason; a 409 answers
the witness's size as ``text/x.tlog.size``. ``GET /`` says who the witness is (name,
verifier key) and which logs it witnesses. The rules live in :mod:`exchange.witness`.
"""

from __future__ import annotations

from pathlib import Path

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from exchange.witness import Witness
from exchange.witness.core import MAX_REQUEST_BYTES, WitnessRefused

from .errors import problem_of, tlog_error

__all__ = ["create_witness_app"]


async def _bounded_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES):
        raise WitnessRefused(400, f"request body over {MAX_REQUEST_BYTES} bytes")
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > MAX_REQUEST_BYTES:
            raise WitnessRefused(400, f"request body over {MAX_REQUEST_BYTES} bytes")
    return bytes(buf)


def create_witness_app(home: Path | str) -> Starlette:
    """The witness app over the witness directory ``home`` (refuses to start without one)."""
    witness = Witness(Path(home))

    async def add_checkpoint(request: Request) -> Response:
        try:
            raw = await _bounded_body(request)
            out = await run_in_threadpool(witness.add_checkpoint, raw)
        except Exception as exc:  # every refusal in the protocol's plain-text dialect
            return tlog_error(problem_of(exc, request))
        return Response(out, media_type="text/plain; charset=utf-8")

    async def info(request: Request) -> Response:
        return JSONResponse(
            {
                "name": witness.key.name,
                "verifier_key": witness.verifier_key,
                "logs": sorted(witness.logs),
                # per origin, the latest checkpoint cosigned (log-signed note + this
                # witness's cosignature line): a monitor compares it with what it is shown
                "checkpoints": await run_in_threadpool(witness.latest),
                "protocol": "https://c2sp.org/tlog-witness",
            }
        )

    app = Starlette(
        routes=[
            Route("/add-checkpoint", add_checkpoint, methods=["POST"]),
            Route("/", info, methods=["GET"]),
        ]
    )
    app.state.witness = witness
    return app
