"""Order lines without a line id, duplicates and superseded rows on hand-made files.

Every expected number is counted by hand from the files written in each test.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.engine import load_partition, load_partitions
from pipelines.ingest.mapping import parse_mapping

POS = {
    "name": "pos",
    "entity": "orders",
    "version": "1",
    "files": "*.csv",
    "format": {"type": "csv", "delimiter": ","},
    "timezone": "Asia/Shanghai",
    "fields": {
        # no line id in the export: one order per customer and day
        "order_id": {"expr": "cust || '-' || replace(day, '-', '')"},
        "ordered_at": {"column": "day", "formats": ["%Y-%m-%d"]},
        "status": {"expr": "'paid'"},
        "customer_ref": "cust",
        "quantity": "qty",
        "unit_price": "price",
    },
}
HEADER = "cust,day,qty,price\n"


def deliver(landing: Path, day: str, name: str, text: str) -> None:
    folder = landing / "pos" / day
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(text, encoding="utf-8")


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def lines(con) -> list[tuple]:
    return con.execute(
        "SELECT order_id, line_no, quantity::INT, unit_price::DOUBLE FROM raw.orders "
        "ORDER BY order_id, line_no"
    ).fetchall()


def logged(con) -> list[tuple]:
    return con.execute(
        "SELECT _delivery_date::VARCHAR, _source_file, rows_read, rows_loaded, rows_quarantined, "
        "rows_duplicate, rows_superseded FROM raw.load_log ORDER BY 1, 2"
    ).fetchall()


def test_unmapped_line_no_numbers_the_lines_of_an_order_in_file_order(con, tmp_path):
    # two different purchases of A on one day, one of B, a bad row of A between them
    deliver(
        tmp_path,
        "2026-01-06",
        "pos.csv",
        HEADER
        + "A,2026-01-05,1,10.00\n"
        + "B,2026-01-05,2,5.00\n"
        + "A,2026-01-05,x,1.00\n"
        + "A,2026-01-05,3,7.50\n",
    )
    result = load_partition(con, parse_mapping(POS), tmp_path, "2026-01-06")
    assert (result.rows_read, result.rows_loaded, result.rows_quarantined) == (4, 3, 1)
    # the quarantined row keeps its place: A's lines are 1 and 3
    assert lines(con) == [
        ("A-20260105", 1, 1, 10.0),
        ("A-20260105", 3, 3, 7.5),
        ("B-20260105", 1, 2, 5.0),
    ]
    assert (result.rows_duplicate, result.rows_superseded) == (0, 0)


def test_duplicates_and_superseded_rows_are_counted_on_the_file_that_replaces_them(con, tmp_path):
    mapping = parse_mapping(POS)
    day1 = HEADER + "A,2026-01-05,1,10.00\nB,2026-01-05,2,5.00\nC,2026-01-05,1,1.00\n"
    deliver(tmp_path, "2026-01-06", "pos.csv", day1)
    # the next delivery repeats A unchanged, corrects B's price, adds a line to C's order
    day2 = (
        HEADER
        + "A,2026-01-05,1,10.00\n"
        + "B,2026-01-05,2,6.00\n"
        + "C,2026-01-05,1,1.00\n"
        + "C,2026-01-05,4,2.00\n"
    )
    deliver(tmp_path, "2026-01-07", "pos.csv", day2)
    result = load_partitions(con, mapping, tmp_path, ["2026-01-06", "2026-01-07"])
    assert not result.failures
    assert logged(con) == [
        ("2026-01-06", "pos/2026-01-06/pos.csv", 3, 3, 0, 0, 0),
        # A line 1 and C line 1 repeated (2 duplicates), B line 1 changed (1 superseded)
        ("2026-01-07", "pos/2026-01-07/pos.csv", 4, 4, 0, 2, 1),
    ]
    second = result.partitions[1]
    assert (second.rows_duplicate, second.rows_superseded) == (2, 1)
    # raw rows = rows kept downstream (one per order line) + duplicates + superseded
    kept = con.execute("SELECT count(DISTINCT (order_id, line_no)) FROM raw.orders").fetchall()[0][
        0
    ]
    assert (7, kept) == (7, 4)

    # loading the first delivery again changes nothing: its rows stay replaced
    again = load_partition(con, mapping, tmp_path, "2026-01-06")
    assert (again.rows_duplicate, again.rows_superseded) == (0, 0)
    assert logged(con)[1][5:] == (2, 1)


def test_a_changed_row_later_in_the_same_file_supersedes_the_earlier_one(con, tmp_path):
    customers = {
        "name": "crm",
        "entity": "customers",
        "version": "1",
        "files": "*.csv",
        "format": {"type": "csv"},
        "fields": {
            "source_system": {"expr": "'crm'"},
            "customer_ref": "ref",
            "updated_at": {"column": "updated", "formats": ["%Y-%m-%d %H:%M:%S"]},
            "member_level": "level",
        },
    }
    folder = tmp_path / "crm" / "2026-01-06"
    folder.mkdir(parents=True)
    (folder / "members.csv").write_text(
        "ref,updated,level\n"
        "M1,2026-01-01 08:00:00,silver\n"  # a version of M1
        "M1,2026-01-02 08:00:00,gold\n"  # a later version: history, not superseded
        "M1,2026-01-02 08:00:00,platinum\n"  # the same version again, other values
        "M2,2026-01-02 08:00:00,silver\n"
        "M2,2026-01-02 08:00:00,silver\n",  # an exact duplicate
        encoding="utf-8",
    )
    result = load_partition(con, parse_mapping(customers), tmp_path, "2026-01-06")
    assert (result.rows_loaded, result.rows_duplicate, result.rows_superseded) == (5, 1, 1)
