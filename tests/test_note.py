"""Signed notes and checkpoints (C2SP signed-note, tlog-checkpoint) and the canonical
JSON of ledger leaves (RFC 8785)."""

from __future__ import annotations

import base64
import hashlib
import json
import math
import re
import struct
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from exchange.ledger import (
    MAX_SIGNATURES,
    CanonicalJSONError,
    Checkpoint,
    CheckpointError,
    NoteError,
    canonical_json,
    checkpoint_body,
    generate_key,
    open_note,
    parse_checkpoint,
    sign_note,
    verifier_key,
)

# golang.org/x/mod/sumdb/note's documented example (note.go package doc and note_test.go).
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
GO_NOTE = (
    GO_TEXT
    + "\n— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)

ROOT = hashlib.sha256(b"some tree").digest()


@pytest.fixture(scope="module")
def keys() -> tuple[str, str]:
    return generate_key("nsdx.example/ledger")


# --------------------------------------------------------------------------- interop


def test_go_example_note_is_reproduced_byte_for_byte() -> None:
    # Ed25519 is deterministic (RFC 8032), so signing the same text with the same key
    # must give exactly the note the Go package documents.
    assert sign_note(GO_TEXT, GO_SKEY) == GO_NOTE
    assert verifier_key(GO_SKEY) == GO_VKEY


def test_go_example_note_opens_with_its_verifier_key() -> None:
    assert open_note(GO_NOTE, [GO_VKEY]) == (GO_TEXT, ["PeterNeumann"])
    assert open_note(GO_NOTE.encode(), GO_VKEY) == (GO_TEXT, ["PeterNeumann"])


def test_key_id_is_sha256_of_name_newline_alg_pubkey() -> None:
    name, kid, key64 = GO_VKEY.split("+")
    pub = base64.b64decode(key64)[1:]
    digest = hashlib.sha256(name.encode() + b"\n\x01" + pub).digest()
    assert digest[:4].hex() == kid == "c74f20a3"


def test_spec_example_checkpoint_parses() -> None:
    # The body of the example in c2sp.org/tlog-checkpoint.
    body = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    cp = parse_checkpoint(body)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert base64.b64encode(cp.root).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert checkpoint_body(cp.origin, cp.size, cp.root) == body


# --------------------------------------------------------------------------- keys


def test_generated_keys_have_the_go_text_forms(keys: tuple[str, str]) -> None:
    skey, vkey = keys
    assert re.fullmatch(r"PRIVATE\+KEY\+nsdx\.example/ledger\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", skey)
    assert re.fullmatch(r"nsdx\.example/ledger\+[0-9a-f]{8}\+[A-Za-z0-9+/]{44}", vkey)
    assert skey.split("+")[3] == vkey.split("+")[1]
    assert base64.b64decode(vkey.split("+", 2)[2])[0] == 0x01
    assert verifier_key(skey) == vkey


@pytest.mark.parametrize("name", ["", "has space", "a+b", "tab\there", "no\u00a0break"])
def test_generate_key_refuses_bad_names(name: str) -> None:
    with pytest.raises(NoteError, match="key name"):
        generate_key(name)


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # wrong key ID
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # upper-case hex
        "PeterNeumannX+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # other name
        "PeterNeumann+c74f20a3+Apc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # truncated
        "PeterNeumann+c74f20a3+AhpjMdY6l3Y0iufvqLp5XEYjr6t6LxjnORGa9wUw7qjU",  # alg byte 0x02
        "PeterNeumann+c74f20a3",
        GO_SKEY,
    ],
)
def test_bad_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        open_note(GO_NOTE, [vkey])


def test_signer_key_with_wrong_id_is_refused() -> None:
    with pytest.raises(NoteError, match="does not match"):
        sign_note(GO_TEXT, GO_SKEY.replace("c74f20a3", "c74f20a4"))


# --------------------------------------------------------------------------- notes


def test_checkpoint_round_trip(keys: tuple[str, str]) -> None:
    skey, vkey = keys
    body = checkpoint_body("nsdx.example/ledger", 42, ROOT)
    assert body == f"nsdx.example/ledger\n42\n{base64.b64encode(ROOT).decode()}\n"
    note = sign_note(body, skey)
    assert note.startswith(body + "\n\u2014 nsdx.example/ledger ")
    opened, names = open_note(note, [vkey])
    assert (opened, names) == (body, ["nsdx.example/ledger"])
    assert parse_checkpoint(opened) == Checkpoint("nsdx.example/ledger", 42, ROOT, ())


def test_changing_any_byte_of_a_signed_note_is_detected(keys: tuple[str, str]) -> None:
    skey, vkey = keys
    note = sign_note(checkpoint_body("nsdx.example/ledger", 1234, ROOT), skey).encode()
    for i in range(len(note)):
        for mask in (0x01, 0x20, 0x80):
            bad = bytearray(note)
            bad[i] ^= mask
            with pytest.raises(NoteError):
                open_note(bytes(bad), [vkey])
        with pytest.raises(NoteError):
            open_note(note[:i] + note[i + 1 :], [vkey])


