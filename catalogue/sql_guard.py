"""Statement checking for SQL that arrives from outside (the query API).

DuckDB's settings (``enable_external_access=false``, ``allowed_paths``,
``lock_configuration``) leave holes on their own: ``COPY ... TO`` an allowed path
overwrites a dataset, ``CREATE SECRET`` works after the lock, ``DROP VIEW``, ``CREATE
TABLE/MACRO`` and ``ATTACH`` are allowed, ``enable_logging(...)`` ignores the lock and
``duckdb_secrets()`` shows key ids and endpoints. So before anything runs, a statement
must pass :func:`check_select`:

1. the text holds exactly one statement and it is a ``SELECT`` (``duckdb.extract_statements``)
   — ``COPY``, ``EXPLAIN [ANALYZE]``, ``CREATE``, ``DROP``, ``ATTACH``, ``SET``, ``PRAGMA``,
   ``INSTALL``/``LOAD``, ``CALL`` are all other statement types;
2. its parse tree (``json_serialize_sql``) is walked, failing closed on any node kind not
   known here:

   * a table is either a CTE name in scope (unqualified) or one of the curated views
     ``<domain>.<id>`` given by the caller — never a file path or URL (replacement scans such
     as ``FROM '/etc/passwd'``), a system view (``information_schema``, ``duckdb_settings``),
     or a name in another catalog;
   * table functions come from :data:`TABLE_FUNCTIONS` only (``range``, ``generate_series``,
     ``unnest``) — nothing that reads files or URLs (``read_parquet``, ``read_csv``,
     ``glob``...), nothing that inspects or changes the engine (``duckdb_secrets``,
     ``enable_logging``, ``query``...);
   * scalar functions in :data:`DENIED_FUNCTIONS` (``current_setting``, ``getenv``,
     ``write_log``, ``sleep_ms``...) are refused, as are schema-qualified functions and the
     engine's built-in macros that reach one of them or read a table
     (:func:`denied_macros`: ``pg_sleep`` is ``sleep_ms`` under another name);
   * ``DESCRIBE``/``SUMMARIZE`` of a query are allowed, ``SHOW TABLES``-style listings not;
   * CTE names may not shadow a system view (so a name always means one thing).

The guard is one layer: the connection that runs an accepted statement is locked down
too (see :func:`catalogue.query.open_locked`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import duckdb

from validation import duck
from validation.messages import Msg

from .errors import QueryError

MAX_SQL_CHARS = 100_000

#: table functions a query may call: they generate rows and touch nothing outside
TABLE_FUNCTIONS = frozenset({"range", "generate_series", "unnest"})

#: scalar functions refused: they read settings or the environment, write, or sleep
DENIED_FUNCTIONS = frozenset(
    {
        "current_setting",
        "getenv",
        "getvariable",
        "write_log",
        "sleep_ms",
        "checkpoint",
        "force_checkpoint",
        "nextval",
        "currval",
        "setseed",
        "which_secret",
        "json_execute_serialized_sql",
        "enable_logging",
        "disable_logging",
        "truncate_duckdb_logs",
    }
)

_QUERY_NODES = frozenset({"SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE", "CTE_NODE"})
_TABLE_REFS = frozenset(
    {"BASE_TABLE", "JOIN", "SUBQUERY", "TABLE_FUNCTION", "EMPTY", "EXPRESSION_LIST", "PIVOT"}
)
_SHOW_ALLOWED = frozenset({"DESCRIBE", "SUMMARY"})
# schemas that hold the engine's own catalog, never published data
_SYSTEM_SCHEMAS = frozenset({"main", "temp", "system", "information_schema", "pg_catalog"})
# other typed parts of a parse tree that hold no table or function of their own
_STRUCTURAL = frozenset(
    {
        "ORDER_MODIFIER",
        "LIMIT_MODIFIER",
        "LIMIT_PERCENT_MODIFIER",
        "DISTINCT_MODIFIER",
        "ORDER_DEFAULT",
        "ASCENDING",
        "DESCENDING",
    }
)


class SqlRejected(QueryError):
    """A statement the query API does not run (HTTP 400). ``rule`` names the check."""

    status = 400

    def __init__(self, message: str, *, rule: str, hint: str | None = None, **fields) -> None:
        super().__init__(message, hint=hint, rule=rule, **fields)
        self.rule = rule


@dataclass(frozen=True)
class CheckedQuery:
    """A statement that passed: its text and the views it reads."""

    sql: str
    views: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # (schema, name)


_local = threading.local()


def _parser() -> duckdb.DuckDBPyConnection:
    """A blank in-memory connection per thread, only ever used to parse."""
    con = getattr(_local, "con", None)
    if con is None:
        con = duck.connect(":memory:", config={"enable_external_access": False})
        _local.con = con
    return con


@cache
def system_relations() -> frozenset[str]:
    """Names of the system views and tables an unqualified name could resolve to."""
    con = duck.connect(":memory:")
    try:
        names = {
            r[0].lower()
            for r in con.execute(
                "SELECT view_name FROM duckdb_views() UNION SELECT table_name FROM duckdb_tables()"
            ).fetchall()
        }
    finally:
        con.close()
    return frozenset(names)


@cache
def denied_macros() -> frozenset[str]:
    """The engine's built-in scalar macros a query may not call: those whose definition
    calls a denied function or another denied macro, reads a table or a table function
    (``format_type`` reads ``duckdb_types()``), or names a function by its schema
    (``current_query`` is ``"system".main.current_query()``). Read from the engine's own
    catalogue, so a macro a new DuckDB version adds is judged by the same rule."""
    con = duck.connect(":memory:")
    try:
        macros = con.execute(
            "SELECT DISTINCT lower(function_name), macro_definition FROM duckdb_functions() "
            "WHERE function_type = 'macro' AND macro_definition IS NOT NULL"
        ).fetchall()
        calls: dict[str, set[str]] = {}
        denied: set[str] = set()
        for name, definition in macros:
            raw = con.execute("SELECT json_serialize_sql(?)", [f"SELECT {definition}"]).fetchone()
            tree: dict[str, Any] = json.loads(raw[0]) if raw else {"error": True}
            if tree.get("error"):
                denied.add(name)  # not understood: fail closed
                continue
            fns, reads = _calls_of(tree["statements"][0]["node"])
            if reads or any(f is None for f in fns):
                denied.add(name)
            calls.setdefault(name, set()).update(f for f in fns if f is not None)
    finally:
        con.close()
    denied |= {n for n, called in calls.items() if called & DENIED_FUNCTIONS}
    grew = True
    while grew:  # a macro calling a denied macro is denied too
        grew = False
        for n, called in calls.items():
            if n not in denied and called & denied:
                denied.add(n)
                grew = True
    return frozenset(denied)


def _calls_of(root) -> tuple[list[str | None], bool]:
    """The functions a macro body calls (None for a schema-qualified one) and whether it
    reads a table, a subquery or a table function."""
    fns: list[str | None] = []
    reads = False
    stack = [root]
    first = True
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, dict):
            continue
        kind = node.get("type")
        kind = kind if isinstance(kind, str) else None
        if node.get("class") == "FUNCTION":
            schema = str(node.get("schema") or "main").lower()
            qualified = node.get("catalog") or schema not in ("main", "pg_catalog")
            fns.append(None if qualified else str(node.get("function_name", "")).lower())
        elif node.get("class") == "SUBQUERY":
            reads = True
        elif kind in _TABLE_REFS and kind != "EMPTY":
            reads = True
        elif kind in _QUERY_NODES and not first:
            reads = True
        first = False
        stack.extend(v for v in node.values() if isinstance(v, dict | list))
    return fns, reads


def _first_line(e: BaseException) -> str:
    return str(e).strip().split("\n")[0]


def _syntax(error: str) -> Msg:
    return Msg("syntax error: %(error)s", error=error)


def _one_statement(n: int) -> Msg:
    return Msg("exactly one statement is allowed, got %(n)s", n=n)


def check_select(sql: str, views: Collection[tuple[str, str]] | None = None) -> CheckedQuery:
    """Accept ``sql`` if it is one ``SELECT`` reading only ``views`` (``(schema, name)``
    pairs, lower case; ``None`` skips the existence check) and allowed functions; raise
    :class:`SqlRejected` naming the first thing that is not allowed."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlRejected(
            Msg("the query is empty"), rule="empty", hint=Msg("send one SELECT statement")
        )
    if len(sql) > MAX_SQL_CHARS:
        raise SqlRejected(
            Msg(
                "the query is %(n)s characters long; the limit is %(limit)s",
                n=len(sql),
                limit=MAX_SQL_CHARS,
            ),
            rule="too_long",
        )
    con = _parser()
    try:
        statements = con.extract_statements(sql)
    except duckdb.Error as e:
        raise SqlRejected(_syntax(_first_line(e)), rule="syntax") from None
    if len(statements) != 1:
        raise SqlRejected(
            _one_statement(len(statements)),
            rule="one_statement",
            hint=Msg("send a single SELECT (no ';'-separated statements)"),
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        name = getattr(kind, "name", str(kind))
        raise SqlRejected(
            Msg("only SELECT statements are allowed, not %(name)s", name=name),
            rule="statement_type",
            statement=name,
            hint=Msg(
                "the query API reads published data; it does not write, configure, attach, "
                "explain or load anything"
            ),
        )
    try:
        row = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
        tree = json.loads(row[0]) if row is not None else None
    except (duckdb.Error, RecursionError, ValueError) as e:
        raise SqlRejected(
            Msg("the query cannot be checked: %(error)s", error=_first_line(e)), rule="parse"
        ) from None
    if not isinstance(tree, dict):  # a SELECT of one value always has a row (DuckDB's contract)
        raise SqlRejected(Msg("the query cannot be checked"), rule="parse")
    if tree.get("error"):
        msg = tree.get("error_message") or "unknown parser error"
        if tree.get("error_type") == "parser":
            raise SqlRejected(_syntax(msg), rule="syntax")
        # e.g. PRAGMA, which extract_statements rewrites into a SELECT of pragma_*()
        raise SqlRejected(
            Msg("only plain SELECT statements are allowed (%(error)s)", error=msg),
            rule="statement_type",
        )
    stmts = tree.get("statements") or []
    if len(stmts) != 1:
        raise SqlRejected(_one_statement(len(stmts)), rule="one_statement")
    allowed = None if views is None else {(s.lower(), n.lower()) for s, n in views}
    used = _Walker(allowed).walk(stmts[0]["node"])
    return CheckedQuery(sql=sql, views=frozenset(used))


class _Walker:
    """Iterative walk over the serialised parse tree with CTE scopes."""

    def __init__(self, allowed: set[tuple[str, str]] | None) -> None:
        self.allowed = allowed
        self.used: set[tuple[str, str]] = set()

    def walk(self, root) -> set[tuple[str, str]]:
        stack: list[tuple[object, frozenset[str]]] = [(root, frozenset())]
        while stack:
            node, ctes = stack.pop()
            if isinstance(node, list):
                stack.extend((v, ctes) for v in node)
                continue
            if not isinstance(node, dict):
                continue
            kind = node.get("type")
            if "class" in node:  # an expression: only function calls need a look
                if node.get("class") == "FUNCTION":
                    self._function(node)
            elif isinstance(kind, str):
                if kind in _QUERY_NODES:
                    names = self._cte_names(node)
                    if names:
                        ctes = ctes | names
                elif kind in _TABLE_REFS or kind == "SHOW_REF":
                    self._table_ref(node, ctes)
                elif kind not in _STRUCTURAL and not kind.endswith("_TYPE_INFO"):
                    # fail closed on anything this walker does not know
                    raise SqlRejected(
                        Msg("query part %(part)s is not allowed", part=kind), rule="node", part=kind
                    )
            stack.extend((v, ctes) for k, v in node.items() if isinstance(v, dict | list))
        return self.used

    def _cte_names(self, node: dict) -> frozenset[str]:
        entries = ((node.get("cte_map") or {}).get("map")) or []
        names = set()
        system = system_relations()
        for e in entries:
            name = str(e.get("key", "")).lower()
            if name in system:
                raise SqlRejected(
                    Msg("the CTE name %(name)s is the name of a system view", name=repr(name)),
                    rule="cte_name",
                    hint=Msg("choose another name for the WITH clause"),
                )
            names.add(name)
        if node.get("type") in ("RECURSIVE_CTE_NODE", "CTE_NODE") and node.get("cte_name"):
            names.add(str(node["cte_name"]).lower())
        return frozenset(names)

    def _table_ref(self, ref: dict, ctes: frozenset[str]) -> None:
        kind = ref["type"]
        if kind == "SHOW_REF":
            if ref.get("show_type") in _SHOW_ALLOWED and ref.get("query"):
                return  # DESCRIBE / SUMMARIZE of a query: its query is walked
            raise SqlRejected(
                Msg("SHOW and listings of the database are not allowed"),
                rule="show",
                hint=Msg(
                    "the views are listed in the catalogue (GET /api/3/action/package_list); "
                    "DESCRIBE <domain>.<id> shows a view's columns"
                ),
            )
        if kind == "BASE_TABLE":
            self._base_table(ref, ctes)
        elif kind == "TABLE_FUNCTION":
            fn = ref.get("function") or {}
            name = str(fn.get("function_name", "")).lower()
            if fn.get("schema") or fn.get("catalog") or name not in TABLE_FUNCTIONS:
                raise SqlRejected(
                    Msg("table function %(name)s is not allowed", name=repr(name)),
                    rule="table_function",
                    function=name,
                    hint=Msg(
                        "tables are the published views <domain>.<id>; the only table "
                        "functions allowed are %(names)s",
                        names=", ".join(sorted(TABLE_FUNCTIONS)),
                    ),
                )

    def _base_table(self, ref: dict, ctes: frozenset[str]) -> None:
        catalog = str(ref.get("catalog_name") or "")
        schema = str(ref.get("schema_name") or "").lower()
        name = str(ref.get("table_name") or "").lower()
        shown = ".".join(p for p in (catalog, schema, name) if p)
        if not catalog and not schema and name in ctes:
            return
        hint = Msg(
            "tables are the published views <domain>.<id> ('-' as '_'), e.g. "
            "transport.nansha_bus_gps"
        )
        if catalog or not schema or schema in _SYSTEM_SCHEMAS or any(c in name for c in "/:.\\"):
            raise SqlRejected(
                Msg(
                    "table %(table)s is not allowed: only published views can be read",
                    table=repr(shown),
                ),
                rule="table",
                table=shown,
                hint=hint,
            )
        if self.allowed is not None and (schema, name) not in self.allowed:
            raise SqlRejected(
                Msg("no published view %(table)s", table=repr(shown)),
                rule="table",
                table=shown,
                hint=hint,
            )
        self.used.add((schema, name))

    def _function(self, fn: dict) -> None:
        name = str(fn.get("function_name", "")).lower()
        # the parser itself writes main.list_value, main.timezone...; nothing else may
        if fn.get("catalog") or str(fn.get("schema") or "main").lower() != "main":
            raise SqlRejected(
                Msg(
                    "schema-qualified function %(schema)s.%(name)s is not allowed",
                    schema=fn.get("schema"),
                    name=name,
                ),
                rule="function",
                function=name,
            )
        if name in DENIED_FUNCTIONS or name in denied_macros():
            raise SqlRejected(
                Msg("function %(name)s is not allowed", name=repr(name)),
                rule="function",
                function=name,
            )
