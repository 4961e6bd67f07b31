"""Damaged deliveries for the ingest fuzz (tests/test_ingest_fuzz.py): hypothesis strategies
that break a valid file of a mapping (bytes, encodings, structure, JSON values, Parquet
types), one per kind of damage."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow as pa
from hypothesis import strategies as st

from support.ingest_fuzz_sources import (
    IDS,
    JUNK,
    MB,
    NAMES,
    NASTY_NAMES,
    TS_TEXT,
    Source,
    delimited_text,
    encode_file,
    json_line,
    messy_rows,
    parquet_bytes,
    valid_rows,
)

# --------------------------------------------------------------------------- damage: text
TEXT_KINDS = ["random_bytes", "truncated", "mixed_encoding", "huge_field", "wrong_delimiter",
              "ragged", "structure", "nasty_columns"]  # fmt: skip
JSONL_KINDS = ["random_bytes", "truncated", "mixed_encoding", "huge_field", "nested",
               "not_object", "structure", "nasty_columns"]  # fmt: skip
PARQUET_KINDS = ["random_bytes", "truncated", "wrong_types", "nested", "empty", "nasty_columns",
                 "missing_columns"]  # fmt: skip


@dataclass
class Delivery:
    """A generated file and what is known of it."""

    data: bytes
    exact_ids: list[str] | None = None  # a valid file: these rows load, nothing else
    missing: tuple[str, ...] = ()  # mapped source columns the file lacks (Parquet)


@st.composite
def random_bytes(draw, src: Source) -> Delivery:
    prefix = b""
    if src.kind == "parquet" and draw(st.booleans()):
        prefix = b"PAR1"  # past the magic number check, into the footer parser
    elif src.header and src.kind != "jsonl" and draw(st.booleans()):
        prefix = encode_file(src, [])  # a good header, then noise
    body = draw(st.binary(max_size=600))
    suffix = b"PAR1" if prefix == b"PAR1" else b""
    return Delivery(prefix + body + suffix)


@st.composite
def truncated(draw, src: Source) -> Delivery:
    data = encode_file(src, draw(messy_rows(src)))
    return Delivery(data[: draw(st.integers(0, len(data)))])


@st.composite
def mixed_encoding(draw, src: Source) -> Delivery:
    """Lines in UTF-8 and GB18030 (and one stray Latin-1 byte now and then) in one file."""
    rows = draw(valid_rows(src, 1, 6))
    for row in rows:
        for c in src.columns:
            if draw(st.booleans()):
                row[c] = draw(st.sampled_from(["张三", "李四·王", "广东省", "ÄÖü", "测试😀"]))
    lines: list[bytes] = []
    header = encode_file(src, [])
    if header:
        lines.append(header)
    for row in rows:
        text = encode_file(src, [row], header=False).decode(src.encoding)
        enc = draw(st.sampled_from(["utf-8", "gb18030", "latin-1"]))
        lines.append(text.encode(enc, errors="replace"))
    return Delivery(b"".join(lines))


@st.composite
def huge_field(draw, src: Source) -> Delivery:
    """A valid file with one value of about 1 MB (plain, Chinese, or full of separators
    and line breaks)."""
    rows = draw(valid_rows(src, 1, 3))
    unit = draw(st.sampled_from(["x", "张", "a,b;c", 'q"q', "line\nbreak", "\t \t"]))
    row = draw(st.sampled_from(rows))
    col = draw(st.sampled_from(src.columns))
    row[col] = unit * (MB // len(unit.encode("utf-8")))
    data = encode_file(src, rows)
    if draw(st.booleans()):
        data = data.rstrip(b"\n")  # no final line break
    return Delivery(data)


@st.composite
def wrong_delimiter(draw, src: Source) -> Delivery:
    rows = draw(valid_rows(src, 1, 5))
    delim = draw(
        st.sampled_from([d for d in [",", ";", "\t", "|", " ", "||"] if d != src.delimiter])
    )
    lines = [[r[c] for c in src.columns] for r in rows]
    body = delimited_text(lines, delim)
    if src.header:
        header_delim = draw(st.sampled_from([src.delimiter, delim]))
        body = delimited_text([list(src.columns)], header_delim) + body
    return Delivery(body.encode(src.encoding, errors="replace"))


@st.composite
def ragged(draw, src: Source) -> Delivery:
    rows = draw(messy_rows(src, 6))
    lines = [list(src.columns)] if src.header else []
    for r in rows:
        values = [r[c] for c in src.columns]
        n = draw(st.integers(0, len(values) + 3))
        lines.append((values + ["extra"] * 3)[:n])
    return Delivery(delimited_text(lines, src.delimiter).encode(src.encoding, errors="replace"))


def _line_strategy(src: Source) -> st.SearchStrategy[str]:
    def row_line(row: dict[str, str]) -> str:
        text = encode_file(src, [row], header=False).decode(src.encoding)
        return text.rstrip("\n")

    return st.one_of(
        messy_rows(src, 1).map(lambda rows: row_line(rows[0]) if rows else ""),
        JUNK,
        st.sampled_from(["", " ", "\t", '"', '"unterminated', "\ufeff", "{", "[]", "null"]),
    )


@st.composite
def structure(draw, src: Source) -> Delivery:
    """Blank lines, BOMs, CR / CRLF / LF mixed, stray quotes, NUL bytes; empty and
    header-only files."""
    lines = draw(st.lists(_line_strategy(src), max_size=8))
    if src.header and src.kind != "jsonl" and draw(st.booleans()):
        lines.insert(0, encode_file(src, []).decode(src.encoding).rstrip("\n"))
    eols = draw(st.lists(st.sampled_from(["\n", "\n", "\r\n", "\r"]), min_size=len(lines)))
    text = "".join(line + eol for line, eol in zip(lines, eols, strict=False))
    if lines and draw(st.booleans()):
        text = text.rstrip("\r\n")
    if draw(st.booleans()):
        text = "\ufeff" + text
    return Delivery(text.encode(src.encoding, errors="replace"))


@st.composite
def nasty_columns(draw, src: Source) -> Delivery:
    """A valid file whose extra columns (or keys) are named like the engine's internals:
    the mapped values must load untouched."""
    rows = draw(valid_rows(src, 1, 5))
    names = NASTY_NAMES + [c.upper() for c in src.columns if c.upper() != c]
    extra = draw(st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True))
    extra = [n for n in extra if n not in src.columns]
    ids = [r[src.id_column] for r in rows]
    if src.kind == "jsonl":
        lines = []
        for r in rows:
            obj = dict(r)
            for n in extra:
                obj[n] = draw(st.one_of(NAMES, st.integers(), st.none()))
            lines.append(json_line(obj) + "\n")
        return Delivery("".join(lines).encode(src.encoding), exact_ids=ids)
    order = list(src.columns)
    for n in extra:
        order.insert(draw(st.integers(0, len(order))), n)
    value = st.text(alphabet=st.sampled_from("xyz0129张😀,;|"), min_size=1, max_size=6)
    if src.kind == "whitespace":
        value = NAMES
    lines = [order]
    for r in rows:
        extras = {n: draw(value) for n in extra}
        lines.append([r[c] if c in r else extras[c] for c in order])
    text = delimited_text(lines, src.delimiter)
    return Delivery(text.encode(src.encoding), exact_ids=ids)


# --------------------------------------------------------------------------- damage: JSON
JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)


@st.composite
def nested(draw, src: Source) -> Delivery:
    """Objects and arrays (or numbers, booleans, null) where scalars are expected."""
    if src.kind == "parquet":
        return draw(parquet_nested(src))
    rows = draw(valid_rows(src, 1, 5))
    lines = []
    for r in rows:
        obj: dict[str, object] = dict(r)
        for c in src.columns:
            if draw(st.booleans()):
                obj[c] = draw(JSON_VALUES)
        lines.append(json_line(obj, ensure_ascii=draw(st.booleans())) + "\n")
    if draw(st.booleans()):  # deeply nested
        depth = draw(st.sampled_from([64, 1000, 20000]))
        lines.append(json_line({src.id_column: "deep", "x": 0})[:-1] + ', "y": ')
        lines[-1] += "[" * depth + "]" * depth + "}\n"
    return Delivery("".join(lines).encode(src.encoding))


@st.composite
def not_object(draw, src: Source) -> Delivery:
    """Valid JSON that is not an object, broken JSON, and objects mixed together."""
    good = [json_line(r) for r in draw(valid_rows(src, 0, 3))]
    bad = draw(
        st.lists(
            st.one_of(
                JSON_VALUES.filter(lambda v: not isinstance(v, dict)).map(json.dumps),
                st.sampled_from(
                    [
                        '{"a":1,}',
                        "{'a': 1}",
                        '{"a":1}{"b":2}',
                        "{",
                        "}",
                        "NaN",
                        '{"member_id": NaN}',
                        "[1,2",
                        '"open',
                        "01",
                        "+1",
                        "1e400",
                    ]
                ),
            ),  # fmt: skip
            min_size=1,
            max_size=6,
        )
    )
    lines = draw(st.permutations(good + bad))
    return Delivery("".join(line + "\n" for line in lines).encode(src.encoding))


# --------------------------------------------------------------------------- damage: Parquet
def _arrow_value(dtype: pa.DataType) -> st.SearchStrategy:
    """Values of an arrow type, extremes included (a NULL now and then)."""
    if pa.types.is_null(dtype):
        return st.none()
    if pa.types.is_boolean(dtype):
        base = st.booleans()
    elif pa.types.is_signed_integer(dtype):
        base = st.integers(-(2 ** (dtype.bit_width - 1)), 2 ** (dtype.bit_width - 1) - 1)
    elif pa.types.is_unsigned_integer(dtype):
        base = st.integers(0, 2**dtype.bit_width - 1)
    elif pa.types.is_floating(dtype):
        base = st.floats(width=dtype.bit_width)
    elif pa.types.is_timestamp(dtype) or pa.types.is_duration(dtype):
        # Parquet has no seconds: pyarrow writes them as milliseconds
        limit = (2**63 - 1) // (1000 if dtype.unit == "s" else 1)
        base = st.integers(-limit, limit)
    elif pa.types.is_date32(dtype):
        base = st.integers(-(2**31), 2**31 - 1)
    elif pa.types.is_time64(dtype):
        base = st.integers(0, 86_400_000_000 - 1)
    elif pa.types.is_decimal(dtype):
        base = st.decimals(min_value=-(10**20), max_value=10**20, places=dtype.scale)
    elif pa.types.is_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        size = dtype.byte_width if pa.types.is_fixed_size_binary(dtype) else None
        base = st.binary(min_size=size or 0, max_size=size or 12)
    elif pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        base = st.one_of(JUNK, TS_TEXT, IDS)
    elif pa.types.is_list(dtype):
        base = st.lists(_arrow_value(dtype.value_type), max_size=3)
    elif pa.types.is_struct(dtype):
        base = st.fixed_dictionaries({f.name: _arrow_value(f.type) for f in dtype})
    elif pa.types.is_map(dtype):
        entry = st.tuples(st.text(min_size=1, max_size=4), st.integers(-(2**63), 2**63 - 1))
        base = st.lists(entry, max_size=3)
    else:  # every type of SCALAR_TYPES and NESTED_TYPES is handled above
        raise AssertionError(dtype)
    return st.one_of(st.none(), base) if not pa.types.is_fixed_size_binary(dtype) else base


SCALAR_TYPES = [
    pa.string(), pa.large_string(), pa.int8(), pa.int64(), pa.uint64(), pa.float32(),
    pa.float64(), pa.bool_(), pa.null(), pa.timestamp("s"), pa.timestamp("ns"),
    pa.timestamp("us", tz="Asia/Shanghai"), pa.date32(), pa.time64("us"),
    pa.decimal128(38, 10), pa.binary(), pa.binary(4), pa.duration("ms"),
]  # fmt: skip
NESTED_TYPES = [
    pa.list_(pa.int64()),
    pa.list_(pa.string()),
    pa.struct([("a", pa.int64()), ("b", pa.string())]),
    pa.map_(pa.string(), pa.int64()),
    pa.list_(pa.struct([("x", pa.list_(pa.float64()))])),
    pa.struct([("ts", pa.timestamp("ms")), ("tags", pa.list_(pa.string()))]),
]


def _column(dtype: pa.DataType, values: list) -> pa.Array:
    if pa.types.is_timestamp(dtype) or pa.types.is_duration(dtype):
        return pa.array(values, type=pa.int64()).cast(dtype)
    if pa.types.is_date32(dtype):
        return pa.array(values, type=pa.int32()).cast(dtype)
    if pa.types.is_time64(dtype):
        return pa.array(values, type=pa.int64()).cast(dtype)
    return pa.array(values, type=dtype)


@st.composite
def parquet_typed(draw, src: Source, types: list[pa.DataType], share: float) -> Delivery:
    """A Parquet file whose columns have other types than text (about ``share`` of them)."""
    n = draw(st.integers(0, 6))
    rows = draw(valid_rows(src, n, n))
    columns = {}
    for c in src.columns:
        if draw(st.floats(0, 1)) < share:
            dtype = draw(st.sampled_from(types))
            array = _column(dtype, [draw(_arrow_value(dtype)) for _ in range(n)])
            if pa.types.is_string(dtype) and draw(st.booleans()):
                array = array.dictionary_encode()
        else:
            array = pa.array([r[c] for r in rows], type=pa.string())
        columns[c] = array
    return Delivery(parquet_bytes(pa.table(columns)))


@st.composite
def parquet_nested(draw, src: Source) -> Delivery:
    return draw(parquet_typed(src, NESTED_TYPES, share=0.5))


def valid_table(rows: list[dict[str, str]], columns: list[str]) -> pa.Table:
    return pa.table({c: pa.array([r[c] for r in rows], type=pa.string()) for c in columns})


@st.composite
def parquet_file(draw, src: Source, kind: str) -> Delivery:
    if kind == "random_bytes":
        return draw(random_bytes(src))
    if kind == "truncated":
        data = parquet_bytes(valid_table(draw(valid_rows(src, 1, 6)), list(src.columns)))
        return Delivery(data[: draw(st.integers(0, len(data) - 1))])
    if kind == "wrong_types":
        return draw(parquet_typed(src, SCALAR_TYPES, share=0.6))
    if kind == "nested":
        return draw(parquet_nested(src))
    if kind == "empty":
        if draw(st.booleans()):
            return Delivery(b"")
        return Delivery(parquet_bytes(valid_table([], list(src.columns))))  # zero rows
    if kind == "nasty_columns":
        rows = draw(valid_rows(src, 1, 5))
        names = NASTY_NAMES + [c.upper() for c in src.columns]
        extra = draw(st.lists(st.sampled_from(names), min_size=1, max_size=5, unique=True))
        table = valid_table(rows, list(src.columns))
        for n in extra:
            values = [draw(st.one_of(NAMES, st.none())) for _ in rows]
            table = table.add_column(
                draw(st.integers(0, table.num_columns)), n, pa.array(values, pa.string())
            )
        return Delivery(parquet_bytes(table), exact_ids=[r[src.id_column] for r in rows])
    if kind == "missing_columns":
        rows = draw(valid_rows(src, 1, 4))
        keep = draw(st.lists(st.sampled_from(src.columns), unique=True, max_size=len(src.columns)))
        missing = tuple(c for c in src.columns if c not in keep)
        return Delivery(parquet_bytes(valid_table(rows, keep)), missing=missing)
    raise AssertionError(kind)


STRATEGIES = {
    "random_bytes": random_bytes,
    "truncated": truncated,
    "mixed_encoding": mixed_encoding,
    "huge_field": huge_field,
    "wrong_delimiter": wrong_delimiter,
    "ragged": ragged,
    "structure": structure,
    "nasty_columns": nasty_columns,
    "nested": nested,
    "not_object": not_object,
}


def delivery(src: Source, kind: str) -> st.SearchStrategy[Delivery]:
    if src.kind == "parquet":
        return parquet_file(src, kind)
    return STRATEGIES[kind](src)
