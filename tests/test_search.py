"""package_search: the query language, Chinese and English text, fq, facets, sort, paging,
and keeping the in-memory index current across processes — on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from catalogue.editing import Packages, render_packages
from catalogue.registry import Catalogue
from catalogue.search import (
    And,
    Not,
    Or,
    Range,
    SearchIndex,
    SearchQueryError,
    Term,
    index_tokens,
    parse_query,
    parse_sort,
    query_tokens,
)
from tests.test_ckan_api import BUS, deployment  # noqa: F401 - shared fixture


# -- analysis and parsing (no database) --------------------------------------------------
def test_chinese_is_indexed_as_unigrams_and_bigrams():
    toks = index_tokens("南沙公交车辆GPS轨迹")
    assert {"公交", "南沙", "轨迹", "gps", "公"} <= toks
    assert query_tokens("公交车") == ["公交", "交车"]
    assert query_tokens("路") == ["路"]


def test_english_is_lowercased_and_stemmed():
    assert index_tokens("Buses and Cities") == {"bus", "and", "city"}
    assert query_tokens("BUS") == ["bus"]
    assert index_tokens("Ｎａｎｓｈａ") == {"nansha"}  # full-width letters


@pytest.mark.parametrize(
    "q,expected",
    [
        ("bus", Term(None, "bus")),
        ("tags:gps", Term("tags", "gps")),
        ('organization:"a b"', Term("organization", "a b", phrase=True)),
        ("a OR b", Or([Term(None, "a"), Term(None, "b")])),
        ("a AND -b", And([Term(None, "a"), Not(Term(None, "b"))])),
        ("+a NOT b", And([Term(None, "a"), Not(Term(None, "b"))])),
        ("tags:(a OR b)", Or([Term("tags", "a"), Term("tags", "b")])),
        ("num_resources:[1 TO *]", Range("num_resources", "1", "*")),
        ("metadata_modified:{2024-01-01 TO NOW}", Range("metadata_modified", "2024-01-01", "NOW",
                                                        False, False)),
    ],
)  # fmt: skip
def test_parse_query(q, expected):
    assert parse_query(q) == expected


@pytest.mark.parametrize("bad", ["(a", "tags:", "[1 TO 2]", "a )"])
def test_parse_errors_are_search_query_errors(bad):
    with pytest.raises(SearchQueryError):
        parse_query(bad)


def test_parse_sort():
    assert parse_sort("score desc, title asc") == [("score", True), ("title_string", False)]
    with pytest.raises(SearchQueryError):
        parse_sort("name sideways")


# -- search through the Action API -------------------------------------------------------
DATASETS = [
    {**BUS, "resources": [{"url": "https://e.org/b.csv", "format": "CSV"}]},
    {
        "name": "guangzhou-metro-ridership",
        "title": "广州地铁南沙段客流",
        "notes": "Metro ridership of line 4 stations in Nansha",
        "owner_org": "bureau",
        "tags": [{"name": "地铁"}, {"name": "ridership"}],
        "extras": [{"key": "domain", "value": "transport"},
                   {"key": "title_en", "value": "Guangzhou Metro ridership (Nansha)"}],
        "resources": [{"url": "https://e.org/m.json", "format": "JSON"},
                      {"url": "https://e.org/m.csv", "format": "CSV"}],
    },
    {
        "name": "nansha-hotline-cases",
        "title": "南沙12345热线工单",
        "notes": "Citizen hotline cases about roads, noise and buses",
        "owner_org": "urban",
        "tags": [{"name": "热线"}],
        "extras": [{"key": "domain", "value": "urban-management"},
                   {"key": "access", "value": "restricted"},
                   {"key": "price_cny", "value": "1200"}],
    },
    {
        "name": "drone-inspection",
        "title": "无人机巡检",
        "owner_org": "urban",
        "private": True,
        "tags": [{"name": "drone"}],
    },
]  # fmt: skip


@pytest.fixture
def catalogue(deployment):  # noqa: F811
    deployment.accounts.create_org("urban", title="南沙区城市管理局")
    for d in DATASETS:
        deployment.ok("package_create", d)
    return deployment


def names(result: dict) -> list[str]:
    return [p["name"] for p in result["results"]]


@pytest.mark.parametrize(
    "q,expected",
    [
        ("公交", ["nansha-bus-gps"]),
        ("地铁", ["guangzhou-metro-ridership"]),
        ("GPS轨迹", ["nansha-bus-gps"]),
        ("metro", ["guangzhou-metro-ridership"]),
        ("ridership nansha", ["guangzhou-metro-ridership"]),
        ("Bus", ["nansha-bus-gps", "nansha-hotline-cases"]),  # title match ranks first
        ("南沙 -公交", ["guangzhou-metro-ridership", "nansha-hotline-cases"]),
        ("公交 OR 热线", ["nansha-bus-gps", "nansha-hotline-cases"]),
        ('"hotline cases"', ["nansha-hotline-cases"]),
        ("无人机", []),  # private
        ("nothing-like-this", []),
        ("metr*", ["guangzhou-metro-ridership"]),
        ("title:地铁", ["guangzhou-metro-ridership"]),
    ],
)
def test_full_text(catalogue, q, expected):
    r = catalogue.ok("package_search", {"q": q}, method="GET", token=None)
    assert sorted(names(r)) == sorted(expected)
    if q == "Bus":
        assert names(r) == expected
    assert r["count"] == len(expected)


@pytest.mark.parametrize(
    "fq,expected",
    [
        ("organization:bureau", {"nansha-bus-gps", "guangzhou-metro-ridership"}),
        ("tags:地铁", {"guangzhou-metro-ridership"}),
        ("res_format:JSON", {"guangzhou-metro-ridership"}),
        ("-res_format:CSV", {"nansha-hotline-cases"}),
        ("+domain:transport -tags:gps", {"guangzhou-metro-ridership"}),
        ("domain:transport OR access:restricted",
         {"nansha-bus-gps", "guangzhou-metro-ridership", "nansha-hotline-cases"}),
        ('organization:"urban"', {"nansha-hotline-cases"}),
        ("domain:urban-management", {"nansha-hotline-cases"}),
        ("price_cny:[1000 TO 2000]", {"nansha-hotline-cases"}),
        ("num_resources:[2 TO *]", {"guangzhou-metro-ridership"}),
        ("metadata_modified:[2000-01-01T00:00:00Z TO NOW]",
         {"nansha-bus-gps", "guangzhou-metro-ridership", "nansha-hotline-cases"}),
        ("metadata_created:[* TO 2000-01-01]", set()),
        ("tags:(gps OR 热线)", {"nansha-bus-gps", "nansha-hotline-cases"}),
        ("license_id:*", {"nansha-bus-gps", "guangzhou-metro-ridership", "nansha-hotline-cases"}),
        ("name:nansha-*", {"nansha-bus-gps", "nansha-hotline-cases"}),
        ("+dataset_type:dataset +capacity:public -domain:transport", {"nansha-hotline-cases"}),
    ],
)  # fmt: skip
def test_fq(catalogue, fq, expected):
    r = catalogue.ok("package_search", {"fq": fq, "rows": 50}, method="GET", token=None)
    assert set(names(r)) == expected


def test_fq_list_combines(catalogue):
    r = catalogue.ok(
        "package_search",
        {"fq_list": ["domain:transport", "tags:gps"]},
    )
    assert names(r) == ["nansha-bus-gps"]


def test_facets(catalogue):
    r = catalogue.ok(
        "package_search",
        {"facet.field": '["organization","tags","res_format","domain"]', "facet.limit": 1},
        method="GET",
        token=None,
    )
    assert r["facets"]["organization"] == {"bureau": 2}
    assert r["search_facets"]["organization"] == {
        "title": "organization",
        "items": [{"name": "bureau", "display_name": "南沙区交通运输局", "count": 2}],
    }
    assert r["facets"]["res_format"] == {"CSV": 2}
    r = catalogue.ok(
        "package_search",
        {"facet.field": ["tags"], "facet.mincount": 2, "q": "南沙"},
    )
    assert r["facets"]["tags"] == {}
    private = catalogue.ok(
        "package_search", {"facet.field": '["tags"]', "include_private": True, "q": "*:*"}
    )
    assert private["facets"]["tags"]["drone"] == 1
    assert private["count"] == 4


def test_sort_rows_start(catalogue):
    p = {"sort": "name asc", "rows": 2}
    r = catalogue.ok("package_search", p, method="GET", token=None)
    assert names(r) == ["guangzhou-metro-ridership", "nansha-bus-gps"]
    assert r["count"] == 3 and r["sort"] == "name asc"
    r = catalogue.ok("package_search", {**p, "start": 2}, method="GET", token=None)
    assert names(r) == ["nansha-hotline-cases"]
    r = catalogue.ok("package_search", {"sort": "title_string desc"}, token=None)
    assert names(r)[0] == "guangzhou-metro-ridership"  # 广 > 南 in code point order
    r = catalogue.ok("package_search", {"sort": "metadata_modified desc"}, token=None)
    assert names(r) == ["nansha-hotline-cases", "guangzhou-metro-ridership", "nansha-bus-gps"]
    r = catalogue.ok("package_search", {"sort": "num_resources desc, name asc"}, token=None)
    assert names(r)[0] == "guangzhou-metro-ridership"
    r = catalogue.ok("package_search", {"rows": 5000}, token=None)  # capped like CKAN
    assert r["count"] == 3
    status, body = catalogue.call("package_search", {"rows": -1}, token=None)
    assert status == 409 and body["error"]["rows"]


@pytest.mark.parametrize("bad", [{"q": "tags:(a"}, {"fq": "x:[1 TO"}, {"sort": "name up"},
                                 {"fq": "metadata_modified:[yesterday TO NOW]"}])  # fmt: skip
def test_bad_queries_are_400(catalogue, bad):
    status, body = catalogue.call("package_search", bad, method="GET", token=None)
    assert status == 400
    assert body["error"]["__type"] == "Search Query Error"


def test_index_follows_writes_from_other_processes(catalogue, database_url):
    """A second Catalogue (another process's view) writes; the server's index sees it."""
    other = Packages(Catalogue(database_url))
    from catalogue.auth import SYSTEM

    assert catalogue.ok("package_search", {"q": "渡轮"})["count"] == 0
    other.create(SYSTEM, {"name": "ferry", "title": "南沙渡轮班次", "owner_org": "bureau"})
    assert names(catalogue.ok("package_search", {"q": "渡轮"})) == ["ferry"]
    other.patch(SYSTEM, {"id": "ferry", "title": "南沙客轮班次"})
    assert catalogue.ok("package_search", {"q": "渡轮"})["count"] == 0
    assert names(catalogue.ok("package_search", {"q": "客轮"})) == ["ferry"]
    with other.cat.Session.begin() as s:  # an organisation's title change re-renders its datasets
        from sqlalchemy import select

        from catalogue.models import Organization

        s.scalar(select(Organization).where(Organization.name == "bureau")).title = "交通局"
    r = catalogue.ok("package_search", {"q": "ferry", "facet.field": '["organization"]'})
    assert r["search_facets"]["organization"]["items"][0]["display_name"] == "交通局"
    other.delete(SYSTEM, "ferry")
    assert catalogue.ok("package_search", {"q": "客轮"})["count"] == 0


def test_fresh_index_matches_incremental_one(catalogue, database_url):
    served = catalogue.ok("package_search", {"q": "*:*", "rows": 100, "sort": "name asc"})
    fresh = SearchIndex(Catalogue(database_url), render_packages).search(rows=100, sort="name asc")
    assert fresh == served


# -- the cost of a hostile query (issue 15, item 1) ------------------------------------
# Each family is a query made of one unit repeated; its cost is counted, not timed: every
# Python line the search package (parser, analysis, index) executes and every C function it
# calls (regex matches, numpy operations), with sys.settrace / sys.setprofile, deterministic.
# Python's `re` does not expose its own steps: the lexer's alternatives each start on a
# character no other one accepts (`( ) [ { " :`, the rest words), so a regex call looks at most
# at its own token and the whitespace before it, or fails the whole query once.
COST_FAMILIES = [
    "a ",  # many words (ANDed)
    "a OR b ",  # a long OR
    "AND a && ",  # operators
    "NOT a ",
    "-a +b ",
    "(a OR b) ",
    "tags:(x OR y) ",
    '"a b" ',  # phrases
    'title:"a b" ',
    "x:[1 TO 2] ",  # ranges
    "metadata_modified:[NOW-1DAY TO *] ",
    "a* ",  # prefixes over the whole vocabulary
    "tags:gp* ",
    "a\\:b ",  # escapes inside a word
    "公交车辆",  # one long Chinese word: its bigrams
    "(" * 30 + "a" + ")" * 30 + " ",  # nesting up to the limit, many times
]
COST_BAD = [  # refused only at their end, after a long run of good tokens
    ("a ", '"b c'),  # a quote never closed
    ("a ", "x:[1 TO"),  # a range never closed
    ("(a ", "b"),  # parentheses never closed
    ("a OR ", ""),  # an OR with nothing after it
    ("NOT ", "a"),  # nested past the limit
    ("a ", "tags:"),  # a field with no value
]


def _cost(fn) -> int:
    import sys
    from pathlib import Path

    import catalogue.search as pkg

    where = str(Path(pkg.__file__).parent)
    steps = 0

    def local(frame, event, arg):
        nonlocal steps
        steps += event == "line"
        return local

    def tracer(frame, event, arg):
        return local if frame.f_code.co_filename.startswith(where) else None

    def profiler(frame, event, arg):
        nonlocal steps
        if event == "c_call" and frame.f_code.co_filename.startswith(where):
            steps += 1

    sys.settrace(tracer)
    sys.setprofile(profiler)
    try:
        fn()
    except SearchQueryError:
        pass
    finally:
        sys.settrace(None)
        sys.setprofile(None)
    return steps


def _linear(costs: list[int]) -> bool:
    """True when the growth from the 4× to the 16× size is at most 4.4 times the growth from
    the 1× to the 4× (a fixed part cancels out; quadratic growth would be about 16 times)."""
    c1, c4, c16 = costs
    return c4 > c1 and (c16 - c4) <= 4.4 * (c4 - c1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the index is in memory
def test_a_querys_cost_grows_linearly_with_its_length(catalogue):
    """A hostile query cannot buy quadratic work: the parser's and the index's work for a
    query of k, 4k and 16k units (up to the 4,000-character bound) grows linearly, as q and
    as fq, for every family."""
    from catalogue.search.query import MAX_QUERY_CHARS

    index = catalogue.nx.index
    grew = {}
    for unit in COST_FAMILIES:
        k = (MAX_QUERY_CHARS - 10) // (16 * len(unit))
        sizes = [k, 4 * k, 16 * k]
        queries = [(unit * n).strip() for n in sizes]
        index.search(q=queries[0], fq=queries[0])  # built once (field tables) before counting
        for param in ("q", "fq"):
            costs = [_cost(lambda q=q, p=param: index.search(**{p: q})) for q in queries]
            grew[unit, param] = costs
    assert all(_linear(c) for c in grew.values()), {f: c for f, c in grew.items() if not _linear(c)}


@pytest.mark.parametrize("unit,tail", COST_BAD)
def test_a_bad_querys_cost_grows_linearly_with_its_length(unit, tail):
    """A query refused at its end, after a long run of tokens, is refused at a linear cost
    too (and the refusal is a SearchQueryError, a 400)."""
    k = 3900 // (16 * len(unit))
    queries = [unit * n + tail for n in (k, 4 * k, 16 * k)]
    costs = [_cost(lambda q=q: parse_query(q)) for q in queries]
    assert _linear(costs), (unit, tail, costs)
    for q in queries:
        with pytest.raises(SearchQueryError):
            parse_query(q)
