"""The published marts and helpers to compare a publication with its warehouse, for the
publish tests (tests/test_publish_serving.py, tests/test_publish_patching.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import duckdb
import pyarrow as pa

MARTS = {
    "dim_customers",
    "fct_orders",
    "fct_service_tickets",
    "fct_social_interactions",
    "fct_kpi_monthly",
    "fct_kpi_weekly",
    "rpt_kpi_review",
    "kpi_definitions",
}


def sorted_table(table: pa.Table) -> pa.Table:
    """The table sorted by all its columns."""
    con = duckdb.connect()
    con.register("t", table)
    return con.sql("select * from t order by all").to_arrow_table()


def warehouse_table(path: Path, name: str, schema: str = "marts") -> pa.Table:
    """A table of the warehouse file, sorted by all its columns."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        return con.sql(f"select * from {schema}.{name} order by all").to_arrow_table()
    finally:
        con.close()


def digest(folder: Path) -> dict[str, tuple[str, int]]:
    """sha256 and inode of every published file (dot-files excluded)."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_ino)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }
