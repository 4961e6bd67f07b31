"""The loader on several malformed files of one partition read together, files the reader
cannot read, and source columns named like the engine's own: counts, line numbers and
reasons written by hand.

Fixtures: tests/fixtures/ingest/ (the mapping YAMLs and data files side by side).
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest
from support.ingest_files import DAY, FIXTURES, counts, deliver, quarantine

from pipelines.ingest.dry_run import check_mapping
from pipelines.ingest.engine import load_partition, load_partitions
from pipelines.ingest.mapping import MappingError, load_mapping, parse_mapping


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


# --------------------------------------------------------------------------- many files at once
MULTILINE = (
    "order_no,line,order_time,state,qty,price,ccy\n"  # 1
    'M1,1,2026-01-05 10:00:00,PAID,1,"1.00",CNY\n'  # 2
    'M2,1,2026-01-05 10:00:00,"PA\nID",1,1.00,CNY\n'  # 3-4
    "\n"  # 5 blank
    "M3,1,2026-01-05 10:00:00,PAID,x,1.00,CNY\n"  # 6 quarantined
    "M4,1,2026-01-05 10:00:00,PAID,1,1.00\n"  # 7 wrong column count
    "M5,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n"  # 8
)


@pytest.fixture
def grouped_only(monkeypatch):
    """Fail when a load falls back to reading one file at a time: that fallback is there to
    name the file at fault in an error, a load that succeeds must not need it."""
    import pipelines.ingest.engine as engine

    real = engine._run_batch

    def run(*args, **kwargs):
        assert not kwargs["per_file"], "fell back to one file at a time"
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "_run_batch", run)


def lines_by_file(con, table: str = "raw.orders") -> dict[str, list[int]]:
    rows = con.execute(
        f"SELECT _source_file, list(_source_line ORDER BY _source_line) FROM {table} GROUP BY 1"
    ).fetchall()
    return {Path(f).name: lines for f, lines in rows}


def test_many_malformed_files_in_one_partition_keep_exact_per_file_counts(
    con, tmp_path, grouped_only
):
    """One read over six files (one of them on the slow path, two empty): every count, line
    number and reason is the one each file gets when it is loaded alone."""
    folder = deliver(
        tmp_path,
        "shop",
        "orders_malformed.csv",
        "orders_bad_utf8.csv",
        "orders_bom_crlf.csv",
        "empty.csv",
        "header_only.csv",
    )
    (folder / "m.csv").write_text(MULTILINE, encoding="utf-8")
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {
        "empty.csv": (0, 0, 0),
        "header_only.csv": (0, 0, 0),
        "m.csv": (5, 3, 2),
        "orders_bad_utf8.csv": (4, 2, 2),
        "orders_bom_crlf.csv": (2, 2, 0),
        "orders_malformed.csv": (10, 3, 7),
    }
    assert {Path(f.file).name: f.warnings for f in result.files}["m.csv"] == [
        "1 blank line(s) skipped"
    ]
    assert lines_by_file(con) == {
        "m.csv": [2, 3, 8],
        "orders_bad_utf8.csv": [2, 4],
        "orders_bom_crlf.csv": [2, 3],
        "orders_malformed.csv": [2, 8, 11],
    }
    assert quarantine(con, "m.csv") == [
        (6, "quantity: 'x' is not a number"),
        (7, "wrong column count (expected 7, got 6)"),
    ]
    assert quarantine(con, "orders_bad_utf8.csv") == [
        (3, "invalid UTF-8"),
        (5, "unterminated quote"),
    ]
    assert [line for line, _ in quarantine(con, "orders_malformed.csv")] == [3, 4, 5, 6, 7, 9, 10]
    raw = con.execute(
        "SELECT raw_text FROM raw.quarantine WHERE _source_file LIKE '%orders_malformed.csv' "
        "AND _source_line = 4"
    ).fetchall()
    assert raw == [("A3,1,2026/01/05 11:30,SHIPPED,abc,5.00,CNY",)]
    log = con.execute(
        "SELECT _source_file, rows_read, rows_loaded, rows_quarantined FROM raw.load_log ORDER BY 1"
    ).fetchall()
    assert [(Path(f).name, r, lo, q) for f, r, lo, q in log] == sorted(
        (name, *c) for name, c in counts(result).items()
    )


def test_raw_text_of_a_quarantined_line_drops_crlf_and_bom(con, tmp_path, grouped_only):
    folder = tmp_path / "legacy" / DAY
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(  # BOM, CRLF
        b"\xef\xbb\xbfN1;2026-01-05 10:00:00;PAID;x;1.00\r\nN2;2026-01-05 10:00:00;PAID;1;1\r\n"
    )
    (folder / "b.csv").write_bytes(  # LF
        b"N3;2026-01-05 10:00:00;PAID;1;1.00\nN4;2026-01-05 10:00:00;PAID;y;2\n"
    )
    result = load_partition(con, load_mapping(FIXTURES / "orders_noheader.yaml"), tmp_path, DAY)
    assert counts(result) == {"a.csv": (2, 1, 1), "b.csv": (2, 1, 1)}
    assert con.execute(
        "SELECT _source_file, _source_line, raw_text FROM raw.quarantine ORDER BY 1"
    ).fetchall() == [
        ("legacy/2026-01-06/a.csv", 1, "N1;2026-01-05 10:00:00;PAID;x;1.00"),
        ("legacy/2026-01-06/b.csv", 2, "N4;2026-01-05 10:00:00;PAID;y;2"),
    ]


MIXED_BREAKS = "unreadable file (line breaks mixed: LF, CRLF): Invalid Input Error: "


def test_a_file_the_reader_cannot_read_is_quarantined_whole(con, tmp_path):
    """The partition still loads: each row of the file (a line neither blank nor the
    header) is quarantined with the reader's reason, the other files load."""
    folder = deliver(tmp_path, "shop", "orders_bom_crlf.csv")
    # '\n' and '\r\n' line ends mixed: DuckDB's CSV reader gives up on the file
    (folder / "z.csv").write_bytes(
        b"order_no,line,order_time,state,qty,price,ccy\n"
        b"Z1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\r\n\n"
        b"Z2,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n"
    )
    mapping = load_mapping(FIXTURES / "orders_csv.yaml")
    result = load_partition(con, mapping, tmp_path, DAY)
    assert counts(result) == {"orders_bom_crlf.csv": (2, 2, 0), "z.csv": (2, 0, 2)}
    rows = con.execute(
        "SELECT _source_line, raw_text, reason FROM raw.quarantine ORDER BY 1"
    ).fetchall()
    assert [(line, text) for line, text, _ in rows] == [
        (2, "Z1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY"),
        (4, "Z2,1,2026-01-05 10:00:00,PAID,1,1.00,CNY"),
    ]
    assert all(reason.startswith(MIXED_BREAKS) for _, _, reason in rows)
    warnings = {Path(f.file).name: f.warnings for f in result.files}["z.csv"]
    assert warnings == [f"every row quarantined: {rows[0][2]}"]
    assert con.execute("SELECT order_id FROM raw.orders ORDER BY 1").fetchall() == [
        ("C1",),
        ("C2",),
    ]
    log = con.execute("SELECT rows_read, rows_quarantined, status FROM raw.load_log ORDER BY 1")
    assert sorted(log.fetchall()) == [(2, 0, "loaded"), (2, 2, "loaded")]
    # many dates at once: the same tables
    first = con.execute("SELECT * FROM raw.quarantine ORDER BY ALL").fetchall()
    loaded = load_partitions(con, mapping, tmp_path, [DAY], loaded_at=datetime(2026, 1, 7))
    assert not loaded.failures
    assert [counts(r) for r in loaded.partitions] == [counts(result)]
    assert len(con.execute("SELECT * FROM raw.quarantine").fetchall()) == len(first)


