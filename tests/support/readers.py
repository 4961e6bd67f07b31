"""A reader process for the reader-safety test: opens serving.duckdb over and over."""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

import duckdb

# Row counts the fixture marts keep in proportion to dim_customers (see fixture_marts.py).
PROPORTIONS = {"fct_orders": 3, "fct_service_tickets": 1, "fct_social_interactions": 2}


def observe(con: duckdb.DuckDBPyConnection) -> tuple[str, int, list[str]]:
    """(publication id, customers, problems) of the publication `con` reads."""
    (publication_id,) = con.execute("select publication_id from _publication").fetchone()
    recorded = dict(
        con.execute(
            "select table_name, row_count from _publication_tables where publication_id = ?",
            [publication_id],
        ).fetchall()
    )
    problems = []
    actual = {t: con.execute(f'select count(*) from "{t}"').fetchone()[0] for t in recorded}
    if actual != recorded:
        problems.append(f"{publication_id}: counts {actual} != recorded {recorded}")
    customers = actual.get("dim_customers", -1)
    for table, factor in PROPORTIONS.items():
        if actual.get(table) != factor * customers:
            problems.append(
                f"{publication_id}: {table}={actual.get(table)} for {customers} customers"
            )
    return publication_id, customers, problems


def reader_loop(serving_db: str, mode: str, ready: Any, stop: Any, results: Any) -> None:
    """Loop until `stop` is set; put a summary on `results`.

    mode "connect": duckdb.connect(path, read_only=True) each time (what any client does);
    mode "open_serving": the documented helper.
    """
    from pipelines.publish.releases import open_serving

    observations: dict[str, int] = {}
    seen: dict[str, int] = {}
    errors: list[str] = []
    problems: list[str] = []
    loops = 0
    while not stop.is_set() and loops < 200_000:
        loops += 1
        try:
            if mode == "connect":
                con = duckdb.connect(serving_db, read_only=True)
            else:
                con = open_serving(Path(serving_db), attempts=1)
            try:
                publication_id, customers, found = observe(con)
            finally:
                con.close()
            observations[publication_id] = observations.get(publication_id, 0) + 1
            seen[publication_id] = customers
            problems.extend(found)
            ready.set()
        except Exception:  # noqa: BLE001 - every error is a finding of this test
            errors.append(traceback.format_exc(limit=3))
            time.sleep(0.001)
    results.put(
        {
            "mode": mode,
            "loops": loops,
            "observations": observations,
            "customers": seen,
            "errors": errors[:20],
            "error_count": len(errors),
            "problems": problems[:20],
        }
    )
