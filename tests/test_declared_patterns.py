"""A provider's declared checks (the portal's form, the Action API: catalogue.declared) may
not run a pattern with backtracking on an upload's values: one value of a pattern like
``^(?=(a+)+$)a`` takes Python's ``re`` hours, and the upload's job (with the job queue behind
it, a core of the server) with it. A pattern is the ``regex`` check, judged by RE2 (linear),
also on a Parquet upload's dictionary-encoded column."""

from __future__ import annotations

import pyarrow as pa
import pytest

from catalogue.declared import check_declaration
from validation import native
from validation.runner import BatchValidator
from validation.shorthand import parse_expectations

SCHEMA = [{"name": "code", "type": "string"}]


def refusal(exp: dict) -> dict:
    _declared, errors = check_declaration(SCHEMA, [exp], "open")
    return errors.get("expectations", [{}])[0]


@pytest.mark.parametrize(
    "exp,key",
    [
        ({"column": "code", "regex": "^(?=(a+)+$)a"}, "regex"),  # look-ahead: Python's re
        ({"column": "code", "regex": r"^(a+)\1$"}, "regex"),  # back-reference
        ({"gx": "expect_column_values_to_match_regex", "column": "code", "regex": "(a+)+$"}, "gx"),
        (
            {
                "gx": "expect_column_values_to_match_regex_list",
                "column": "code",
                "regex_list": ["(a+)+$"],
            },
            "gx",
        ),  # fmt: skip
        ({"gx": "expect_column_values_to_not_match_regex", "column": "code", "regex": "x"}, "gx"),
    ],
)
def test_a_backtracking_pattern_is_refused(exp, key):
    problem = refusal(exp)
    assert list(problem) == [key]
    assert "hours on one value" in problem[key][0]


def test_a_linear_pattern_is_kept():
    exp = {"column": "code", "regex": "^(a+)+$", "mostly": 0.9}  # RE2 runs it in linear time
    declared, errors = check_declaration(SCHEMA, [exp], "open")
    assert errors == {}
    assert declared["expectations"] == [exp]


def test_a_pattern_on_a_dictionary_column_is_judged_by_re2():
    values = ["a" * 40 + "!", "aaa", None]
    t = pa.table({"code": pa.array(values).dictionary_encode()})
    (e,) = parse_expectations([{"column": "code", "regex": "^(a+)+$"}], t.schema)
    assert native.supported(e, t.schema)  # not great-expectations' Python re
    v = BatchValidator("codes", [{"column": "code", "regex": "^(a+)+$"}], t.schema)
    try:
        v.check_batch(t.to_batches()[0], 0)
        (r,) = v.finish([]).results
    finally:
        v.close()
    assert (r.success, r.result["unexpected_count"]) == (False, 1)
    assert r.result["partial_unexpected_list"] == ["a" * 40 + "!"]


@pytest.mark.parametrize(
    "exp",
    [
        {"gx": "expect_column_values_to_be_between", "column": "code",
         "min_value": {"$PARAMETER": "lowest"}},
        {"gx": "expect_column_values_to_be_in_set", "column": "code",
         "value_set": [{"$PARAMETER": "codes"}]},
    ],
)  # fmt: skip
def test_a_suite_parameter_is_refused_when_declared(exp):
    """great-expectations looks a ``$PARAMETER`` up at validation time, in a table nsdx never
    gives it: the upload's job failed as 'a bug in nsdx or great-expectations'."""
    assert "suite parameters" in refusal(exp)["gx"][0]
