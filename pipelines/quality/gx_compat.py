"""The one patch of Great Expectations in the project (docs/quality.md, "Why this GX setup").

Upstream: SQLAlchemy >= 2.0.45 reflects PostgreSQL columns with a query on
`pg_catalog.pg_collation`, which DuckDB did not have (duckdb/duckdb#22069) and whose
query still fails to bind through duckdb-engine 0.17 on DuckDB 2.0
(Mause/duckdb_engine#1379, #1391; fix proposed in Mause/duckdb_engine#1393). GX then uses
its `column_reflection_fallback`, which keeps the schema only for Redshift, so the table of
another schema is not found (`SELECT * FROM fct_orders LIMIT 1`: Catalog Error).

The workaround: wrap GX's fallback so that it schema-qualifies the table name, then calls
GX's own. Remove this module once duckdb-engine reflects columns on SQLAlchemy 2.1
(tests/test_quality.py fails loudly either way: the suites then find their tables)."""

from __future__ import annotations

from typing import Any

_PATCHED = False


def patch_column_reflection_fallback() -> None:
    """Make GX's column-reflection fallback keep the schema (GX 1.24 keeps it for Redshift
    only). Idempotent."""
    global _PATCHED
    if _PATCHED:
        return
    import great_expectations.expectations.metrics.util as gx_metric_util

    original = gx_metric_util.column_reflection_fallback

    def column_reflection_fallback(
        selectable: Any, dialect: Any, sqlalchemy_engine: Any, schema_name: str | None = None
    ) -> list[dict[str, str]]:
        if isinstance(selectable, str) and schema_name and "." not in selectable:
            selectable = f'"{schema_name}"."{selectable}"'
        return original(
            selectable=selectable,
            dialect=dialect,
            sqlalchemy_engine=sqlalchemy_engine,
            schema_name=schema_name,
        )

    gx_metric_util.column_reflection_fallback = column_reflection_fallback
    _PATCHED = True
