"""SQL text helpers of the loader: literals, identifiers, lists and picks by index."""

from __future__ import annotations


def _lit(value: object) -> str:
    if value is None:
        return "NULL"
    return "'" + str(value).replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _list_lit(values: list[str] | tuple[str, ...]) -> str:
    return "[" + ", ".join(_lit(v) for v in values) + "]"


def _struct_lit(names: list[str], sql_type: str = "VARCHAR") -> str:
    return "{" + ", ".join(f"{_lit(n)}: {_lit(sql_type)}" for n in names) + "}"


def _pick(values: list[str], index_sql: str) -> str:
    """SQL for ``values[index]`` (0-based) out of SQL literals; the literal if only one,
    the index itself if the values are 0, 1, 2, ..."""
    if len(values) == 1:
        return values[0]
    if values == [str(i) for i in range(len(values))]:
        return f"CAST({index_sql} AS INTEGER)"
    return f"[{', '.join(values)}][CAST({index_sql} AS BIGINT) + 1]"


def _null_tokens_sql(col: str, tokens: tuple[str, ...]) -> str:
    if not tokens:
        return col
    return f"CASE WHEN {col} IN ({', '.join(_lit(t) for t in tokens)}) THEN NULL ELSE {col} END"
