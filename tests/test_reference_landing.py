"""Hand-computed cases for the pandas reference's landing reader (tests/reference/landing):
formats, encodings, quoting, the expression table, typing rules."""

from __future__ import annotations

import json
from datetime import date, datetime

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from reference.landing import (
    UnsupportedExpression,
    parse_mapping,
    read_landing,
    read_source,
    type_decimal,
    type_integer,
    type_timestamp,
)

ORDERS_MAPPING = {
    "name": "pos",
    "entity": "orders",
    "files": "*.csv",
    "format": {"type": "csv", "delimiter": ";", "encoding": "gb18030", "null_tokens": ["", "NULL"]},
    "timezone": "Asia/Shanghai",
    "fields": {
        "order_id": "订单号",
        "ordered_at": {"column": "下单时间", "formats": ["%Y/%m/%d %H:%M", "%Y%m%d%H%M%S"]},
        "status": {"column": "状态", "values": {"已支付": "paid", "已取消": "cancelled"}},
        "quantity": "数量",
        "unit_price": "单价",
        "currency": {"expr": "coalesce(币种, 'CNY')"},
        "customer_ref": "会员号",
        "source_system": {"expr": "CASE 渠道 WHEN 'TM' THEN 'tmall' ELSE 'crm' END"},
    },
}

ORDERS_TEXT = (
    "订单号;下单时间;状态;数量;单价;币种;会员号;渠道\n"
    "P1;2026/01/05 10:30;已支付;2;19.905;;M1;POS\n"  # 19.905 -> 19.91 (half away from 0)
    "P2;20260105233000;已取消;1;5;USD;NULL;TM\n"
    "P3;2026/01/05 10:30;已支付;x;5;;M1;POS\n"  # quantity untypable
    "P4;;已支付;1;5;;M1;POS\n"  # missing ordered_at
    "P5;2026/01/05 10:30;已支付;1;5;;M1\n"  # wrong column count
    "P6;2026/01/06 08:00;OTHER;1;5;;M2;POS\n"  # untranslated value kept
)


