"""Incremental staging (macros/incremental_staging.sql) and the incremental identity models
(records, identifiers, edges, components, customers, source records: macros/identity_*.sql,
macros/customers_resolved.sql, macros/source_records.sql) equal a rebuild from every raw
row.

The small preset over 20 delivery days is loaded night by night with the ingestion engine;
after each load the staging and identity models are built as of that night (`dbt run`,
incremental after the first), and the four staging tables and the incremental identity
models are compared, row for row and column for column (EXCEPT ALL both ways), with a
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

import re
import shutil
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from support.dbt_tiny import run_dbt_on_stores

from pipelines.generate.engine import generate
from pipelines.ingest.discovery import discover_partitions
from pipelines.ingest.engine import load_partition
from pipelines.ingest.mapping import load_mappings

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
STAGING = ("stg_raw__customers", "stg_raw__orders", "stg_raw__service_events",
           "stg_raw__social_interactions")  # fmt: skip

RECORDS = "int_identity_records"
COMPONENTS = "int_identity_components_resolved"
CUSTOMERS = "int_customers_resolved"
EDGES = "int_identity_edges"
SOURCE_RECORDS = "int_source_records_resolved"
CHANGE_LOG = "int_source_records_logged"
GOLDEN = "int_customer_profiles_merged"
# int_identity_identifiers and the source identifiers it keeps (restricted store)
IDENTIFIERS = ("int_identity_identifiers", "int_identity_identifiers__by_source")

# What each incremental identity model prints in the dbt log: the reason of a whole build,
# or the counts of an incremental one.
PLANS = {
    "records": (
        r"identity records: every source key computed \((.*)\)",
        r"identity records: (\d+) source keys changed, recomputing (\d+) of (\d+) records",
    ),
    "components": (
        r"identity components: every component computed \((.*)\)",
        r"identity components: recomputing (\d+) of (\d+) nodes",
    ),
    "identifiers": (
        r"identity identifiers: every source key computed \((.*)\)",
        r"identity identifiers: (\d+) source keys changed \([^)]*\), recomputing (\d+) of (\d+) "
        r"records",
    ),
    "customers": (
        r"customers resolved: every record computed \((.*)\)",
        r"customers resolved: recomputing (\d+) records of (\d+)",
    ),
    "edges": (
        r"identity edges: every edge computed \((.*)\)",
        r"identity edges: recomputing the edges of (\d+) records \((\d+) identifier values "
        r"changed\); (\d+) edges before",
    ),
    "source records": (
        r"source records: every source key computed \((.*)\)",
        r"source records: recomputing (\d+) source keys of (\d+)",
    ),
    "change log": (
        r"customer-change log: every source record compared \((.*)\)",
        r"customer-change log: comparing (\d+) source records",
    ),
    "golden record": (
        r"golden record: every customer computed \((.*)\)",
        r"golden record: recomputing (\d+) customers of (\d+)",
    ),
}


def plan(model: str, out: str) -> str | tuple[int, ...]:
    """The plan a model printed: the reason of a whole build, or the counts of an
    incremental one (components: recomputed nodes, nodes; records and identifiers: changed
    source keys, recomputed records, records; customers: recomputed records, rows before; edges: records whose edges are recomputed, changed
    identifier values, edges before; source records: keys computed again, rows before;
    change log: source records compared; golden record: customers recomputed, rows
    before)."""
    whole, counts = PLANS[model]
    found = re.search(whole, out)
    if found:
        return found[1]
    found = re.search(counts, out)
    assert found, out[-3000:]
    return tuple(int(group) for group in found.groups())


def assert_identifiers_incremental(out: str, keys_changed: bool = True) -> None:
    identifiers = plan("identifiers", out)
    assert isinstance(identifiers, tuple), identifiers
    changed, recomputed, records = identifiers
    assert (changed > 0) == keys_changed and 0 < recomputed < records / 2, identifiers


def identifiers_inputs(out: str) -> str:
    """Where an incremental identifiers build took its changed keys from, and which records'
    first-seen months it compared (the parenthesis of its log line)."""
    found = re.search(r"identity identifiers: \d+ source keys changed \(([^)]*)\)", out)
    assert found, out[-3000:]
    return found[1]


def assert_records_incremental(out: str, same_keys_as_identifiers: bool = True) -> None:
    """The identity records were built incrementally, recomputing a minority of records;
    when both models last read the same staging state, the identifiers took the records'
    changed keys (macros/staged_keys.sql) and compared the first-seen months of the records
    the records build changed only."""
    records = plan("records", out)
    assert isinstance(records, tuple), records
    changed, recomputed, total = records
    assert changed > 0 and 0 < recomputed < total / 2, records
    if same_keys_as_identifiers:
        assert changed == plan("identifiers", out)[0], (records, plan("identifiers", out))
        assert identifiers_inputs(out) == (
            "those int_identity_records found; "
            "first-seen months compared: of the records int_identity_records changed"
        ), identifiers_inputs(out)


pytestmark = [pytest.mark.xdist_group("dbt_incremental_staging"), pytest.mark.slow]


def dbt_run(
    work: Path,
    as_of: date,
    *extra: str,
    timezone: str = "Asia/Shanghai",
    select: str = f"+{CHANGE_LOG} +{GOLDEN}",
    command: str = "run",
) -> str:
    """`dbt run` (or `command`) of the staging and identity models (up to the customer-change
    log and the golden record, or `select`) as of `as_of` on the stores in `work`; its
    stdout."""
    dbt_vars = f"{{as_of_date: {as_of.isoformat()}, business_timezone: {timezone}}}"
    return run_dbt_on_stores(work, [command, "--select", select, *extra, "--vars", dbt_vars])


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
    for model in (*IDENTIFIERS, f"golden.{GOLDEN}"):
        schema, model = model.split(".") if "." in model else ("identity", model)
        a, b = f"inc.{schema}.{model}", f"full_build.{schema}.{model}"
        out[model] = (
            con.execute(f"select count(*) from (select * from {a} except all select * from {b})").fetchall()[0][0],
            con.execute(f"select count(*) from (select * from {b} except all select * from {a})").fetchall()[0][0],
            con.execute(f"select count(*) from {a}").fetchall()[0][0],
        )  # fmt: skip
    # the identity edges and components (incremental too: macros/identity_edges.sql,
    # macros/identity_components.sql)
    con.execute(f"attach '{work / 'warehouse.duckdb'}' as inc_wh (read_only)")
    con.execute(f"attach '{copy / 'warehouse.duckdb'}' as full_wh (read_only)")
    for model in (RECORDS, f"{RECORDS}__by_source", EDGES, COMPONENTS, CUSTOMERS, SOURCE_RECORDS):
        a, b = f"inc_wh.intermediate.{model}", f"full_wh.intermediate.{model}"
        out[model] = (
            con.execute(
                f"select count(*) from (select * from {a} except all select * from {b})"
            ).fetchall()[0][0],
            con.execute(
                f"select count(*) from (select * from {b} except all select * from {a})"
            ).fetchall()[0][0],
            con.execute(f"select count(*) from {a}").fetchall()[0][0],
        )
    # the customer-change log (built at different times, so not compared with the
    # rebuild) logs every source record with its current customer
    resolved, logged = f"inc_wh.intermediate.{SOURCE_RECORDS}", f"inc_wh.intermediate.{CHANGE_LOG}"
    out[CHANGE_LOG] = (
        con.execute(
            f"select count(*) from {resolved} as resolved left join {logged} as logged "
            "on resolved.source_record_id = logged.source_record_id "
            "where logged.customer_id is distinct from resolved.customer_id "
            "or logged.source_record_id is null"
        ).fetchall()[0][0],
        0,
        con.execute(f"select count(*) from {logged}").fetchall()[0][0],
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


def deliver_corrections(work: Path, night: date) -> dict:
    """Raw rows delivered with `night` that move identifiers between records whose source
    keys did not change: an anonymous order delivered again with an account's customer_ref
    (its record order:<id> loses every identifier), a social interaction delivered again
    under another account (the only interaction of its old account), and 21 walk-in orders
    typed with an account's phone (a super-node from then on: the flag changes on the rows
    of holders that got no new row)."""
    loaded_at = datetime.now()
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    try:
        order_id, source_system = con.execute(
            "select order_id, source_system from raw.orders where customer_ref is null "
            "and buyer_phone is not null and _delivery_date < ? order by order_id limit 1",
            [night],
        ).fetchone()
        account = con.execute(
            "select min(customer_ref) from raw.orders where source_system = ? "
            "and customer_ref is not null",
            [source_system],
        ).fetchone()[0]
        con.execute(
            "insert into raw.orders select * replace (? as customer_ref, ? as _delivery_date, "
            "? as _loaded_at) from raw.orders where order_id = ? and source_system = ?",
            [account, night, loaded_at, order_id, source_system],
        )
        interaction_id, platform, old_account = con.execute(
            """with accounts as (
                select platform, account_id, count(*) as interactions
                from raw.social_interactions group by all
            )
            select interaction_id, platform, account_id from raw.social_interactions
            inner join accounts using (platform, account_id)
            where accounts.interactions = 1 and phone is not null and _delivery_date < ?
            order by interaction_id limit 1""",
            [night],
        ).fetchone()
        new_account = con.execute(
            "select min(account_id) from raw.social_interactions where platform = ? "
            "and account_id <> ?",
            [platform, old_account],
        ).fetchone()[0]
        con.execute(
            "insert into raw.social_interactions select * replace (? as account_id, "
            "? as _delivery_date, ? as _loaded_at) from raw.social_interactions "
            "where interaction_id = ? and platform = ?",
            [new_account, night, loaded_at, interaction_id, platform],
        )
        con.execute(f"attach '{work / 'restricted.duckdb'}' as restricted_store (read_only)")
        phone = con.execute(  # normalised, as typed into the orders
            "select min(identifier_value) from restricted_store.identity.int_identity_identifiers "
            "where identifier_type = 'phone' and starts_with(record_id, 'account:') "
            "and not is_supernode"
        ).fetchone()[0]
        ordered_at = datetime.combine(night, datetime.min.time())  # 08:00 in Shanghai
        for k in range(21):
            con.execute(
                "insert into raw.orders (order_id, line_no, source_system, status, quantity, "
                "unit_price, currency, buyer_phone, ordered_at, _source_name, _source_file, "
                "_source_line, _delivery_date, _loaded_at, _mapping_version, _file_sha256) "
                "values (?, 1, 'shop', 'paid', 1, 10, 'CNY', ?, ?, 'shop_orders', "
                "'shop_orders/desk.csv', ?, ?, ?, '1', 'x')",
                [f"DESK-{k:02d}", phone, ordered_at, k + 2, night, loaded_at],
            )
    finally:
        con.close()
    return {
        "moved_order": f"order:{source_system}:{order_id}",
        "old_social_account": f"social:{platform}:{old_account}",
        "desk_phone": phone,
    }


def identifier_rows(work: Path, where: str) -> list[tuple]:
    con = duckdb.connect(str(work / "restricted.duckdb"), read_only=True)
    try:
        return con.execute(
            "select record_id, identifier_type, is_supernode "
            f"from identity.int_identity_identifiers where {where} order by all"
        ).fetchall()
    finally:
        con.close()


def accounts_moved(work: Path) -> int:
    """Account keys whose customer the last build of the source records changed (kept for
    the golden record): a merge or split it recomputed narrowly."""
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        return con.execute(
            f"select count(*) from intermediate.{SOURCE_RECORDS}__changed_keys "
            "where entity = 'customers' and old_customer_id is not null "
            "and customer_id is distinct from old_customer_id"
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

    dbt_run(work, first, command="seed", select="source_priority")  # read by the golden record
    out = dbt_run(work, first)
    assert set(plans(out).values()) == {"full rebuild (first build)"}, plans(out)
    assert early_order_staged(work) == 0

    # three nights, one build each: incremental, each equal to a rebuild; the identity
    # components recompute only the components the night touched
    # the second night also delivers corrections that move identifiers between records
    moved_accounts = 0  # account keys that changed customer in an incremental build
    for night in days[-7:-4]:
        load(work, root / "landing", [night])
        if night == days[-5]:
            # the staging tables and the identifiers built alone first, on stale records
            # (int_identity_records not rebuilt): the full run then counts the records
            # whose first-seen month was missing or moved
            alone = dbt_run(work, night, select=" ".join((*STAGING, "int_identity_identifiers")))
            assert_identifiers_incremental(alone)
            # int_identity_records not built: the identifiers find their own keys, and no
            # record's month can have moved
            assert identifiers_inputs(alone) == (
                "found from the staging state kept; "
                "first-seen months compared: none, int_identity_records not built since"
            ), identifiers_inputs(alone)
        if night == days[-6]:
            corrected = deliver_corrections(work, night)
            holders_before = identifier_rows(
                work, f"identifier_value = '{corrected['desk_phone']}'"
            )
            assert holders_before and not any(row[2] for row in holders_before), holders_before
            moved = (
                f"record_id in ('{corrected['moved_order']}', '{corrected['old_social_account']}')"
            )
            moved_before = identifier_rows(work, moved)
            assert {row[1] for row in moved_before} >= {"phone", "social"}, moved_before
        out = dbt_run(work, night)
        assert all(p.startswith("incremental") for p in plans(out).values()), plans(out)
        assert len(plans(out)) == len(STAGING)
        recomputed, nodes = plan("components", out)
        assert 0 < recomputed < nodes / 2, (recomputed, nodes)
        scoped, rows = plan("customers", out)
        assert 0 < scoped < rows / 2, plan("customers", out)
        # after the build on stale records no source key is new: only the records whose
        # month was missing or moved are recomputed
        assert_identifiers_incremental(out, keys_changed=night != days[-5])
        assert_records_incremental(out, same_keys_as_identifiers=night != days[-5])
        if night == days[-5]:
            # the identifiers kept a newer staging state than the records': their own keys
            # (none); the months of the records the records build changed are compared
            assert identifiers_inputs(out) == (
                "found from the staging state kept; "
                "first-seen months compared: of the records int_identity_records changed"
            ), identifiers_inputs(out)
        # the edges follow the identifiers build just before theirs; after the identifiers
        # were built alone (twice since the edges' last build), every edge is computed
        if night == days[-5]:
            assert plan("edges", out) == "int_identity_identifiers was built more than once since"
        else:
            scoped, values, edges = plan("edges", out)
            records = plan("identifiers", out)[2]
            assert 0 < scoped < records / 2 and values > 0 and edges > 0, (
                plan("edges", out),
                records,
            )
        # the source records follow the identifiers and components builds just before theirs
        if night == days[-5]:
            reason = "int_identity_identifiers was built more than once since"
            assert plan("source records", out) == reason
        else:
            keys, rows = plan("source records", out)
            assert 0 < keys < rows / 2, plan("source records", out)
            # the change log compares the keys the source records computed again, the
            # golden record recomputes the customers of their accounts
            assert plan("change log", out) == (keys,), plan("change log", out)
            customers, rows = plan("golden record", out)
            assert 0 < customers < rows / 2, plan("golden record", out)
            moved_accounts += accounts_moved(work)
        assert_equal_to_rebuild(work, night)
    # the moved order's record and the social account's old record (its only interaction
    # moved) hold nothing now; the desk phone is a super-node on every holder, the earlier
    # ones included
    assert identifier_rows(work, moved) == []
    # the nights moved accounts between customers (the desk phone turned super-node splits
    # its holders) while the golden record was built narrowly
    assert moved_accounts > 0
    holders = identifier_rows(work, f"identifier_value = '{corrected['desk_phone']}'")
    assert len(holders) == len(holders_before) + 21 and all(row[2] for row in holders), holders
    # a staging table rebuilt whole on its own (--full-refresh): the identifiers are
    # computed whole at the next build, which cannot tell what changed
    dbt_run(work, days[-5], "--full-refresh", select="stg_raw__orders")
    out = dbt_run(work, days[-5])
    assert plan("identifiers", out) == "stg_raw__orders was rebuilt whole since the last build"
    assert plan("records", out) == "stg_raw__orders was rebuilt whole since the last build"
    assert plan("customers", out) == "int_identity_records was built whole"
    assert_equal_to_rebuild(work, days[-5])
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
    reason = "a delivery of orders covered by the last build was loaded again"
    assert plan("identifiers", out) == reason
    assert plan("edges", out) == "int_identity_identifiers was built whole"
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
    assert plan("identifiers", out) == "loads of orders covered by the last build are gone"
    assert_equal_to_rebuild(work, days[-4])

    # the remaining nights, then a re-run of an earlier night: rebuilt as of that night
    for night in days[-3:]:
        load(work, root / "landing", [night])
        if night == days[-3]:
            # the edges built alone first (nothing new for them): the components then read
            # the changes of the second edges build only, so they compute every component
            alone = dbt_run(work, night, select="int_identity_edges")
            assert plan("edges", alone) == (0, 0, plan("edges", alone)[2])
        out = dbt_run(work, night)
        assert all(p.startswith("incremental") for p in plans(out).values()), plans(out)
        assert_identifiers_incremental(out)
        assert_records_incremental(out)
        assert isinstance(plan("edges", out), tuple), plan("edges", out)
        if night == days[-3]:
            assert plan("components", out) == "int_identity_edges was built more than once since"
            assert plan("customers", out) == "int_identity_components_resolved was built whole"
            reason = "int_identity_components_resolved was built whole"
            assert plan("source records", out) == reason
            reason = "int_source_records_resolved was built whole"
            assert plan("change log", out) == plan("golden record", out) == reason
        else:
            recomputed, nodes = plan("components", out)
            assert 0 < recomputed < nodes / 2, (recomputed, nodes)
            assert isinstance(plan("source records", out), tuple), plan("source records", out)
    assert_equal_to_rebuild(work, days[-1])
    out = dbt_run(work, days[-3])
    assert all(p.startswith("full rebuild (D ") for p in plans(out).values()), plans(out)
    assert plan("identifiers", out) == "stg_raw__customers was built as of an earlier D"
    assert plan("records", out) == "stg_raw__customers was built as of an earlier D"
    assert_equal_to_rebuild(work, days[-3])

    # another business timezone changes the dates of every row: rebuilt
    out = dbt_run(work, days[-3], timezone="UTC")
    assert all(
        p.startswith("full rebuild (the model, the macros it calls or its settings changed")
        for p in plans(out).values()
    ), plans(out)
    assert plan("identifiers", out) == "the model, its inputs' SQL or its settings changed"
    assert_equal_to_rebuild(work, days[-3], timezone="UTC")
