"""The review's "Retention" section: the cohort heat map of marts.fct_customer_cohorts.

One row per first-order month (the cohorts of the last `COHORTS_SHOWN` months, every
channel together), one column per month since the first order (0 to `MONTHS_SHOWN`), each
cell the share of the cohort ordering in that month. The month of D is still running. The section is left out when the table is not
published.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import duckdb
from markupsafe import Markup

from pipelines.publish import svg
from pipelines.publish.columns import COLUMNS
from pipelines.publish.review_format import add_months

TABLE = "fct_customer_cohorts"
ALL_CHANNELS = "all"  # fct_customer_cohorts.first_order_channel over every channel
COHORTS_SHOWN = 13
MONTHS_SHOWN = 12

TEXT = {
    "en": {
        "title": "Retention",
        "explain": (
            "Customers by the month of their first order (rows, every channel together) and "
            "the share of them ordering again in each month after it (columns: months since "
            "the first order; month 0 is the first order itself, 100 %). The month of D is "
            "still running."
        ),
        "chart": "Share of each cohort ordering, by months since the first order",
        "no_data": "No cohort yet.",
    },
    "zh": {
        "title": "留存",
        "explain": (
            "按首单月份划分的客户同期群（行，全部渠道合计），以及其后每个月再次下单的客户占比"
            "（列：首单后月数；第 0 月即首单本身，为 100%）。截止日期所在月份尚未结束。"
        ),
        "chart": "各同期群下单客户占比（按首单后月数）",
        "no_data": "暂无同期群。",
    },
}


def load_retention(
    con: duckdb.DuckDBPyConnection, qualified: str | None, as_of: date
) -> list[dict[str, Any]]:
    """The 'all' rows of the last COHORTS_SHOWN cohorts up to the month of D, months 0 to
    MONTHS_SHOWN, from the table `qualified` ([] when the table is not there: None)."""
    if qualified is None:
        return []
    c = COLUMNS[TABLE]
    first = add_months(as_of.replace(day=1), -(COHORTS_SHOWN - 1))
    rows = con.execute(
        f'select "{c["cohort_month"]}", "{c["months_since_first"]}", '
        f'"{c["cohort_customers"]}", "{c["active_share"]}" from {qualified} '
        f'where "{c["first_order_channel"]}" = ? and "{c["cohort_month"]}" between ? and ? '
        f'and "{c["months_since_first"]}" <= ? '
        f'order by "{c["cohort_month"]}", "{c["months_since_first"]}"',
        [ALL_CHANNELS, first, as_of, MONTHS_SHOWN],
    ).fetchall()
    return [
        {
            "cohort_month": cohort,
            "months_since_first": int(m),
            "cohort_customers": int(size),
            "active_share": float(share) if share is not None else None,
        }
        for cohort, m, size, share in rows
    ]


def retention_section(rows: list[dict[str, Any]], language: str) -> dict[str, Any] | None:
    """The section's title, explanation and heat map (None without rows)."""
    if not rows:
        return None
    t = TEXT["zh" if language == "zh" else "en"]
    cohorts = sorted({r["cohort_month"] for r in rows})
    size = {r["cohort_month"]: r["cohort_customers"] for r in rows}
    cell = {(r["cohort_month"], r["months_since_first"]): r for r in rows}
    row_labels = [f"{c:%Y-%m} ({size[c]:,})" for c in cohorts]
    columns = list(range(MONTHS_SHOWN + 1))
    values = [[(cell.get((c, m)) or {}).get("active_share") for m in columns] for c in cohorts]
    # the scale's top is the best share after month 0 (month 0 is 100 % by construction)
    later = [v for row in values for v in row[1:] if v is not None]
    chart: Markup = svg.heat_map(
        row_labels,
        [str(m) for m in columns],
        values,
        label=t["chart"],
        value_format=lambda v: f"{v:.0%}" if v >= 0.01 or v == 0 else f"{v:.1%}",
        scale_max=max(later) if later else None,
        empty_text=t["no_data"],
        description=t["explain"],
    )
    return {"title": t["title"], "explain": t["explain"], "chart": chart}