def test_unknown_signatures_are_ignored_and_known_ones_reported(keys: tuple[str, str]) -> None:
    skey, vkey = keys
    other_skey, other_vkey = generate_key("witness.example/w1")
    note = sign_note(GO_TEXT, [skey, other_skey, GO_SKEY])
    assert open_note(note, [vkey]) == (GO_TEXT, ["nsdx.example/ledger"])
    assert open_note(note, [GO_VKEY, other_vkey, vkey])[1] == [
        "nsdx.example/ledger",
        "witness.example/w1",
        "PeterNeumann",
    ]


def test_same_name_other_key_is_unknown_not_a_match() -> None:
    _, impostor_vkey = generate_key("PeterNeumann")
    with pytest.raises(NoteError, match="no signature from a trusted key"):
        open_note(GO_NOTE, [impostor_vkey])


def test_a_bad_signature_from_a_known_key_rejects_the_whole_note(keys: tuple[str, str]) -> None:
    skey, vkey = keys
    good = sign_note(GO_TEXT, GO_SKEY).split("\n\n")[1]
    forged_line = sign_note("other text\n", skey).split("\n\n")[1]  # valid line, wrong text
    with pytest.raises(NoteError, match="does not verify"):
        open_note(GO_TEXT + "\n" + good + forged_line, [GO_VKEY, vkey])


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        (GO_TEXT + "— PeterNeumann x08g=\n", "no blank line"),
        (GO_NOTE[:-1], "end with a newline"),
        (GO_NOTE.replace("—", "--"), "em dash"),
        (GO_NOTE.replace("— PeterNeumann ", "—PeterNeumann "), "em dash"),
        (GO_NOTE.replace("PeterNeumann x08", "PeterNeumann  x08"), "base64"),
        (GO_NOTE.replace("AM=\n", "AM\n"), "base64"),
        (GO_NOTE.replace("x08go", "x08go\t"), "control"),
        (GO_TEXT + "\n\n", "end with a newline"),
        (GO_TEXT + "\n— PeterNeumann\n", "malformed"),
        (GO_TEXT + "\n— PeterNeumann AAAA\n", "too short"),
    ],
)
def test_malformed_notes_are_refused(text: str, reason: str) -> None:
    with pytest.raises(NoteError, match=reason):
        open_note(text, [GO_VKEY])


def test_too_many_signatures_are_refused() -> None:
    line = GO_NOTE.split("\n\n")[1]
    assert open_note(GO_TEXT + "\n" + line * MAX_SIGNATURES, [GO_VKEY])[1] == ["PeterNeumann"]
    with pytest.raises(NoteError, match="more than"):
        open_note(GO_TEXT + "\n" + line * (MAX_SIGNATURES + 1), [GO_VKEY])


def test_body_may_contain_blank_lines_and_must_end_in_newline(keys: tuple[str, str]) -> None:
    skey, vkey = keys
    body = "line one\n\nline three\n\n"
    assert open_note(sign_note(body, skey), vkey)[0] == body
    with pytest.raises(NoteError, match="ending in a newline"):
        sign_note("no newline", skey)
    with pytest.raises(NoteError, match="control"):
        sign_note("bell\a\n", skey)


def test_conflicting_verifier_keys_are_refused() -> None:
    # Two different public keys behind one name+ID would be a poisoned trust list.
    pub = base64.b64decode(GO_VKEY.split("+")[2])
    other = pub[:-1] + bytes([pub[-1] ^ 1])
    clash = f"PeterNeumann+c74f20a3+{base64.b64encode(other).decode()}"
    with pytest.raises(NoteError):  # its ID cannot match: refused as a bad key already
        open_note(GO_NOTE, [GO_VKEY, clash])


# --------------------------------------------------------------------------- checkpoints


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("origin\n12\n", "origin, size and root"),
        (f"origin\n012\n{base64.b64encode(ROOT).decode()}\n", "leading zeros"),
        (f"origin\n+12\n{base64.b64encode(ROOT).decode()}\n", "leading zeros"),
        (f"origin\n١٢\n{base64.b64encode(ROOT).decode()}\n", "leading zeros"),
        (f"origin\n1_000\n{base64.b64encode(ROOT).decode()}\n", "leading zeros"),
        (f"origin\n{2**64}\n{base64.b64encode(ROOT).decode()}\n", "64 bits"),
        (f"\n12\n{base64.b64encode(ROOT).decode()}\n", "origin is empty"),
        (f"origin\n12\n{base64.b64encode(ROOT[:31]).decode()}\n", "31 bytes"),
        ("origin\n12\nnot base64!\n", "base64"),
        (f"origin\n12\n{base64.b64encode(ROOT).decode()}\n\next\n", "non-empty"),
        (f"origin\n12\n{base64.b64encode(ROOT).decode()}", "end with a newline"),
    ],
)
def test_bad_checkpoints_are_refused(body: str, reason: str) -> None:
    with pytest.raises(CheckpointError, match=reason):
        parse_checkpoint(body)


