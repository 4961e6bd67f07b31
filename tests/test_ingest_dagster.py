"""The ingest assets in Dagster: a deployment with only some sources works (absent sources
give empty raw tables, not errors), materialization metadata adds up, a re-run of an
unchanged delivery is skipped, and a bad mapping fails with a clear message."""

import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from pipelines.ingest.assets import build_ingest_assets
from pipelines.ingest.mapping import ENTITIES
from pipelines.lib.partitions import daily_partitions
from pipelines.lib.resources import CrmSettingsResource

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
DAY = "2026-01-06"


@pytest.fixture
def deployment(tmp_path: Path) -> CrmSettingsResource:
    """Only the shop's orders are mapped; one delivery with a clean and a malformed file."""
    mappings = tmp_path / "mappings"
    mappings.mkdir()
    shutil.copy(FIXTURES / "orders_csv.yaml", mappings / "shop.yaml")
    folder = tmp_path / "home" / "landing" / "shop" / DAY
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / "orders_bom_crlf.csv", folder / "a.csv")
    shutil.copy(FIXTURES / "orders_malformed.csv", folder / "b.csv")
    return CrmSettingsResource(
        home=str(tmp_path / "home"),
        mappings_dir=str(mappings),
        landing_dir=str(tmp_path / "home" / "landing"),
        # b.csv is malformed on purpose (7 of its 10 rows): the share check is tested below
        max_quarantine_share=1.0,
    )


def _materialize(crm: CrmSettingsResource, tags: dict[str, str] | None = None):
    assets = build_ingest_assets(daily_partitions("Asia/Shanghai"))
    return dg.materialize(
        assets, resources={"crm": crm}, partition_key=DAY, tags=tags or {}, raise_on_error=False
    )


def _metadata(result: dg.ExecuteInProcessResult, entity: str) -> dict:
    [event] = [
        e
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", entity])
    ]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def test_only_some_sources_mapped_gives_empty_tables_not_errors(deployment):
    result = _materialize(deployment)
    assert result.success
    orders = _metadata(result, "orders")
    assert orders["files"] == 2
    assert orders["rows_read"] == orders["rows_loaded"] + orders["rows_quarantined"]
    assert orders["rows_loaded"] > 0 and orders["rows_quarantined"] > 0
    assert orders["bytes"] == sum(
        p.stat().st_size for p in Path(deployment.landing_dir, "shop", DAY).iterdir()
    )
    for entity in ENTITIES:
        if entity != "orders":
            meta = _metadata(result, entity)
            assert (meta["files"], meta["rows_read"], meta["mappings"]) == (0, 0, "(none)")
    db = Path(deployment.home) / "restricted" / "restricted.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        for entity in ENTITIES:
            count = con.execute(f"select count(*) from raw.{entity}").fetchone()[0]
            assert (count > 0) == (entity == "orders"), entity
        loaded = con.execute("select count(*) from raw.orders").fetchone()[0]
        quarantined = con.execute("select count(*) from raw.quarantine").fetchone()[0]
    assert (loaded, quarantined) == (orders["rows_loaded"], orders["rows_quarantined"])


def test_unchanged_delivery_is_skipped_and_force_reloads_it(deployment):
    first = _materialize(deployment)
    again = _materialize(deployment)
    assert _metadata(again, "orders")["unchanged_partitions_skipped"] == 1
    assert _metadata(again, "orders")["files"] == 0
    forced = _materialize(deployment, {"crm/force": "true"})
    assert _metadata(forced, "orders")["rows_loaded"] == _metadata(first, "orders")["rows_loaded"]
    db = Path(deployment.home) / "restricted" / "restricted.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        loaded = con.execute("select count(*) from raw.orders").fetchone()[0]
    assert loaded == _metadata(first, "orders")["rows_loaded"]  # replaced, not appended


def test_a_broken_mapping_fails_the_run_with_its_file_name(deployment):
    broken = Path(deployment.mappings_dir) / "shop.yaml"
    broken.write_text(broken.read_text().replace("entity: orders", "entity: invoices"))
    result = _materialize(deployment)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert failures  # a mapping folder that does not load stops the ingest, naming the file
    for failure in failures:
        message = failure.step_failure_data.error.message
        assert "shop.yaml" in message and "unknown entity 'invoices'" in message


def test_a_backfill_range_loads_every_date_and_fails_only_the_broken_one(deployment):
    """A single-run backfill over three dates: each mapping loads its dates in one go
    (load_partitions); a date whose file lost a column fails alone, naming the file."""
    landing = Path(deployment.landing_dir) / "shop"
    (landing / "2026-01-07").mkdir()
    shutil.copy(FIXTURES / "orders_bom_crlf.csv", landing / "2026-01-07" / "again.csv")  # dup
    (landing / "2026-01-08").mkdir()
    (landing / "2026-01-08" / "c.csv").write_text(
        "order_no,line,order_time,state,price,ccy\nX1,1,2026-01-05 10:00:00,PAID,1.00,CNY\n"
    )
    assets = build_ingest_assets(daily_partitions("Asia/Shanghai"))
    tags = {
        "dagster/asset_partition_range_start": DAY,
        "dagster/asset_partition_range_end": "2026-01-08",
    }
    result = dg.materialize(assets, resources={"crm": deployment}, tags=tags, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert "1 source partition(s) failed" in message and "shop/2026-01-08/c.csv" in message
    db = Path(deployment.home) / "restricted" / "restricted.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        log = con.execute(
            "select _delivery_date::varchar, status, count(*) from raw.load_log group by all "
            "order by all"
        ).fetchall()
    assert log == [("2026-01-06", "loaded", 2), ("2026-01-07", "duplicate", 1)]
    (landing / "2026-01-08" / "c.csv").write_text(  # re-delivered with its qty column
        "order_no,line,order_time,state,qty,price,ccy\nX1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n"
    )
    again = dg.materialize(assets, resources={"crm": deployment}, tags=tags, raise_on_error=False)
    assert again.success
    events = [
        e.materialization
        for e in again.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(["raw", "orders"])
    ]
    assert sorted(e.partition for e in events) == [DAY, "2026-01-07", "2026-01-08"]
    orders = {k: v.value for k, v in events[0].metadata.items()}
    assert (orders["delivery_dates"], orders["unchanged_partitions_skipped"]) == (3, 2)
    assert (orders["files"], orders["rows_loaded"]) == (1, 1)  # only the fixed date loads


def _with_share(crm: CrmSettingsResource, share: float) -> CrmSettingsResource:
    return CrmSettingsResource(
        home=crm.home,
        mappings_dir=crm.mappings_dir,
        landing_dir=crm.landing_dir,
        max_quarantine_share=share,
    )


def test_a_quarantine_share_above_the_setting_blocks_and_names_the_source(deployment):
    """b.csv quarantines 7 of its 10 rows (test_malformed_csv), a.csv none of its 2: 7 of
    12 rows, 58.3 %."""
    result = _materialize(_with_share(deployment, 0.5))
    assert not result.success
    [check] = [
        e.asset_check_evaluation_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.asset_check_evaluation_data.asset_key == dg.AssetKey(["raw", "orders"])
        and e.asset_check_evaluation_data.check_name == "quarantine_share"
    ]
    assert not check.passed
    assert check.description == (
        "quarantined share above CRM_MAX_QUARANTINE_SHARE=0.5: shop 7 of 12 rows (58.3%), "
        "see raw.quarantine"
    )
    # at 0.6 the same delivery passes
    assert _materialize(_with_share(deployment, 0.6)).success
