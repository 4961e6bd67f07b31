"""Valid files of the fuzzed ingest mappings (tests/test_ingest_fuzz.py): the mappings under
fuzz, values that load, and the writers of delimited text, JSON Lines and Parquet."""

from __future__ import annotations

import csv
import functools
import io
import json
from dataclasses import dataclass
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import strategies as st

from pipelines.ingest.mapping import SourceMapping, parse_mapping

DAY = "2026-01-06"
LOADED_AT = datetime(2026, 1, 7, 3, 0)
MB = 1 << 20

# --------------------------------------------------------------------------- values
IDS = st.integers(0, 10**9).map(lambda n: f"K{n}")
TIMESTAMPS = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31))
TS_TEXT = TIMESTAMPS.map(lambda d: d.strftime("%Y-%m-%d %H:%M:%S"))
DECIMALS = st.decimals(min_value=-(10**6), max_value=10**6, places=2).map(str)
# text that any mapping loads as-is: no line break (a CR breaks DuckDB's line reader), no
# null token, no space (whitespace-delimited files)
NAMES = st.text(
    alphabet=st.sampled_from("abcXYZ019_-.@张三李四王五😀éß"), min_size=1, max_size=10
).filter(lambda s: s != "NULL")
# what a broken export writes: separators, quotes, escapes, line breaks, NUL, BOM, U+FFFD,
# JSON punctuation, non-BMP characters, plus a few values that look typed and are not
JUNK_VALUES = [
    "", "NULL", "null", "2026-13-45 10:00:00", "1e999", "NaN", "-0", "9" * 40, "true", "0x1F",
    "1,234.00", "２０２６", "2026-01-05T10:00:00+25:00", "\\N", '"', '""',
]  # fmt: skip
JUNK = st.one_of(
    st.text(
        alphabet=st.sampled_from(list(",;|\t \"'\\\n\r\x00\ufeff\ufffd张三{}[]:😀aZ09.-+eE")),
        max_size=24,
    ),
    st.sampled_from(JUNK_VALUES),
)
# extra column / key names that collide with what the engine or DuckDB use internally
NASTY_NAMES = [
    "__f", "__pos", "__pre", "__raw", "__reason", "__rowtext", "__line", "__j", "__a",
    "__ord", "__v0", "__t0", "__v2", "__t2", "__v3", "__t3", "__F", "__Reason",
    "file_index", "File_Index", "file_row_number", "filename", "rowid", "column0", "NULL",
    "列", "a.b", "$.x", "*",
]  # fmt: skip


@dataclass(frozen=True)
class Source:
    """A mapping under fuzz and how to write a valid file for it."""

    key: str
    doc: dict
    ext: str
    columns: tuple[str, ...]  # source columns, in file order
    valid: dict[str, st.SearchStrategy[str]]  # a value that loads, per column
    id_column: str  # the column holding the row's id (the oracle of valid files)
    kind: str = "delimited"  # delimited | whitespace | jsonl | parquet
    encoding: str = "utf-8"
    delimiter: str = ","
    header: bool = True

    @property
    def mapping(self) -> SourceMapping:
        return _parsed(self.key)


