"""Typing SQL: a varchar source value to its canonical type (integers, numbers, booleans,
ISO or strptime dates and timestamps to UTC, NFKC), NULL when it fails, and the reason
text of a failure.
"""

from __future__ import annotations

import re
import string

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
from duckdb.sqltypes import VARCHAR

from pipelines.ingest.canonical import CanonicalField
from pipelines.ingest.mapping import FieldSpec
from pipelines.ingest.sql import _lit

VALUE_IN_REASON = 80  # characters of a bad value quoted in a quarantine reason


def _tz_to_utc(naive_sql: str, tz: str) -> str:
    return f"timezone('UTC', timezone({_lit(tz)}, {naive_sql}))"


OFFSET_RE = r"\d:\d\d(:\d\d(\.\d+)?)?\s*([zZ]|(UTC|GMT)?[+-]\d\d(:?\d\d)?)$"


# a UTC offset at the end of a value that no clock shows: hours past 23 or minutes past 59
# (DuckDB's readers take +08:61 as +09:01 and +25:00 as a day and an hour)
BAD_OFFSET_RE = r"[+-]([2][4-9]|[3-9][0-9])(:?[0-9]{2})?$|[+-][0-9]{2}:?[6-9][0-9]$"


STRPTIME_SPEC_RE = re.compile(r"%-?.")


def _format_literals(fmt: str) -> list[str]:
    """The punctuation a strptime format matches literally (outside its % directives)."""
    literal = STRPTIME_SPEC_RE.sub("", fmt.replace("%%", "\x00")).replace("\x00", "%")
    return sorted({c for c in literal if c in string.punctuation})


def _zoned(fmt: str) -> bool:
    return "%z" in fmt or "%Z" in fmt


def _strptime_one(x: str, fmt: str) -> str:
    """``try_strptime(x, 'fmt')`` with one format given as a string: DuckDB checks the
    calendar then (the list form ``try_strptime(x, ['…%z'])`` rolls 2025-02-30 over to
    03-02). A format ending in ``%z`` refuses an offset no clock shows."""
    parse = f"try_strptime({x}, {_lit(fmt)})"
    if fmt.endswith("%z"):
        return f"CASE WHEN NOT regexp_matches({x}, {_lit(BAD_OFFSET_RE)}) THEN {parse} END"
    return parse


def _strptime_sql(x: str, formats: tuple[str, ...] | list[str]) -> str:
    """The first of ``formats`` that parses ``x`` (each with ``_strptime_one``). With several
    formats each is only tried on values holding its literal punctuation ('-', '/', ':'
    ...): without it a format cannot match, so the result is the same, with fewer failed
    parses (a failed try_strptime costs as much as a successful one)."""
    if len(formats) == 1:
        return _strptime_one(x, formats[0])
    tries = []
    for f in formats:
        parse = _strptime_one(x, f)
        needs = " AND ".join(f"contains({x}, {_lit(c)})" for c in _format_literals(f))
        tries.append(f"CASE WHEN {needs} THEN {parse} END" if needs else parse)
    return f"coalesce({', '.join(tries)})"


def _iso_sql(x: str, cast: str) -> str:
    """``TRY_CAST(x AS cast)`` of an ISO 8601 value, NULL when the cast would roll the value
    over to the next day (DuckDB reads ``24:00:00`` as midnight of the next day): the date
    of the value read as a timestamp must be the date it is written with."""
    same_day = f"CAST(TRY_CAST({x} AS TIMESTAMP) AS DATE) = TRY_CAST({x} AS DATE)"
    return f"CASE WHEN {same_day} THEN TRY_CAST({x} AS {cast}) END"


def _typed_sql(v: str, spec: FieldSpec | None, canon: CanonicalField, tz: str) -> str:
    """SQL typing the varchar value ``v`` to the canonical type; NULL when it fails.

    An impossible calendar date or time (2025-02-30, 25:61, 24:00, an offset of +08:61)
    gives NULL in every form (ISO, each strptime format with or without ``%z``), never a
    rolled-over value."""
    kind = canon.kind
    formats = spec.formats if spec is not None else ()
    if kind == "varchar":
        return v
    if kind in ("integer",):
        return (
            f"CASE WHEN regexp_full_match(trim({v}), '[+-]?[0-9]+(\\.0*)?') "
            f"THEN TRY_CAST(TRY_CAST(trim({v}) AS DECIMAL(38,0)) AS INTEGER) END"
        )
    if kind == "decimal" or kind == "boolean":
        return f"TRY_CAST(trim({v}) AS {canon.sql_type.upper()})"
    x = f"trim({v})"
    if kind == "date":
        if formats:
            return f"CAST({_strptime_sql(x, formats)} AS DATE)"
        return _iso_sql(x, "DATE")
    if kind == "timestamp":
        if formats:
            zoned = [f for f in formats if _zoned(f)]
            plain = [f for f in formats if f not in zoned]
            parts = []
            if plain:
                parts.append(_tz_to_utc(_strptime_sql(x, plain), tz))
            if zoned:
                parts.append(f"timezone('UTC', {_strptime_sql(x, zoned)})")
            return parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"
        return (
            f"CASE WHEN regexp_matches({x}, {_lit(OFFSET_RE)}) "
            f"THEN CASE WHEN NOT regexp_matches({x}, {_lit(BAD_OFFSET_RE)}) "
            f"THEN timezone('UTC', {_iso_sql(x, 'TIMESTAMPTZ')}) END "
            f"ELSE {_tz_to_utc(_iso_sql(x, 'TIMESTAMP'), tz)} END"
        )
    raise AssertionError(kind)


NFKC_FUNCTION = "crm_nfkc"


def _nfkc(values: pa.Array) -> pa.Array:
    """NFKC of a batch of strings (Arrow's utf8proc): full-width digits, '＠' and spaces
    become ASCII, as every other compatibility character becomes its plain form."""
    return pc.utf8_normalize(values, "NFKC")


def _register_nfkc(con: duckdb.DuckDBPyConnection) -> None:
    """``crm_nfkc(varchar)`` on this connection (DuckDB has NFC, not NFKC)."""
    found = con.execute(
        f"SELECT count(*) FROM duckdb_functions() WHERE function_name = {_lit(NFKC_FUNCTION)}"
    ).fetchall()[0][0]
    if not found:
        con.create_function(
            NFKC_FUNCTION, _nfkc, [VARCHAR], VARCHAR, type="arrow", side_effects=False
        )


def _nfkc_sql(v: str) -> str:
    """NFKC of ``v``, computed only for the values that are not plain ASCII (ASCII is its
    own NFKC; a byte count larger than the character count means a non-ASCII character)."""
    return f"CASE WHEN strlen({v}) <> length({v}) THEN {NFKC_FUNCTION}({v}) ELSE {v} END"


def _failure_sql(name: str, v: str, spec: FieldSpec, canon: CanonicalField) -> str | None:
    kind = canon.kind
    shown = f"'''' || left({v}, {VALUE_IN_REASON}) || ''''"
    if kind == "varchar":
        return None
    if kind in ("timestamp", "date"):
        if spec.formats:
            tail = f"' with formats [{', '.join(spec.formats)}]'"
        else:
            tail = f"' as an ISO 8601 {'date' if kind == 'date' else 'timestamp'}'"
        return f"{_lit(name + ': cannot parse ')} || {shown} || {_lit(tail[1:-1])}"
    what = {"integer": "an integer", "decimal": "a number", "boolean": "a boolean"}[kind]
    return f"{_lit(name + ': ')} || {shown} || {_lit(' is not ' + what)}"
