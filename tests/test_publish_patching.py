"""publish() by difference: the facts of a copy of the current release are patched, only
the keys the builds wrote are compared, and the write phase's memory."""

from __future__ import annotations

import threading
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from support.fixture_marts import build_fixture_warehouse
from support.published_marts import MARTS
from support.published_marts import digest as _digest
from support.published_marts import sorted_table as _sorted
from support.published_marts import warehouse_table as _warehouse_table

from pipelines.publish import layout, patching, releases, tableau
from pipelines.publish.layout import PublishError
from pipelines.publish.releases import open_serving, read_manifest
from pipelines.publish.serving import publish

# --------------------------------------------------------------------------------------------
# By difference: the facts of a copy of the current release are patched


def _change_facts(path: Path) -> dict[str, int]:
    """Update, delete and add fact rows in the warehouse; return the keys changed per table
    (counted here, from the statements' own row counts)."""
    con = duckdb.connect(str(path))
    try:
        changed = {}
        (updated,) = con.execute(
            "update marts.fct_orders set net_revenue = net_revenue + 1 "
            "where order_id in (select order_id from marts.fct_orders order by order_id limit 7)"
        ).fetchone()
        (deleted,) = con.execute(
            "delete from marts.fct_orders where order_id in "
            "(select order_id from marts.fct_orders order by order_id desc limit 3)"
        ).fetchone()
        (added,) = con.execute(
            "insert into marts.fct_orders select 'NEW-' || order_id, customer_id, order_date, "
            "ordered_at, channel, status, items, net_revenue from marts.fct_orders "
            "order by order_id limit 5"
        ).fetchone()
        changed["fct_orders"] = updated + deleted + added
        (updated,) = con.execute(
            "update marts.fct_service_tickets set csat_score = null where ticket_id in "
            "(select ticket_id from marts.fct_service_tickets where csat_score is not null "
            "order by ticket_id limit 4)"
        ).fetchone()
        changed["fct_service_tickets"] = updated
        changed["fct_social_interactions"] = 0
        con.execute("update marts.dim_customers set r_score = r_score")
        return changed
    finally:
        con.close()


def _tables_equal_the_warehouse(serving_dir: Path, warehouse_path: Path, names) -> None:
    for name in names:
        expected = _warehouse_table(warehouse_path, name)
        con = open_serving(serving_dir)
        try:
            in_duckdb = con.sql(f"select * from {name} order by all").to_arrow_table()
        finally:
            con.close()
        assert in_duckdb.equals(expected), name
        extract = tableau.read_hyper(serving_dir / "tableau" / f"{name}.hyper")
        assert len(extract) == expected.num_rows, name
        assert _sorted(pa.Table.from_pandas(extract, preserve_index=False)).to_pylist() == (
            expected.to_pylist()
        ), name
        if (serving_dir / "parquet" / f"{name}.parquet").exists():
            parquet = _sorted(pq.read_table(serving_dir / "parquet" / f"{name}.parquet"))
            assert parquet.equals(expected), name


@pytest.mark.parametrize("formats", [layout.FORMATS, ("duckdb", "hyper")])
def test_a_second_publication_patches_the_changed_fact_rows(tmp_path, formats):
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=60, seed=5)
    serving_dir = tmp_path / "serving"
    first = publish(info.path, serving_dir, formats=formats)
    assert first.patched == {}  # nothing to start from
    changed = _change_facts(info.path)
    second = publish(info.path, serving_dir, formats=formats)

    assert second.patched == changed
    assert changed["fct_orders"] == 15
    manifest = read_manifest(serving_dir)
    assert manifest["tables"]["fct_orders"]["written"] == "patched"
    assert manifest["tables"]["fct_orders"]["patched_rows_since_whole"] == 15
    assert manifest["tables"]["dim_customers"]["written"] == "whole"
    assert manifest["tables"]["rpt_kpi_review"]["written"] == "whole"
    _tables_equal_the_warehouse(serving_dir, info.path, sorted(MARTS - {"kpi_definitions"}))
    assert not list(serving_dir.rglob(".*.parquet"))  # the deltas are gone
    if "parquet" not in formats:
        assert not list(serving_dir.rglob("*.parquet"))
    # the bookkeeping tables describe the new publication only
    con = open_serving(serving_dir)
    try:
        assert con.execute("select publication_id from _publication").fetchall() == [
            (second.publication_id,)
        ]
        counts = dict(
            con.execute("select table_name, row_count from _publication_tables").fetchall()
        )
    finally:
        con.close()
    assert counts == second.row_counts

    # a third publication with no change patches nothing and keeps the count since whole
    third = publish(info.path, serving_dir, formats=formats)
    assert third.patched == dict.fromkeys(changed, 0)
    assert read_manifest(serving_dir)["tables"]["fct_orders"]["patched_rows_since_whole"] == 15