SOURCES = {
    s.key: s
    for s in (
        Source(
            "csv_utf8",
            {
                "name": "shop",
                "entity": "orders",
                "files": "*.csv",
                "format": {"type": "csv", "delimiter": ",", "null_tokens": ["", "NULL"]},
                "fields": {
                    "order_id": "order_no",
                    "line_no": {"column": "line"},
                    "ordered_at": {
                        "column": "order_time",
                        "formats": ["%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M"],
                    },
                    "status": {"column": "state", "values": {"PAID": "paid", "DONE": "completed"}},
                    "quantity": "qty",
                    "unit_price": "price",
                    "buyer_name": "buyer",
                    "currency": "ccy",
                },
            },
            ".csv",
            ("order_no", "line", "order_time", "state", "qty", "price", "buyer", "ccy"),
            {
                "order_no": IDS,
                "line": st.integers(1, 99).map(str),
                "order_time": TS_TEXT,
                "state": st.sampled_from(["PAID", "DONE", "shipped"]),
                "qty": DECIMALS,
                "price": DECIMALS,
                "buyer": NAMES,
                "ccy": st.sampled_from(["CNY", "USD"]),
            },
            "order_no",
        ),
        Source(
            "csv_gb18030",
            {
                "name": "erp",
                "entity": "customers",
                "files": "*.csv",
                "format": {"type": "csv", "encoding": "gb18030"},
                "fields": {
                    "source_system": {"expr": "'erp'"},
                    "customer_ref": "会员编号",
                    "updated_at": {"column": "更新时间", "formats": ["%Y-%m-%d %H:%M:%S"]},
                    "birth_date": {"column": "出生日期", "formats": ["%Y-%m-%d", "%Y%m%d"]},
                    "marketing_consent": "同意营销",
                    "name": "姓名",
                    "province": "省份",
                },
            },
            ".csv",
            ("会员编号", "更新时间", "出生日期", "同意营销", "姓名", "省份"),
            {
                "会员编号": IDS,
                "更新时间": TS_TEXT,
                "出生日期": st.dates(date(1930, 1, 1), date(2020, 1, 1)).map(str),
                "同意营销": st.sampled_from(["true", "false", "yes", "no", "1", "0"]),
                "姓名": NAMES,
                "省份": st.sampled_from(["广东", "浙江", "上海"]),
            },
            "会员编号",
            encoding="gb18030",
        ),
        Source(
            "tsv",
            {
                "name": "desk",
                "entity": "service_events",
                "files": "*.tsv",
                "format": {"type": "tsv"},
                "fields": {
                    "ticket_id": "ticket_no",
                    "event_at": {"column": "event_time", "formats": ["%Y-%m-%d %H:%M:%S"]},
                    "event_type": "event",
                    "csat_score": "csat",
                    "agent_id": "agent",
                },
            },
            ".tsv",
            ("ticket_no", "event_time", "event", "csat", "agent"),
            {
                "ticket_no": IDS,
                "event_time": TS_TEXT,
                "event": st.sampled_from(["created", "csat", "resolved"]),
                "csat": st.integers(1, 5).map(str),
                "agent": NAMES,
            },
            "ticket_no",
            delimiter="\t",
        ),
        Source(
            "pipes_noheader",
            {
                "name": "social",
                "entity": "social_interactions",
                "files": "*.txt",
                "format": {
                    "type": "csv",
                    "delimiter": "||",
                    "header": False,
                    "columns": ["msg", "at", "platform", "account", "dir", "action"],
                },
                "timezone": "UTC",
                "fields": {
                    "interaction_id": "msg",
                    "occurred_at": "at",
                    "platform": "platform",
                    "account_id": "account",
                    "direction": {"column": "dir", "values": {"in": "inbound", "out": "outbound"}},
                    "interaction_type": "action",
                },
            },
            ".txt",
            ("msg", "at", "platform", "account", "dir", "action"),
            {
                "msg": IDS,
                "at": TIMESTAMPS.map(lambda d: d.isoformat()),
                "platform": st.sampled_from(["weibo", "wechat"]),
                "account": NAMES,
                "dir": st.sampled_from(["in", "out"]),
                "action": st.sampled_from(["like", "comment"]),
            },
            "msg",
            delimiter="||",
            header=False,
        ),
        Source(
            "whitespace",
            {
                "name": "pos",
                "entity": "orders",
                "files": "*.txt",
                "format": {"type": "txt", "delimiter": "whitespace"},
                "fields": {
                    "order_id": "order_no",
                    "ordered_at": {"expr": "dt || ' ' || tm"},
                    "status": "state",
                    "quantity": "qty",
                    "unit_price": "price",
                },
            },
            ".txt",
            ("order_no", "dt", "tm", "state", "qty", "price"),
            {
                "order_no": IDS,
                "dt": TIMESTAMPS.map(lambda d: d.strftime("%Y-%m-%d")),
                "tm": TIMESTAMPS.map(lambda d: d.strftime("%H:%M:%S")),
                "state": st.sampled_from(["paid", "completed"]),
                "qty": DECIMALS,
                "price": DECIMALS,
            },
            "order_no",
            kind="whitespace",
            delimiter=" ",
        ),
        Source(
            "jsonl",
            {
                "name": "mall",
                "entity": "customers",
                "files": "*.jsonl",
                "format": {"type": "jsonl"},
                "fields": {
                    "source_system": {"expr": "'mall'"},
                    "customer_ref": "member_id",
                    "updated_at": {"column": "updated_at", "formats": ["%Y-%m-%dT%H:%M:%S%z"]},
                    "registered_at": "created_at",
                    "name": "real_name",
                    "gender": {
                        "expr": "CASE CAST(gender AS VARCHAR) WHEN '1' THEN 'male' "
                        "WHEN '2' THEN 'female' END"
                    },
                    "marketing_consent": "consent",
                    "member_level": "level",
                },
            },
            ".jsonl",
            ("member_id", "updated_at", "created_at", "real_name", "gender", "consent", "level"),
            {
                "member_id": IDS,
                "updated_at": TIMESTAMPS.map(lambda d: d.strftime("%Y-%m-%dT%H:%M:%S+08:00")),
                "created_at": TS_TEXT,
                "real_name": NAMES,
                "gender": st.sampled_from(["0", "1", "2"]),
                "consent": st.sampled_from(["true", "false"]),
                "level": st.sampled_from(["gold", "silver"]),
            },
            "member_id",
            kind="jsonl",
        ),
        Source(
            "parquet",
            {
                "name": "lake",
                "entity": "social_interactions",
                "files": "*.parquet",
                "format": "parquet",
                "fields": {
                    "interaction_id": "msg_id",
                    "occurred_at": "event_time",
                    "platform": "platform",
                    "account_id": "open_id",
                    "direction": {
                        "column": "direction",
                        "values": {"in": "inbound", "out": "outbound"},
                    },
                    "interaction_type": "action",
                    "content": "text",
                },
            },
            ".parquet",
            ("msg_id", "event_time", "platform", "open_id", "direction", "action", "text"),
            {
                "msg_id": IDS,
                "event_time": TS_TEXT,
                "platform": st.sampled_from(["weibo", "douyin"]),
                "open_id": NAMES,
                "direction": st.sampled_from(["in", "out"]),
                "action": st.sampled_from(["like", "share"]),
                "text": NAMES,
            },
            "msg_id",
            kind="parquet",
        ),
    )
}


