"""Re-runs, duplicate deliveries, changed deliveries and schema drift."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.engine import load_partition, load_partitions, partition_is_unchanged
from pipelines.ingest.mapping import MappingError, SchemaDriftError, load_mapping

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
MAPPING = FIXTURES / "orders_csv.yaml"
HEADER = "order_no,line,order_time,state,qty,price,ccy\n"


def snapshot(con) -> dict[str, list[tuple]]:
    """Full contents of the raw tables that loading touches (volatile columns dropped)."""
    return {
        "orders": con.execute(
            "SELECT * EXCLUDE (_loaded_at) FROM raw.orders ORDER BY ALL"
        ).fetchall(),
        "quarantine": con.execute(
            "SELECT * EXCLUDE (_loaded_at) FROM raw.quarantine ORDER BY ALL"
        ).fetchall(),
        "load_log": con.execute(
            "SELECT * EXCLUDE (_loaded_at, seconds) FROM raw.load_log ORDER BY ALL"
        ).fetchall(),
    }


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


@pytest.fixture
def mapping():
    return load_mapping(MAPPING)


def put(landing: Path, day: str, name: str, text: str | None = None, fixture: str | None = None):
    folder = landing / "shop" / day
    folder.mkdir(parents=True, exist_ok=True)
    if fixture is not None:
        shutil.copy(FIXTURES / fixture, folder / name)
    else:
        (folder / name).write_text(text or "", encoding="utf-8")


def test_loading_a_partition_twice_gives_identical_tables(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "a.csv", fixture="orders_malformed.csv")
    put(tmp_path, "2026-01-06", "b.csv", fixture="orders_bad_utf8.csv")
    put(tmp_path, "2026-01-07", "c.csv", fixture="orders_bom_crlf.csv")
    load_partition(con, mapping, tmp_path, "2026-01-06", loaded_at=datetime(2026, 1, 7, 1))
    load_partition(con, mapping, tmp_path, "2026-01-07", loaded_at=datetime(2026, 1, 8, 1))
    first = snapshot(con)
    assert len(first["orders"]) == 3 + 2 + 2
    second_run = load_partition(
        con, mapping, tmp_path, "2026-01-06", loaded_at=datetime(2026, 2, 1)
    )
    assert snapshot(con) == first
    assert [f.status for f in second_run.files] == ["loaded", "loaded"]
    # the other partition was not touched, not even its load time
    assert con.execute(
        "SELECT DISTINCT _loaded_at FROM raw.orders WHERE _delivery_date = '2026-01-07'"
    ).fetchall() == [(datetime(2026, 1, 8, 1),)]


def test_same_bytes_in_two_partitions_are_loaded_once(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "orders.csv", fixture="orders_bom_crlf.csv")
    put(tmp_path, "2026-01-07", "orders_resent.csv", fixture="orders_bom_crlf.csv")
    put(tmp_path, "2026-01-07", "orders_again.csv", fixture="orders_bom_crlf.csv")
    load_partition(con, mapping, tmp_path, "2026-01-06")
    result = load_partition(con, mapping, tmp_path, "2026-01-07")
    assert [(Path(f.file).name, f.status, f.duplicate_of) for f in result.files] == [
        ("orders_again.csv", "duplicate", "shop/2026-01-06/orders.csv"),
        ("orders_resent.csv", "duplicate", "shop/2026-01-06/orders.csv"),
    ]
    assert [(f.rows_read, f.rows_loaded) for f in result.files] == [(0, 0), (0, 0)]
    assert con.execute("SELECT count(*) FROM raw.orders").fetchall() == [(2,)]
    log = con.execute(
        "SELECT _source_file, status FROM raw.load_log ORDER BY _delivery_date, _source_file"
    ).fetchall()
    assert log == [
        ("shop/2026-01-06/orders.csv", "loaded"),
        ("shop/2026-01-07/orders_again.csv", "duplicate"),
        ("shop/2026-01-07/orders_resent.csv", "duplicate"),
    ]


def test_same_bytes_twice_in_one_partition(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "a.csv", fixture="orders_bom_crlf.csv")
    put(tmp_path, "2026-01-06", "b.csv", fixture="orders_bom_crlf.csv")
    result = load_partition(con, mapping, tmp_path, "2026-01-06")
    assert [f.status for f in result.files] == ["loaded", "duplicate"]
    assert con.execute("SELECT count(*) FROM raw.orders").fetchall() == [(2,)]
    # and re-running it keeps it that way
    load_partition(con, mapping, tmp_path, "2026-01-06")
    assert con.execute("SELECT count(*) FROM raw.orders").fetchall() == [(2,)]


def test_changed_partition_is_reloaded_with_new_content(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "o.csv", HEADER + "X1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n"
        "X2,1,2026-01-05 10:00:00,PAID,bad,1.00,CNY\n")  # fmt: skip
    put(tmp_path, "2026-01-06", "gone.csv", HEADER + "Y1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    load_partition(con, mapping, tmp_path, "2026-01-06")
    assert partition_is_unchanged(con, mapping, tmp_path, "2026-01-06")
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchall() == [(1,)]
    (tmp_path / "shop" / "2026-01-06" / "gone.csv").unlink()
    put(tmp_path, "2026-01-06", "o.csv", HEADER + "X1,1,2026-01-05 10:00:00,PAID,7,1.00,CNY\n")
    assert not partition_is_unchanged(con, mapping, tmp_path, "2026-01-06")
    load_partition(con, mapping, tmp_path, "2026-01-06")
    rows = con.execute("SELECT order_id, quantity FROM raw.orders").fetchall()
    assert [(r[0], int(r[1])) for r in rows] == [("X1", 7)]
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchall() == [(0,)]
    assert con.execute("SELECT _source_file FROM raw.load_log").fetchall() == [
        ("shop/2026-01-06/o.csv",)
    ]


def test_extra_source_column_is_ignored_with_a_warning(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "o.csv",
        "order_no,line,order_time,state,qty,price,ccy,coupon\n"
        "E1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY,SPRING\n")  # fmt: skip
    result = load_partition(con, mapping, tmp_path, "2026-01-06")
    assert result.files[0].warnings == ["extra column(s) ignored: coupon"]
    assert result.warnings == ["shop/2026-01-06/o.csv: extra column(s) ignored: coupon"]
    assert con.execute("SELECT warnings FROM raw.load_log").fetchall() == [
        ("extra column(s) ignored: coupon",)
    ]
    assert con.execute("SELECT order_id FROM raw.orders").fetchall() == [("E1",)]


def test_missing_source_column_fails_the_partition_and_changes_nothing(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "a.csv", HEADER + "K1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    load_partition(con, mapping, tmp_path, "2026-01-06")
    before = snapshot(con)
    # a re-delivery whose files both lost their qty column: no file is readable
    put(tmp_path, "2026-01-06", "a.csv",
        "order_no,line,order_time,state,price,ccy\nK2,1,2026-01-05 10:00:00,PAID,1.00,CNY\n")  # fmt: skip
    put(tmp_path, "2026-01-06", "b.csv",
        "order_no,line,order_time,state,price,ccy\nK3,1,2026-01-05 10:00:00,PAID,1.00,CNY\n")  # fmt: skip
    with pytest.raises(SchemaDriftError) as exc:
        load_partition(con, mapping, tmp_path, "2026-01-06")
    message = str(exc.value)
    assert str(MAPPING) in message
    assert "shop/2026-01-06/b.csv" in message
    assert "'qty'" in message and "quantity" in message
    assert snapshot(con) == before


def test_expression_that_does_not_fit_the_file_names_the_field(con, tmp_path):
    put(tmp_path, "2026-01-06", "a.csv", HEADER + "K1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    text = MAPPING.read_text(encoding="utf-8").replace(
        "  unit_price: price", "  unit_price: {expr: \"price + strftime(order_time, '%Y')\"}"
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(MappingError) as exc:
        load_partition(con, load_mapping(path), tmp_path, "2026-01-06")
    assert "fields.unit_price" in str(exc.value) and str(path) in str(exc.value)
    assert con.execute("SELECT count(*) FROM raw.load_log").fetchall() == [(0,)]


def test_partition_without_files_clears_what_it_loaded(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "a.csv", HEADER + "K1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    load_partition(con, mapping, tmp_path, "2026-01-06")
    (tmp_path / "shop" / "2026-01-06" / "a.csv").unlink()
    result = load_partition(con, mapping, tmp_path, "2026-01-06")
    assert result.files == []
    assert con.execute("SELECT count(*) FROM raw.orders").fetchall() == [(0,)]
    assert con.execute("SELECT count(*) FROM raw.load_log").fetchall() == [(0,)]


# --------------------------------------------------------------------------- ranges
RANGE = ["2026-01-06", "2026-01-07", "2026-01-08", "2026-01-09"]


def deliver_range(landing: Path) -> None:
    put(landing, "2026-01-06", "a.csv", fixture="orders_malformed.csv")
    put(landing, "2026-01-06", "b.csv", fixture="orders_bom_crlf.csv")
    put(landing, "2026-01-07", "b_again.csv", fixture="orders_bom_crlf.csv")  # = 01-06/b.csv
    put(landing, "2026-01-07", "c.csv", fixture="orders_bad_utf8.csv")
    put(landing, "2026-01-08", "d.csv", HEADER + "D1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    put(landing, "2026-01-08", "e.csv", fixture="orders_malformed.csv")  # = 01-06/a.csv
    (landing / "shop" / "2026-01-09").mkdir(parents=True)  # a delivery date without files


def file_results(results) -> list[tuple]:
    return [
        (r.delivery_date, f.file, f.sha256, f.bytes, f.rows_read, f.rows_loaded,
         f.rows_quarantined, f.status, f.duplicate_of, f.warnings)
        for r in results
        for f in r.files
    ]  # fmt: skip


@pytest.mark.parametrize("batch_bytes", [None, 1], ids=["one batch", "batch per partition"])
def test_a_range_loads_like_its_partitions_one_after_the_other(mapping, tmp_path, batch_bytes):
    deliver_range(tmp_path)
    at = datetime(2026, 1, 10, 1)
    one, two = duckdb.connect(), duckdb.connect()
    # something loaded before: 01-08 alone, so its e.csv is the original of 01-06/a.csv's
    # bytes until 01-06 is loaded again, which makes a.csv the duplicate (sequential rule)
    load_partition(one, mapping, tmp_path, "2026-01-08", loaded_at=at)
    load_partition(two, mapping, tmp_path, "2026-01-08", loaded_at=at)
    singles = [load_partition(one, mapping, tmp_path, d, loaded_at=at) for d in RANGE]
    options = {"batch_bytes": batch_bytes} if batch_bytes else {}
    loaded = load_partitions(two, mapping, tmp_path, RANGE, loaded_at=at, **options)
    assert loaded.failures == {}
    assert file_results(loaded.partitions) == file_results(singles)
    assert [r.delivery_date for r in loaded.partitions] == [r.delivery_date for r in singles]
    assert snapshot(two) == snapshot(one)
    statuses = {(f.file, f.status, f.duplicate_of) for r in loaded.partitions for f in r.files}
    assert ("shop/2026-01-06/a.csv", "duplicate", "shop/2026-01-08/e.csv") in statuses
    assert ("shop/2026-01-07/b_again.csv", "duplicate", "shop/2026-01-06/b.csv") in statuses
    # the same range again: identical tables
    load_partitions(two, mapping, tmp_path, RANGE, loaded_at=at, **options)
    assert snapshot(two) == snapshot(one)


def test_a_failing_partition_of_a_range_is_left_as_it_was(con, mapping, tmp_path):
    put(tmp_path, "2026-01-06", "a.csv", HEADER + "K1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    put(tmp_path, "2026-01-07", "a.csv", HEADER + "L1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    load_partitions(con, mapping, tmp_path, RANGE[:2])
    before = snapshot(con)
    # re-deliveries: 01-06 changed, 01-07's file lost its qty column, 01-08 is new
    put(tmp_path, "2026-01-06", "a.csv", HEADER + "K2,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    (tmp_path / "shop" / "2026-01-07" / "a.csv").unlink()
    put(tmp_path, "2026-01-07", "b.csv",
        "order_no,line,order_time,state,price,ccy\nL2,1,2026-01-05 10:00:00,PAID,1.00,CNY\n")  # fmt: skip
    put(tmp_path, "2026-01-08", "a.csv", HEADER + "M1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    loaded = load_partitions(con, mapping, tmp_path, RANGE[:3])
    assert [str(d) for d in loaded.failures] == ["2026-01-07"]
    error = loaded.failures[next(iter(loaded.failures))]
    assert isinstance(error, SchemaDriftError)
    assert str(MAPPING) in str(error) and "shop/2026-01-07/b.csv" in str(error)
    assert "'qty'" in str(error) and "quantity" in str(error)
    assert [str(r.delivery_date) for r in loaded.partitions] == ["2026-01-06", "2026-01-08"]
    rows = con.execute(
        "SELECT _delivery_date::VARCHAR, order_id FROM raw.orders ORDER BY 1"
    ).fetchall()
    assert rows == [("2026-01-06", "K2"), ("2026-01-07", "L1"), ("2026-01-08", "M1")]
    after = snapshot(con)
    assert [r for r in after["load_log"] if "2026-01-07" in r[3]] == [
        r for r in before["load_log"] if "2026-01-07" in r[3]
    ]


def test_a_range_with_an_expression_that_does_not_fit_fails_every_partition(con, tmp_path):
    for day in RANGE[:2]:
        put(tmp_path, day, "a.csv", HEADER + f"K{day[-1]},1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n")
    text = MAPPING.read_text(encoding="utf-8").replace(
        "  unit_price: price", "  unit_price: {expr: \"price + strftime(order_time, '%Y')\"}"
    )
    path = tmp_path / "bad.yaml"
    path.write_text(text, encoding="utf-8")
    loaded = load_partitions(con, load_mapping(path), tmp_path, RANGE[:2])
    assert loaded.partitions == []
    assert sorted(str(d) for d in loaded.failures) == RANGE[:2]
    assert all("fields.unit_price" in str(e) for e in loaded.failures.values())
    assert con.execute("SELECT count(*) FROM raw.load_log").fetchall() == [(0,)]
