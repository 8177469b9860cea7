"""A buyer checks a real receipt offline: the exchange's demo ledger witnessed by real
witnesses (two up, one down), exported as tiles with `nsdx ledger export-tiles`, checked by
the one-file verifier run on its own (`python -I -S`, no nsdx, no site-packages), and every
kind of tampering refused. The same tiles over HTTP under /log/ (a real server)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from exchange.ledger.note import checkpoint_body, sign_note, verifier_key
from exchange.ledger.tiles import export_tiles, tiles_for_size
from exchange.witness.config import WitnessingConfig
from exchange.witness.publish import witness_latest
from exchange.witness.published import published_checkpoint
from nsdx import verify_receipt as vr
from nsdx.cli.ledger import ledger
from nsdx.core import Nsdx
from tests.conftest import run_cli
from tests.servers import free_port
from tests.test_witness_quorum import _witnesses

VERIFIER = Path(vr.__file__)


def _receipt(env: dict) -> dict:
    """A real receipt: an enterprise's profile updated by the CLI (one ledger entry)."""
    e = {  # one of the demo's enterprises (`nsdx exchange enterprise list`)
        "org": "baiyun-vision",
        "credit_code": "91440111MA5E8H4K84",
        "legal_name": "广州白云视觉科技有限公司",
    }
    out = run_cli(
        "exchange", "enterprise", "register", e["org"], "--credit-code", e["credit_code"],
        "--name", e["legal_name"], "--as", e["org"], "--json", env=env,
    ).stdout  # fmt: skip
    return json.loads(out)


def _flip(b64: str) -> str:
    raw = bytearray(base64.b64decode(b64))
    raw[5] ^= 1
    return base64.b64encode(bytes(raw)).decode()


