"""validation.money: the one home of parsing and formatting amounts (integer fen)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from validation.money import MAX_FEN, InvalidAmount, cny, to_fen, yuan


@given(st.integers(min_value=0, max_value=MAX_FEN))
def test_fen_round_trip_through_both_forms(fen):
    assert to_fen(cny(fen)) == fen
    assert to_fen(yuan(fen)) == fen  # "¥280,000.00" reads back too
    assert to_fen(Decimal(fen) / 100) == fen


@given(st.decimals(allow_nan=True, allow_infinity=True))
def test_any_decimal_is_either_whole_fen_in_range_or_refused(d):
    try:
        fen = to_fen(str(d))
    except InvalidAmount as e:
        assert e.status == 422 and e.hint
        assert not d.is_finite() or d < 0 or d > MAX_FEN / 100 or d != d.quantize(Decimal("0.01"))
    else:
        assert Decimal(fen) / 100 == d and 0 <= fen <= MAX_FEN


def test_display_and_machine_forms():
    assert cny(28_000_000) == "280000.00" and yuan(28_000_000) == "¥280,000.00"
    assert yuan(5) == "¥0.05" and yuan(-150) == "-¥1.50" and yuan(None) == ""
    assert to_fen("¥280,000.00") == to_fen(280000) == to_fen("280000") == 28_000_000


@pytest.mark.parametrize(
    "bad", ["NaN", "-Infinity", "Infinity", "1e400", "-0.01", "0.001", "", "1" * 60, True,
            None, [1], 2.5, "1,2.3.4"],
)  # fmt: skip
def test_refusals(bad):
    with pytest.raises(InvalidAmount):
        to_fen(bad)


def test_json_numbers_are_read_by_their_shortest_decimal_form():
    assert to_fen(99.5, floats=True) == 9950
    assert to_fen(0.1, floats=True) == 10
    with pytest.raises(InvalidAmount, match="fraction of a fen"):
        to_fen(0.001, floats=True)
    with pytest.raises(InvalidAmount, match="not a finite amount"):
        to_fen(float("nan"), floats=True)


def test_grouped_is_the_figure_of_yuan():
    from validation.money import grouped

    assert grouped(28_000_000) == "280,000.00" and grouped(5) == "0.05"
    assert grouped(-150) == "-1.50" and grouped(100_000_000_000) == "1,000,000,000.00"
    for fen in (0, 1, 99, 100, 123_456_789, -123_456_789):
        assert yuan(fen) == ("-¥" if fen < 0 else "¥") + grouped(abs(fen))