def test_an_extract_patched_to_the_wrong_row_count_publishes_nothing(tmp_path, monkeypatch):
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=60, seed=5)
    serving_dir = tmp_path / "serving"
    publish(info.path, serving_dir)
    files_before = _digest(serving_dir)
    manifest_before = read_manifest(serving_dir)
    _change_facts(info.path)
    real_patch = tableau.patch_hyper
    monkeypatch.setattr(tableau, "patch_hyper", lambda *args: real_patch(*args) + 1)

    with pytest.raises(PublishError, match=r"rows after the patch.*\.publish-whole"):
        publish(info.path, serving_dir)

    assert _digest(serving_dir) == files_before
    assert read_manifest(serving_dir) == manifest_before
    assert [p.name for p in (serving_dir / ".releases").iterdir() if p.is_dir()] == [
        manifest_before["publication_id"]
    ]


def test_a_failure_beside_the_hyper_worker_stops_it_and_publishes_nothing(tmp_path, monkeypatch):
    """Parquet is written while the Hyper worker patches and writes extracts: an error on the
    DuckDB side waits for the worker's running task, drops the others and removes the release."""
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=60, seed=5)
    serving_dir = tmp_path / "serving"
    publish(info.path, serving_dir)
    files_before = _digest(serving_dir)
    _change_facts(info.path)
    started: list[str] = []
    failed = threading.Event()
    real_patch = tableau.patch_hyper

    def slow_patch_hyper(path, *args):
        started.append(path.name)
        failed.wait(timeout=30)  # still running when the Parquet side fails
        return real_patch(path, *args)

    monkeypatch.setattr(tableau, "patch_hyper", slow_patch_hyper)
    real_connect = duckdb.connect

    class FailingParquet:
        def __init__(self, con):
            self._con = con

        def execute(self, sql, *args):
            if sql.startswith("copy") and "fct_orders.parquet" in sql:
                failed.set()
                raise OSError("disk full (simulated)")
            return self._con.execute(sql, *args)

        def __getattr__(self, name):
            return getattr(self._con, name)

    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: FailingParquet(real_connect(*a, **k)))
    with pytest.raises(OSError, match="simulated"):
        publish(info.path, serving_dir)

    assert len(started) == 1  # the worker was patching an extract, and stopped after it
    assert _digest(serving_dir) == files_before
    assert len([p for p in (serving_dir / ".releases").iterdir() if p.is_dir()]) == 1


def test_whole_publication_when_columns_change_too_many_rows_change_or_requested(tmp_path):
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=60, seed=6)
    serving_dir = tmp_path / "serving"
    publish(info.path, serving_dir)
    con = duckdb.connect(str(info.path))
    try:
        con.execute("alter table marts.fct_orders add column coupon varchar")
        (orders,) = con.execute("select count(*) from marts.fct_service_tickets").fetchone()
        # more than PATCH_LIMIT of the tickets change
        con.execute(
            "update marts.fct_service_tickets set priority = 'P9' where ticket_id in (select "
            f"ticket_id from marts.fct_service_tickets limit {int(orders * 0.2)})"
        )
    finally:
        con.close()
    result = publish(info.path, serving_dir)
    assert set(result.patched) == {"fct_social_interactions"}
    written = {n: t["written"] for n, t in read_manifest(serving_dir)["tables"].items()}
    assert written["fct_orders"] == written["fct_service_tickets"] == "whole"
    _tables_equal_the_warehouse(serving_dir, info.path, ["fct_orders", "fct_service_tickets"])

    releases.request_whole_publication(serving_dir, "test")
    result = publish(info.path, serving_dir)
    assert result.patched == {}
    assert not (serving_dir / layout.WHOLE_MARKER).exists()
    assert publish(info.path, serving_dir, by_difference=False).patched == {}
    assert set(publish(info.path, serving_dir).patched) == set(layout.ROW_KEYS) - {
        "fct_order_lines"  # not in the fixture warehouse
    }


