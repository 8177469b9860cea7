"""The exchange ledger served as C2SP tlog-tiles under ``/log/`` (see
:mod:`exchange.ledger.tiles` and docs/ledger.md, "How a buyer checks a receipt offline").

* ``GET /log/checkpoint`` — the published checkpoint note (the latest witnessed one with
  its cosignatures, else the latest signed one); cached briefly;
* ``GET /log/tile/<L>/<N>[.p/<W>]`` — hash tiles, for anyone (they hold only hashes, as
  the public inclusion proofs do); a full tile never changes and is cached as immutable;
* ``GET /log/tile/entries/<N>[.p/<W>]`` — entry bundles: the entries hold the trades'
  parties and amounts, so only officials (auditors, sysadmins) get them, with a token;
* ``GET /log/verify_receipt.py`` — the offline verifier itself (one file, to copy).

The checkpoint and tiles answer ``HEAD`` too (caches and mirrors ask it). Errors answer in
plain text (the tlog dialect) with their status: a malformed or not yet
existing tile is a 404, as a static server would answer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, Response

from exchange.errors import NotAllowed
from exchange.ledger.tiles import parse_tile_path, read_tile
from exchange.witness.published import published_checkpoint

from .errors import problem_of, tlog_error
from .exchange import _actor
from .state import state_of

router = APIRouter(include_in_schema=False)

PREFIX = "/log"
CHECKPOINT_CACHE = "public, max-age=10"
FULL_TILE_CACHE = "public, max-age=31536000, immutable"
PARTIAL_TILE_CACHE = "public, max-age=3600"
VERIFIER = Path(__file__).resolve().parent.parent / "verify_receipt.py"


@router.api_route(PREFIX + "/checkpoint", methods=["GET", "HEAD"])
def checkpoint(request: Request) -> Response:
    try:
        ex = state_of(request).exchange
        note = published_checkpoint(ex.ledger, ex.home)
    except Exception as exc:
        return tlog_error(problem_of(exc, request))
    return Response(
        note,
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": CHECKPOINT_CACHE},
    )


@router.api_route(PREFIX + "/tile/{path:path}", methods=["GET", "HEAD"])
def tile(request: Request, path: str) -> Response:
    try:
        ref = parse_tile_path("tile/" + path)
        ex = state_of(request).exchange
        cache = FULL_TILE_CACHE if ref.full else PARTIAL_TILE_CACHE
        if ref.entries:
            actor = _actor(request, ex)
            if not actor.can_read_all():
                raise NotAllowed(
                    "entry bundles are for officials: the entries name the parties and amounts",
                    hint="a buyer's receipt holds its own entry; the hash tiles are public",
                )
            cache = cache.replace("public", "private")
        data = read_tile(ex.ledger, ref)
    except Exception as exc:
        return tlog_error(problem_of(exc, request))
    return Response(data, media_type="application/octet-stream", headers={"Cache-Control": cache})


@router.get(PREFIX + "/verify_receipt.py")
def verifier() -> FileResponse:
    return FileResponse(VERIFIER, media_type="text/x-python; charset=utf-8")
