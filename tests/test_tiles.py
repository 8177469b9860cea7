"""The ledger as C2SP tlog-tiles: paths, tiles equal to the tree (RFC 6962 vectors, large
trees, the SQLite store at growing sizes), entry bundles, and the one-file verifier's
Ed25519 and proof code."""

from __future__ import annotations

import base64
import json
import random
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from exchange.errors import TileNotFound
from exchange.ledger.canonical import canonical_json
from exchange.ledger.merkle import MerkleTree, leaf_hash
from exchange.ledger.tiles import (
    TileRef,
    encode_index,
    entry_bundle,
    export_tiles,
    parse_tile_path,
    read_tile,
    tiles_for_size,
)
from nsdx import verify_receipt as vr

VECTORS = Path(__file__).resolve().parent / "vectors" / "rfc6962" / "testdata"
# The eight leaves behind the RFC 6962 vectors (as in tests/test_merkle.py).
LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]  # fmt: skip


def _b(text: str) -> bytes:
    return base64.b64decode(text)


def _write_tree_tiles(dest: Path, tree: MerkleTree, size: int) -> None:
    """The tiles of ``tree`` at ``size``, computed from the in-memory tree (the reference
    the store's tiles are compared with)."""
    for ref in tiles_for_size(size):
        path = dest / ref.path
        if ref.full and path.exists():
            continue
        lo = ref.index * 256
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"".join(tree.node(ref.hash_level, i) for i in range(lo, lo + ref.width)))


# --------------------------------------------------------------------------- paths


def test_tile_paths_follow_c2sp():
    # the spec's own example, and the edges of the 3-digit groups
    assert encode_index(1234067) == "x001/x234/067"
    assert [encode_index(n) for n in (0, 5, 999, 1000, 1_000_000)] == [
        "000", "005", "999", "x001/000", "x001/x000/000"
    ]  # fmt: skip
    assert TileRef(0, 1234067).path == "tile/0/x001/x234/067"
    assert TileRef(1, 1234, 17).path == "tile/1/x001/234.p/17"
    assert TileRef(None, 5, 3).path == "tile/entries/005.p/3"
    for ref in (TileRef(0, 0), TileRef(7, 10**15, 255), TileRef(None, 999, 1), TileRef(3, 1000)):
        assert parse_tile_path(ref.path) == ref
    for bad in (
        "tile/0/1",  # not 3 digits
        "tile/0/x000/001",  # not canonical (leading zero group)
        "tile/0/001.p/0",
        "tile/0/001.p/256",  # a partial tile is narrower than 256
        "tile/0/001.p/017",
        "tile/8/000",  # no level 8 in a uint64 tree
        "tile/01/000",
        "tile/0/x1/000",
        "tile/0/000/",
        "tile/-1/000",
        "tile/0/０００",  # fullwidth digits
        "tiles/0/000",
        "tile/entries/x001",
        "tile/0/" + "x000/" * 40 + "000",
        "../etc/passwd",
    ):
        with pytest.raises(TileNotFound):
            parse_tile_path(bad)
    # which tiles a size has: full tiles, one partial per level while hashes remain
    assert [r.path for r in tiles_for_size(257, entries=True)] == [
        "tile/0/000", "tile/0/001.p/1", "tile/1/000.p/1", "tile/entries/000",
        "tile/entries/001.p/1",
    ]  # fmt: skip
    assert list(tiles_for_size(0, entries=True)) == []


# --------------------------------------------------------------------------- tiles = tree


def test_rfc6962_vectors_through_tiles(tmp_path):
    """Tiles over the eight RFC 6962 test leaves: the proofs the verifier computes from
    them are the vectors' proofs, and its verifiers accept every happy vector and refuse
    every vector that must fail."""
    hashes = [leaf_hash(d) for d in LEAVES]
    tree = MerkleTree(hashes)
    for size in range(1, 9):
        _write_tree_tiles(tmp_path, tree, size)
    assert (tmp_path / "tile/0/000.p/8").read_bytes() == b"".join(hashes)
    tiles = vr.Tiles(str(tmp_path))
    checked = 0
    for path in sorted((VECTORS / "inclusion").rglob("*.json")):
        case = json.loads(path.read_text())
        args = (case["leafIdx"], case["treeSize"], _b(case["leafHash"]),
                [_b(p) for p in case["proof"] or []], _b(case["root"]))  # fmt: skip
        if path.name.startswith("happy-path"):
            assert vr.inclusion_proof(args[0], args[1], tiles.reader(args[1])) == args[3]
            vr.verify_inclusion(*args)
        elif case["wantErr"]:
            with pytest.raises((vr.Failed, IndexError)):
                vr.verify_inclusion(*args)
        checked += 1
    for path in sorted((VECTORS / "consistency").rglob("*.json")):
        case = json.loads(path.read_text())
        args = (case["size1"], case["size2"], [_b(p) for p in case["proof"] or []],
                _b(case["root1"]), _b(case["root2"]))  # fmt: skip
        if path.name.startswith("happy-path"):
            got = vr.consistency_proof(args[0], args[1], tiles.reader(args[1]))
            assert got == args[2]
            vr.verify_consistency(*args)
        elif case["wantErr"]:
            with pytest.raises(vr.Failed):
                vr.verify_consistency(*args)
        checked += 1
    assert checked > 100


