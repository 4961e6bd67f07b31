"""Great Expectations 1.24 SQL validation on the warehouse DuckDB file.

GX runs its own metric SQL (bundled aggregate queries, pushed down to DuckDB) through
SQLAlchemy + duckdb_engine. Out of the box that combination fails in two ways; both are
fixed here, in one place (see docs/quality.md, "Why this GX setup"):

1. `IndexError: list index out of range` in `SqlAlchemyExecutionEngine.resolve_metric_bundle`.
   GX executes a query inside `with engine.connect()` and calls `.fetchall()` after the
   connection was released. Releasing rolls back the auto-begun transaction, and
   duckdb_engine runs that ROLLBACK on the same DuckDB connection, which replaces the
   pending result, so GX fetches `[]`. Fix (ours, no GX patch): the engine's connections
   are cursors of the caller's DuckDB connection wrapped in `_AutocommitConnection`, whose
   begin/commit/rollback are no-ops: GX only reads, DuckDB runs every statement in
   autocommit mode, and the pending result survives. Using a cursor of the caller's
   connection also avoids DuckDB's "same database file with a different configuration"
   error that a second `duckdb.connect(path)` in the same process raises.
2. Catalog Error `SELECT * FROM fct_orders LIMIT 1`: SQLAlchemy 2.1's PostgreSQL column
   reflection (inherited by duckdb_engine) queries `pg_catalog.pg_collation`, which DuckDB
   lacks; GX then falls back to `column_reflection_fallback`, which drops the schema for
   every dialect but Redshift. Fix: the one patch of GX, isolated in
   pipelines/quality/gx_compat.py with the upstream issues (a 6-line wrapper, idempotent).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import sqlalchemy as sa
from duckdb_engine import ConnectionWrapper

from pipelines.quality.gx_compat import patch_column_reflection_fallback

_DOCS_VIEW = "pipelines.quality.docs_view"


class _AutocommitConnection(ConnectionWrapper):
    """A duckdb_engine DBAPI connection whose transaction calls are no-ops (read-only use)."""

    def begin(self) -> None:
        return None

    def commit(self) -> None:
        return None

    def rollback(self) -> None:
        return None


def gx_context(docs_dir: Path, results_dir: Path) -> Any:
    """An ephemeral GX context whose validation results and Data Docs live on disk, so the
    Data Docs index lists every past run (the quality trend), not only the current one."""
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    patch_column_reflection_fallback()
    docs_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    config.stores["validation_results_store"] = {
        "class_name": "ValidationResultsStore",
        "store_backend": {
            "class_name": "TupleFilesystemStoreBackend",
            "base_directory": str(results_dir),
        },
    }
    config.data_docs_sites = {
        "local_site": {
            "class_name": "SiteBuilder",
            "show_how_to_buttons": False,
            "store_backend": {
                "class_name": "TupleFilesystemStoreBackend",
                "base_directory": str(docs_dir),
            },
            # every section and the index through views that escape data (stored XSS: see
            # pipelines.quality.docs_view)
            "site_index_builder": {
                "class_name": "DefaultSiteIndexBuilder",
                "view": {"module_name": _DOCS_VIEW, "class_name": "EscapingIndexPageView"},
            },
            "site_section_builders": {
                section: {"view": {"module_name": _DOCS_VIEW, "class_name": "EscapingPageView"}}
                for section in ("expectations", "validations", "profiling")
            },
        }
    }
    return gx.get_context(project_config=config, mode="ephemeral")


def add_warehouse_datasource(context: Any, con: duckdb.DuckDBPyConnection, name: str) -> Any:
    """A GX SQL datasource reading through `con` (see the module docstring)."""

    def creator() -> _AutocommitConnection:
        return _AutocommitConnection(con.cursor())

    return context.data_sources.add_or_update_sql(
        name=name,
        connection_string="duckdb://",
        create_temp_table=False,
        kwargs={"creator": creator, "poolclass": sa.pool.StaticPool},
    )
