"""The floor: DuckDB alone running floor.sql (a hand-written script) on a copy of the raw
tables, and the agreement checks shared by the benchmark and its test.

    python -m benchmarks.floor --db BENCH.duckdb --as-of D [--json OUT]

runs floor.sql in BENCH.duckdb, which must hold the raw tables (schema `raw`) and the seeds
(schema `seeds`): `prepare_db` makes such a copy from a CRM_HOME. The script's timings go
to stdout (and OUT) as JSON; the harness (benchmarks/scale.py) runs this in its
own process to measure its peak memory. The outputs go to schema `floor`: name the file
anything but floor.duckdb (its catalog would be `floor` too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from datetime import date
from pathlib import Path

import duckdb

from benchmarks.sources import RAW_TABLES, attach_raw

SCRIPT = Path(__file__).with_name("floor.sql")
SEEDS_DIR = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds"

#: The KPIs of marts.fct_kpi_monthly (segment 'all') that the floor and the peer compute.
KPIS = (
    "purchasing_customers",
    "new_customers",
    "active_customers",
    "orders",
    "net_revenue",
    "aov",
    "repurchase_rate",
    "returning_customer_rate",
    "churn_rate",
    "dormant_reactivation_rate",
    "vip_customers",
)

#: Customer-state columns compared between the floor, the peer and marts.dim_customers.
CUSTOMER_COLUMNS = (
    "first_order_date",
    "last_order_date",
    "orders_lifetime",
    "orders_365d",
    "net_revenue_365d",
    "net_revenue_lifetime",
    "recency_days",
    "is_vip",
    "lifecycle_stage",
    "r_score",
    "f_score",
    "m_score",
    "rfm_segment",
)

#: The type each implementation's column is cast to before comparing (money: cents).
CUSTOMER_TYPES = {
    "first_order_date": "date",
    "last_order_date": "date",
    "orders_lifetime": "bigint",
    "orders_365d": "bigint",
    "net_revenue_365d": "decimal(18, 2)",
    "net_revenue_lifetime": "decimal(18, 2)",
    "recency_days": "bigint",
    "is_vip": "boolean",
    "r_score": "bigint",
    "f_score": "bigint",
    "m_score": "bigint",
}

#: Relative tolerance of a KPI comparison (absolute below 1).
TOLERANCE = 1e-9


def business_timezone() -> str:
    return os.environ.get("CRM_TIMEZONE", "Asia/Shanghai")


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def load_seeds(con: duckdb.DuckDBPyConnection) -> None:
    """The dbt seeds the floor reads, typed as dbt_project.yml types them."""
    con.execute("create schema if not exists seeds")
    con.execute(
        "create or replace table seeds.currency_rates as select currency::varchar as currency, "
        "rate_to_cny::decimal(18, 6) as rate_to_cny from read_csv("
        f"{_quote(str(SEEDS_DIR / 'currency_rates.csv'))}, all_varchar = true)"
    )
    con.execute(
        "create or replace table seeds.rfm_segment_map as select priority::integer as priority, "
        "segment::varchar as segment, r_min::integer as r_min, r_max::integer as r_max, "
        "f_min::integer as f_min, f_max::integer as f_max from read_csv("
        f"{_quote(str(SEEDS_DIR / 'rfm_segment_map.csv'))}, all_varchar = true)"
    )


def prepare_db(home: Path, db_path: Path) -> float:
    """Create `db_path` afresh with a copy of CRM_HOME's raw tables (schema `raw`) and the
    seeds (schema `seeds`); seconds taken."""
    started = time.monotonic()
    for stale in (db_path, db_path.with_name(db_path.name + ".wal")):
        stale.unlink(missing_ok=True)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db_path)) as con:
        source = attach_raw(con, home)
        con.execute("create schema raw")
        for table in RAW_TABLES:
            con.execute(f"create table raw.{table} as select * from {source}.{table}")
        load_seeds(con)
        con.execute("checkpoint")
    return time.monotonic() - started


def statements(script: str) -> list[str]:
    """The statements of a script (no statement of floor.sql holds a ';' in a string)."""
    body = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def _label(statement: str) -> str:
    found = re.search(
        r"create (?:or replace )?(?:temp )?(?:table|schema|macro)\s+(?:if not exists\s+)?([\w.]+)",
        statement,
    )
    return found.group(1) if found else statement.split()[0]


def run_floor(con: duckdb.DuckDBPyConnection, as_of: date, timezone: str | None = None) -> dict:
    """Run floor.sql as of `as_of` on `con` (raw and seeds schemas present). Returns
    {"seconds": total, "steps": {table: seconds}} (the heaviest statements)."""
    con.execute(f"set variable as_of = date '{as_of.isoformat()}'")
    con.execute(f"set variable tz = {_quote(timezone or business_timezone())}")
    steps: dict[str, float] = {}
    started = time.monotonic()
    for statement in statements(SCRIPT.read_text(encoding="utf-8")):
        t0 = time.monotonic()
        con.execute(statement)
        label = _label(statement)
        steps[label] = steps.get(label, 0.0) + time.monotonic() - t0
    return {"seconds": time.monotonic() - started, "steps": steps}


# Agreement ---------------------------------------------------------------------------


def _close(a: str, b: str) -> str:
    return (
        f"(({a} is null and {b} is null) or abs({a} - {b}) <= {TOLERANCE} * greatest(1, abs({b})))"
    )


def kpi_agreement(con: duckdb.DuckDBPyConnection, left: str, right: str) -> dict:
    """Compare two KPI relations (month, kpi, value, numerator, denominator) over KPIS:
    rows in either, rows in both, and rows whose value, numerator and denominator agree
    within TOLERANCE. `right` may be marts.fct_kpi_monthly (segment 'all' is selected)."""
    kpis = ", ".join(_quote(k) for k in KPIS)

    def rows(relation: str) -> str:
        columns = {
            row[0] for row in con.execute(f"select * from {relation} limit 0").description or []
        }
        segment = "and segment = 'all'" if "segment" in columns else ""
        return (
            f"select cast(month as date) as month, kpi, cast(value as double) as value, "
            f"cast(numerator as double) as numerator, cast(denominator as double) as denominator "
            f"from {relation} where kpi in ({kpis}) {segment}"
        )

    row = con.execute(
        f"""
        with l as ({rows(left)}), r as ({rows(right)})
        select
            count(*),
            count(*) filter (l.kpi is not null and r.kpi is not null),
            count(*) filter (
                l.kpi is not null and r.kpi is not null
                and {_close("l.value", "r.value")}
                and {_close("l.numerator", "r.numerator")}
                and {_close("l.denominator", "r.denominator")}
            ),
            count(*) filter (r.kpi is null),
            count(*) filter (l.kpi is null)
        from l full outer join r on l.month = r.month and l.kpi = r.kpi
        """
    ).fetchone()
    assert row is not None
    total, both, agree, only_left, only_right = row
    return {
        "rows": total,
        "in_both": both,
        "agree": agree,
        "only_left": only_left,
        "only_right": only_right,
    }


def kpi_differences(con: duckdb.DuckDBPyConnection, left: str, right: str, limit: int = 20):
    """The first rows that do not agree (for a failing test or a benchmark note)."""
    kpis = ", ".join(_quote(k) for k in KPIS)
    return con.execute(
        f"""
        with l as (select * from {left} where kpi in ({kpis})),
        r as (select * from {right} where kpi in ({kpis}) {"and segment = 'all'" if "fct_kpi" in right else ""})
        select coalesce(l.month, r.month) as month, coalesce(l.kpi, r.kpi) as kpi,
            l.value as left_value, r.value as right_value,
            l.numerator as left_numerator, r.numerator as right_numerator
        from l full outer join r on l.month = r.month and l.kpi = r.kpi
        where not ({_close("l.value", "r.value")} and {_close("l.numerator", "r.numerator")})
            or l.kpi is null or r.kpi is null
        order by 1, 2
        limit {limit}
        """
    ).fetchall()


def customer_agreement(con: duckdb.DuckDBPyConnection, left: str, right: str) -> dict:
    """Compare customer state as multisets of CUSTOMER_COLUMNS rows (customer ids differ
    between implementations: the warehouse's may be keyed pseudonyms): customers on each
    side, and customers matched to an identical row on the other side."""

    def keyed(relation: str) -> str:
        parts = [
            f"{column} := cast(cast({column} as {CUSTOMER_TYPES.get(column, 'varchar')}) as varchar)"
            for column in CUSTOMER_COLUMNS
        ]
        return (
            f"select cast(struct_pack({', '.join(parts)}) as varchar) as k, count(*) as n "
            f"from {relation} group by 1"
        )

    row = con.execute(
        f"""
        with l as ({keyed(left)}), r as ({keyed(right)})
        select
            (select sum(n) from l),
            (select sum(n) from r),
            (select coalesce(sum(least(l.n, r.n)), 0) from l join r on l.k = r.k)
        """
    ).fetchone()
    assert row is not None
    left_n, right_n, matched = (int(v or 0) for v in row)
    return {"left": left_n, "right": right_n, "agree": matched}


def identity_agreement(con: duckdb.DuckDBPyConnection, left: str, right: str) -> dict:
    """Identity records (record_id, component_record_id) on both sides whose component, named
    by its smallest record id, is the same."""
    row = con.execute(
        f"""
        select
            (select count(*) from {left}),
            (select count(*) from {right}),
            count(*) filter (l.component_record_id = r.component_record_id)
        from {left} as l join {right} as r on l.record_id = r.record_id
        """
    ).fetchone()
    assert row is not None
    return {"left": row[0], "right": row[1], "agree": row[2]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file with raw and seeds")
    parser.add_argument("--as-of", required=True, type=date.fromisoformat)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)
    with duckdb.connect(str(ns.db)) as con:
        if ns.threads:
            con.execute(f"set threads = {ns.threads}")
        result = run_floor(con, ns.as_of)
        result["rows"] = {
            table: con.execute(f"select count(*) from floor.{table}").fetchone()[0]  # type: ignore[index]
            for table in ("customer_records", "customers", "kpi_monthly")
        }
    text = json.dumps(result, indent=2)
    if ns.json:
        ns.json.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
