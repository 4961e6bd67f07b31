"""Reading the KPI review's data from the published marts (the warehouse file or
serving.duckdb); every table and column read is named in `pipelines.publish.columns`."""

from __future__ import annotations

import math
from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

from pipelines.publish.columns import (
    COLUMNS,
    TABLE_SCHEMAS,
    select_list,
)
from pipelines.publish.review_campaigns import load_campaigns
from pipelines.publish.review_retention import load_retention
from pipelines.publish.review_segments import load_movement

REQUIRED = ("rpt_kpi_review", "fct_kpi_monthly", "fct_kpi_weekly", "kpi_definitions")


class ReportError(RuntimeError):
    """The report cannot be built; the message names the table or column and the fix."""


def _find_table(con: duckdb.DuckDBPyConnection, table: str) -> str | None:
    schemas = TABLE_SCHEMAS[table]
    rows = con.execute(
        "select schema_name from duckdb_tables() where table_name = ? "
        "and database_name = current_database() "
        "union all select schema_name from duckdb_views() where view_name = ? "
        "and database_name = current_database()",
        [table, table],
    ).fetchall()
    present = {row[0] for row in rows}
    for schema in schemas:
        if schema in present:
            return f'"{schema}"."{table}"'
    return None


def _rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    qualified: str,
    tail: str = "",
    params: list[Any] | None = None,
) -> list[dict[str, Any]]:
    sql = f"select {select_list(table)} from {qualified} {tail}"
    try:
        cursor = con.execute(sql, params or [])
    except duckdb.BinderException as exc:
        raise ReportError(
            f"{qualified} does not have a column the KPI review reads ({exc}). If the column was "
            f"renamed in dbt, update COLUMNS[{table!r}] in pipelines/publish/columns.py."
        ) from exc
    names = [d[0] for d in cursor.description]
    return [
        {
            name: float(v) if isinstance(v, Decimal) else v
            for name, v in zip(names, row, strict=True)
        }
        for row in cursor.fetchall()
    ]


def load_data(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, Any]:
    """Everything the report shows, as plain Python values."""
    tables = {name: _find_table(con, name) for name in TABLE_SCHEMAS}
    missing = [name for name in REQUIRED if tables[name] is None]
    if missing:
        raise ReportError(
            f"missing table(s) {', '.join(missing)} (looked in schemas "
            f"{', '.join(sorted({s for n in missing for s in TABLE_SCHEMAS[n]}))}): "
            "run `dbt build` before the report, or point the report at serving.duckdb"
        )
    review = _rows(con, "rpt_kpi_review", tables["rpt_kpi_review"])
    table_as_of = max((r["as_of_date"] for r in review if r["as_of_date"]), default=None)
    if table_as_of is not None:
        review = [r for r in review if r["as_of_date"] == table_as_of]
    review.sort(key=lambda r: str(r["target_id"]))

    month_col = COLUMNS["fct_kpi_monthly"]["month"]
    monthly = _rows(
        con,
        "fct_kpi_monthly",
        tables["fct_kpi_monthly"],
        f'where "{month_col}" <= ? order by "{month_col}"',
        [as_of],
    )
    week_col = COLUMNS["fct_kpi_weekly"]["week"]
    weekly = _rows(
        con,
        "fct_kpi_weekly",
        tables["fct_kpi_weekly"],
        f'where "{week_col}" <= ? order by "{week_col}"',
        [as_of],
    )
    definitions = {
        row["kpi"]: row for row in _rows(con, "kpi_definitions", tables["kpi_definitions"])
    }

    mix: dict[str, list[tuple[str | None, int]]] = {}
    customers = 0
    if tables["dim_customers"]:
        dim = tables["dim_customers"]
        dcols = COLUMNS["dim_customers"]
        try:
            for key in ("rfm_segment", "quadrant", "lifecycle_stage"):
                mix[key] = con.execute(
                    f'select "{dcols[key]}", count(*) from {dim} group by 1 order by 2 desc, 1'
                ).fetchall()
            (customers,) = con.execute(f"select count(*) from {dim}").fetchone() or (0,)
        except duckdb.BinderException as exc:
            raise ReportError(
                f"{dim} does not have a column the KPI review reads ({exc}); update "
                "COLUMNS['dim_customers'] in pipelines/publish/columns.py"
            ) from exc

    quality: dict[str, Any] | None = None
    if tables["dq_results"]:
        qcols = COLUMNS["dq_results"]
        qualified = tables["dq_results"]
        latest = con.execute(
            f'select "{qcols["run_id"]}" from {qualified} '
            f'order by "{qcols["checked_at"]}" desc nulls last limit 1'
        ).fetchone()
        if latest:
            checks = _rows(
                con, "dq_results", qualified, f'where "{qcols["run_id"]}" = ?', [latest[0]]
            )
            checks.sort(key=lambda r: (str(r["suite"]), str(r["expectation"])))
            quality = {
                "run_id": latest[0],
                "checks": checks,
                "checked_at": max(
                    (c["checked_at"] for c in checks if c["checked_at"]), default=None
                ),
            }

    clv = None
    if tables["holdout_validation"]:
        clv = _rows(con, "holdout_validation", tables["holdout_validation"])

        def bucket_key(row: dict[str, Any]) -> tuple[float, str]:
            text = str(row["bucket"])
            digits = "".join(ch for ch in text.split("-")[0] if ch.isdigit() or ch == ".")
            try:
                return (float(digits), text)
            except ValueError:
                return (math.inf, text)

        clv.sort(key=bucket_key)

    # the open-ticket backlog per day (all statuses, priorities and ages together)
    backlog: list[dict[str, Any]] = []
    if tables["fct_ticket_backlog_daily"]:
        bcols = COLUMNS["fct_ticket_backlog_daily"]
        try:
            backlog = [
                {"date": day, "open_tickets": int(n), "open_breaches": int(breached)}
                for day, n, breached in con.execute(
                    f'select "{bcols["snapshot_date"]}", sum("{bcols["open_tickets"]}"), '
                    f'sum("{bcols["resolution_breached_tickets"]}") '
                    f"from {tables['fct_ticket_backlog_daily']} "
                    f'where "{bcols["snapshot_date"]}" <= ? group by 1 order by 1',
                    [as_of],
                ).fetchall()
            ]
        except duckdb.BinderException as exc:
            raise ReportError(
                f"{tables['fct_ticket_backlog_daily']} does not have a column the KPI review "
                f"reads ({exc}); update COLUMNS['fct_ticket_backlog_daily'] in "
                "pipelines/publish/columns.py"
            ) from exc

    return {
        "retention": load_retention(con, tables["fct_customer_cohorts"], as_of),
        "review": review,
        "backlog": backlog,
        "campaigns": load_campaigns(con, tables["fct_campaign_performance"], as_of),
        "movement": load_movement(con, tables["fct_segment_transitions"]),
        "table_as_of": table_as_of,
        "monthly": monthly,
        "weekly": weekly,
        "mix": mix,
        "customers": customers,
        "definitions": definitions,
        "quality": quality,
        "clv": clv,
    }