def _standalone(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The verifier copied alone into a folder and run without site-packages."""
    copy = tmp_path / "alone" / "verify_receipt.py"
    copy.parent.mkdir(exist_ok=True)
    shutil.copy(VERIFIER, copy)
    return subprocess.run(
        [sys.executable, "-I", "-S", str(copy), *args],
        capture_output=True, text=True, timeout=120, cwd=copy.parent,
    )  # fmt: skip


@pytest.mark.slow
def test_a_witnessed_receipt_checks_offline_and_tampering_is_refused(nsdx_env, tmp_path):
    home = Path(nsdx_env["NSDX_HOME"])
    run_cli("exchange", "demo", env=nsdx_env)
    log_key = verifier_key((home / "ledger.key").read_text().strip())  # `nsdx audit pubkey`
    receipt = _receipt(nsdx_env)
    (tmp_path / "receipt.json").write_text(json.dumps(receipt, ensure_ascii=False))
    tiles = tmp_path / "tiles"
    with _witnesses(tmp_path, log_key, "b") as endpoints:
        config = tmp_path / "witnesses.txt"
        config.write_text("".join(f"{e.url} {e.key.text}\n" for e in endpoints))
        run_cli("audit", "witness", "--witnesses", str(config), env=nsdx_env)
        out = run_cli("ledger", "export-tiles", str(tiles), "--json", env=nsdx_env).stdout
        exported = json.loads(out)
        wkeys = [e.key.text for e in endpoints]
        size = receipt["receipt"]["tree_size"]
        assert exported["tree_size"] == size and not exported["entries"]
        ex = Nsdx().exchange
        assert (tiles / "checkpoint").read_text() == published_checkpoint(ex.ledger)
        assert ex.ledger.latest_witnessed().tree_size == size

        # the buyer's check: one file, standard library only, the folder of tiles
        wargs = [a for k in wkeys for a in ("--witness-key", k)]
        common = [str(tmp_path / "receipt.json"), "--tiles", str(tiles), "--log-key", log_key]
        proc = _standalone(tmp_path, *common, *wargs, "--json")
        assert proc.returncode == 0, proc.stderr
        got = json.loads(proc.stdout)
        assert got["ok"] and got["index"] == receipt["receipt"]["index"]
        assert sorted(got["witnesses"]) == ["witness.test/b1", "witness.test/b2"]
        assert got["quorum"] == 2 and got["published_tree_size"] == size
        proc = _standalone(tmp_path, *common, *wargs, "--quorum", "3")  # the third is down
        assert proc.returncode == 1 and "2 valid cosignature(s) of the 3 witnesses" in proc.stderr
        assert vr.main([*common, "--witness-key", "nonsense"]) == 2  # cannot check
        # the same program as `nsdx ledger verify-receipt`
        cli = CliRunner().invoke(ledger, ["verify-receipt", *common, *wargs])
        assert cli.exit_code == 0 and cli.output.startswith("OK: entry "), cli.output

        def refused(r: dict, tiles_dir: Path | None = tiles, quorum: int | None = None) -> str:
            t = None if tiles_dir is None else vr.Tiles(str(tiles_dir))
            with pytest.raises(vr.Failed) as e:
                vr.verify_receipt(r, t, log_key, wkeys, quorum)
            return str(e.value)

        vr.verify_receipt(receipt, vr.Tiles(str(tiles)), log_key, wkeys)
        r = receipt["receipt"]
        # without tiles: the receipt's own checkpoint must carry the cosignatures
        assert "0 valid cosignature(s)" in refused(receipt, None)
        cosigned = published_checkpoint(ex.ledger)  # the witnessed one, of the receipt's size
        alone = vr.verify_receipt({**r, "checkpoint": cosigned}, None, log_key, wkeys)
        # ... which is what `nsdx audit proof --index N --witnessed` now hands out
        again = json.loads(
            run_cli(
                "audit", "proof", "--index", str(r["index"]), "--witnessed", "--json",
                env=nsdx_env,
            ).stdout
        )  # fmt: skip
        assert again["checkpoint"] == cosigned and again["witnessed"]
        vr.verify_receipt({**r, **again}, None, log_key, wkeys)
        assert sorted(alone["witnesses"]) == ["witness.test/b1", "witness.test/b2"]
        # a tampered entry, proof, checkpoint signature
        entry = {**r["entry"], "legal_name": r["entry"].get("legal_name", "") + "x"}
        assert "entry was altered" in refused({**r, "entry": entry})
        if r["proof"]:
            bad = [_flip(r["proof"][0]), *r["proof"][1:]]
            assert "inclusion proof" in refused({**r, "proof": bad})
        body, sig = r["checkpoint"].split("\n\n")
        dash, name, sig64 = sig.rstrip("\n").split(" ")
        forged = f"{body}\n\n{dash} {name} {_flip(sig64)}\n"
        assert "does not verify" in refused({**r, "checkpoint": forged})
        # a tampered cosignature in the published checkpoint
        bad_tiles = tmp_path / "bad"
        shutil.copytree(tiles, bad_tiles)
        note = (tiles / "checkpoint").read_text()
        lines = note.rstrip("\n").split("\n")
        lines[-1] = lines[-1].rsplit(" ", 1)[0] + " " + _flip(lines[-1].rsplit(" ", 1)[1])
        (bad_tiles / "checkpoint").write_text("\n".join(lines) + "\n")
        assert "cosignature by witness" in refused(receipt, bad_tiles)
        # a tampered tile
        shutil.rmtree(bad_tiles)
        shutil.copytree(tiles, bad_tiles)
        tile = next(bad_tiles.glob("tile/0/000*/*")) if size < 256 else bad_tiles / "tile/0/000"
        data = bytearray(tile.read_bytes())
        data[0] ^= 1
        tile.write_bytes(bytes(data))
        msg = refused(receipt, bad_tiles)
        assert "inclusion proof" in msg or "another leaf" in msg or "prefix" in msg
        # a fork the exchange signed with its own key: no witness cosigned it, and without
        # witnesses the tiles do not lead to its root
        ledger_key = (home / "ledger.key").read_text().strip()
        fork = sign_note(checkpoint_body(log_key.split("+")[0], size, bytes(32)), ledger_key)
        (bad_tiles / "checkpoint").write_text(fork)
        assert "0 valid cosignature(s)" in refused(receipt, bad_tiles)
        shutil.rmtree(bad_tiles)
        shutil.copytree(tiles, bad_tiles)
        (bad_tiles / "checkpoint").write_text(fork)
        msg = refused(receipt, bad_tiles, quorum=0)
        assert "inclusion proof does not lead" in msg or "a fork" in msg

        # the log grows: a newer receipt is not witnessed yet, then is
        newer = _receipt(nsdx_env)
        assert newer["receipt"]["tree_size"] == size + 1
        assert "not witnessed yet" in refused(newer)
        # as `nsdx audit witness` (or the job worker) and `nsdx ledger export-tiles` do
        assert witness_latest(ex.ledger, WitnessingConfig(tuple(endpoints), 2)).witnessed
        export_tiles(ex.ledger, published_checkpoint(ex.ledger), tiles)
        for rr in (newer, receipt):  # the old receipt: its tree is a prefix of the new one
            got = vr.verify_receipt(rr, vr.Tiles(str(tiles)), log_key, wkeys)
            assert got["published_tree_size"] == size + 1


@pytest.mark.slow
def test_tiles_over_http_under_log(nsdx_env, tmp_path):
    """/log/ on a real server: the checkpoint and every tile equal the exported files, with
    their cache headers; bad paths are 404s; entry bundles only for officials; the verifier
    checks a receipt against the URL."""
    import uvicorn

    from catalogue.auth import Accounts
    from nsdx.web.app import create_app

    run_cli("exchange", "demo", env=nsdx_env)
    log_key = verifier_key((Path(nsdx_env["NSDX_HOME"]) / "ledger.key").read_text().strip())
    receipt = _receipt(nsdx_env)
    nx = Nsdx()
    ledger = nx.exchange.ledger
    with ledger.transaction() as s:  # past the first full tile
        ledger.append_many(s, [("test.filler", {"i": i}) for i in range(300)])
    ledger.checkpoint()
    acc = Accounts(nx.catalogue)
    acc.create_user("aud", auditor=True)
    token, _ = acc.create_token("aud")
    tiles = tmp_path / "tiles"
    run_cli("ledger", "export-tiles", str(tiles), "--entries", env=nsdx_env)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(nx, warm=False, worker=False), host="127.0.0.1", port=port,
                       log_level="error")
    )  # fmt: skip
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}/log"

    def get(path: str, headers: dict | None = None):
        req = urllib.request.Request(f"{base}/{path}", headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, r.headers, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers, e.read()

    try:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.025)
        status, headers, body = get("checkpoint")
        assert status == 200 and body == (tiles / "checkpoint").read_bytes()
        assert headers["Cache-Control"] == "public, max-age=10"
        size = int(body.decode().split("\n")[1])
        assert size > 300
        for ref in tiles_for_size(size):
            status, headers, body = get(ref.path)
            assert status == 200 and body == (tiles / ref.path).read_bytes(), ref.path
            assert headers["Cache-Control"] == (
                "public, max-age=31536000, immutable" if ref.full else "public, max-age=3600"
            )
        for bad in ("tile/0/x000/000", "tile/0/001.p/999", "tile/9/000", "tile/0/009"):
            status, headers, body = get(bad)
            assert status == 404 and headers["Content-Type"].startswith("text/plain"), bad
        status, _, body = get("tile/entries/000")
        assert status == 403 and b"officials" in body
        status, headers, body = get("tile/entries/000", {"Authorization": f"Bearer {token}"})
        assert status == 200 and body == (tiles / "tile/entries/000").read_bytes()
        assert headers["Cache-Control"].startswith("private")
        head = urllib.request.Request(f"{base}/tile/0/000", method="HEAD")
        with urllib.request.urlopen(head, timeout=20) as r:  # what caches and mirrors ask
            assert r.status == 200 and r.headers["Content-Length"] == str(256 * 32)
            assert r.read() == b""
        status, _, body = get("verify_receipt.py")
        assert status == 200 and body == VERIFIER.read_bytes()
        got = vr.verify_receipt(receipt, vr.Tiles(base), log_key)
        assert got["ok"] and got["published_tree_size"] == size and got["witnesses"] == []
    finally:
        server.should_exit = True
        thread.join(timeout=10)
