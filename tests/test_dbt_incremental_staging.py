"""Incremental staging (macros/incremental_staging.sql) and incremental identity components
(macros/identity_components.sql) equal a rebuild from every raw row.

The small preset over 20 delivery days is loaded night by night with the ingestion engine;
after each load the staging and identity models are built as of that night (`dbt run`,
incremental after the first), and the four staging tables and the identity components are
compared, row for row and column for column (EXCEPT ALL both ways), with a
`--full-refresh` build of a copy of the same stores.
On the way:

- a row delivered early but dated (business date) after the nights that saw it, which an
  incremental build must pick up when its date comes;
- a delivery the last build covered loaded again with a line removed: the build must
  notice and rebuild (the removed line disappears, as in a rebuild);
- a covered delivery withdrawn (files gone) and re-loaded: a rebuild without its rows;
- a build as of an earlier night than the last one: a rebuild as of that night;
- another business timezone: a rebuild.

Each build's plan (incremental or full rebuild, and why) is read from the dbt log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest

from pipelines.generate.engine import generate
from pipelines.ingest.engine import discover_partitions, load_partition
from pipelines.ingest.mapping import load_mappings

REPO = Path(__file__).resolve().parents[1]
DBT_DIR = REPO / "dbt_project"
MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
STAGING = ("stg_raw__customers", "stg_raw__orders", "stg_raw__service_events",
           "stg_raw__social_interactions")  # fmt: skip

COMPONENTS = "int_identity_components_resolved"
RECOMPUTED = re.compile(r"identity components: recomputing (\d+) of (\d+) nodes")

pytestmark = [pytest.mark.xdist_group("dbt"), pytest.mark.slow]


def dbt_run(work: Path, as_of: date, *extra: str, timezone: str = "Asia/Shanghai") -> str:
    """`dbt run` of the staging and identity models (up to the components) as of `as_of` on
    the stores in `work`; its stdout."""
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run(
        [str(dbt), "run", "--select", "+int_identity_components_resolved", *extra,
         "--vars", f"{{as_of_date: {as_of.isoformat()}, business_timezone: {timezone}}}",
         "--profiles-dir", str(DBT_DIR), "--project-dir", str(DBT_DIR),
         "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
        cwd=DBT_DIR,
        env=dict(os.environ, CRM_WAREHOUSE_DB=str(work / "warehouse.duckdb"),
                 CRM_RESTRICTED_DB=str(work / "restricted.duckdb")),
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    return proc.stdout


def plans(stdout: str) -> dict[str, str]:
    """{model: 'incremental (...)' | 'full rebuild (...)'} from the log of a build."""
    found = {}
    for line in stdout.splitlines():
        for model in STAGING:
            marker = f"{model}: "
            if marker in line and ("incremental (" in line or "full rebuild (" in line):
                found[model] = line.split(marker, 1)[1].strip()
    return found


def load(work: Path, landing: Path, days: list[date], only: str | None = None) -> None:
    """Load (or re-load) the deliveries `days` of every mapping (or of mapping `only`)."""
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    try:
        for mapping in load_mappings(MAPPINGS):
            if only and mapping.name != only:
                continue
            for day in discover_partitions(landing, mapping):
                if day in days:
                    load_partition(con, mapping, landing, day)
    finally:
        con.close()


def differences(
    work: Path, as_of: date, timezone: str = "Asia/Shanghai"
) -> dict[str, tuple[int, int, int]]:
    """Build a copy of the stores with --full-refresh as of `as_of`; per staging table the
    rows only in the incremental build, only in the rebuild, and the row count."""
    copy = work / "rebuild"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    for name in ("warehouse.duckdb", "restricted.duckdb"):
        shutil.copy(work / name, copy / name)
    dbt_run(copy, as_of, "--full-refresh", timezone=timezone)
    con = duckdb.connect()
    con.execute(f"attach '{work / 'restricted.duckdb'}' as inc (read_only)")
    con.execute(f"attach '{copy / 'restricted.duckdb'}' as full_build (read_only)")
    out = {}
    for model in STAGING:
        a, b = f"inc.staging.{model}", f"full_build.staging.{model}"
        only_inc = con.execute(
            f"select count(*) from (select * from {a} except all select * from {b})"
        ).fetchall()[0][0]
        only_full = con.execute(
            f"select count(*) from (select * from {b} except all select * from {a})"
        ).fetchall()[0][0]
        rows = con.execute(f"select count(*) from {a}").fetchall()[0][0]
        out[model] = (only_inc, only_full, rows)
    # the identity components (incremental too: macros/identity_components.sql)
    con.execute(f"attach '{work / 'warehouse.duckdb'}' as inc_wh (read_only)")
    con.execute(f"attach '{copy / 'warehouse.duckdb'}' as full_wh (read_only)")
    a = "inc_wh.intermediate.int_identity_components_resolved"
    b = "full_wh.intermediate.int_identity_components_resolved"
    out[COMPONENTS] = (
        con.execute(
            f"select count(*) from (select * from {a} except all select * from {b})"
        ).fetchall()[0][0],
        con.execute(
            f"select count(*) from (select * from {b} except all select * from {a})"
        ).fetchall()[0][0],
        con.execute(f"select count(*) from {a}").fetchall()[0][0],
    )
    con.close()
    return out


def assert_equal_to_rebuild(work: Path, as_of: date, timezone: str = "Asia/Shanghai") -> None:
    diff = differences(work, as_of, timezone)
    assert all(d[2] > 0 for d in diff.values()), diff
    assert all(d[:2] == (0, 0) for d in diff.values()), diff


def early_order_staged(work: Path) -> int:
    con = duckdb.connect(str(work / "restricted.duckdb"), read_only=True)
    try:
        return con.execute(
            "select count(*) from staging.stg_raw__orders where order_id = 'shop:EARLY-1'"
        ).fetchall()[0][0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> tuple[Path, list[date]]:
    root = tmp_path_factory.mktemp("incremental_staging")
    result = generate("small", 11, root / "landing", days=20, progress=False)
    days = sorted({d for m in load_mappings(MAPPINGS)
                   for d in discover_partitions(root / "landing", m)})  # fmt: skip
    assert result.start in days
    return root, days


def test_incremental_staging_equals_a_rebuild(landing) -> None:
    root, days = landing
    work = root / "work"
    work.mkdir()
    first = days[-8]
    load(work, root / "landing", [d for d in days if d <= first])
    # delivered with the first night, dated (Shanghai) two days later: not as of the first
    # nights, only from its own date on
    late_date = first + timedelta(days=2)
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    con.execute(
        "insert into raw.orders (order_id, line_no, source_system, customer_ref, status, "
        "quantity, unit_price, currency, ordered_at, _source_name, _source_file, _source_line, "
        "_delivery_date, _loaded_at, _mapping_version, _file_sha256) values "
        "('EARLY-1', 1, 'shop', 'C-EARLY', 'paid', 1, 99, 'CNY', ?, 'shop_orders', "
        "'shop_orders/early.csv', 2, ?, ?, '1', 'x')",
        [datetime.combine(late_date, datetime.min.time()) + timedelta(hours=3), first,
         datetime(2020, 1, 1)],
    )  # fmt: skip
    con.close()

    out = dbt_run(work, first)
    assert set(plans(out).values()) == {"full rebuild (first build)"}, plans(out)
    assert early_order_staged(work) == 0

    # three nights, one build each: incremental, each equal to a rebuild; the identity
    # components recompute only the components the night touched
    for night in days[-7:-4]:
        load(work, root / "landing", [night])
        out = dbt_run(work, night)
        assert all(p.startswith("incremental") for p in plans(out).values()), plans(out)
        assert len(plans(out)) == len(STAGING)
        recomputed, nodes = map(int, RECOMPUTED.search(out).groups())
        assert 0 < recomputed < nodes / 2, (recomputed, nodes)
        assert_equal_to_rebuild(work, night)
    # the early-delivered order is staged once its date has come
    assert days[-5] >= late_date and early_order_staged(work) == 1

    # a covered delivery loaded again with a line fewer: rebuilt, the line is gone
    reloaded = days[-6]
    files = sorted((root / "landing" / "shop_orders" / reloaded.isoformat()).glob("orders_*.csv"))
    lines = files[0].read_text(encoding="utf-8").splitlines(keepends=True)
    removed = lines.pop(1)
    files[0].write_text("".join(lines), encoding="utf-8")
    load(work, root / "landing", [reloaded], only="shop_orders")
    load(work, root / "landing", [days[-4]])
    out = dbt_run(work, days[-4])
    assert plans(out)["stg_raw__orders"].startswith(
        f"full rebuild (delivery {reloaded.isoformat()} (covered by the last build) was loaded again"
    ), plans(out)
    assert plans(out)["stg_raw__customers"].startswith("incremental"), plans(out)
    assert_equal_to_rebuild(work, days[-4])
    assert removed.strip()

    # a covered delivery withdrawn (its files gone) and re-loaded: no load is newer, but
    # one is gone; rebuilt, its rows are gone
    emptied = days[-7]
    for f in (root / "landing" / "shop_orders" / emptied.isoformat()).glob("*"):
        f.unlink()
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    load_partition(con, next(m for m in load_mappings(MAPPINGS) if m.name == "shop_orders"),
                   root / "landing", emptied)  # fmt: skip
    con.close()
    out = dbt_run(work, days[-4])
    assert plans(out)["stg_raw__orders"].startswith(
        "full rebuild (loads the last build covered are gone"
    ), plans(out)
    assert plans(out)["stg_raw__service_events"].startswith("incremental"), plans(out)
    assert_equal_to_rebuild(work, days[-4])

    # the remaining nights, then a re-run of an earlier night: rebuilt as of that night
    for night in days[-3:]:
        load(work, root / "landing", [night])
        out = dbt_run(work, night)
        assert all(p.startswith("incremental") for p in plans(out).values()), plans(out)
    assert_equal_to_rebuild(work, days[-1])
    out = dbt_run(work, days[-3])
    assert all(p.startswith("full rebuild (D ") for p in plans(out).values()), plans(out)
    assert_equal_to_rebuild(work, days[-3])

    # another business timezone changes the dates of every row: rebuilt
    out = dbt_run(work, days[-3], timezone="UTC")
    assert all(
        p.startswith("full rebuild (the model or its settings changed") for p in plans(out).values()
    ), plans(out)
    assert_equal_to_rebuild(work, days[-3], timezone="UTC")
