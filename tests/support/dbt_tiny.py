"""The tiny hand-made raw dataset of the dbt project tests and how to build it with dbt
(tests/test_dbt_project.py, tests/test_dbt_nightly.py; the build is the session fixture
`dbt_tiny_build` of tests/conftest.py). Every dbt call writes its target/ and logs/ into a
given folder, so parallel pytest workers never collide."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path

import duckdb

from pipelines.ingest.schema import ensure_raw_schema
from support.pseudonyms import expected_customer_id

REPO = Path(__file__).resolve().parents[2]
DBT_DIR = REPO / "dbt_project"
AS_OF = "2026-10-31"


# --------------------------------------------------------------------------- helpers
def venv_bin(name: str) -> str:
    """The executable next to the running interpreter (the venv), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def run_dbt(
    args: list[str],
    work: Path,
    db: Path,
    check: bool = True,
    *,
    restricted: Path | None = None,
    project: Path = DBT_DIR,
    timeout: int = 900,
) -> subprocess.CompletedProcess:
    """`dbt <args>` of `project` on the warehouse `db` (and the restricted store
    `restricted`, by default `<db stem>_restricted.duckdb` beside it), with its target/ and
    logs/ in `work`. `check`: fail the test, with the end of dbt's output, unless dbt
    succeeded."""
    if restricted is None:
        restricted = db.with_name(db.stem + "_restricted.duckdb")
    env = dict(
        os.environ,
        CRM_WAREHOUSE_DB=str(db),
        CRM_RESTRICTED_DB=str(restricted),
        DBT_SEND_ANONYMOUS_USAGE_STATS="false",
    )
    cmd = [
        venv_bin("dbt"),
        *args,
        "--profiles-dir",
        str(project),
        "--project-dir",
        str(project),
        "--target-path",
        str(work / "target"),
        "--log-path",
        str(work / "logs"),
    ]
    proc = subprocess.run(
        cmd, cwd=project, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
        )
    return proc


def run_dbt_on_stores(
    work: Path, args: list[str], ok: bool = True, project: Path = DBT_DIR, timeout: int = 900
) -> str:
    """`dbt <args>` on the stores in `work` (warehouse.duckdb, restricted.duckdb); its
    stdout. `ok`: whether it must succeed (False: must fail)."""
    proc = run_dbt(
        args, work, work / "warehouse.duckdb", check=False,
        restricted=work / "restricted.duckdb", project=project, timeout=timeout,
    )  # fmt: skip
    assert (proc.returncode == 0) == ok, proc.stdout[-6000:] + proc.stderr[-2000:]
    return proc.stdout


def build_vars(as_of: str = AS_OF) -> str:
    return json.dumps({"as_of_date": as_of})


LINEAGE = ("_source_name", "_source_file", "_source_line", "_delivery_date", "_loaded_at",
           "_mapping_version", "_file_sha256")  # fmt: skip


def insert(con: duckdb.DuckDBPyConnection, table: str, rows: list[dict]) -> None:
    """Insert rows (canonical fields by name) with default lineage columns."""
    for i, row in enumerate(rows):
        full = {
            "_source_name": table,
            "_source_file": f"{table}/file.csv",
            "_source_line": i + 2,
            "_loaded_at": datetime(2026, 11, 1, 0, 0),
            "_mapping_version": "1",
            "_file_sha256": "x",
            **row,
        }
        full.setdefault("_delivery_date", (full.get("updated_at") or full.get("ordered_at")
                                            or full.get("event_at") or full.get("occurred_at")).date())  # fmt: skip
        cols = list(full)
        con.execute(
            f"insert into raw.{table} ({', '.join(cols)}) values ({', '.join('?' for _ in cols)})",
            [full[c] for c in cols],
        )


def ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# --------------------------------------------------------------------------- the tiny dataset
# D = 2026-10-31 (Asia/Shanghai). Persons:
#   P1: CRM member crm:C1 (full profile), mall member mall:M1 (same phone in another
#       format, unionid U1), WeChat account o1 (unionid U1), ticket T1 (phone), orders
#       crm:O1 (2 lines, 240 CNY, Oct 5) and crm:O2 (8,000 USD = 56,800 CNY, Sep 3).
#       The chain C1 -phone- M1 -unionid- o1 links transitively.
#   P2: CRM member crm:C2 (name + phone), guest order crm:O3 with the same phone (300 CNY,
#       Oct 20, delivered twice), cancelled guest order crm:O4, inquiry ticket T3 (phone).
#   Nobody: 21 walk-in orders typed with the front-desk phone in October (21 > 20 records
#       in one month: a super-node, no customer; 100 CNY each), ticket T2 without any
#       identifier.
#   Not as of D: crm:C3 updated 2026-11-01 00:30 Shanghai; order crm:O9 placed
#       2026-11-01 01:00 Shanghai; order crm:O8 dated Oct 30 but delivered Nov 1.
def create_raw(db: Path) -> None:
    con = duckdb.connect(str(db))
    ensure_raw_schema(con)
    insert(con, "customers", [
        dict(source_system="crm", customer_ref="C1", updated_at=ts("2026-01-10 02:00"),
             name="张三", gender="F", birth_date=date(1990, 5, 1), phone="138 0013 8000",
             email=" A@X.com ", city="上海", province="上海", member_level="gold",
             marketing_consent=True),
        dict(source_system="mall", customer_ref="M1", updated_at=ts("2026-03-01 02:00"),
             phone="+86-138-0013-8000", unionid="U1", gender="female",
             marketing_consent=False),
        dict(source_system="crm", customer_ref="C2", updated_at=ts("2026-02-01 02:00"),
             name="李四", phone="13900000002", marketing_consent=True),
        dict(source_system="crm", customer_ref="C3", updated_at=ts("2026-10-31 16:30"),
             name="王五", phone="13700000003"),
    ])  # fmt: skip
    line = dict(status="completed", channel="online_store", source_system="crm",
                product_id="P", quantity=1, discount_amount=0, refunded_amount=0)  # fmt: skip
    orders = [
        {**line, "order_id": "O1", "line_no": 1, "ordered_at": ts("2026-10-05 04:00"),
         "customer_ref": "C1", "quantity": 2, "unit_price": 100, "discount_amount": 10},
        {**line, "order_id": "O1", "line_no": 2, "ordered_at": ts("2026-10-05 04:00"),
         "customer_ref": "C1", "unit_price": 50},
        {**line, "order_id": "O2", "line_no": 1, "ordered_at": ts("2026-09-03 04:00"),
         "customer_ref": "C1", "unit_price": 8000, "currency": "USD"},
        {**line, "order_id": "O3", "line_no": 1, "ordered_at": ts("2026-10-20 04:00"),
         "buyer_phone": "+86 139 0000 0002", "unit_price": 300},
        {**line, "order_id": "O3", "line_no": 1, "ordered_at": ts("2026-10-20 04:00"),
         "buyer_phone": "+86 139 0000 0002", "unit_price": 300,
         "_source_file": "orders/resend.csv", "_delivery_date": date(2026, 10, 22)},
        {**line, "order_id": "O4", "line_no": 1, "ordered_at": ts("2026-10-21 04:00"),
         "buyer_phone": "13900000002", "unit_price": 500, "status": "cancelled"},
        {**line, "order_id": "O9", "line_no": 1, "ordered_at": ts("2026-10-31 17:00"),
         "customer_ref": "C2", "unit_price": 999},
        {**line, "order_id": "O8", "line_no": 1, "ordered_at": ts("2026-10-30 04:00"),
         "customer_ref": "C2", "unit_price": 999, "_delivery_date": date(2026, 11, 1)},
    ] + [
        {**line, "order_id": f"W{k:02d}", "line_no": 1, "channel": "offline_store",
         "ordered_at": ts(f"2026-10-{k:02d} 03:00"), "buyer_phone": "021-55550000",
         "unit_price": 100}
        for k in range(1, 22)
    ]  # fmt: skip
    insert(con, "orders", orders)
    insert(con, "service_events", [
        dict(ticket_id="T1", event_id="e1", event_at=ts("2026-10-06 00:00"), event_type="created",
             priority="P2", category="inquiry", channel="phone", phone="13800138000"),
        dict(ticket_id="T1", event_id="e2", event_at=ts("2026-10-06 00:30"), event_type="agent_reply"),
        dict(ticket_id="T1", event_id="e3", event_at=ts("2026-10-06 10:00"), event_type="resolved"),
        dict(ticket_id="T1", event_id="e4", event_at=ts("2026-10-07 10:00"), event_type="csat",
             csat_score=5),
        dict(ticket_id="T2", event_id="e5", event_at=ts("2026-10-20 00:00"), event_type="created",
             priority="urgent", category="complaint", channel="phone"),
        dict(ticket_id="T2", event_id="e6", event_at=ts("2026-10-20 00:20"), event_type="agent_reply"),
        dict(ticket_id="T2", event_id="e7", event_at=ts("2026-10-21 00:00"), event_type="csat",
             csat_score=2),
        dict(ticket_id="T3", event_id="e8", event_at=ts("2026-10-15 00:00"), event_type="created",
             priority="low", category="inquiry", channel="wechat", phone="139-0000-0002"),
    ])  # fmt: skip
    social = dict(platform="wechat", account_id="o1", unionid="U1")
    insert(con, "social_interactions", [
        {**social, "interaction_id": "i1", "occurred_at": ts("2026-10-10 02:00"),
         "direction": "inbound", "interaction_type": "message", "content": "hi"},
        {**social, "interaction_id": "i2", "occurred_at": ts("2026-10-10 05:00"),
         "direction": "outbound", "interaction_type": "message"},
        {**social, "interaction_id": "i3", "occurred_at": ts("2026-10-12 05:00"),
         "direction": "inbound", "interaction_type": "comment"},
    ])  # fmt: skip
    con.close()


