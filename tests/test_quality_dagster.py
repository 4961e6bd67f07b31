"""The quality checks as Dagster asset checks: a failing blocking check stops downstream assets."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.lib.duck import connect
from pipelines.lib.resources import CrmSettingsResource
from pipelines.quality.checks import as_of_for, build_quality_checks

SUITE = {
    "name": "tiny_orders",
    "meta": {
        "table": "marts.tiny_orders",
        "asset_key": ["tiny_orders"],
        "sample_columns": ["order_id"],
    },
    "expectations": [
        {
            "type": "expect_column_values_to_be_unique",
            "kwargs": {"column": "order_id"},
            "meta": {"severity": "blocking", "check": "order_id_unique"},
        },
        {
            "type": "expect_column_values_to_not_be_null",
            "kwargs": {"column": "customer_id", "mostly": 0.9},
            "meta": {"severity": "target", "check": "customer_id_completeness"},
        },
    ],
}


def build_defs(tmp_path: Path, order_ids: list[str]) -> tuple[list, CrmSettingsResource, list[str]]:
    suites = tmp_path / "expectations"
    suites.mkdir(exist_ok=True)
    (suites / "tiny_orders.json").write_text(json.dumps(SUITE))
    crm = CrmSettingsResource(
        home=str(tmp_path / "home"),
        mappings_dir=str(tmp_path),
        landing_dir=str(tmp_path / "landing"),
    )
    published: list[str] = []

    @dg.asset(name="tiny_orders")
    def tiny_orders(crm: CrmSettingsResource) -> None:
        with connect(crm.settings.warehouse_db) as con:
            con.execute("create schema if not exists marts")
            con.execute(
                "create or replace table marts.tiny_orders (order_id varchar, customer_id varchar)"
            )
            con.executemany(
                "insert into marts.tiny_orders values (?, ?)",
                [(order_id, None if i == 0 else "C1") for i, order_id in enumerate(order_ids)],
            )

    @dg.asset(deps=[tiny_orders])
    def published_extract() -> None:
        published.append("ran")

    checks = build_quality_checks(expectations_dir=suites)
    return [tiny_orders, published_extract, *checks], crm, published


def check_evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_blocking_failure_stops_downstream(tmp_path: Path) -> None:
    defs, crm, published = build_defs(tmp_path, ["o1", "o2", "o2"])
    result = dg.materialize(defs, resources={"crm": crm}, raise_on_error=False)
    evaluations = check_evaluations(result)
    integrity = evaluations["tiny_orders_integrity"]
    assert integrity.passed is False
    assert integrity.severity == dg.AssetCheckSeverity.ERROR
    rows = integrity.metadata["results"].value
    assert rows[0]["check"] == "order_id_unique"
    assert rows[0]["sample"] == [{"order_id": "o2", "rows": 2}]
    # 1 of 3 customer_id NULL: 2/3 < 0.9 -> a warning, not a block
    targets = evaluations["tiny_orders_targets"]
    assert (targets.passed, targets.severity) == (False, dg.AssetCheckSeverity.WARN)
    assert targets.metadata["results"].value[0]["observed"] == pytest.approx(2 / 3)
    assert published == []  # the downstream asset never ran
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert dg.AssetKey("published_extract") not in materialized


def test_target_miss_does_not_block(tmp_path: Path) -> None:
    defs, crm, published = build_defs(tmp_path, ["o1", "o2", "o3"])
    result = dg.materialize(defs, resources={"crm": crm})
    evaluations = check_evaluations(result)
    assert evaluations["tiny_orders_integrity"].passed is True
    assert evaluations["tiny_orders_targets"].passed is False
    assert published == ["ran"]
    con = duckdb.connect(str(Path(crm.home) / "warehouse" / "warehouse.duckdb"))
    n = con.execute("select count(*) from quality.dq_results").fetchone()[0]
    con.close()
    assert n == 2
    assert (Path(crm.home) / "reports" / "data_docs" / "index.html").exists()


def test_as_of_from_partition_key() -> None:
    class Ctx:
        has_partition_key_range = False
        has_partition_key = True
        partition_key = "2024-05-06"

    assert as_of_for(Ctx(), "Asia/Shanghai") == date(2024, 5, 6)


# ------------------------------------------------- several suites, as few steps as the graph allows
def _suite(name: str, table: str, key: list[str], entities: list[str] | None = None) -> dict:
    """A suite on `table` (column `id`): ids unique (blocking), ids present (target)."""
    meta: dict = {"table": table, "asset_key": key, "sample_columns": ["id"]}
    if entities:
        meta["entities"] = entities
    return {
        "name": name,
        "meta": meta,
        "expectations": [
            {
                "type": "expect_column_values_to_be_unique",
                "kwargs": {"column": "id"},
                "meta": {"severity": "blocking", "check": "id_unique"},
            },
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "id"},
                "meta": {"severity": "target", "check": "id_present"},
            },
        ],
    }


DEMO_MAPPINGS = Path(__file__).resolve().parents[1] / "pipelines" / "ingest" / "mappings" / "demo"


def staged_defs(
    tmp_path: Path, raw_orders: list[str], *, orders_only: bool = False
) -> tuple[list, list, CrmSettingsResource, list[str]]:
    """raw_orders and raw_tickets (two steps of group `ingest`) -> mart (one step, built from
    both) -> published; suites on both raw tables and on the mart. `orders_only`: the
    deployment maps orders only, so the suite of the tickets (entity service_events) is
    skipped."""
    suites = tmp_path / "expectations"
    suites.mkdir(exist_ok=True)
    for suite in (
        _suite("raw_orders", "raw.orders", ["raw", "orders"], ["orders"]),
        _suite("raw_tickets", "raw.tickets", ["raw", "tickets"], ["service_events"]),
        _suite("mart", "marts.mart", ["mart"]),
    ):
        (suites / f"{suite['name']}.json").write_text(json.dumps(suite))
    mappings = tmp_path / "mappings"
    mappings.mkdir(exist_ok=True)
    shutil.copy(DEMO_MAPPINGS / "shop_orders.yaml", mappings)
    if not orders_only:
        shutil.copy(DEMO_MAPPINGS / "helpdesk_events.yaml", mappings)
    crm = CrmSettingsResource(
        home=str(tmp_path / "home"), mappings_dir=str(mappings), landing_dir=str(tmp_path / "l")
    )
    published: list[str] = []

    def write(crm: CrmSettingsResource, table: str, ids: list[str]) -> None:
        with connect(crm.settings.warehouse_db) as con:
            con.execute(f"create schema if not exists {table.split('.')[0]}")
            con.execute(f"create or replace table {table} (id varchar)")
            con.executemany(f"insert into {table} values (?)", [(i,) for i in ids])

    @dg.asset(key=["raw", "orders"], group_name="ingest")
    def orders(crm: CrmSettingsResource) -> None:
        write(crm, "raw.orders", raw_orders)

    @dg.asset(key=["raw", "tickets"], group_name="ingest")
    def tickets(crm: CrmSettingsResource) -> None:
        write(crm, "raw.tickets", ["t1", "t2"])

    @dg.asset(deps=[orders, tickets])
    def mart(crm: CrmSettingsResource) -> None:
        write(crm, "marts.mart", ["m1", "m2"])

    @dg.asset(deps=[mart])
    def published_extract() -> None:
        published.append("ran")

    assets = [orders, tickets, mart, published_extract]
    checks = build_quality_checks(expectations_dir=suites, assets=assets)
    return assets, checks, crm, published


def _dq_suites(crm: CrmSettingsResource) -> dict[str, int]:
    with duckdb.connect(str(Path(crm.home) / "warehouse" / "warehouse.duckdb")) as con:
        return dict(
            con.execute("select suite, count(*) from quality.dq_results group by suite").fetchall()
        )


def test_suites_run_in_as_few_steps_as_the_graph_allows(tmp_path: Path) -> None:
    """The two raw suites share a step (their assets are independent); the mart's suite
    needs a step of its own: the mart is built from the raw tables, so it waits for their
    blocking checks, and its own checks wait for it. Check keys stay one pair per suite."""
    assets, checks, crm, published = staged_defs(tmp_path, ["o1", "o2"])
    assert [c.node_def.name for c in checks] == ["quality_ingest", "quality_mart"]
    keys = {(k.asset_key.to_user_string(), k.name) for c in checks for k in c.check_keys}
    assert keys == {
        ("raw/orders", "raw_orders_integrity"),
        ("raw/orders", "raw_orders_targets"),
        ("raw/tickets", "raw_tickets_integrity"),
        ("raw/tickets", "raw_tickets_targets"),
        ("mart", "mart_integrity"),
        ("mart", "mart_targets"),
    }
    blocking = {k.name for c in checks for s in c.check_specs if s.blocking for k in [s.key]}
    assert blocking == {"raw_orders_integrity", "raw_tickets_integrity", "mart_integrity"}
    result = dg.materialize([*assets, *checks], resources={"crm": crm})
    assert {e.check_name: e.passed for e in result.get_asset_check_evaluations()} == {
        "raw_orders_integrity": True,
        "raw_orders_targets": True,
        "raw_tickets_integrity": True,
        "raw_tickets_targets": True,
        "mart_integrity": True,
        "mart_targets": True,
    }
    assert published == ["ran"]
    # two suites in one step: one row per expectation each, as before
    assert _dq_suites(crm) == {"raw_orders": 2, "raw_tickets": 2, "mart": 2}


def test_a_failing_suite_in_a_shared_step_blocks_downstream_and_is_named(tmp_path: Path) -> None:
    """raw_orders fails (o2 twice): the step it shares with raw_tickets fails, the mart built
    from both and the extract never run; every suite of the step is still validated and
    recorded, and the failure names the suite's check and the offending key."""
    assets, checks, crm, published = staged_defs(tmp_path, ["o1", "o2", "o2"])
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [*assets, *checks], resources={"crm": crm}, instance=instance, raise_on_error=False
    )
    assert not result.success
    evaluations = check_evaluations(result)
    assert evaluations["raw_orders_integrity"].passed is False
    assert evaluations["raw_orders_integrity"].metadata["results"].value[0]["sample"] == [
        {"id": "o2", "rows": 2}
    ]
    assert evaluations["raw_tickets_integrity"].passed is True
    assert "mart_integrity" not in evaluations  # the mart never ran, nor its checks
    assert published == []
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {dg.AssetKey(["raw", "orders"]), dg.AssetKey(["raw", "tickets"])}
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["quality_ingest"]
    assert "raw/orders: raw_orders_integrity" in failures[0].step_failure_data.error.message
    errors = [r.user_message for r in instance.all_logs(result.run_id) if r.level >= 40]
    assert any(
        m.startswith("raw_orders: id_unique [blocking]") and '"id": "o2"' in m for m in errors
    ), errors
    assert _dq_suites(crm) == {"raw_orders": 2, "raw_tickets": 2}