def test_a_patched_serving_db_does_not_grow_night_after_night(tmp_path):
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=200, seed=7)
    serving_dir = tmp_path / "serving"
    sizes = []
    for night in range(6):
        con = duckdb.connect(str(info.path))
        try:
            con.execute(
                f"update marts.fct_social_interactions set direction = 'inbound{night}' "
                f"where interaction_id in (select interaction_id from marts.fct_social_interactions "
                f"order by interaction_id limit 5 offset {night * 5})"
            )
            con.execute("update marts.dim_customers set r_score = r_score")
        finally:
            con.close()
        result = publish(info.path, serving_dir, formats=("duckdb",))
        sizes.append((serving_dir / "serving.duckdb").stat().st_size)
        if night:
            assert result.patched["fct_social_interactions"] == 5
    # the tables written whole each night (dim_customers, ...) reuse the blocks they freed
    assert sizes[-1] <= sizes[1] * 1.1, sizes


def test_a_whole_request_made_during_a_publication_is_kept_for_the_next(tmp_path, monkeypatch):
    """An erasure while a whole publication writes its files: the publication read the
    warehouse before the erasure, so the request the erasure made must survive it."""
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=30)
    serving_dir = tmp_path / "serving"
    publish(info.path, serving_dir, formats=("duckdb", "hyper"))
    releases.request_whole_publication(serving_dir, "erasure request A")
    write_hyper = tableau.write_hyper

    def erasure_meanwhile(parquet, path):
        releases.request_whole_publication(serving_dir, "erasure request B")
        write_hyper(parquet, path)

    monkeypatch.setattr(tableau, "write_hyper", erasure_meanwhile)
    assert publish(info.path, serving_dir, formats=("duckdb", "hyper")).patched == {}
    assert "erasure request B" in (serving_dir / layout.WHOLE_MARKER).read_text()
    monkeypatch.setattr(tableau, "write_hyper", write_hyper)
    assert publish(info.path, serving_dir, formats=("duckdb", "hyper")).patched == {}
    assert not (serving_dir / layout.WHOLE_MARKER).exists()


def test_a_renamed_key_column_is_written_whole_every_night(tmp_path):
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=30)
    serving_dir = tmp_path / "serving"
    publish(info.path, serving_dir, formats=("duckdb",))
    con = duckdb.connect(str(info.path))
    try:
        con.execute("alter table marts.fct_orders rename column order_id to order_ref")
    finally:
        con.close()
    for _ in range(2):  # the second starts from a release whose fct_orders has no order_id
        result = publish(info.path, serving_dir, formats=("duckdb",))
        assert "fct_orders" not in result.patched
        assert "fct_service_tickets" in result.patched
    con = open_serving(serving_dir)
    try:
        assert (
            con.execute("select count(*) from fct_orders").fetchone()[0]
            == (info.row_counts["fct_orders"])
        )
    finally:
        con.close()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("4GB", 4 * 10**9), ("3.7 GiB", int(3.7 * 2**30)), ("512MB", 512 * 10**6),
     ("953.6 MiB", int(953.6 * 2**20)), ("100KiB", 100 * 2**10)],
)  # fmt: skip
def test_duckdb_memory_sizes(text, expected):
    assert patching.size_in_bytes(text) == expected


@pytest.mark.parametrize(("configured", "after"), [("4GB", "1.8 GiB"), ("1GB", "953.6 MiB")])
def test_the_write_phase_lowers_duckdbs_memory_limit_never_raises_it(configured, after):
    con = duckdb.connect(config={"memory_limit": configured})
    patching.lower_memory_limit(con, layout.WRITE_MEMORY_LIMIT)
    assert con.execute("select current_setting('memory_limit')").fetchone() == (after,)


# --------------------------------------------------------------------------------------------
# Only the keys the builds wrote (main.<fact>__written_keys, dbt macro keep_written_keys)