def build_tiny(work: Path) -> dict:
    """The tiny dataset built in `work` by the two halves of `dbt build`."""
    db = work / "warehouse.duckdb"
    create_raw(db)
    first = run_dbt(["build", "--exclude", "source:clv+", "--vars", build_vars()], work, db)
    second = run_dbt(["build", "--select", "source:clv+", "--vars", build_vars()], work, db)
    return {"work": work, "db": db, "logs": first.stdout + second.stdout}


def query(db: Path, sql: str) -> list[tuple]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def kpi(db: Path, month: str, kpi_name: str, segment: str = "all") -> float | None:
    rows = query(db, f"select value from marts.fct_kpi_monthly where month_label = '{month}' "
                     f"and segment = '{segment}' and kpi = '{kpi_name}'")  # fmt: skip
    assert len(rows) == 1, (month, segment, kpi_name, rows)
    return rows[0][0]


C1 = expected_customer_id("account:crm:C1")  # smallest record of P1's component
C2 = expected_customer_id("account:crm:C2")


def quadrant_rows(db: Path) -> dict[tuple[str, str], tuple[int, date]]:
    """(month, quadrant) -> (KPI rows, computed_as_of_date) of the quadrant segments."""
    rows = query(db, """
        select month_label, segment, count(*), min(computed_as_of_date), max(computed_as_of_date)
        from marts.fct_kpi_monthly where segment_type = 'quadrant'
        group by month_label, segment""")  # fmt: skip
    assert all(r[3] == r[4] for r in rows)
    return {(r[0], r[1]): (r[2], r[3]) for r in rows}


def copy_stores(built: dict, target: Path) -> Path:
    """Copies of the built warehouse and its restricted store in `target`."""
    db = target / "warehouse.duckdb"
    shutil.copyfile(built["db"], db)
    restricted = built["db"].with_name(built["db"].stem + "_restricted.duckdb")
    shutil.copyfile(restricted, db.with_name(db.stem + "_restricted.duckdb"))
    return db
