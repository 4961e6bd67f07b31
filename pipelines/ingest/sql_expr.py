"""Validation of mapping expressions: one DuckDB scalar expression over source columns.

The expression is parsed by DuckDB itself (``json_serialize_sql``) inside
``SELECT (<expr>) FROM __src`` and the syntax tree is walked: only expression nodes are
allowed (constants, column references, operators, CASE, CAST, comparisons, lambdas) and only
the scalar functions of an allow-list (``ALLOWED_FUNCTIONS``: text, numbers, dates, regular
expressions, hashes, lists). Anything else -- a second statement, a subquery, a table function such as
``read_csv``, an aggregate, a window, ``COPY``/``ATTACH``/``PRAGMA`` -- is refused before
any file is read.

The SQL that runs is regenerated from the validated tree (``json_deserialize_sql``), with
``strptime`` turned into ``try_strptime`` and ``CAST`` into ``TRY_CAST`` so that one bad
value sends its row to quarantine instead of failing the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache

import duckdb

SOURCE_ALIAS = "__src"

ALLOWED_CLASSES = frozenset(
    {
        "CONSTANT",
        "COLUMN_REF",
        "FUNCTION",
        "OPERATOR",
        "CAST",
        "CASE",
        "COMPARISON",
        "CONJUNCTION",
        "BETWEEN",
        "LAMBDA",
        "LAMBDA_REF",
        "COLLATE",
        "TYPE",
    }
)

# The scalar functions a mapping may call: an allow-list of what mappings need (text,
# numbers, date parsing and formatting, regular expressions, hashes, lists of a value). Any
# other function -- table functions (regexp_split_to_table, unnest), catalog and system
# functions (pg_get_viewdef, pg_postmaster_start_time), time of the run (now, today, ago),
# environment, settings, random -- is refused by name: a reload must give the same rows
# and an expression reads nothing but its row.
ALLOWED_FUNCTIONS = frozenset(
    {
        # text
        "lower", "upper", "lcase", "ucase", "trim", "ltrim", "rtrim", "replace",
        "substring", "substr", "left", "right", "length", "len", "strlen", "char_length",
        "concat", "concat_ws", "lpad", "rpad", "reverse", "repeat", "split_part",
        "string_split", "str_split", "starts_with", "ends_with", "contains", "position",
        "strpos", "instr", "prefix", "suffix", "ascii", "chr", "translate",
        "nfc_normalize", "strip_accents", "format", "printf", "like_escape", "ilike_escape",
        # regular expressions (scalar only)
        "regexp_replace", "regexp_extract", "regexp_matches", "regexp_full_match",
        # numbers
        "abs", "round", "floor", "ceil", "ceiling", "trunc", "greatest", "least", "sign",
        "mod", "power", "pow", "sqrt",
        # dates and times: parsing, formatting, building, parts
        "strptime", "try_strptime", "strftime", "make_date", "make_time", "make_timestamp",
        "make_timestamptz", "to_timestamp", "epoch", "epoch_ms", "date_part", "datepart",
        "date_trunc", "datetrunc", "year", "month", "day", "hour", "minute", "second",
        "dayofweek", "dayofmonth", "dayofyear", "last_day", "timezone",
        # nulls and choices
        "nullif", "ifnull", "if", "coalesce",
        # hashes
        "md5", "sha256", "hash",
        # lists of one value (a split field)
        "list_value", "list_extract", "array_extract", "list_element", "list_transform",
        "array_transform", "list_filter", "array_filter", "list_concat", "array_length",
        "list_slice", "array_slice",
    }
)  # fmt: skip

REWRITE_FUNCTIONS = {"strptime": "try_strptime"}


class ExpressionError(ValueError):
    """The expression is not an allowed scalar expression; the message says why."""


@dataclass(frozen=True)
class ValidatedExpression:
    source: str  # as written in the mapping
    sql: str  # what runs: regenerated from the validated tree, failure-tolerant
    columns: tuple[str, ...]  # source columns it reads


@lru_cache(maxsize=1)
def _type_names() -> frozenset[str]:
    con = duckdb.connect()
    try:
        rows = con.execute(
            "select upper(type_name) from duckdb_types() union "
            "select upper(logical_type) from duckdb_types()"
        ).fetchall()
    finally:
        con.close()
    return frozenset(r[0] for r in rows) | {"LIST", "STRUCT", "MAP", "ARRAY", "UNION"}


def _function_allowed(name: str) -> bool:
    return name.lower() in ALLOWED_FUNCTIONS


def _walk(node: object, columns: list[str], lambda_params: set[str]) -> None:
    """Check every node of a parsed expression (raising ExpressionError), rewrite it in
    place to its failure-tolerant form, and collect the source columns it reads."""
    if isinstance(node, list):
        for item in node:
            _walk(item, columns, lambda_params)
        return
    if not isinstance(node, dict):
        return
    if node.get("type") in ("SELECT_NODE", "SET_OPERATION_NODE", "RECURSIVE_CTE_NODE"):
        raise ExpressionError("subqueries are not allowed")
    cls = node.get("class")
    if cls is not None:
        _check_class(cls)
        _NODE_CHECKS.get(cls, _no_check)(node, columns, lambda_params)
    for value in node.values():
        _walk(value, columns, lambda_params)


def _check_class(cls: str) -> None:
    if cls == "SUBQUERY":
        raise ExpressionError("subqueries are not allowed")
    if cls == "WINDOW":
        raise ExpressionError("window functions are not allowed")
    if cls not in ALLOWED_CLASSES:
        raise ExpressionError(f"{cls.lower()} expressions are not allowed")


def _no_check(node: dict, columns: list[str], lambda_params: set[str]) -> None:
    return None


def _check_function(node: dict, columns: list[str], lambda_params: set[str]) -> None:
    """An allowed, unqualified scalar function; rewritten to its try_ form."""
    name = str(node.get("function_name", ""))
    if node.get("schema") or node.get("catalog"):
        raise ExpressionError(f"qualified function names are not allowed ({name})")
    if not node.get("is_operator") and not _function_allowed(name):
        raise ExpressionError(
            f"function {name}() is not allowed in a mapping expression (allowed: "
            "text, number, date parsing and formatting, regular expression, hash "
            "and list functions; see docs/ingestion.md)"
        )
    if node.get("filter") is not None or node.get("distinct"):
        raise ExpressionError(f"aggregate modifiers on {name}() are not allowed")
    if node.get("order_bys", {}).get("orders"):
        raise ExpressionError(f"ORDER BY inside {name}() is not allowed")
    if name.lower() in REWRITE_FUNCTIONS:
        node["function_name"] = REWRITE_FUNCTIONS[name.lower()]
        if "qualified_name" in node:
            node["qualified_name"] = {"path": [node["function_name"]]}
    if node["function_name"].lower() == "try_strptime":
        _one_format_each(node)


def _check_cast(node: dict, columns: list[str], lambda_params: set[str]) -> None:
    """A cast to a known type, made a TRY_CAST."""
    type_name = str((node.get("type_expr") or {}).get("type_name", "")).upper()
    if type_name and type_name not in _type_names():
        raise ExpressionError(f"unknown type {type_name} in a cast")
    node["try_cast"] = True


def _check_lambda(node: dict, columns: list[str], lambda_params: set[str]) -> None:
    """A lambda's parameters are not source columns."""
    for name in _lambda_names(node.get("lhs") or {}):
        lambda_params.add(name)