def test_an_error_of_the_machine_still_fails_the_partition(con, tmp_path, monkeypatch):
    """Out of memory is not the file's fault: nothing quarantined, the partition fails
    naming the file (as it did for any reader error before)."""
    from pipelines.ingest.formats import csv as csv_reader

    deliver(tmp_path, "shop", "orders_bom_crlf.csv")

    def out_of_memory(*args, **kwargs):
        raise duckdb.OutOfMemoryException("Out of Memory Error: failed to allocate")

    monkeypatch.setattr(csv_reader, "_load_csv_group", out_of_memory)
    with pytest.raises(MappingError, match="orders_bom_crlf.csv could not be read: Out of Memory"):
        load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchall() == [(0,)]


def test_json_lines_with_a_carriage_return_inside_a_line_are_quarantined_whole(con, tmp_path):
    """A CR inside a line (JSON whitespace, to Python) makes DuckDB's line reader give up."""
    folder = tmp_path / "app" / DAY
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(
        b'{"id":"J1","ts":"2026-01-05 10:00:00","status":"paid","qty":1,\r"price":2}\n'
        b"\n"
        b'{"id":"J2"}\n'
    )
    result = load_partition(con, load_mapping(FIXTURES / "orders_jsonl.yaml"), tmp_path, DAY)
    assert counts(result) == {"a.jsonl": (2, 0, 2)}
    rows = quarantine(con, "a.jsonl")
    assert [line for line, _ in rows] == [1, 3]
    assert rows[0][1].startswith("unreadable file (line breaks mixed: LF, CR): ")