def test_checkpoint_extensions_round_trip() -> None:
    body = checkpoint_body("o", 0, ROOT, ["ext one", "ext two"])
    assert parse_checkpoint(body).extensions == ("ext one", "ext two")
    with pytest.raises(CheckpointError):
        checkpoint_body("o", -1, ROOT)
    with pytest.raises(CheckpointError):
        checkpoint_body("two\nlines", 1, ROOT)
    with pytest.raises(CheckpointError):
        checkpoint_body("o", 1, ROOT[:16])


ORIGINS = st.text(
    alphabet=st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40
)


@settings(max_examples=60, deadline=None)
@given(ORIGINS, st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32))
def test_checkpoint_sign_open_parse_round_trip(origin: str, size: int, root: bytes) -> None:
    skey, vkey = GO_SKEY, GO_VKEY
    note = sign_note(checkpoint_body(origin, size, root), skey)
    body, names = open_note(note, [vkey])
    assert names == ["PeterNeumann"]
    assert parse_checkpoint(body) == Checkpoint(origin, size, root, ())


# --------------------------------------------------------------------------- canonical JSON
# (kept here because the ledger's files are test_merkle.py and test_note.py; it is the
# leaf format that checkpoints commit to.)


def test_rfc8785_sample_is_reproduced() -> None:
    # RFC 8785 §3.2.2 example input and its canonical output (the numbers are not
    # exactly representable, hence strict_numbers=False).
    obj = {
        "numbers": [333333333.33333329, 1e30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/",
        "literals": [None, True, False],
    }
    want = (
        '{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],'
        '"string":"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"}'
    )
    assert canonical_json(obj, strict_numbers=False) == want.encode()


def test_rfc8785_key_order_is_by_utf16_code_units() -> None:
    obj = {
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\U0001f600": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis",
    }
    values = [v for _, v in json.loads(canonical_json(obj)).items()]
    assert values == [
        "Carriage Return",
        "One",
        "Control",
        "Latin Small Letter O With Diaeresis",
        "Euro Sign",
        "Emoji: Grinning Face",  # U+1F600 is D83D DE00 in UTF-16, before U+FB33
        "Hebrew Letter Dalet With Dagesh",
    ]


# RFC 8785 Appendix B: IEEE-754 bit patterns and their ECMAScript serialisation.
ES_NUMBERS = [
    ("0000000000000000", "0"),
    ("8000000000000000", "0"),
    ("0000000000000001", "5e-324"),
    ("7fefffffffffffff", "1.7976931348623157e+308"),
    ("4340000000000000", "9007199254740992"),
    ("4430000000000000", "295147905179352830000"),
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555554", "333333333.33333325"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),
]


@pytest.mark.parametrize(("bits", "text"), ES_NUMBERS)
def test_number_serialisation_matches_ecmascript(bits: str, text: str) -> None:
    (value,) = struct.unpack(">d", bytes.fromhex(bits))
    assert canonical_json(value, strict_numbers=False) == text.encode()


def test_ledger_entry_example_is_stable() -> None:
    entry = {
        "type": "payment",
        "order": "ord-17",
        "amount_fen": 1999,
        "currency": "CNY",
        "buyer": "深圳某AI公司",
        "rate": 0.5,
        "tags": ["交通", None, True],
    }
    want = (
        '{"amount_fen":1999,"buyer":"深圳某AI公司","currency":"CNY","order":"ord-17",'
        '"rate":0.5,"tags":["交通",null,true],"type":"payment"}'
    ).encode()
    assert canonical_json(entry) == want
    assert canonical_json(dict(reversed(list(entry.items())))) == want
    assert canonical_json(json.loads(want)) == want
    assert canonical_json({"whole": 2.0, "neg_zero": -0.0}) == b'{"neg_zero":0,"whole":2}'


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (math.nan, "not a JSON number"),
        (math.inf, "not a JSON number"),
        (-math.inf, "not a JSON number"),
        (0.1, "not exactly representable"),
        (19.99, "not exactly representable"),
        (1e30, "not exactly representable"),
        (2.0**60, "not exactly representable"),  # repr 1.152921504606847e+18
        (2.0**53 + 2, "outside"),
        (2**53, "outside"),
        (-(2**53), "outside"),
        (Decimal("19.99"), "Decimal"),
        ({1: "x"}, "not str"),
        ({"a": {1, 2}}, "set is not a JSON value"),
        ("lone \ud800 surrogate", "lone surrogate"),
        (b"bytes", "bytes is not a JSON value"),
    ],
)
def test_values_a_reader_could_misread_are_refused(value: object, reason: str) -> None:
    with pytest.raises(CanonicalJSONError, match=reason):
        canonical_json({"v": value})


def test_error_names_the_path() -> None:
    with pytest.raises(CanonicalJSONError) as info:
        canonical_json({"order": {"lines": [1, 0.1]}})
    assert info.value.path == "$.order.lines[1]"


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text()
    | st.integers(-(2**20), 2**20).map(lambda i: i / 1024),  # exactly representable
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


@settings(max_examples=200, deadline=None)
@given(JSON_VALUES)
def test_canonical_json_is_a_fixed_point_of_parse_and_reserialise(value: object) -> None:
    data = canonical_json(value)
    assert canonical_json(json.loads(data)) == data
    assert json.loads(data) == json.loads(json.dumps(value))