def _write(path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_read_source_csv_gb18030_values_formats_expr_and_exclusions(tmp_path):
    m = parse_mapping(ORDERS_MAPPING)
    _write(tmp_path / "pos" / "2026-01-06" / "a.csv", ORDERS_TEXT.encode("gb18030"))
    # the same bytes under another name and date: loaded once
    _write(tmp_path / "pos" / "2026-01-07" / "copy.csv", ORDERS_TEXT.encode("gb18030"))
    # after the as-of date: not read
    _write(tmp_path / "pos" / "2026-01-09" / "b.csv", ORDERS_TEXT.encode("gb18030") + b"\n")
    sf = read_source(tmp_path, m, as_of=date(2026, 1, 8))
    f = sf.frame
    assert sf.files_read == 1 and sf.files_duplicate == 1
    assert list(f["order_id"]) == ["P1", "P2", "P6"]
    assert sf.excluded == {
        "untypable quantity": 1,
        "missing ordered_at": 1,
        "unparseable row": 1,
    }
    # Shanghai 10:30 -> 02:30 UTC; 23:30 -> 15:30 UTC
    assert list(f["ordered_at"]) == [
        datetime(2026, 1, 5, 2, 30),
        datetime(2026, 1, 5, 15, 30),
        datetime(2026, 1, 6, 0, 0),
    ]
    assert list(f["status"]) == ["paid", "cancelled", "OTHER"]
    assert list(f["unit_price"]) == [19.91, 5.0, 5.0]
    assert list(f["currency"]) == ["CNY", "USD", "CNY"]
    assert list(f["source_system"]) == ["crm", "tmall", "crm"]
    assert pd.isna(f["customer_ref"].iloc[1])
    assert list(f["line_no"]) == [1, 1, 1]
    assert list(f["discount_amount"]) == [0.0, 0.0, 0.0]
    assert list(f["_source_line"]) == [2, 3, 7]


def test_quoted_multiline_and_unterminated_quote(tmp_path):
    mapping = {
        "name": "crm",
        "entity": "customers",
        "format": {"type": "csv"},
        "fields": {
            "source_system": {"expr": "'crm'"},
            "customer_ref": "id",
            "updated_at": "ts",
            "address": "addr",
        },
    }
    text = (
        "\ufeffid,ts,addr\n"
        'C1,2026-01-05 10:00:00,"line one\nline two"\n'
        "C2,2026-01-05T10:00:00+00:00,plain\n"
        'C3,2026-01-05 10:00:00,"never closed\n'
        "C4,2026-01-05 10:00:00,swallowed\n"
    )
    _write(tmp_path / "crm" / "2026-01-06" / "x.csv", text.encode("utf-8"))
    sf = read_source(tmp_path, parse_mapping(mapping))
    f = sf.frame
    assert list(f["customer_ref"]) == ["C1", "C2"]
    assert f["address"].iloc[0] == "line one\nline two"
    assert list(f["updated_at"]) == [datetime(2026, 1, 5, 2, 0), datetime(2026, 1, 5, 10, 0)]
    assert list(f["_source_line"]) == [2, 4]
    assert sf.excluded == {"unparseable row": 1}  # C3 + C4 are one broken record


def test_whitespace_jsonl_and_parquet(tmp_path):
    ws = {
        "name": "ws",
        "entity": "social_interactions",
        "format": {"type": "txt", "delimiter": "whitespace", "header": False,
                   "columns": ["id", "ts", "pf", "acct", "dir", "kind"]},
        "timezone": "UTC",
        "fields": {"interaction_id": "id", "occurred_at": {"column": "ts", "formats": ["%Y%m%d%H%M"]},
                   "platform": "pf", "account_id": "acct", "direction": "dir",
                   "interaction_type": "kind"},
    }  # fmt: skip
    _write(
        tmp_path / "ws" / "2026-01-06" / "a.txt",
        b"I1  202601051000\tweibo u1 inbound like\n\nI2 202601051000 weibo u1 inbound\n",
    )
    f = read_source(tmp_path, parse_mapping(ws)).frame
    assert list(f["interaction_id"]) == ["I1"]
    assert f["occurred_at"].iloc[0] == datetime(2026, 1, 5, 10, 0)  # UTC source

    js = {
        "name": "js",
        "entity": "customers",
        "format": {"type": "jsonl"},
        "fields": {
            "source_system": {"expr": "'mall'"},
            "customer_ref": "id",
            "updated_at": {"column": "ts", "formats": ["%Y-%m-%dT%H:%M:%S%z"]},
            "gender": {
                "expr": "CASE CAST(g AS VARCHAR) WHEN '1' THEN 'male' WHEN '2' THEN 'female' END"
            },
        },
    }
    lines = [
        json.dumps({"id": "W1", "ts": "2026-01-05T10:00:00+08:00", "g": 1}),
        "{broken",
        json.dumps({"id": "W2", "ts": "2026-01-05T10:00:00+08:00", "g": 0}),
    ]
    _write(tmp_path / "js" / "2026-01-06" / "a.jsonl", "\n".join(lines).encode())
    sf = read_source(tmp_path, parse_mapping(js))
    assert sf.frame["gender"].iloc[0] == "male" and pd.isna(sf.frame["gender"].iloc[1])
    assert sf.frame["updated_at"].iloc[0] == datetime(2026, 1, 5, 2, 0)
    assert sf.excluded == {"unparseable row": 1}

    pqm = {
        "name": "pq",
        "entity": "social_interactions",
        "format": {"type": "parquet"},
        "fields": {"interaction_id": "id", "occurred_at": "ts", "platform": "pf",
                   "account_id": "acct", "direction": {"column": "d", "values": {"in": "inbound"}},
                   "interaction_type": "k"},
    }  # fmt: skip
    table = pa.table(
        {
            "id": ["S1", "S2"],
            "ts": pa.array([datetime(2026, 1, 5, 8, 0), datetime(2026, 1, 5, 9, 0)]),
            "pf": ["wechat", "wechat"],
            "acct": ["o1", None],
            "d": ["in", "out"],
            "k": ["message", "message"],
        }
    )
    (tmp_path / "pq" / "2026-01-06").mkdir(parents=True)
    pq.write_table(table, tmp_path / "pq" / "2026-01-06" / "w.parquet")
    sf = read_source(tmp_path, parse_mapping(pqm))
    assert list(sf.frame["interaction_id"]) == ["S1"]  # S2 misses account_id
    assert sf.frame["occurred_at"].iloc[0] == datetime(2026, 1, 5, 0, 0)
    assert sf.frame["direction"].iloc[0] == "inbound"


def test_underscore_folders_are_never_read(tmp_path):
    m = parse_mapping(ORDERS_MAPPING)
    _write(tmp_path / "pos" / "_scratch" / "a.csv", ORDERS_TEXT.encode("gb18030"))
    _write(tmp_path / "pos" / "2026-01-06" / "_hidden.csv", ORDERS_TEXT.encode("gb18030"))
    frames = read_landing(tmp_path, {"pos": m, "_tmp": m})
    assert len(frames["orders"]) == 0


def test_unknown_expression_fails_loudly():
    doc = json.loads(json.dumps(ORDERS_MAPPING))
    doc["fields"]["order_id"] = {"expr": "upper(订单号)"}
    with pytest.raises(UnsupportedExpression, match="fields.order_id"):
        parse_mapping(doc)


def test_typing_rules():
    assert type_decimal("-12.345", 2) == -12.35
    assert type_decimal(" 7 ", 4) == 7.0
    assert type_integer("4.0") == 4
    assert type_integer("4.5") not in (4, 5, None)  # not an integer: the row is excluded
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Asia/Shanghai")
    assert type_timestamp("2026-01-05 08:00:00", (), tz) == datetime(2026, 1, 5, 0, 0)
    assert type_timestamp("2026-01-05T08:00:00Z", (), tz) == datetime(2026, 1, 5, 8, 0)


def test_expression_table_concat_case_else_and_coalesce_columns():
    doc = {
        "name": "x",
        "entity": "customers",
        "format": {"type": "csv"},
        "fields": {
            "source_system": {"expr": "CASE sys WHEN 'A' THEN 'crm' ELSE 'other' END"},
            "customer_ref": {"expr": "'pos:' || member_no"},
            "updated_at": "ts",
            "phone": {"expr": "coalesce(mobile, tel)"},
        },
    }
    m = parse_mapping(doc)
    from reference.landing import apply_mapping

    raw = pd.DataFrame(
        {"sys": ["A", "B", None], "member_no": ["1", None, "3"], "mobile": [None, "m", None],
         "tel": ["t", "u", None], "ts": ["2026-01-01 00:00:00"] * 3, "_source_line": [2, 3, 4]},
        dtype=object,
    )  # fmt: skip
    frame, reasons = apply_mapping(raw, m)
    # row 2: 'pos:' || NULL is NULL -> customer_ref missing -> excluded
    assert reasons == {"missing customer_ref": 1}
    assert list(frame["customer_ref"]) == ["pos:1", "pos:3"]
    assert list(frame["source_system"]) == ["crm", "other"]  # CASE NULL -> ELSE
    assert frame["phone"].iloc[0] == "t" and pd.isna(frame["phone"].iloc[1])