def test_a_truncated_parquet_file_is_one_quarantined_row(con, tmp_path):
    folder = tmp_path / "lake" / DAY
    folder.mkdir(parents=True)
    con.execute(
        f"""COPY (SELECT 'P1' AS id, TIMESTAMP '2026-01-05 10:00:00' AS ts, 'paid' AS st,
        1 AS qty, 2.5 AS price) TO '{folder / "a.parquet"}' (FORMAT parquet)"""
    )
    data = (folder / "a.parquet").read_bytes()
    (folder / "b.parquet").write_bytes(data[: len(data) // 2])  # an upload cut short
    (folder / "c.parquet").write_bytes(b"PAR1 not a parquet file PAR1")
    result = load_partition(con, LAKE, tmp_path, DAY)
    assert counts(result) == {
        "a.parquet": (1, 1, 0),
        "b.parquet": (1, 0, 1),
        "c.parquet": (1, 0, 1),
    }
    rows = con.execute(
        "SELECT _source_file, _source_line, raw_text, reason FROM raw.quarantine ORDER BY 1"
    ).fetchall()
    assert [(f, line, text) for f, line, text, _ in rows] == [
        ("lake/2026-01-06/b.parquet", None, None),
        ("lake/2026-01-06/c.parquet", None, None),
    ]
    assert rows[0][3] == (
        "unreadable file: Invalid Input Error: No magic bytes found at end of file "
        "'lake/2026-01-06/b.parquet'"  # the file as landed, not a temp path
    )


def test_a_header_with_an_unterminated_quote_quarantines_the_file(con, tmp_path):
    """The CSV reader would take every following line into the header record: no row,
    silently. The file is quarantined instead."""
    (tmp_path / "shop" / DAY).mkdir(parents=True)
    (tmp_path / "shop" / DAY / "q.csv").write_text(
        'order_no,line,order_time,state,qty,price,"ccy\n'
        "Q1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n"
        "Q2,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n",
        encoding="utf-8",
    )
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {"q.csv": (2, 0, 2)}
    reason = "unreadable file: the header line has an unterminated quote"
    assert quarantine(con, "q.csv") == [(2, reason), (3, reason)]


def test_carriage_return_line_breaks(con, tmp_path):
    """CR-only line breaks: the header is the text up to the first CR (as the reader
    sees it), not the whole file (which made Python's csv module raise)."""
    (tmp_path / "shop" / DAY).mkdir(parents=True)
    (tmp_path / "shop" / DAY / "mac.csv").write_bytes(
        b"order_no,line,order_time,state,qty,price,ccy\r"
        b"R1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\rR2,1,2026-01-05 10:00:00,PAID,x,1.00,CNY\r"
    )
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {"mac.csv": (2, 1, 1)}
    assert con.execute("SELECT order_id FROM raw.orders").fetchall() == [("R1",)]
    assert [r for _, r in quarantine(con, "mac.csv")] == ["quantity: 'x' is not a number"]


def test_a_line_file_of_one_invalid_line(con, tmp_path):
    """Every line rejected by the line reader (no accepted line to number): no ASOF join
    without an inequality; and no schema drift for a file without any JSON object."""
    folder = tmp_path / "app" / DAY
    folder.mkdir(parents=True)
    (folder / "a.jsonl").write_bytes(b"\x80")
    (folder / "b.jsonl").write_bytes(b"[1, 2]\nnull\n")
    result = load_partition(con, load_mapping(FIXTURES / "orders_jsonl.yaml"), tmp_path, DAY)
    assert counts(result) == {"a.jsonl": (1, 0, 1), "b.jsonl": (2, 0, 2)}
    assert quarantine(con, "a.jsonl") == [(1, "invalid UTF-8")]
    assert quarantine(con, "b.jsonl") == [(1, "not a JSON object"), (2, "not a JSON object")]


INTERNAL_NAMES = "__f,__pos,__pre,__raw,__reason,__rowtext,__v0,__t0,__t2,__v3,__F,File_Index"


@pytest.mark.parametrize("files", [1, 2])
def test_source_columns_named_like_the_engine_internals(con, tmp_path, files):
    """Extra columns named like the stage's own columns (in any case) do not stand in for
    them: the values, reasons and line numbers are those of the mapped columns."""
    folder = tmp_path / "shop" / DAY
    folder.mkdir(parents=True)
    junk = ",".join(["0"] * 12)
    for i in range(files):
        (folder / f"i{i}.csv").write_text(
            f"{INTERNAL_NAMES},order_no,line,order_time,state,qty,price,ccy\n"
            f"{junk},I{i}a,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n"
            f"{junk},I{i}b,1,2026-01-05 10:00:00,PAID,x,1.00,CNY\n",
            encoding="utf-8",
        )
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {f"i{i}.csv": (2, 1, 1) for i in range(files)}
    assert lines_by_file(con) == {f"i{i}.csv": [2] for i in range(files)}
    rows = con.execute("SELECT order_id, ordered_at FROM raw.orders ORDER BY 1").fetchall()
    assert rows == [(f"I{i}a", datetime(2026, 1, 5, 2, 0)) for i in range(files)]
    assert quarantine(con, "i0.csv") == [(3, "quantity: 'x' is not a number")]


def test_service_event_id_of_a_row_with_a_column_named_like_an_internal(con, tmp_path):
    """The row text behind the md5 default casts each column to text: a column named like
    the stage's BIGINT __pos made it a conversion error."""
    (tmp_path / "desk" / DAY).mkdir(parents=True)
    (tmp_path / "desk" / DAY / "e.tsv").write_text(
        "__pos\tticket\tat\ttype\nz\tT1\t2026-01-05 10:00:00\tcreated\n", encoding="utf-8"
    )
    mapping = parse_mapping(
        {
            "name": "desk",
            "entity": "service_events",
            "format": "tsv",
            "fields": {"ticket_id": "ticket", "event_at": "at", "event_type": "type"},
        }
    )
    result = load_partition(con, mapping, tmp_path, DAY)
    assert counts(result) == {"e.tsv": (1, 1, 0)}
    assert con.execute("SELECT ticket_id FROM raw.service_events").fetchall() == [("T1",)]


def test_columns_repeated_in_another_case(con, tmp_path):
    """DuckDB names are case-insensitive: a column repeated in another case is renamed
    (it was a binder error), and the column the mapping reads keeps its name even when
    the other one comes first."""
    (tmp_path / "shop" / DAY).mkdir(parents=True)
    (tmp_path / "shop" / DAY / "c.csv").write_text(
        "ORDER_NO,order_no,line,order_time,state,qty,price,ccy,Qty\n"
        "X,C1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY,9\n",
        encoding="utf-8",
    )
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {"c.csv": (1, 1, 0)}
    assert result.files[0].warnings == ["extra column(s) ignored: ORDER_NO_1, Qty_1"]
    assert con.execute("SELECT order_id, quantity FROM raw.orders").fetchall() == [
        ("C1", Decimal("1"))
    ]


LAKE = parse_mapping(
    {
        "name": "lake",
        "entity": "orders",
        "format": "parquet",
        "fields": {"order_id": "id", "ordered_at": "ts", "status": "st", "quantity": "qty",
                   "unit_price": "price"},
    }
)  # fmt: skip


def test_parquet_columns_named_like_the_readers_own(con, tmp_path):
    """A column named file_row_number (the reader's row number: a binder error), or
    file_index, or rowid, or repeated in another case."""
    folder = tmp_path / "lake" / DAY
    folder.mkdir(parents=True)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(  # DuckDB would rename a repeated name when writing: pyarrow does not
        {
            "file_row_number": [7, 8, 9],
            "ID": ["X", "Y", "Z"],
            "id": ["P1", "P2", "P3"],
            "ts": ["2026-01-05 10:00:00", "2026-01-05 11:00:00", "2026-01-05 12:00:00"],
            "st": ["paid"] * 3,
            "qty": [1, None, 3],
            "price": [2.5, 2.5, 1.0],
            "File_Index": [9, 9, 9],
            "rowid": [5, 5, 5],
        }
    )
    pq.write_table(table, folder / "a.parquet")
    con.execute(
        f"""COPY (SELECT 'Q1' AS id, '2026-01-05 10:00:00' AS ts, 'paid' AS st, 1 AS qty,
        1 AS price) TO '{folder / "b.parquet"}' (FORMAT parquet)"""
    )
    result = load_partition(con, LAKE, tmp_path, DAY)
    assert counts(result) == {"a.parquet": (3, 2, 1), "b.parquet": (1, 1, 0)}
    assert lines_by_file(con) == {"a.parquet": [1, 3], "b.parquet": [1]}
    assert quarantine(con, "a.parquet") == [(2, "missing required field quantity")]
    assert con.execute("SELECT order_id FROM raw.orders ORDER BY 1").fetchall() == [
        ("P1",),
        ("P3",),
        ("Q1",),
    ]


def test_json_lines_files_read_together_keep_their_own_keys_and_lines(con, tmp_path, grouped_only):
    folder = deliver(tmp_path, "app", "orders.jsonl")
    (folder / "more.jsonl").write_text(
        '\n{"id":"K1","ts":"2026-01-05 10:00:00","status":"paid","qty":1,"price":1,"coupon":"Y"}\n'
        '{"id":"K2","ts":"bad","status":"paid","qty":1,"price":1}\n',
        encoding="utf-8",
    )
    result = load_partition(con, load_mapping(FIXTURES / "orders_jsonl.yaml"), tmp_path, DAY)
    assert counts(result) == {"more.jsonl": (2, 1, 1), "orders.jsonl": (5, 2, 3)}
    assert {Path(f.file).name: f.warnings for f in result.files} == {
        "more.jsonl": ["extra column(s) ignored: coupon"],
        "orders.jsonl": ["extra column(s) ignored: extra"],
    }
    assert lines_by_file(con) == {"more.jsonl": [2], "orders.jsonl": [1, 6]}
    assert quarantine(con, "more.jsonl") == [
        (3, "ordered_at: cannot parse 'bad' as an ISO 8601 timestamp")
    ]
    assert quarantine(con, "orders.jsonl") == [
        (2, "quantity: 'x' is not a number"),
        (3, "invalid JSON"),
        (5, "not a JSON object"),
    ]


def test_parquet_files_with_different_schemas_in_one_partition(con, tmp_path, grouped_only):
    folder = tmp_path / "lake" / DAY
    folder.mkdir(parents=True)
    con.execute(
        f"""COPY (SELECT * FROM (VALUES ('P1', TIMESTAMP '2026-01-05 10:00:00', 'paid', 1, 2.5),
            ('P2', TIMESTAMP '2026-01-05 11:00:00', 'paid', NULL, 2.5)) AS t(id, ts, st, qty, price))
        TO '{folder / "a.parquet"}' (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT * FROM (VALUES ('Q1', '2026-01-05 12:00:00', 'paid', 1.5, 1.0, 'C'),
            ('Q2', 'soon', 'paid', 2.0, 1.0, 'D'), ('Q3', '2026-01-05 13:00:00', 'paid', 3.0, 1.0, NULL))
            AS t(id, ts, st, qty, price, coupon))
        TO '{folder / "b.parquet"}' (FORMAT parquet)"""
    )
    (folder / "c.parquet").write_bytes(b"")  # an empty file: no rows
    result = load_partition(con, LAKE, tmp_path, DAY)
    assert counts(result) == {
        "a.parquet": (2, 1, 1),
        "b.parquet": (3, 2, 1),
        "c.parquet": (0, 0, 0),
    }
    assert {Path(f.file).name: f.warnings for f in result.files}["b.parquet"] == [
        "extra column(s) ignored: coupon"
    ]
    assert lines_by_file(con) == {"a.parquet": [1], "b.parquet": [1, 3]}
    assert quarantine(con, "b.parquet") == [
        (2, "ordered_at: cannot parse 'soon' as an ISO 8601 timestamp")
    ]
    raw = con.execute("SELECT raw_text FROM raw.quarantine WHERE _source_line = 2 "
                      "AND _source_file LIKE '%b.parquet'").fetchall()  # fmt: skip
    assert raw == [('{"id":"Q2","ts":"soon","st":"paid","qty":"2.0","price":"1.0","coupon":"D"}',)]


def test_gb18030_files_of_several_days_with_the_same_name(con, tmp_path, grouped_only):
    """Transcoded copies of same-named files of different days must not collide."""
    mapping = load_mapping(FIXTURES / "orders_gb18030.yaml")
    text = (FIXTURES / "orders_gb18030.csv").read_bytes()
    for day, tail in (("2026-01-06", ""), ("2026-01-07", "X")):
        folder = tmp_path / "erp" / day
        folder.mkdir(parents=True)
        (folder / "orders.csv").write_bytes(text.replace(b"G3", f"G3{tail}".encode()))
    loaded = load_partitions(con, mapping, tmp_path, ["2026-01-06", "2026-01-07"])
    assert not loaded.failures
    assert [counts(r) for r in loaded.partitions] == [{"orders.csv": (3, 2, 1)}] * 2
    rows = con.execute(
        "SELECT _delivery_date::VARCHAR, order_id, buyer_name FROM raw.orders ORDER BY ALL"
    ).fetchall()
    assert rows == [
        ("2026-01-06", "G1", "张三"), ("2026-01-06", "G3", "李四"),
        ("2026-01-07", "G1", "张三"), ("2026-01-07", "G3X", "李四"),
    ]  # fmt: skip
    assert quarantine(con, "orders.csv") == [(3, "invalid GB18030 byte sequence")] * 2


@pytest.mark.parametrize("fmt", ["whitespace", "jsonl"])
def test_gb18030_line_formats(con, tmp_path, fmt):
    """Whitespace text and JSON Lines in GB18030 (transcoded, like delimited text)."""
    folder = tmp_path / "pos" / DAY
    folder.mkdir(parents=True)
    if fmt == "whitespace":
        body = "单号 时间 数量 价格\nB1 2026-01-05T10:00:00 1 2.0\nB2 2026-01-05T10:00:00 1\n"
        spec = {"type": "txt", "delimiter": "whitespace", "encoding": "gb18030"}
    else:
        body = (
            '{"单号":"B1","时间":"2026-01-05T10:00:00","数量":1,"价格":2.0}\n'
            '{"单号":"B2","时间":"2026-01-05T10:00:00","数量":"一","价格":1}\n'
        )
        spec = {"type": "jsonl", "encoding": "gb18030"}
    (folder / "a.txt").write_bytes(body.encode("gb18030") + b"B3 \x81\x20 1 1\n")
    mapping = parse_mapping(
        {
            "name": "pos",
            "entity": "orders",
            "files": "*.txt",
            "format": spec,
            "fields": {"order_id": "单号", "ordered_at": "时间", "status": {"expr": "'paid'"},
                       "quantity": "数量", "unit_price": "价格"},
        }
    )  # fmt: skip
    result = load_partition(con, mapping, tmp_path, DAY)
    assert counts(result) == {"a.txt": (3, 1, 2)}
    assert con.execute("SELECT order_id FROM raw.orders").fetchall() == [("B1",)]
    reasons = [r for _, r in quarantine(con, "a.txt")]
    assert reasons[-1] == "invalid GB18030 byte sequence"


def test_check_mapping_on_a_partition_of_several_files(tmp_path):
    deliver(tmp_path, "shop", "orders_malformed.csv", "orders_bom_crlf.csv")
    report = check_mapping(FIXTURES / "orders_csv.yaml", tmp_path, sample=2)
    assert report.error is None
    assert [(f.rows_read, f.rows_loaded, f.rows_quarantined) for f in report.files] == [
        (2, 2, 0),
        (10, 3, 7),
    ]
    fields = {f.field: f for f in report.fields}
    assert fields["quantity"].failures == 1
    # typed rows: 2 + 7 (the reader rejects 3 of the 10); order_id is empty on one
    assert fields["order_id"].null_share == pytest.approx(1 / 9)
    assert fields["status"].samples == [
        ({"state": "PAID"}, "paid", "paid"),
        ({"state": "CANCEL"}, "cancelled", "cancelled"),
    ]
