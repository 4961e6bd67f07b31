"""The loader on hand-written malformed files: counts, line numbers and reasons written by hand.

Fixtures: tests/fixtures/ingest/ (the mapping YAMLs and data files side by side).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

import duckdb
import pytest
from support.ingest_files import DAY, FIXTURES, counts, deliver, quarantine

from pipelines.ingest.canonical import ENTITIES
from pipelines.ingest.discovery import discover_partitions
from pipelines.ingest.dry_run import check_mapping, format_check_report
from pipelines.ingest.engine import load_partition
from pipelines.ingest.mapping import load_mapping, parse_mapping
from pipelines.ingest.schema import ensure_raw_schema


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def test_raw_schema_has_all_entities_even_without_sources(con):
    ensure_raw_schema(con)
    ensure_raw_schema(con)  # idempotent
    tables = {
        r[0]
        for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'raw'"
        ).fetchall()
    }
    assert tables == {*ENTITIES, "quarantine", "load_log"}
    cols = [r[0] for r in con.execute("DESCRIBE raw.orders").fetchall()]
    assert cols[:3] == ["order_id", "line_no", "ordered_at"]
    assert cols[-7:] == [
        "_source_name",
        "_source_file",
        "_source_line",
        "_delivery_date",
        "_loaded_at",
        "_mapping_version",
        "_file_sha256",
    ]


def test_malformed_csv(con, tmp_path):
    deliver(tmp_path, "shop", "orders_malformed.csv")
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    # 10 data lines: A1, A7, A10 load; 7 go to quarantine
    assert counts(result) == {"orders_malformed.csv": (10, 3, 7)}
    assert quarantine(con, "orders_malformed.csv") == [
        (
            3,
            "ordered_at: cannot parse '2026-13-45 10:00:00' with formats "
            "[%Y-%m-%d %H:%M:%S, %Y/%m/%d %H:%M]",
        ),
        (4, "quantity: 'abc' is not a number"),
        (5, "missing required field order_id"),
        (6, "wrong column count (expected 7, got 6)"),
        (7, "unterminated quote"),
        (9, "unit_price: '1,234.00' is not a number"),
        (10, "wrong column count (expected 7, got 8)"),
    ]
    raw = con.execute("SELECT raw_text FROM raw.quarantine WHERE _source_line = 4").fetchall()[0][0]
    assert raw == "A3,1,2026/01/05 11:30,SHIPPED,abc,5.00,CNY"
    rows = con.execute(
        "SELECT order_id, line_no, ordered_at, status, quantity, unit_price, currency, "
        "source_system, discount_amount, _source_line, _mapping_version, _source_name "
        "FROM raw.orders ORDER BY _source_line"
    ).fetchall()
    assert rows == [
        ("A1", 1, datetime(2026, 1, 5, 2, 0), "paid", Decimal("2"), Decimal("10.50"), "CNY",
         "shop", Decimal("0"), 2, "3", "shop"),
        # empty line_no -> 1, empty currency -> reporting currency, 23:59 +08 -> 15:59 UTC
        ("A7", 1, datetime(2026, 1, 5, 15, 59), "completed", Decimal("1.5"), Decimal("7.00"),
         "CNY", "shop", Decimal("0"), 8, "3", "shop"),
        ("A10", 1, datetime(2026, 1, 6, 1, 0), "paid", Decimal("1"), Decimal("3.00"), "CNY",
         "shop", Decimal("0"), 11, "3", "shop"),
    ]  # fmt: skip


def test_invalid_utf8_and_unterminated_quote_at_eof(con, tmp_path):
    deliver(tmp_path, "shop", "orders_bad_utf8.csv")
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {"orders_bad_utf8.csv": (4, 2, 2)}
    assert quarantine(con, "orders_bad_utf8.csv") == [
        (3, "invalid UTF-8"),
        (5, "unterminated quote"),
    ]
    lines = con.execute("SELECT _source_line FROM raw.orders ORDER BY 1").fetchall()
    assert lines == [(2,), (4,)]


def test_empty_and_header_only_files(con, tmp_path):
    deliver(tmp_path, "shop", "empty.csv", "header_only.csv")
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {"empty.csv": (0, 0, 0), "header_only.csv": (0, 0, 0)}
    log = con.execute(
        "SELECT _source_file, bytes, rows_read, status FROM raw.load_log ORDER BY 1"
    ).fetchall()
    assert log == [
        ("shop/2026-01-06/empty.csv", 0, 0, "loaded"),
        ("shop/2026-01-06/header_only.csv", 45, 0, "loaded"),
    ]


def test_bom_and_crlf(con, tmp_path):
    deliver(tmp_path, "shop", "orders_bom_crlf.csv")
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {"orders_bom_crlf.csv": (2, 2, 0)}
    assert result.files[0].warnings == []  # the BOM is not part of the first column name
    rows = con.execute(
        "SELECT order_id, status, currency, _source_line FROM raw.orders ORDER BY 4"
    ).fetchall()
    assert rows == [("C1", "paid", "CNY", 2), ("C2", "cancelled", "USD", 3)]


def test_gb18030_with_chinese_headers_and_an_invalid_byte(con, tmp_path):
    deliver(tmp_path, "erp", "orders_gb18030.csv")
    result = load_partition(con, load_mapping(FIXTURES / "orders_gb18030.yaml"), tmp_path, DAY)
    assert counts(result) == {"orders_gb18030.csv": (3, 2, 1)}
    assert quarantine(con, "orders_gb18030.csv") == [(3, "invalid GB18030 byte sequence")]
    rows = con.execute(
        "SELECT order_id, status, buyer_name, ordered_at, _source_line FROM raw.orders "
        "ORDER BY _source_line"
    ).fetchall()
    assert rows == [
        ("G1", "paid", "张三", datetime(2026, 1, 5, 2, 0), 2),
        ("G3", "completed", "李四", datetime(2026, 1, 5, 3, 0), 4),
    ]
    # sha256 and bytes are those of the delivered (GB18030) bytes
    import hashlib

    data = (FIXTURES / "orders_gb18030.csv").read_bytes()
    assert result.files[0].sha256 == hashlib.sha256(data).hexdigest()
    assert result.files[0].bytes == len(data)


def test_whitespace_delimiter_with_blank_line_and_expression(con, tmp_path):
    deliver(tmp_path, "pos", "orders_whitespace.txt")
    result = load_partition(con, load_mapping(FIXTURES / "orders_whitespace.yaml"), tmp_path, DAY)
    assert counts(result) == {"orders_whitespace.txt": (3, 2, 1)}
    assert quarantine(con, "orders_whitespace.txt") == [
        (5, "wrong column count (expected 6, got 5)")
    ]
    rows = con.execute(
        "SELECT order_id, ordered_at, channel, quantity, _source_line FROM raw.orders ORDER BY 5"
    ).fetchall()
    assert rows == [
        ("B1", datetime(2026, 1, 5, 2, 0), "offline_store", Decimal("1"), 2),
        ("B2", datetime(2026, 1, 5, 2, 30), "offline_store", Decimal("2"), 4),
    ]


def test_no_header_with_named_columns(con, tmp_path):
    deliver(tmp_path, "legacy", "orders_noheader.csv")
    result = load_partition(con, load_mapping(FIXTURES / "orders_noheader.yaml"), tmp_path, DAY)
    assert counts(result) == {"orders_noheader.csv": (2, 1, 1)}
    assert quarantine(con, "orders_noheader.csv") == [(2, "quantity: 'x' is not a number")]
    # timezone UTC: the local time is the UTC time
    row = con.execute("SELECT order_id, ordered_at, _source_line FROM raw.orders").fetchall()
    assert row == [("N1", datetime(2026, 1, 5, 10, 0), 1)]


def test_no_header_default_column_names(con, tmp_path):
    (tmp_path / "x" / DAY).mkdir(parents=True)
    (tmp_path / "x" / DAY / "a.csv").write_text("K1|2026-01-05 10:00:00|1|2\n", encoding="utf-8")
    mapping = parse_mapping(
        {
            "name": "x",
            "entity": "orders",
            "format": {"type": "csv", "delimiter": "|", "header": False},
            "fields": {
                "order_id": "column0",
                "ordered_at": "column1",
                "status": {"expr": "'paid'"},
                "quantity": "column2",
                "unit_price": "column3",
            },
        }
    )
    result = load_partition(con, mapping, tmp_path, DAY)
    assert counts(result) == {"a.csv": (1, 1, 0)}


def test_json_lines(con, tmp_path):
    deliver(tmp_path, "app", "orders.jsonl")
    result = load_partition(con, load_mapping(FIXTURES / "orders_jsonl.yaml"), tmp_path, DAY)
    # 6 physical lines, one blank: 5 read
    assert counts(result) == {"orders.jsonl": (5, 2, 3)}
    assert result.files[0].warnings == ["extra column(s) ignored: extra"]
    assert quarantine(con, "orders.jsonl") == [
        (2, "quantity: 'x' is not a number"),
        (3, "invalid JSON"),
        (5, "not a JSON object"),
    ]
    rows = con.execute(
        "SELECT order_id, ordered_at, quantity, unit_price, _source_line FROM raw.orders ORDER BY 5"
    ).fetchall()
    # '2026-01-05T10:00:00+08:00' and '2026-01-05T02:00:00Z' are the same instant
    assert rows == [
        ("J1", datetime(2026, 1, 5, 2, 0), Decimal("1"), Decimal("9.90"), 1),
        ("J3", datetime(2026, 1, 5, 2, 0), Decimal("2"), Decimal("3.00"), 6),
    ]


def test_parquet(con, tmp_path):
    folder = tmp_path / "lake" / DAY
    folder.mkdir(parents=True)
    con.execute(
        f"""COPY (SELECT * FROM (VALUES
            ('P1', TIMESTAMP '2026-01-05 10:00:00', 'paid', 1, 2.5),
            ('P2', TIMESTAMP '2026-01-05 11:00:00', 'paid', NULL, 2.5),
            ('P3', TIMESTAMP '2026-01-05 12:00:00', 'paid', 3, 1.0)
        ) AS t(id, ts, st, qty, price)) TO '{folder / "o.parquet"}' (FORMAT parquet)"""
    )
    mapping = parse_mapping(
        {
            "name": "lake",
            "entity": "orders",
            "format": "parquet",
            "fields": {
                "order_id": "id",
                "ordered_at": "ts",
                "status": "st",
                "quantity": "qty",
                "unit_price": "price",
            },
        }
    )
    result = load_partition(con, mapping, tmp_path, DAY)
    assert counts(result) == {"o.parquet": (3, 2, 1)}
    assert quarantine(con, "o.parquet") == [(2, "missing required field quantity")]
    rows = con.execute("SELECT order_id, ordered_at, _source_line FROM raw.orders ORDER BY 3")
    assert rows.fetchall() == [
        ("P1", datetime(2026, 1, 5, 2, 0), 1),
        ("P3", datetime(2026, 1, 5, 4, 0), 3),
    ]


@pytest.mark.parametrize(
    ("timezone", "local", "utc"),
    [
        ("Asia/Shanghai", "2026-01-05 08:00:00", datetime(2026, 1, 5, 0, 0)),
        ("Asia/Shanghai", "2026-01-01 03:30:00", datetime(2025, 12, 31, 19, 30)),
        ("America/New_York", "2026-07-01 12:00:00", datetime(2026, 7, 1, 16, 0)),  # EDT -4
        ("America/New_York", "2026-01-15 12:00:00", datetime(2026, 1, 15, 17, 0)),  # EST -5
        ("Europe/London", "2026-07-01T12:00:00", datetime(2026, 7, 1, 11, 0)),
        ("America/New_York", "2026-07-01 12:00:00+08:00", datetime(2026, 7, 1, 4, 0)),
        ("Asia/Shanghai", "2026-07-01T12:00:00Z", datetime(2026, 7, 1, 12, 0)),
    ],
)
def test_timezone_conversion(con, tmp_path, timezone, local, utc):
    (tmp_path / "tz" / DAY).mkdir(parents=True)
    (tmp_path / "tz" / DAY / "t.csv").write_text(f"id,at\nT1,{local}\n", encoding="utf-8")
    mapping = parse_mapping(
        {
            "name": "tz",
            "entity": "social_interactions",
            "timezone": timezone,
            "fields": {
                "interaction_id": "id",
                "occurred_at": "at",
                "platform": {"expr": "'weibo'"},
                "account_id": "id",
                "direction": {"expr": "'inbound'"},
                "interaction_type": {"expr": "'like'"},
            },
        }
    )
    load_partition(con, mapping, tmp_path, DAY)
    assert con.execute("SELECT occurred_at FROM raw.social_interactions").fetchall() == [(utc,)]


def test_service_event_defaults_and_integers(con, tmp_path):
    (tmp_path / "desk" / DAY).mkdir(parents=True)
    (tmp_path / "desk" / DAY / "e.csv").write_text(
        "ticket,at,type,csat\nT1,2026-01-05 10:00:00,csat,5\nT1,2026-01-05 10:00:00,csat,4.5\n"
        "T2,2026-01-05 10:00:00,created,\n",
        encoding="utf-8",
    )
    mapping = parse_mapping(
        {
            "name": "desk",
            "entity": "service_events",
            "fields": {"ticket_id": "ticket", "event_at": "at", "event_type": "type",
                       "csat_score": "csat"},
        }
    )  # fmt: skip
    result = load_partition(con, mapping, tmp_path, DAY)
    assert counts(result) == {"e.csv": (3, 2, 1)}
    assert quarantine(con, "e.csv") == [(3, "csat_score: '4.5' is not an integer")]
    import hashlib

    rows = con.execute(
        "SELECT ticket_id, event_id, csat_score FROM raw.service_events ORDER BY _source_line"
    ).fetchall()
    assert rows == [
        ("T1", hashlib.md5(b"T1,2026-01-05 10:00:00,csat,5").hexdigest(), 5),
        ("T2", hashlib.md5(b"T2,2026-01-05 10:00:00,created,").hexdigest(), None),
    ]


def test_multiline_quoted_field_and_blank_lines_keep_physical_line_numbers(con, tmp_path):
    (tmp_path / "shop" / DAY).mkdir(parents=True)
    (tmp_path / "shop" / DAY / "m.csv").write_text(
        "order_no,line,order_time,state,qty,price,ccy\n"  # 1
        'M1,1,2026-01-05 10:00:00,PAID,1,"1.00",CNY\n'  # 2
        'M2,1,2026-01-05 10:00:00,"PA\nID",1,1.00,CNY\n'  # 3-4 (status 'PA\nID' is kept)
        "\n"  # 5 blank: not a row
        "M3,1,2026-01-05 10:00:00,PAID,x,1.00,CNY\n"  # 6 quarantined
        "M4,1,2026-01-05 10:00:00,PAID,1,1.00\n"  # 7 wrong column count
        "M5,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n",  # 8
        encoding="utf-8",
    )
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    assert counts(result) == {"m.csv": (5, 3, 2)}
    assert result.files[0].warnings == ["1 blank line(s) skipped"]
    assert quarantine(con, "m.csv") == [
        (6, "quantity: 'x' is not a number"),
        (7, "wrong column count (expected 7, got 6)"),
    ]
    loaded = con.execute("SELECT order_id, _source_line FROM raw.orders ORDER BY 2").fetchall()
    assert loaded == [("M1", 2), ("M2", 3), ("M5", 8)]


def test_rows_read_invariant_and_load_log(con, tmp_path):
    deliver(tmp_path, "shop", "orders_malformed.csv", "orders_bad_utf8.csv", "orders_bom_crlf.csv")
    result = load_partition(con, load_mapping(FIXTURES / "orders_csv.yaml"), tmp_path, DAY)
    for f in result.files:
        assert f.rows_read == f.rows_loaded + f.rows_quarantined
    by_file = con.execute(
        "SELECT l._source_file, l.rows_loaded, l.rows_quarantined, "
        "(SELECT count(*) FROM raw.orders o WHERE o._source_file = l._source_file), "
        "(SELECT count(*) FROM raw.quarantine q WHERE q._source_file = l._source_file) "
        "FROM raw.load_log l ORDER BY 1"
    ).fetchall()
    for _, loaded, quarantined, n_rows, n_quarantine in by_file:
        assert (loaded, quarantined) == (n_rows, n_quarantine)
    assert result.rows_read == 10 + 4 + 2


def test_discover_partitions(tmp_path):
    mapping = load_mapping(FIXTURES / "orders_csv.yaml")
    for day in ("2026-01-02", "2026-01-01", "not-a-date", "_tmp"):
        (tmp_path / "shop" / day).mkdir(parents=True)
    assert discover_partitions(tmp_path, mapping) == [date(2026, 1, 1), date(2026, 1, 2)]
    assert discover_partitions(tmp_path / "nothing", mapping) == []


def test_check_mapping_dry_run(tmp_path):
    deliver(tmp_path, "shop", "orders_malformed.csv")
    report = check_mapping(FIXTURES / "orders_csv.yaml", tmp_path, sample=2)
    assert report.error is None
    assert [(f.rows_read, f.rows_loaded, f.rows_quarantined) for f in report.files] == [(10, 3, 7)]
    fields = {f.field: f for f in report.fields}
    assert fields["ordered_at"].samples[0] == (
        {"order_time": "2026-01-05 10:00:00"},
        "2026-01-05 10:00:00",
        datetime(2026, 1, 5, 2, 0),
    )
    assert fields["quantity"].failures == 1
    assert fields["order_id"].failures == 1
    assert fields["discount_amount"].source == "default 0"
    text = format_check_report(report)
    assert "quantity: '…' is not a number" in text
    assert "orders_malformed.csv:4" in text
    # nothing was written anywhere: the landing folder holds only the delivery
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == ["orders_malformed.csv"]
