"""The serving folder's layout and formats, the error of a publication, and the small SQL
and file helpers every part of the publication uses (pipelines/publish/serving.py)."""

from __future__ import annotations

import os
from pathlib import Path

from pipelines.lib.whole_publication import WHOLE_MARKER as WHOLE_MARKER

# The on-disk format of serving.duckdb. v1.0.0 files open in every DuckDB since 1.0 (CLI,
# Python, the JDBC driver Tableau uses); newer versions would force analysts onto DuckDB
# >= that version for a small gain in compression. Change only together with docs/publishing.md.
STORAGE_VERSION = "v1.0.0"
MARTS_SCHEMA = "marts"
#: Tables published next to the marts (every table and view of schema `marts`), with the
#: schemas dbt and the pipeline build them in: the KPI definitions and the SLA targets
#: (seeds), the managers' SMART targets as validated and loaded (pipelines/targets).
EXTRA_TABLES: dict[str, tuple[str, ...]] = {
    "kpi_definitions": ("seeds",),
    "kpi_targets": ("targets",),
    "sla_targets": ("seeds",),
}
PUBLICATION_TABLE = "_publication"
PUBLICATION_TABLES_TABLE = "_publication_tables"
SERVING_DB = "serving.duckdb"
MANIFEST = "manifest.json"
PARQUET_DIR = "parquet"
#: zstd at level 1: at the large preset, with the row order not kept (below), DuckDB writes
#: the interactions' 22.5 M rows in 10 s instead of 23 s at its default level 3 in order,
#: for a file of the same size (1.07 GB); level 1 alone: 14 s
PARQUET_OPTIONS = "format parquet, compression zstd, compression_level 1"
TABLEAU_DIR = "tableau"
RELEASES_DIR = ".releases"
#: The KPI review of a release (`publish(review=...)`): `<release>/reports/kpi_review.html`.
#: `$CRM_HOME/reports/latest` is a link to `serving/current/reports`, so the review and the
#: tables change in the same swap of `current`, and `restore_previous` restores both.
REVIEW_DIR = "reports"
REVIEW_FILE = "kpi_review.html"
CURRENT = "current"
#: The fixed entry points analysts use, each a link through `current`.
ENTRY_POINTS = (SERVING_DB, PARQUET_DIR, TABLEAU_DIR, MANIFEST)
FORMATS = ("duckdb", "parquet", "hyper")
#: The tables published by difference (see the module docstring), each with its unique key
#: (dbt tests and the quality gate hold it unique and not null before anything is
#: published). The other marts are small, or change whole every night (dim_customers'
#: recency moves with D).
ROW_KEYS: dict[str, str] = {
    "fct_orders": "order_id",
    "fct_order_lines": "order_line_id",
    "fct_service_tickets": "ticket_id",
    "fct_social_interactions": "interaction_id",
}
#: A table is written whole again once the keys patched since its last whole write (rows
#: replaced, added or removed) exceed this share of its rows.
PATCH_LIMIT = 0.10
#: DuckDB's memory limit while the publication's files are written (Parquet copies stream),
#: below the pipeline's (`CRM_DUCKDB_MEMORY_LIMIT`, 4GB) used for the comparisons: the Hyper
#: server works beside it.
WRITE_MEMORY_LIMIT = "2GB"
#: The keys each build of a fact wrote, in the warehouse's schema `main` (dbt macro
#: keep_written_keys): columns build, whole and the model's unique_key.
WRITTEN_KEYS_SUFFIX = "__written_keys"


class PublishError(RuntimeError):
    """The publication could not be built; the previous one is still in place."""


def ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
