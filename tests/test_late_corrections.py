"""Late corrections: nightly incremental builds absorb rows delivered long after their date.

A small generated dataset whose deliveries carry late corrections (orders refunded,
cancelled or completed 2-60 days after the order, ticket events and social interactions
delivered 5-60 days after they happened; docs/generator.md) is loaded night by night with
the ingestion engine. After the first night (a full build), each night is built
incrementally (`dbt run` as of the night), the blocking quality gate runs on it, and every
mart is compared, row for row and column for column (EXCEPT ALL both ways), with a
`--full-refresh` build of a copy of the same stores as of the same night. The only
columns and rows left out are those documented to differ (docs/warehouse.md, "As-of rules
and late arrivals"): `fct_kpi_monthly.computed_as_of_date` (the D a month was computed as
of), the quadrant rows of months before the month of D (a full build has them for the
month of D only) and, for the same reason, the stored quadrants of
`fct_customer_segments_monthly` and the quadrant rows of `fct_segment_transitions`; doubles are compared to 9 decimal places (sums in another order).

The nights cross the day on which September's demand_conversion_rate matures (09-30 +
30 days): a month still maturing is recomputed every night until it is complete, and the
test checks that it turned complete during the nights.

The nights must have delivered corrections of every kind dated before the lookback window
(D - 7), each night some up to 40-60 days before D, so that the test fails when the nightly
build leaves them out (as it did before the facts recomputed the keys delivered since their
last build, and the KPI months those rows touch).
"""

from __future__ import annotations

import dataclasses
import shutil
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from support.dbt_tiny import run_dbt_on_stores

from pipelines.generate.engine import generate
from pipelines.generate.presets import Rates
from pipelines.ingest.discovery import discover_partitions
from pipelines.ingest.engine import load_partition
from pipelines.ingest.mapping import load_mappings
from pipelines.lib.settings import DEMO_TARGETS_FILE
from pipelines.quality.runner import run_gate
from pipelines.targets import load_targets, read_targets

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
MARTS = (
    "fct_orders", "fct_order_lines", "fct_service_tickets", "fct_social_interactions",
    "fct_kpi_monthly", "dim_customers", "rpt_campaign_audiences", "rpt_kpi_review",
    "fct_customer_segments_monthly", "fct_segment_transitions", "fct_campaign_performance",
)  # fmt: skip
NIGHTS = 3
LOOKBACK = 7  # var late_arrival_lookback_days
#: more corrections than the demo's rates, so that every night carries each kind
RATES = dataclasses.replace(
    Rates(), late_corrections=0.3, very_late_service=0.3, very_late_social=0.3
)

pytestmark = [pytest.mark.xdist_group("dbt_late_corrections"), pytest.mark.slow]


def dbt(work: Path, command: str, as_of: date, *extra: str, ok: bool = True, **dbt_vars) -> str:
    """`dbt <command>` as of `as_of` on the stores in `work` (and `dbt_vars`); its stdout.
    `ok`: whether it must succeed (False: must fail)."""
    given = "".join(f", {name}: {value}" for name, value in dbt_vars.items())
    day = as_of.isoformat()
    args = [command, *extra, "--vars", f"{{as_of_date: {day}, checks_from_date: {day}{given}}}"]
    return run_dbt_on_stores(work, args, ok=ok, timeout=1200)


def load(work: Path, landing: Path, days: list[date]) -> None:
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    try:
        # the demo's SMART targets, as the pipeline's targets asset loads them before dbt
        load_targets(con, read_targets(DEMO_TARGETS_FILE))
        for mapping in load_mappings(MAPPINGS):
            for day in discover_partitions(landing, mapping):
                if day in days:
                    load_partition(con, mapping, landing, day)
    finally:
        con.close()


def late_rows(work: Path, night: date) -> dict[str, int]:
    """Staged rows delivered on `night` dated before the lookback window, per kind."""
    con = duckdb.connect(str(work / "restricted.duckdb"), read_only=True)
    start = night - timedelta(days=LOOKBACK)
    try:
        found = {}
        for kind, sql in {
            "refunds": "select count(distinct order_id) from staging.stg_raw__orders "
            "where delivery_date = ? and order_date < ? and status = 'refunded'",
            "cancellations": "select count(distinct order_id) from staging.stg_raw__orders "
            "where delivery_date = ? and order_date < ? and status = 'cancelled'",
            "ticket events": "select count(*) from staging.stg_raw__service_events "
            "where delivery_date = ? and event_date < ?",
            "social rows": "select count(*) from staging.stg_raw__social_interactions "
            "where delivery_date = ? and occurred_date < ?",
        }.items():
            found[kind] = con.execute(sql, [night, start]).fetchone()[0]
        found["oldest order (days before D)"] = con.execute(
            "select coalesce(max(? - order_date), 0) from staging.stg_raw__orders "
            "where delivery_date = ?",
            [night, night],
        ).fetchone()[0]
        return found
    finally:
        con.close()


