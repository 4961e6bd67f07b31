"""Benchmark of the quality gate on a synthetic warehouse (2M order lines / orders).

    python -m benchmarks.quality [--rows 2000000] [--dir /tmp/dq_bench]

Builds raw.orders, raw.load_log, intermediate.int_order_lines_converted, marts.fct_order_lines
and marts.fct_orders with `--rows` rows each, then runs the `raw_orders` and `fct_orders` suites (GX, pushed down
to DuckDB) and prints wall seconds and the process's peak RSS. Run it in a fresh process:
the peak RSS is that of the whole process (Python + GX + DuckDB).
"""

import argparse
import resource
import shutil
import time
from datetime import date
from pathlib import Path

import duckdb

from pipelines.quality.runner import run_suites

AS_OF = date(2024, 12, 31)

BUILD_SQL = """
create schema raw; create schema intermediate; create schema marts;
create table raw.orders as
select
    'o' || i as order_id, 1 as line_no,
    timestamp '2023-01-01 02:00' + to_days((i % 730)::int) as ordered_at,
    case when i % 20 = 0 then 'cancelled' else 'completed' end as status,
    case i % 3 when 0 then 'tmall' when 1 then 'jd' else 'online_store' end as channel,
    'shop' as source_system,
    case when i % 10 = 0 then null else 'c' || (i % 400000) end as customer_ref,
    (1 + i % 4)::decimal(18, 4) as quantity, (10 + i % 90)::decimal(18, 2) as unit_price,
    'shop' as _source_name, 'shop/' || (i % 365) || '/o.csv' as _source_file,
    (i // 365 + 2)::bigint as _source_line, date '2024-12-31' as _delivery_date
from range({rows}) as t(i);
create table raw.load_log as
select 'shop' as _source_name, 'orders' as entity, date '2024-12-31' as _delivery_date,
       'shop/orders.csv' as _source_file, 'x' as _file_sha256, 0 as bytes,
       {rows} as rows_read, {rows} as rows_loaded, 0 as rows_quarantined, 'loaded' as status;
create table intermediate.int_order_lines_converted as
select 'shop:' || order_id as order_id, cast(ordered_at as date) as order_date,
       status = 'cancelled' as is_cancelled,
       cast(quantity * unit_price as decimal(18, 2)) as net_revenue
from raw.orders;
create table marts.fct_order_lines as
select 'shop:' || order_id || ':' || line_no as order_line_id, order_id, 'shop' as source_system,
       'paid' as status
from raw.orders;
create table marts.fct_orders as
select order_id, 'shop' as source_system, replace(order_id, 'shop:', '') as source_order_id,
       'C' || (hash(order_id) % 300000) as customer_id, order_date, is_cancelled,
       1.0 as items,
       case when is_cancelled then 0 else net_revenue end::decimal(18, 2) as net_revenue
from intermediate.int_order_lines_converted;
"""


def build(path: Path, rows: int) -> None:
    con = duckdb.connect(str(path))
    con.execute(BUILD_SQL.format(rows=rows))
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/dq_bench"))
    parser.add_argument("--reuse", action="store_true", help="gate only, on a built warehouse")
    args = parser.parse_args()
    db = args.dir / "warehouse.duckdb"
    if not (args.reuse and db.exists()):
        shutil.rmtree(args.dir, ignore_errors=True)
        args.dir.mkdir(parents=True)
        started = time.perf_counter()
        build(db, args.rows)
        print(f"built {args.rows:,} rows per table in {time.perf_counter() - started:.1f}s")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    gate = run_suites(
        db, ["raw_orders", "fct_orders"], AS_OF, "bench", docs_dir=args.dir / "data_docs"
    )
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for suite in gate.suites:
        print(f"  {suite.suite}: {len(suite.outcomes)} expectations, {suite.seconds:.2f}s")
    print(gate.summary())
    print(
        f"gate seconds {seconds:.2f} (incl. dq_results + Data Docs); "
        f"peak RSS {rss:.0f} MB (after build {rss_before:.0f} MB)"
    )


if __name__ == "__main__":
    main()