def test_an_orders_only_deployment_skips_the_other_suites_and_publishes(tmp_path: Path) -> None:
    """No help-desk mapping: the tickets' suite is skipped inside the shared step (recorded
    as skipped), the orders' suite runs, and the extract is published."""
    assets, checks, crm, published = staged_defs(tmp_path, ["o1", "o2"], orders_only=True)
    result = dg.materialize([*assets, *checks], resources={"crm": crm})
    evaluations = check_evaluations(result)
    tickets = evaluations["raw_tickets_integrity"]
    assert tickets.passed is True
    assert tickets.description == "skipped: no source mapping for service_events in this deployment"
    assert evaluations["raw_orders_integrity"].description == ("all 1 blocking expectations passed")
    assert published == ["ran"]
    with duckdb.connect(str(Path(crm.home) / "warehouse" / "warehouse.duckdb")) as con:
        skipped = con.execute(
            "select suite, count(*) from quality.dq_results "
            "where details->>'skipped' is not null group by suite"
        ).fetchall()
    assert skipped == [("raw_tickets", 2)]


def test_a_run_selecting_some_checks_validates_only_their_suites(tmp_path: Path) -> None:
    """A job of raw/orders alone: the shared step runs only raw_orders' checks (the suite
    of raw/tickets, in the same step, is neither validated nor reported)."""
    assets, checks, crm, _ = staged_defs(tmp_path, ["o1", "o2"])
    result = dg.materialize(
        [*assets, *checks], resources={"crm": crm}, selection=[dg.AssetKey(["raw", "orders"])]
    )
    assert set(check_evaluations(result)) == {"raw_orders_integrity", "raw_orders_targets"}
    assert _dq_suites(crm) == {"raw_orders": 2}
