"""validation.pii: keyed masking, policy, detection of undeclared personal data (PIPL)."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from validation import (
    PiiPolicyError,
    UndeclaredPersonalData,
    check_policy,
    detect,
    mask_batch,
    mask_value,
)
from validation.pii import id_check_digit, is_valid_id_number, masked_schema, require_declared

KEY = b"k" * 32
OTHER_KEY = b"q" * 32


def make_id(first17: str) -> str:
    return first17 + id_check_digit(first17)


# 440115 = Nansha district, Guangzhou; birth date 1990-03-07; sequence 123
VALID_ID = make_id("44011519900307123")
VALID_ID_X = next(
    make_id(f"4401151985010{d}{s:03d}")
    for d in range(1, 10)
    for s in range(1000)
    if id_check_digit(f"4401151985010{d}{s:03d}") == "X"
)


def wrong_check(id18: str) -> str:
    return id18[:17] + ("0" if id18[17] != "0" else "1")


# -- ID check digit -------------------------------------------------------------------


def test_id_check_digit_known_value():
    # the worked example of GB 11643-1999: 11010519491231002X
    assert id_check_digit("11010519491231002") == "X"
    assert is_valid_id_number("11010519491231002X")
    assert is_valid_id_number("11010519491231002x")


def test_id_check_digit_rejects_wrong_digits_and_bad_dates():
    assert is_valid_id_number(VALID_ID) and is_valid_id_number(VALID_ID_X)
    assert not is_valid_id_number(wrong_check(VALID_ID))
    assert not is_valid_id_number(make_id("44011519901307123"))  # month 13
    assert not is_valid_id_number(VALID_ID[:-1])


# -- masking --------------------------------------------------------------------------


def _batch() -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "plate": ["粤A12345", "粤a 12345", None, "粤AD12345"],
            "phone": ["13812345678", "+86 138-1234-5678", "13900000000", None],
            "name": ["张三", " 张三 ", "李四", "王五"],
            "speed": [1.0, 2.0, 3.0, 4.0],
        }
    )


def test_mask_is_deterministic_keyed_and_normalised():
    cols = {"plate": ("plate", "hmac"), "phone": ("phone", "hmac"), "name": ("name", "hmac")}
    out = mask_batch(_batch(), cols, KEY)
    again = mask_batch(_batch(), cols, KEY)
    other = mask_batch(_batch(), cols, OTHER_KEY)
    assert out.equals(again)
    plates = out.column("plate").to_pylist()
    # 粤a 12345 is the same plate as 粤A12345; +86 138-1234-5678 the same phone
    assert plates[0] == plates[1] and plates[2] is None and plates[0] != plates[3]
    phones = out.column("phone").to_pylist()
    assert phones[0] == phones[1] != phones[2] and phones[3] is None
    assert out.column("name").to_pylist()[0] == out.column("name").to_pylist()[1]
    for c in cols:
        a, b = out.column(c).to_pylist(), other.column(c).to_pylist()
        assert all(x != y for x, y in zip(a, b, strict=True) if x is not None)
    assert plates[0].startswith("pii_") and len(plates[0]) == 28
    assert plates[0] == mask_value("粤A12345", "plate", KEY)
    assert out.column("speed").equals(_batch().column("speed"))


def test_same_value_same_token_across_datasets_kind_matters():
    a = mask_batch(pa.table({"p": ["粤A12345"]}), {"p": ("plate", "hmac")}, KEY)
    b = mask_batch(pa.table({"plate_no": [" 粤A12345"]}), {"plate_no": ("plate", "hmac")}, KEY)
    assert a.column("p").to_pylist() == b.column("plate_no").to_pylist()  # joins still work
    c = mask_batch(pa.table({"p": ["粤A12345"]}), {"p": ("name", "hmac")}, KEY)
    assert c.column("p").to_pylist() != a.column("p").to_pylist()


def test_no_raw_value_in_output():
    batch = _batch()
    out = mask_batch(batch, {"plate": ("plate", "hmac"), "phone": ("phone", "drop")}, KEY)
    assert "phone" not in out.schema.names
    text = str(out.to_pydict())
    for raw in ["12345", "粤A", "1381234", "5678"]:
        assert raw not in text
    assert out.schema == masked_schema(
        batch.schema, {"plate": ("plate", "hmac"), "phone": ("phone", "drop")}
    )


def test_keep_and_none_leave_the_column():
    out = mask_batch(_batch(), {"plate": ("plate", "keep"), "speed": ("none", "hmac")}, KEY)
    assert out.column("plate").equals(_batch().column("plate"))
    assert out.column("speed").equals(_batch().column("speed"))


def test_integer_phone_column_and_dictionary_column():
    t = pa.table({"phone": pa.array([13812345678, 13812345678, None], pa.int64())})
    out = mask_batch(t, {"phone": ("phone", "hmac")}, KEY)
    assert out.column("phone").to_pylist()[0] == mask_value("13812345678", "phone", KEY)
    d = pa.table({"plate": pa.array(["粤A12345", "粤B12345", "粤A12345"]).dictionary_encode()})
    out = mask_batch(d, {"plate": ("plate", "hmac")}, KEY)
    assert out.column("plate").to_pylist()[0] == mask_value("粤A12345", "plate", KEY)


def test_free_text_masks_what_it_contains():
    t = pa.table(
        {
            "note": [
                f"车主电话13812345678，车牌粤B54321，身份证{VALID_ID}",
                "no personal data here",
                f"bad id {wrong_check(VALID_ID)}",
            ]
        }
    )
    out = mask_batch(t, {"note": ("free_text", "hmac")}, KEY).column("note").to_pylist()
    assert "13812345678" not in out[0] and "粤B54321" not in out[0] and VALID_ID not in out[0]
    assert mask_value("13812345678", "phone", KEY) in out[0]
    assert mask_value("粤B54321", "plate", KEY) in out[0]
    assert out[0].startswith("车主电话pii_")
    assert out[1] == "no personal data here"
    assert out[2] == f"bad id {wrong_check(VALID_ID)}"  # not an ID number: left


def test_policy_keep_only_on_restricted_data():
    cols = {"plate": ("plate", "keep"), "phone": ("phone", "hmac"), "x": ("none", "keep")}
    check_policy("restricted", cols)
    with pytest.raises(PiiPolicyError) as e:
        check_policy("open", cols)
    assert e.value.columns == ["plate"]
    assert "pii_treatment: hmac" in e.value.hint and "access: restricted" in e.value.hint
    check_policy("open", {"plate": ("plate", "hmac"), "phone": ("phone", "drop")})


def test_empty_key_refused():
    with pytest.raises(ValueError, match="masking key is empty"):
        mask_batch(_batch(), {"plate": ("plate", "hmac")}, b"")


# -- detection ------------------------------------------------------------------------


def _suspect() -> pa.Table:
    return pa.table(
        {
            "remark": [
                "乘客投诉，联系电话13812345678。",
                "call +86 139 0000 0000 please",  # spaced as people write it: still a phone
                "order 813812345678 ref",  # 12 digits: not a phone
                "fine",
            ],
            "owner_id": [VALID_ID, wrong_check(VALID_ID), None, VALID_ID_X],
            "vehicle": ["粤A12345", "粤AD12345", "粤B1234F", "粤I12345"],
            "stop_code": ["10001", "10002", "10003", "10004"],
            "contact": pa.array([13912345678, 1, 2, 3], pa.int64()),
            "driver_phone": ["13800000000"] * 4,
        }
    )


def test_detect_finds_undeclared_phone_id_plate():
    found = {(f.column, f.kind): f for f in detect(_suspect(), declared={"driver_phone"})}
    assert set(found) == {
        ("remark", "phone"),
        ("owner_id", "id_card"),
        ("vehicle", "plate"),
        ("contact", "phone"),
    }
    assert found[("remark", "phone")].count == 2
    assert found[("remark", "phone")].sample_masked == "138****5678"
    assert found[("owner_id", "id_card")].count == 2  # the wrong check digit is not counted
    assert found[("vehicle", "plate")].count == 3  # no I or O in plates
    assert "12345" not in found[("vehicle", "plate")].sample_masked


def test_require_declared_raises_with_actionable_hint():
    with pytest.raises(UndeclaredPersonalData) as e:
        require_declared(
            _suspect(), {"driver_phone", "owner_id", "vehicle", "contact"}, dataset_id="x"
        )
    assert [f.column for f in e.value.findings] == ["remark"]
    assert "column 'remark': 2 value(s) that look like phone (e.g. 138****5678)" in str(e.value)
    assert (
        e.value.hint
        == "declare `pii: phone` (and optionally `pii_treatment: drop`) on column remark in datasets.yaml"
    )
    assert e.value.to_dict()["findings"][0]["kind"] == "phone"
    require_declared(_suspect(), {"driver_phone", "owner_id", "vehicle", "contact", "remark"})


def test_detect_samples_large_tables():
    t = pa.table({"x": ["nothing"] * 50_000 + ["13812345678"]})
    assert [f.kind for f in detect(t, set(), sample_rows=1000)] == ["phone"]  # last row kept


# -- property: masking keeps rows and the equality structure ---------------------------

plates = st.builds(
    lambda p, letter, n: f"{p}{letter}{n:05d}",
    st.sampled_from("粤京沪川"),
    st.sampled_from("ABCD"),
    st.integers(0, 200),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.one_of(st.none(), plates), max_size=80), st.binary(min_size=1, max_size=80))
def test_masking_preserves_rows_and_equality(values, key):
    t = pa.table({"plate": pa.array(values, pa.string()), "i": list(range(len(values)))})
    out = mask_batch(t, {"plate": ("plate", "hmac")}, key)
    assert out.num_rows == t.num_rows
    assert out.column("i").to_pylist() == list(range(len(values)))
    tokens = out.column("plate").to_pylist()
    for a, ta in zip(values, tokens, strict=True):
        assert (a is None) == (ta is None)
        for b, tb in zip(values, tokens, strict=True):
            if a is not None and b is not None:
                assert (a == b) == (ta == tb)
    assert not any(v in str(tokens) for v in values if v)


def test_coordinates_are_not_phone_numbers():
    """Real NYC 311 locations: fraction digits after a decimal point are not personal data."""
    import pyarrow as pa

    from validation.pii import detect

    batch = pa.record_batch(
        {"Location": ["POINT (-73.91529424301 40.13812345678)", "call 13812345678 now"]}
    )
    (finding,) = detect(batch, set())
    assert (finding.column, finding.kind, finding.count) == ("Location", "phone", 1)


@pytest.mark.parametrize(
    "text",
    [
        "请联系138-1234-5678",
        "电话 138 1234 5678",
        "电话１３８１２３４５６７８",
        "+86 13812345678 周一",
    ],
)
def test_free_text_masks_phones_however_written(text):
    """Found in review: separators and full-width digits slipped through free-text masking."""
    import pyarrow as pa

    from validation.pii import detect, mask_batch

    batch = pa.record_batch({"note": [text]})
    assert detect(batch, set()), "the detector sees it"
    masked = mask_batch(batch, {"note": ("free_text", "hmac")}, b"key")
    out = masked.column("note")[0].as_py()
    assert "pii_" in out
    assert detect(masked, set()) == [], out  # nothing the detector finds survives masking