def late_keys_not_written(work: Path, night: date) -> dict[str, int]:
    """Per fact, the keys of staged rows delivered on `night` dated before the lookback
    window that the night's build did not log as written (macro keep_written_keys): the
    publication would not republish them."""
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    start = night - timedelta(days=LOOKBACK)
    try:
        con.execute(f"attach '{work / 'restricted.duckdb'}' as store (read_only)")
        out = {}
        for fact, key, staged, day in (
            ("fct_orders", "order_id", "stg_raw__orders", "order_date"),
            ("fct_service_tickets", "ticket_id", "stg_raw__service_events", "event_date"),
            ("fct_social_interactions", "interaction_id", "stg_raw__social_interactions",
             "occurred_date"),
        ):  # fmt: skip
            out[fact] = con.execute(
                f"""select count(distinct {key}) from store.staging.{staged}
                where delivery_date = ? and {day} < ? and {key} not in (
                    select {key} from main.{fact}__written_keys
                    where build = (select max(build) from main.{fact}__written_keys)
                )""",
                [night, start],
            ).fetchone()[0]
        return out
    finally:
        con.close()


def maturing(work: Path) -> dict[tuple[str, str], bool]:
    """(month, kpi) -> is_complete of the KPIs with maturity (segment all) in the nightly
    build."""
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        return {
            (month, kpi): complete
            for month, kpi, complete in con.execute(
                "select month_label, kpi, is_complete from marts.fct_kpi_monthly "
                "where segment = 'all' and maturity_days > 0"
            ).fetchall()
        }
    finally:
        con.close()


def gate_failures(work: Path, night: date, docs: Path) -> list[str]:
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    try:
        con.execute(f"attach '{work / 'restricted.duckdb'}' as restricted (read_only)")
        gate = run_gate(con, night, f"night-{night}", docs_dir=docs, write=False)
    finally:
        con.close()
    return gate.blocking_failed


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    """The compared expressions of a mart: doubles rounded, computed_as_of_date left out."""
    out = []
    for name, kind in con.execute(
        "select column_name, data_type from duckdb_columns() where database_name = 'inc' "
        "and schema_name = 'marts' and table_name = ? order by column_index",
        [table],
    ).fetchall():
        if name == "computed_as_of_date":
            continue
        if table == "fct_customer_segments_monthly" and name == "quadrant":
            continue  # a full build has the quadrant of the month ending on D only
        out.append(f'round("{name}", 9)' if kind in ("DOUBLE", "FLOAT") else f'"{name}"')
    return out


def differences(work: Path, night: date) -> dict[str, tuple[int, int, int]]:
    """Per mart: rows only in the nightly build, only in a --full-refresh build of a copy
    of the stores as of the same night, and the nightly build's rows."""
    copy = work / "rebuild"
    shutil.rmtree(copy, ignore_errors=True)
    copy.mkdir()
    for name in ("warehouse.duckdb", "restricted.duckdb"):
        shutil.copy(work / name, copy / name)
    dbt(copy, "run", night, "--full-refresh")
    con = duckdb.connect()
    con.execute(f"attach '{work / 'warehouse.duckdb'}' as inc (read_only)")
    con.execute(f"attach '{copy / 'warehouse.duckdb'}' as full_build (read_only)")
    month_of_d = night.replace(day=1)
    out = {}
    try:
        for mart in MARTS:
            select = ", ".join(columns(con, mart))
            where = (
                f"where not (segment_type = 'quadrant' and month < date '{month_of_d}')"
                if mart == "fct_kpi_monthly"
                else "where segment_type <> 'quadrant'"
                if mart == "fct_segment_transitions"
                else ""
            )
            a = f"select {select} from inc.marts.{mart} {where}"
            b = f"select {select} from full_build.marts.{mart} {where}"
            out[mart] = (
                con.execute(f"select count(*) from ({a} except all {b})").fetchone()[0],
                con.execute(f"select count(*) from ({b} except all {a})").fetchone()[0],
                con.execute(f"select count(*) from ({a})").fetchone()[0],
            )
    finally:
        con.close()
    return out


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[date]]:
    root = tmp_path_factory.mktemp("late_corrections")
    generate(
        "small", 28, root / "landing", days=75, customers=3000, history_days=120,
        rates=RATES, progress=False,
    )  # fmt: skip
    days = sorted({d for m in load_mappings(MAPPINGS)
                   for d in discover_partitions(root / "landing", m)})  # fmt: skip
    return root, days


