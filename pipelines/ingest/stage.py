"""The stage query of a group of files: source -> values -> typed -> reasons, with the
loader's defaults for unmapped fields.
"""

from __future__ import annotations

from pipelines.ingest.canonical import ENTITIES
from pipelines.ingest.mapping import FieldSpec, SourceMapping
from pipelines.ingest.sql import _ident, _lit
from pipelines.ingest.typed_sql import _failure_sql, _nfkc_sql, _typed_sql


def _value_sql(spec: FieldSpec) -> str:
    if spec.column is not None:
        v = _ident(spec.column)
    else:
        assert spec.expr is not None
        v = f"CAST({spec.expr.sql} AS VARCHAR)"
    if spec.values:
        whens = " ".join(
            f"WHEN {_lit(k)} THEN {_lit(val) if val != '' else 'NULL'}" for k, val in spec.values
        )
        v = f"CASE {v} {whens} ELSE {v} END"
    return v


def _default_sql(entity: str, fname: str, mapping: SourceMapping, currency: str) -> str | None:
    if entity == "orders":
        return {
            # a mapped line id left empty; an unmapped one is numbered (_insert_rows)
            "line_no": "1",
            "discount_amount": "0",
            "refunded_amount": "0",
            "currency": _lit(currency),
            "source_system": _lit(mapping.name),
        }.get(fname)
    if entity == "service_events" and fname == "event_id":
        return "md5(__rowtext)"
    return None


def _stage_sql(
    mapping: SourceMapping,
    source_sql: str,
    currency: str,
    keep_values: bool,
    *,
    raw_sql: str = "__raw",
    rowtext_sql: str = "__rowtext",
) -> str:
    """L0 source -> L1 values -> L2 typed -> L3 reasons; the stage of a group of files
    (``__f``: which file of the group).

    The source columns are passed through every layer, so ``raw_sql`` (the raw text kept
    for a quarantined row) and ``rowtext_sql`` (the row text of an ``md5`` default) are
    expressions over them computed only for the rows that need them; the reason string is
    only built for a row that fails a check.
    """
    entity = mapping.entity
    canon = ENTITIES[entity]
    assert mapping.timezone is not None, "resolved by load_partition(s)"
    l1: list[str] = []
    l2: list[str] = []
    checks: list[tuple[str, str]] = []  # (condition, reason)
    final = [
        "__f",
        "__pos",
        f"CASE WHEN __reason IS NOT NULL THEN {raw_sql} END AS __raw",
        "__reason",
    ]
    for i, cf in enumerate(canon):
        spec = mapping.fields.get(cf.name)
        default = _default_sql(entity, cf.name, mapping, currency)
        if default is not None:
            default = default.replace("__rowtext", f"({rowtext_sql})")
        vcol, tcol = f"__v{i}", f"__t{i}"
        if spec is not None:
            l1.append(f"{_value_sql(spec)} AS {vcol}")
            typed = _typed_sql(vcol, spec, cf, mapping.timezone)
            if cf.nfkc:
                typed = _nfkc_sql(typed)
            l2.append(f"{typed} AS {tcol}")
            fail = _failure_sql(cf.name, vcol, spec, cf)
            if fail is not None:
                checks.append((f"({vcol} IS NOT NULL AND {tcol} IS NULL)", fail))
            if cf.required:
                checks.append((f"{vcol} IS NULL", _lit("missing required field " + cf.name)))
            out = tcol if default is None else f"coalesce({tcol}, {default})"
            final.append(f"CAST({out} AS {cf.sql_type}) AS {_ident(cf.name)}")
            if keep_values:
                final.append(vcol)
        else:
            out = "NULL" if default is None else default
            final.append(f"CAST({out} AS {cf.sql_type}) AS {_ident(cf.name)}")
    if keep_values:  # check_mapping shows each source value beside what it maps to
        final.extend(
            f"CAST({_ident(col)} AS VARCHAR) AS __s{j}"
            for j, col in enumerate(mapping.source_columns)
        )
    # a structural problem (column count, JSON, encoding) is the whole story of its row
    checks_sql = "NULL"
    if checks:
        parts = ", ".join(f"CASE WHEN {cond} THEN {msg} END" for cond, msg in checks)
        checks_sql = (
            f"CASE WHEN {' OR '.join(cond for cond, _ in checks)} THEN "
            f"nullif(concat_ws('; ', {parts}), '') END"
        )
    reason = f"coalesce(__pre, {checks_sql}) AS __reason"
    # each layer's own columns come before the source columns (*): DuckDB binds a name to
    # its first column, so a source column named __reason or __v0 cannot stand in for them
    l1_sql = f"SELECT {''.join(c + ', ' for c in l1)}* FROM ({source_sql}) AS __l0"
    l2_sql = f"SELECT {''.join(c + ', ' for c in l2)}* FROM ({l1_sql}) AS __l1"
    return f"SELECT {', '.join(final)} FROM (SELECT {reason}, * FROM ({l2_sql}) AS __l2) AS __l3"


def _numbers_lines(mapping: SourceMapping) -> bool:
    """True when the loader numbers the order lines (an orders mapping without line_no)."""
    return mapping.entity == "orders" and "line_no" not in mapping.fields
