"""The quality checks as Dagster asset checks: a failing blocking check stops downstream assets."""

from __future__ import annotations

import json
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