def test_nights_with_late_corrections_equal_a_full_rebuild(landing, tmp_path: Path) -> None:
    root, days = landing
    work = root / "work"
    work.mkdir()
    first = days[-NIGHTS - 1]
    load(work, root / "landing", [d for d in days if d <= first])
    dbt(work, "seed", first)
    dbt(work, "run", first)
    seen: dict[str, int] = {}  # late rows delivered by the nights, per kind
    states = [maturing(work)]  # is_complete of the maturing KPI months, night by night
    for night in days[-NIGHTS:]:
        load(work, root / "landing", [night])
        dbt(work, "run", night)
        late = late_rows(work, night)
        assert 40 <= late["oldest order (days before D)"] <= 60, (night, late)
        for kind, n in late.items():
            seen[kind] = seen.get(kind, 0) + n
        assert gate_failures(work, night, tmp_path / "docs") == [], night
        assert set(late_keys_not_written(work, night).values()) == {0}, night
        diff = differences(work, night)
        assert all(d[2] > 0 for d in diff.values()), (night, diff)
        assert {m: d[:2] for m, d in diff.items() if d[:2] != (0, 0)} == {}, (night, late, diff)
        states.append(maturing(work))
    assert all(n > 0 for n in seen.values()), seen
    # months matured across the nights (e.g. September's demand_conversion_rate, complete
    # from 09-30 + 30 days = 10-30): incomplete before, complete after, and each night's
    # incremental build equalled a full rebuild meanwhile
    matured = {
        key for key, complete in states[-1].items() if complete and not states[0].get(key, True)
    }
    assert ("2026-09", "demand_conversion_rate") in matured, (days[-NIGHTS:], states)
    night_tests_check_the_rows_the_night_wrote(work, days[-1])


def night_tests_check_the_rows_the_night_wrote(work: Path, night: date) -> None:
    """The fact tests scoped to the keys written since the last build whose tests passed
    (macro written_rows_filter; column tested_build of the build record model
    crm_builds_warehouse, macro build_record_rows) see a bad row of a key written since, not one
    of an older key; a `dbt build` whose tests pass records the build they checked, one whose
    tests fail records nothing (dbt skips the record model), so the next runs check the same
    rows again; every row is checked on the weekday var whole_data_tests_weekday."""
    scoped = work / "scoped"
    scoped.mkdir()
    for name in ("warehouse.duckdb", "restricted.duckdb"):
        shutil.copy(work / name, scoped / name)
    test = ("test", night, "--select", "fct_orders,test_name:accepted_values")
    build = ("build", night, "--select", "fct_orders", "crm_builds_warehouse")
    never = {"whole_data_tests_weekday": 0}
    log = "main.fct_orders__written_keys"

    def sql(query: str, *params, store: str = "warehouse") -> list:
        con = duckdb.connect(str(scoped / f"{store}.duckdb"))
        try:
            return con.execute(query, list(params)).fetchall()
        finally:
            con.close()

    def tested() -> list:
        return sql(
            "select tested_build from main.crm_builds_warehouse "
            "where model = 'fct_orders' and tested_build is not null order by built_at"
        )

    # the nights ran `dbt run`: no tested build recorded; a `dbt build` of the fact tests
    # every row and records the build its tests checked
    assert tested() == []
    dbt(scoped, *build, **never)
    (passed_build,) = sql(f"select max(build) from {log}")[0]
    assert tested() == [(passed_build,)]
    dbt(scoped, "run", night, "--select", "fct_orders")  # writes its window, tests nothing
    (written, older) = (
        sql(
            f"select min(order_id) from marts.fct_orders where order_id {op} "
            f"(select order_id from {log} where build > ?)",
            passed_build,
        )[0][0]
        for op in ("in", "not in")
    )
    assert written and older
    sql("update marts.fct_orders set status = 'bogus' where order_id = ?", older)
    dbt(scoped, *test, **never)  # the bad older row is not among the rows written since
    compiled = next((scoped / "target" / "compiled").rglob("accepted_values_fct_orders_*.sql"))
    assert "fct_orders__written_keys" in compiled.read_text(encoding="utf-8")
    every_row = dbt(scoped, *test, ok=False, whole_data_tests_weekday=night.isoweekday())
    assert "FAIL 1 accepted_values_fct_orders_status" in every_row, every_row[-3000:]
    sql("update marts.fct_orders set status = 'completed' where order_id = ?", older)
    # a `dbt test` records nothing; a `dbt build` whose tests pass records the build
    dbt(scoped, *test, **never)
    assert tested()[-1] == (passed_build,)
    dbt(scoped, *build, **never)
    (new_build,) = sql(f"select max(build) from {log}")[0]
    assert new_build > passed_build and tested()[-1] == (new_build,)
    # a build that writes a bad row fails its test and records nothing: the next runs
    # check that row again
    kept = scoped / "restricted.kept"
    shutil.copy(scoped / "restricted.duckdb", kept)
    (lines,) = sql(
        "update staging.stg_raw__orders set status = 'bogus', is_cancelled = false "
        "where order_id = ?", written, store="restricted",
    )[0]  # fmt: skip
    assert lines > 0
    failed = dbt(scoped, *build, ok=False, **never)
    assert "FAIL 1 accepted_values_fct_orders_status" in failed, failed[-3000:]
    assert "SKIP" in failed and tested()[-1] == (new_build,), failed[-3000:]
    (failed_build,) = sql(f"select max(build) from {log}")[0]
    assert failed_build > new_build
    night_rows = dbt(scoped, *test, ok=False, **never)
    assert "FAIL 1 accepted_values_fct_orders_status" in night_rows, night_rows[-3000:]
    shutil.move(kept, scoped / "restricted.duckdb")
    dbt(scoped, *build, **never)
    assert tested()[-1] > (failed_build,)