def _log_builds(path: Path, builds: list[tuple[int, bool, list[str]]], *, new: bool = False):
    """Append builds (build, whole, order ids written) to fct_orders' written-keys log."""
    con = duckdb.connect(str(path))
    try:
        if new:
            con.execute(
                "create or replace table main.fct_orders__written_keys "
                "(build bigint, whole boolean, order_id varchar)"
            )
        for build, whole, keys in builds:
            if whole:
                con.execute(
                    "insert into main.fct_orders__written_keys values (?, true, null)", [build]
                )
            for key in keys:
                con.execute(
                    "insert into main.fct_orders__written_keys values (?, false, ?)", [build, key]
                )
    finally:
        con.close()


def _revenue(path: Path, keys: list[str], *, serving_dir: Path | None = None) -> list[float]:
    con = open_serving(serving_dir) if serving_dir else duckdb.connect(str(path), read_only=True)
    try:
        table = "fct_orders" if serving_dir else "marts.fct_orders"
        return [
            con.execute(f"select net_revenue from {table} where order_id = ?", [k]).fetchone()[0]
            for k in keys
        ]
    finally:
        con.close()


def test_only_the_keys_the_builds_wrote_are_compared(tmp_path):
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=60, seed=8)
    serving_dir = tmp_path / "serving"
    _log_builds(info.path, [(100, True, [])], new=True)  # a first build
    publish(info.path, serving_dir)
    tables = read_manifest(serving_dir)["tables"]
    assert tables["fct_orders"]["written_keys_through"] == 100
    assert "written_keys_through" not in tables["fct_service_tickets"]  # no log kept

    con = duckdb.connect(str(info.path))
    try:
        keys = [k for (k,) in con.execute(
            "select order_id from marts.fct_orders order by order_id limit 9").fetchall()]  # fmt: skip
        con.execute(
            "update marts.fct_orders set net_revenue = net_revenue + 1 where order_id in "
            f"({', '.join('?' * 7)})",
            keys[:7],
        )
    finally:
        con.close()
    # a build wrote 5 of the 7 changed orders and an unchanged one (keys[8]); the other two
    # changed without a build (which the warehouse never does): not compared
    _log_builds(info.path, [(200, False, [*keys[:5], keys[8]])])
    result = publish(info.path, serving_dir)
    assert result.patched["fct_orders"] == 5
    state = read_manifest(serving_dir)["tables"]["fct_orders"]
    assert (state["compared"], state["written_keys_through"]) == ("written keys", 200)
    assert read_manifest(serving_dir)["tables"]["fct_service_tickets"]["compared"] == "every row"
    assert _revenue(info.path, keys[:7], serving_dir=serving_dir) == (
        _revenue(info.path, keys[:5]) + [r - 1 for r in _revenue(info.path, keys[5:7])]
    )

    # a whole build after the release's: every row is compared, the two are published
    _log_builds(info.path, [(300, True, [])])
    result = publish(info.path, serving_dir)
    assert result.patched["fct_orders"] == 2
    state = read_manifest(serving_dir)["tables"]["fct_orders"]
    assert (state["compared"], state["written_keys_through"]) == ("every row", 300)
    _tables_equal_the_warehouse(serving_dir, info.path, ["fct_orders"])

    # nothing written since: nothing compared, nothing patched
    assert publish(info.path, serving_dir).patched["fct_orders"] == 0
    assert read_manifest(serving_dir)["tables"]["fct_orders"]["compared"] == "written keys"

    # a log that does not hold the release's build (a warehouse older than the release, a
    # log pruned past it): every row
    con = duckdb.connect(str(info.path))
    try:
        con.execute("update marts.fct_orders set net_revenue = net_revenue + 1 where order_id = ?",
                    [keys[6]])  # fmt: skip
    finally:
        con.close()
    _log_builds(info.path, [(250, True, [])], new=True)
    result = publish(info.path, serving_dir)
    assert result.patched["fct_orders"] == 1
    assert read_manifest(serving_dir)["tables"]["fct_orders"]["compared"] == "every row"
    _tables_equal_the_warehouse(serving_dir, info.path, ["fct_orders"])

    # the log gone: every row, and no build recorded
    con = duckdb.connect(str(info.path))
    try:
        con.execute("drop table main.fct_orders__written_keys")
    finally:
        con.close()
    publish(info.path, serving_dir)
    state = read_manifest(serving_dir)["tables"]["fct_orders"]
    assert state["compared"] == "every row" and "written_keys_through" not in state