def _check_column(node: dict, columns: list[str], lambda_params: set[str]) -> None:
    """A plain column name: a source column unless it is a lambda's parameter."""
    names = node.get("column_names") or []
    if len(names) != 1:
        raise ExpressionError(f"use plain column names, not qualified ones ({'.'.join(names)})")
    if names[0] not in lambda_params and names[0] not in columns:
        columns.append(names[0])


_NODE_CHECKS = {
    "FUNCTION": _check_function,
    "CAST": _check_cast,
    "LAMBDA": _check_lambda,
    "COLUMN_REF": _check_column,
}


def _one_format_each(node: dict) -> None:
    """``try_strptime(x, ['f1', 'f2'])`` -> ``coalesce(try_strptime(x, 'f1'), …)``, in place.

    DuckDB's list form rolls an impossible date with ``%z`` over (2025-02-30T12:00:00+08:00
    parses as March 2nd); with one format given as a string it checks the calendar."""
    args = node.get("arguments") or []
    if len(args) != 2:
        return
    formats = args[1].get("expression") or {}
    items = [a.get("expression") or {} for a in formats.get("arguments") or []]
    if (
        formats.get("class") != "FUNCTION"
        or str(formats.get("function_name", "")).lower() != "list_value"
        or not items
        or any(i.get("class") != "CONSTANT" for i in items)
    ):
        return
    calls = []
    for item in items:
        call = json.loads(json.dumps(node))
        call["arguments"] = [args[0], {"name": "", "expression": item}]
        calls.append(call)
    keep = {k: node[k] for k in ("alias", "query_location", "query_location_length") if k in node}
    node.clear()
    node.update(class_="OPERATOR", type="OPERATOR_COALESCE", **keep, children=calls)
    node["class"] = node.pop("class_")