def test_proofs_from_multilevel_tiles_equal_the_tree(tmp_path):
    """70 000 leaves: level-0, level-1 (full and partial) and level-2 tiles; proofs from
    the tiles equal the in-memory tree's at sizes on every tile boundary."""
    rng = random.Random(7)
    n = 70_000
    tree = MerkleTree.from_packed(rng.randbytes(32 * n))
    sizes = [1, 2, 255, 256, 257, 511, 65535, 65536, 65537, 70_000]
    for size in sizes:
        _write_tree_tiles(tmp_path, tree, size)
    assert (tmp_path / "tile/1/000").stat().st_size == 256 * 32  # a full level-1 tile
    assert (tmp_path / "tile/2/000.p/1").read_bytes() == tree.node(16, 0)
    for size in sizes:
        tiles = vr.Tiles(str(tmp_path))
        node = tiles.reader(size)
        for i in {0, size // 3, size - 1, rng.randrange(size)}:
            assert vr.inclusion_proof(i, size, node) == tree.inclusion_proof(i, size)
        for s1 in {1, size // 2 or 1, size - 1 or 1}:
            if s1 < size:
                assert vr.consistency_proof(s1, size, node) == tree.consistency_proof(s1, size)


def _store(url, home):
    from catalogue.db import make_engine
    from exchange.ledger.keys import load_signer
    from exchange.ledger.store import LedgerStore

    return LedgerStore(make_engine(url), load_signer(home, {}))


def test_store_tiles_match_the_tree_and_partial_tiles_become_full(database_url, tmp_path):
    """The ledger (SQLite, PostgreSQL) exported after each batch: every tile equals the tree's nodes, the
    ledger's own inclusion proofs equal those computed from the tiles, a partial tile is a
    prefix of the full tile that replaces it, full tiles are never rewritten, and entry
    bundles hold the entries whose leaf hashes are the level-0 tile."""
    store = _store(database_url, tmp_path)
    dest = tmp_path / "tiles"
    total = 0
    mtimes: dict[str, int] = {}
    for batch in (100, 156, 1, 300, 255):
        with store.transaction() as s:
            store.append_many(s, [("t", {"i": total + i, "who": "买方"}) for i in range(batch)])
        total += batch
        cp = store.checkpoint()
        r = export_tiles(store, cp.note, dest, entries=True)
        assert r.tree_size == total and (dest / "checkpoint").read_text() == cp.note
        tree = MerkleTree(h for _, _, h in store.iter_rows())
        for ref in tiles_for_size(total):
            lo = ref.index * 256
            want = b"".join(tree.node(ref.hash_level, i) for i in range(lo, lo + ref.width))
            assert (dest / ref.path).read_bytes() == want == read_tile(store, ref)
        for path, m in mtimes.items():  # full tiles are kept as they are
            assert (dest / path).stat().st_mtime_ns == m
        mtimes.update(
            {ref.path: (dest / ref.path).stat().st_mtime_ns for ref in tiles_for_size(total)
             if ref.full}
        )  # fmt: skip
        node = vr.Tiles(str(dest)).reader(total)
        for i in {0, total // 2, total - 1}:
            own = [_b(p) for p in store.inclusion(i, total)["proof"]]
            assert vr.inclusion_proof(i, total, node) == own
    # partial tiles of earlier sizes are prefixes of the full tiles that followed them
    full = (dest / "tile/0/000").read_bytes()
    assert (dest / "tile/0/000.p/100").read_bytes() == full[: 100 * 32]
    assert (dest / "tile/1/000.p/1").read_bytes() == store.tiles(8)[0][1]
    assert sorted(p.name for p in (dest / "tile/1/000.p").iterdir()) == ["1", "2", "3"]
    # entry bundles: uint16 big-endian length + the canonical entry, leaf hash = tile 0
    bundle = (dest / "tile/entries/000").read_bytes()
    assert bundle == entry_bundle(store, TileRef(None, 0))
    entries, pos = [], 0
    while pos < len(bundle):
        n = int.from_bytes(bundle[pos : pos + 2], "big")
        entries.append(bundle[pos + 2 : pos + 2 + n])
        pos += 2 + n
    assert len(entries) == 256 and b"".join(map(leaf_hash, entries)) == full
    assert json.loads(entries[5])["i"] == 5 and entries[5] == canonical_json(json.loads(entries[5]))
    # nothing beyond the head is served
    assert total == 812 and len(read_tile(store, TileRef(0, 3, 44))) == 44 * 32
    # a checkpoint whose root is not the ledger's is not exported
    from exchange.ledger.note import checkpoint_body, sign_note

    forged = sign_note(
        checkpoint_body(store.signer.origin, 800, bytes(32)), store.signer.signer_key
    )
    with pytest.raises(TileNotFound, match="not the ledger's"):
        export_tiles(store, forged, tmp_path / "forged")
    assert not (tmp_path / "forged" / "checkpoint").exists()
    for beyond in (TileRef(0, 3, 45), TileRef(1, 0, 4), TileRef(None, 3, 45), TileRef(2, 0, 1)):
        with pytest.raises(TileNotFound):
            read_tile(store, beyond)


# --------------------------------------------------------------------------- the verifier's parts


def test_pure_python_ed25519_against_rfc8032_and_openssl():
    # RFC 8032 §7.1 TEST 1 and TEST 2
    for seed, public, msg, sig in (
        ("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
         "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
         "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e3970"
         "1cf9b46bd25bf5f0595bbe24655141438e7a100b"),
        ("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
         "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
         "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613"
         "d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ):  # fmt: skip
        key = Ed25519PrivateKey.from_private_bytes(bytes.fromhex(seed))
        assert key.public_key().public_bytes_raw().hex() == public
        assert key.sign(bytes.fromhex(msg)).hex() == sig
        assert vr.ed25519_verify(bytes.fromhex(public), bytes.fromhex(msg), bytes.fromhex(sig))
    rng = random.Random(3)
    for _ in range(12):
        key = Ed25519PrivateKey.generate()
        pub, msg = key.public_key().public_bytes_raw(), rng.randbytes(rng.randrange(80))
        sig = key.sign(msg)
        assert vr.ed25519_verify(pub, msg, sig)
        bit = rng.randrange(64 * 8)
        bad = bytearray(sig)
        bad[bit // 8] ^= 1 << (bit % 8)
        assert not vr.ed25519_verify(pub, msg, bytes(bad))
        assert not vr.ed25519_verify(pub, msg + b"x", sig)
    # S >= L (malleated) and a non-canonical point are refused
    s = int.from_bytes(sig[32:], "little") + vr._L
    assert not vr.ed25519_verify(pub, msg, sig[:32] + s.to_bytes(32, "little"))
    assert not vr.ed25519_verify((2**255 - 1).to_bytes(32, "little"), msg, sig)


def test_verifier_canonical_json_equals_the_ledgers():
    rng = random.Random(5)
    words = ["a", "B", "买方", "\u00e9", "\U0001f600", "\ue000", 'q"\\', "\n\t\x01", "\u2028", ""]

    def value(depth: int):
        kind = rng.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return rng.choice(words)
        if kind == 1:
            return rng.randrange(-(2**53) + 1, 2**53)
        if kind == 2:
            return rng.choice([True, False, None, 0.5, 2.0, -0.0, 2.0**-20, -1.5, 0.25])
        if kind == 3:
            return rng.choice(words) * 2
        if kind in (4, 5):
            return {rng.choice(words) + str(i): value(depth + 1) for i in range(rng.randrange(4))}
        return [value(depth + 1) for _ in range(rng.randrange(4))]

    for _ in range(300):
        v = {"type": "t", "x": value(0)}
        assert vr.canonical_json(v) == canonical_json(v)


def test_the_verifier_refuses_hostile_receipts_and_tiles_with_an_exit_code(tmp_path, capsys):
    """Malformed receipts, keys and tile folders: exit 1 (a check failed) or 2 (could not
    run) with a message, never a traceback."""
    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    with store.transaction() as s:
        store.append_many(s, [("t", {"i": i}) for i in range(5)])
    cp = store.checkpoint()
    export_tiles(store, cp.note, tmp_path / "tiles")
    good = {"entry": store.entry(3)["payload"], **store.inclusion(3, 5)}
    key = store.signer.verifier_key

    def run(receipt, *extra: str) -> int:
        path = tmp_path / "r.json"
        path.write_text(receipt if isinstance(receipt, str) else json.dumps(receipt))
        return vr.main([str(path), "--tiles", str(tmp_path / "tiles"), "--log-key", key, *extra])

    assert run(good) == 0
    for bad, code in (
        ({**good, "index": -1}, 1),
        ({**good, "index": 7}, 1),
        ({**good, "tree_size": 0}, 1),
        ({**good, "proof": "AAAA"}, 2),
        ({**good, "proof": ["AAAA"]}, 1),
        ({"receipt": 5}, 2),
        ({**good, "proof": None}, 2),
        ({**good, "leaf_hash": "%%%"}, 1),
        ({**good, "checkpoint": "no note"}, 1),
        ({**good, "checkpoint": 5}, 2),
        ({k: v for k, v in good.items() if k != "entry"}, 2),
        ({**good, "entry": {"x": float("nan")}}, 1),
        ("[" * 100_000 + "]" * 100_000, 2),
        ("not json", 2),
        ([1, 2], 2),
    ):
        assert run(bad) == code, bad if not isinstance(bad, str) else bad[:20]
    assert run(good, "--log-key", "x+1+AA==") == 2
    assert run(good, "--witness-key", key) == 2  # a log key is not a witness key (0x04)
    assert run(good, "--quorum", "1") == 2  # a quorum without witness keys
    (tmp_path / "tiles" / "checkpoint").write_text("x" * 100_000)
    assert run(good) == 1  # over the checkpoint's size bound
    assert vr.main(["x.json", "--tiles", str(tmp_path / "nowhere"), "--log-key", key]) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_an_official_checks_a_whole_folder_of_tiles(tmp_path):
    """`verify_tiles` (`nsdx ledger verify-tiles`): an export matches its checkpoint; a
    changed tile at any level, a changed entry, a missing tile, a forged checkpoint and a
    missing quorum are each named."""
    import shutil

    from exchange.ledger.tiles import verify_tiles
    from exchange.witness import generate_cosigner_key

    store = _store(f"sqlite:///{tmp_path / 'l.db'}", tmp_path)
    with store.transaction() as s:
        store.append_many(s, [("t", {"i": i}) for i in range(600)])
    cp = store.checkpoint()
    w = generate_cosigner_key("witness.test/t1")
    note = cp.note + w.cosign(cp.note[: cp.note.rfind("\n\n") + 1], 1_800_000_000)
    good = tmp_path / "good"
    export_tiles(store, note, good, entries=True)
    key, wkey = store.signer.verifier_key, w.verifier.text
    r = verify_tiles(good, key, [wkey], 1)
    assert r.ok and r.tree_size == 600 and r.cosigners == ["witness.test/t1"], r.problems
    assert r.tiles == 4 and r.entry_bundles == 3  # 0/000, 0/001, 0/002.p/88, 1/000.p/2
    assert not verify_tiles(good, key, [], 1).ok  # a quorum nobody was given

    def broken(change) -> list[str]:
        bad = tmp_path / "bad"
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(good, bad)
        change(bad)
        res = verify_tiles(bad, key, [wkey], 1)
        assert not res.ok
        return res.problems

    def flip(path: str, at: int = 40):
        def change(d: Path) -> None:
            data = bytearray((d / path).read_bytes())
            data[at] ^= 1
            (d / path).write_bytes(bytes(data))

        return change

    assert any("root" in p for p in broken(flip("tile/0/001")))
    assert broken(flip("tile/1/000.p/2")) == [
        "tile/1/000.p/2 does not hold the hashes of the tiles below it"
    ]
    assert broken(flip("tile/entries/001")) == [
        "tile/entries/001 holds entries that are not the logged ones"
    ]
    assert "tile/0/000 is missing" in broken(lambda d: (d / "tile/0/000").unlink())
    problems = broken(flip("checkpoint", 70))
    assert len(problems) == 1 and problems[0].startswith("checkpoint:")
    # the same through `nsdx ledger verify-tiles`
    from click.testing import CliRunner

    from nsdx.cli.ledger import ledger

    args = ["verify-tiles", "--log-key", key, "--witness-key", wkey, "--quorum", "1"]
    out = CliRunner().invoke(ledger, [*args, str(good)])
    assert out.exit_code == 0 and "4 tiles and 3 entry bundles match" in out.output
    out = CliRunner().invoke(ledger, [*args, "--json", str(tmp_path / "bad")])
    assert out.exit_code == 1 and json.loads(out.output)["problems"][0].startswith("checkpoint:")