@functools.cache
def _parsed(key: str) -> SourceMapping:
    return parse_mapping(SOURCES[key].doc)


# --------------------------------------------------------------------------- writers
def _quote(value: str, delimiter: str) -> str:
    if any(c in value for c in (*delimiter, '"', "\n", "\r")):
        return '"' + value.replace('"', '""') + '"'
    return value


def delimited_text(rows: list[list[str]], delimiter: str, eol: str = "\n") -> str:
    """Rows as delimited text, quoting as a CSV writer does (doubled quotes)."""
    if delimiter == " ":  # whitespace-delimited: no quoting at all
        return "".join(" ".join(r) + eol for r in rows)
    if len(delimiter) == 1:
        out = io.StringIO()
        csv.writer(out, delimiter=delimiter, lineterminator=eol).writerows(rows)
        return out.getvalue()
    return "".join(delimiter.join(_quote(v, delimiter) for v in r) + eol for r in rows)


def json_line(obj: object, ensure_ascii: bool = False) -> str:
    return json.dumps(obj, ensure_ascii=ensure_ascii)


def parquet_bytes(table: pa.Table) -> bytes:
    out = io.BytesIO()
    pq.write_table(table, out)
    return out.getvalue()


@st.composite
def valid_rows(draw, src: Source, min_size: int = 0, max_size: int = 6) -> list[dict[str, str]]:
    n = draw(st.integers(min_size, max_size))
    return [{c: draw(src.valid[c]) for c in src.columns} for _ in range(n)]


@st.composite
def messy_rows(draw, src: Source, max_size: int = 6) -> list[dict[str, str]]:
    """Rows where any value may be junk."""
    rows = draw(valid_rows(src, 0, max_size))
    for row in rows:
        for c in src.columns:
            if draw(st.integers(0, 3)) == 0:
                row[c] = draw(JUNK)
    return rows


def encode_file(src: Source, rows: list[dict[str, str]], *, header: bool | None = None) -> bytes:
    """A file of ``rows`` as the source delivers it (text formats)."""
    header = src.header if header is None else header
    if src.kind == "jsonl":
        return "".join(json_line(r) + "\n" for r in rows).encode(src.encoding)
    lines = [list(src.columns)] if header else []
    lines += [[r[c] for c in src.columns] for r in rows]
    return delimited_text(lines, src.delimiter).encode(src.encoding, errors="replace")