def _lambda_names(lhs: object) -> list[str]:
    found: list[str] = []
    if isinstance(lhs, dict):
        if lhs.get("class") == "COLUMN_REF":
            found.extend(lhs.get("column_names") or [])
        for v in lhs.values():
            found.extend(_lambda_names(v))
    elif isinstance(lhs, list):
        for v in lhs:
            found.extend(_lambda_names(v))
    return found


def validate_expression(expr: str) -> ValidatedExpression:
    """Check that ``expr`` is one safe scalar expression; return the SQL to run.

    Raises ExpressionError naming the problem.
    """
    if not isinstance(expr, str) or not expr.strip():
        raise ExpressionError("the expression is empty")
    if ";" in expr:
        raise ExpressionError("';' is not allowed (one expression, no statements)")
    if "--" in expr or "/*" in expr:
        raise ExpressionError("SQL comments are not allowed")
    sql = f"SELECT ({expr}) AS __v FROM {SOURCE_ALIAS}"
    con = duckdb.connect()
    try:
        parsed = json.loads(con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()[0])
        if parsed.get("error"):
            raise ExpressionError(f"not a valid expression: {parsed.get('error_message')}")
        statements = parsed.get("statements") or []
        if len(statements) != 1:
            raise ExpressionError("exactly one expression is allowed")
        root = statements[0].get("node") or {}
        if root.get("type") != "SELECT_NODE":
            raise ExpressionError("only a scalar expression is allowed")
        from_table = root.get("from_table") or {}
        if (
            from_table.get("type") != "BASE_TABLE"
            or from_table.get("table_name") != SOURCE_ALIAS
            or from_table.get("schema_name")
            or from_table.get("catalog_name")
        ):
            raise ExpressionError("the expression may not name tables or table functions")
        for key in ("where_clause", "having", "qualify", "sample"):
            if root.get(key) is not None:
                raise ExpressionError("only a scalar expression is allowed")
        if (
            root.get("group_expressions")
            or root.get("group_sets")
            or root.get("modifiers")
            or (root.get("cte_map") or {}).get("map")
            or len(root.get("select_list") or []) != 1
        ):
            raise ExpressionError("only one scalar expression is allowed")
        expression = root["select_list"][0]
        columns: list[str] = []
        _walk(expression, columns, set())
        expression["alias"] = ""
        # Regenerate the SQL from the checked tree: what runs is exactly what was checked.
        select_only = {
            "error": False,
            "statements": [
                {
                    "node": {
                        **{k: v for k, v in root.items() if k != "from_table"},
                        "select_list": [expression],
                        "from_table": {
                            "type": "EMPTY",
                            "alias": "",
                            "sample": None,
                            "query_location": 0,
                            "query_location_length": 0,
                        },
                    },
                    "named_param_map": [],
                }
            ],
        }
        regenerated = con.execute(
            "SELECT json_deserialize_sql(?::json)", [json.dumps(select_only)]
        ).fetchone()[0]
    except duckdb.Error as exc:
        raise ExpressionError(f"not a valid expression: {exc}") from exc
    finally:
        con.close()
    prefix = "SELECT "
    if not regenerated.upper().startswith(prefix):
        raise ExpressionError("could not regenerate the expression")
    body = regenerated[len(prefix) :].strip()
    return ValidatedExpression(source=expr, sql=f"({body})", columns=tuple(columns))
