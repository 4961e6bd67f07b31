"""Read a landing folder with pandas, following the source mappings (docs/contracts.md).

Independent of the loader engine on purpose: the mapping YAML is parsed here, files are
read with the standard library / pandas / pyarrow, and every canonical field is typed by
the small functions below. What the loader quarantines (a row that cannot be parsed, a
required field that is NULL after typing, a non-empty value that does not type) is left
out here; ``SourceFrame.excluded`` counts those rows per reason.

Expressions (``expr`` fields) are not evaluated as SQL: ``SUPPORTED_EXPRESSIONS`` is an
explicit table of the expressions the demo mappings use, each with a pandas equivalent.
Any other expression raises ``UnsupportedExpression`` naming the mapping and the field.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import yaml

# Canonical fields (landing contract): name -> (kind, required). Kinds: text, timestamp,
# date, integer, decimal:<scale>, boolean.
CANONICAL: dict[str, dict[str, tuple[str, bool]]] = {
    "customers": {
        "source_system": ("text", True),
        "customer_ref": ("text", True),
        "updated_at": ("timestamp", True),
        "registered_at": ("timestamp", False),
        "name": ("text", False),
        "gender": ("text", False),
        "birth_date": ("date", False),
        "phone": ("text", False),
        "email": ("text", False),
        "province": ("text", False),
        "city": ("text", False),
        "address": ("text", False),
        "member_level": ("text", False),
        "marketing_consent": ("boolean", False),
        "unionid": ("text", False),
    },
    "orders": {
        "order_id": ("text", True),
        "line_no": ("integer", False),
        "ordered_at": ("timestamp", True),
        "status": ("text", True),
        "channel": ("text", False),
        "source_system": ("text", False),
        "customer_ref": ("text", False),
        "buyer_name": ("text", False),
        "buyer_phone": ("text", False),
        "buyer_email": ("text", False),
        "product_id": ("text", False),
        "product_name": ("text", False),
        "category": ("text", False),
        "quantity": ("decimal:4", True),
        "unit_price": ("decimal:2", True),
        "discount_amount": ("decimal:2", False),
        "refunded_amount": ("decimal:2", False),
        "currency": ("text", False),
    },
    "service_events": {
        "ticket_id": ("text", True),
        "event_id": ("text", False),
        "event_at": ("timestamp", True),
        "event_type": ("text", True),
        "channel": ("text", False),
        "priority": ("text", False),
        "category": ("text", False),
        "customer_ref": ("text", False),
        "phone": ("text", False),
        "email": ("text", False),
        "social_account_id": ("text", False),
        "agent_id": ("text", False),
        "csat_score": ("integer", False),
        "nps_score": ("integer", False),
    },
    "social_interactions": {
        "interaction_id": ("text", True),
        "occurred_at": ("timestamp", True),
        "platform": ("text", True),
        "account_id": ("text", True),
        "unionid": ("text", False),
        "phone": ("text", False),
        "direction": ("text", True),
        "interaction_type": ("text", True),
        "campaign_id": ("text", False),
        "content": ("text", False),
    },
}

# Phones, e-mails and ids: Unicode-normalised (NFKC) before typing (landing contract).
NFKC_FIELDS: dict[str, frozenset[str]] = {
    "customers": frozenset({"source_system", "customer_ref", "phone", "email", "unionid"}),
    "orders": frozenset(
        {"order_id", "source_system", "customer_ref", "buyer_phone", "buyer_email", "product_id"}
    ),
    "service_events": frozenset(
        {"ticket_id", "event_id", "customer_ref", "phone", "email", "social_account_id", "agent_id"}
    ),  # fmt: skip
    "social_interactions": frozenset(
        {"interaction_id", "account_id", "unionid", "phone", "campaign_id"}
    ),
}

# The event timestamp of each entity: the as-of filter keeps rows whose business date of
# this timestamp is <= D.
EVENT_TIMESTAMP = {
    "customers": "updated_at",
    "orders": "ordered_at",
    "service_events": "event_at",
    "social_interactions": "occurred_at",
}

DEFAULT_GLOB = {"csv": "*", "jsonl": "*.json*", "parquet": "*.parquet"}
FORMAT_ALIASES = {
    "csv": ("csv", None),
    "tsv": ("csv", "\t"),
    "txt": ("csv", None),
    "jsonl": ("jsonl", None),
    "ndjson": ("jsonl", None),
    "json": ("jsonl", None),
    "parquet": ("parquet", None),
}
ENCODINGS = {
    "utf-8": "utf-8-sig",
    "utf8": "utf-8-sig",
    "utf-8-sig": "utf-8-sig",
    "gb18030": "gb18030",
    "gbk": "gbk",
    "gb2312": "gbk",
}
DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")
BOOL_TRUE = {"true", "t", "yes", "y", "1"}
BOOL_FALSE = {"false", "f", "no", "n", "0"}
_INTEGER = re.compile(r"^([+-]?\d+)(?:\.0*)?$")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class MappingProblem(ValueError):
    """A mapping this reader cannot follow; the message names the mapping file."""


class UnsupportedExpression(MappingProblem):
    """An ``expr`` field that is not in ``SUPPORTED_EXPRESSIONS``."""


# --------------------------------------------------------------------------------------
# Mappings
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRule:
    name: str
    column: str | None = None
    expr: str | None = None
    formats: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapping:
    name: str
    entity: str
    files: str
    type: str
    delimiter: str
    quote: str
    escape: str
    header: bool
    columns: tuple[str, ...] | None
    encoding: str
    null_tokens: tuple[str, ...]
    timezone: str | None  # None: the business timezone
    fields: dict[str, FieldRule]
    path: Path | None = None
    #: service_events: the system of customer_ref (None: the member system of the config)
    customer_ref_system: str | None = None


def load_mapping(path: str | Path) -> Mapping:
    """Parse one mapping YAML (the format of docs/contracts.md)."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return parse_mapping(doc, path=path)


def parse_mapping(doc: dict[str, Any], path: Path | None = None) -> Mapping:
    where = str(path) if path else "<mapping>"
    entity = doc.get("entity")
    if entity not in CANONICAL:
        raise MappingProblem(f"{where}: unknown entity {entity!r}")
    fmt = doc.get("format") or {}
    if isinstance(fmt, str):
        fmt = {"type": fmt}
    ftype, implied = FORMAT_ALIASES[str(fmt.get("type", "csv")).lower()]
    delimiter = fmt.get("delimiter", implied or ",")
    quote = fmt.get("quote", '"') or ""
    escape = fmt.get("escape", quote) or ""
    encoding = str(fmt.get("encoding", "utf-8")).lower().replace("_", "-")
    if encoding not in ENCODINGS:
        raise MappingProblem(f"{where}: encoding {encoding!r} not supported")
    nulls = fmt.get("null_tokens", [""])
    if isinstance(nulls, str):
        nulls = [nulls]
    columns = fmt.get("columns")
    rules: dict[str, FieldRule] = {}
    for name, spec in (doc.get("fields") or {}).items():
        if name not in CANONICAL[entity]:
            raise MappingProblem(f"{where}: fields.{name} is not a canonical {entity} field")
        if isinstance(spec, str):
            spec = {"column": spec}
        formats = spec.get("formats", [])
        if isinstance(formats, str):
            formats = [formats]
        values = {
            str(k): ("" if v is None else str(v)) for k, v in (spec.get("values") or {}).items()
        }
        expr = spec.get("expr")
        rules[name] = FieldRule(
            name=name,
            column=spec.get("column"),
            expr=None if expr is None else str(expr),
            formats=tuple(formats),
            values=values,
        )
        if expr is not None:
            _expression(str(expr), where, name)  # fail before reading anything
    name = doc.get("name") or (path.stem if path else None)
    return Mapping(
        name=str(name),
        entity=entity,
        files=doc.get("files") or DEFAULT_GLOB[ftype],
        type=ftype,
        delimiter=str(delimiter),
        quote=str(quote),
        escape=str(escape),
        header=bool(fmt.get("header", True)),
        columns=tuple(columns) if columns else None,
        encoding=ENCODINGS[encoding],
        null_tokens=tuple(str(t) for t in nulls),
        timezone=str(doc["timezone"]) if doc.get("timezone") else None,
        fields=rules,
        path=path,
        customer_ref_system=(str(doc["customer_ref_system"]).strip() or None)
        if doc.get("customer_ref_system") is not None
        else None,
    )


def load_mappings(folder: str | Path) -> dict[str, Mapping]:
    out: dict[str, Mapping] = {}
    for p in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        if p.name.startswith((".", "_")):
            continue
        m = load_mapping(p)
        out[m.name] = m
    return out


# --------------------------------------------------------------------------------------
# Expressions: an explicit table, no SQL evaluation
# --------------------------------------------------------------------------------------

Frame = pd.DataFrame
ExprFn = Callable[[Frame], pd.Series]


def _col(df: Frame, name: str) -> pd.Series:
    if name not in df.columns:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    return df[name]


def _concat(*parts: Callable[[Frame], pd.Series]) -> ExprFn:
    """SQL ``a || b || ...``: NULL if any part is NULL."""

    def fn(df: Frame) -> pd.Series:
        out = pd.Series([""] * len(df), index=df.index, dtype=object)
        null = pd.Series(False, index=df.index)
        for part in parts:
            s = part(df)
            null |= s.isna()
            out = out + s.fillna("").astype(str)
        return out.where(~null, None)

    return fn


def _lit(value: str) -> Callable[[Frame], pd.Series]:
    return lambda df: pd.Series([value] * len(df), index=df.index, dtype=object)


def _c(name: str) -> Callable[[Frame], pd.Series]:
    return lambda df: _col(df, name)


def _coalesce(*parts: Callable[[Frame], pd.Series]) -> ExprFn:
    def fn(df: Frame) -> pd.Series:
        out = parts[0](df).astype(object)
        for part in parts[1:]:
            out = out.where(out.notna(), part(df))
        return out

    return fn


def _case(column: str, whens: str, default: str | None) -> ExprFn:
    """SQL simple CASE over the column's text; no match and no ELSE -> NULL."""
    pairs = dict(re.findall(r"when '([^']*)' then '([^']*)'", whens, flags=re.IGNORECASE))

    def fn(df: Frame) -> pd.Series:
        texts = [_text(v) for v in _col(df, column)]
        return pd.Series(
            [default if t is None else pairs.get(t, default) for t in texts],
            index=df.index,
            dtype=object,
        )

    return fn


def _normalise_expr(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip())


# pattern (regex over the whitespace-normalised expression) -> builder(match) -> fn
_EXPR_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], ExprFn], str]] = [
    (
        re.compile(r"^'([^']*)'$"),
        lambda m: _lit(m.group(1)),
        "a string literal, e.g. 'shop'",
    ),
    (
        re.compile(r"^\"?([^\W\d]\w*)\"?$"),
        lambda m: _c(m.group(1)),
        "a bare column name",
    ),
    (
        re.compile(r"^coalesce\(\s*\"?([^\W\d]\w*)\"?\s*,\s*'([^']*)'\s*\)$", re.IGNORECASE),
        lambda m: _coalesce(_c(m.group(1)), _lit(m.group(2))),
        "coalesce(column, 'literal')",
    ),
    (
        re.compile(
            r"^coalesce\(\s*\"?([^\W\d]\w*)\"?\s*,\s*\"?([^\W\d]\w*)\"?\s*\)$", re.IGNORECASE
        ),
        lambda m: _coalesce(_c(m.group(1)), _c(m.group(2))),
        "coalesce(column, column)",
    ),
    (
        re.compile(
            r"^case (?:cast\(\s*)?\"?([^\W\d]\w*)\"?(?:\s+as\s+varchar\s*\))?"
            r"((?: when '[^']*' then '[^']*')+)(?: else '([^']*)')? end$",
            re.IGNORECASE,
        ),
        lambda m: _case(m.group(1), m.group(2), m.group(3)),
        "CASE column|CAST(column AS VARCHAR) WHEN 'a' THEN 'x' ... [ELSE 'z'] END",
    ),
    (
        re.compile(r"^(?:(?:'[^']*'|\"?[^\W\d]\w*\"?)\s*\|\|\s*)+(?:'[^']*'|\"?[^\W\d]\w*\"?)$"),
        lambda m: _concat(*_concat_parts(m.group(0))),
        "column/literal || column/literal ...",
    ),
]

#: Human-readable list of the supported expression shapes (docs/reference.md).
SUPPORTED_EXPRESSIONS = [desc for _, _, desc in _EXPR_PATTERNS]


def _concat_parts(text: str) -> list[Callable[[Frame], pd.Series]]:
    parts = []
    for tok in re.findall(r"'[^']*'|\"?[^\W\d]\w*\"?", text):
        parts.append(_lit(tok[1:-1]) if tok.startswith("'") else _c(tok.strip('"')))
    return parts


def _expression(text: str, where: str, fname: str) -> ExprFn:
    norm = _normalise_expr(text)
    for pattern, build, _ in _EXPR_PATTERNS:
        m = pattern.match(norm)
        if m:
            return build(m)
    raise UnsupportedExpression(
        f"{where}: fields.{fname}: expression {text!r} is not supported by the pandas "
        f"reference reader; supported shapes: {SUPPORTED_EXPRESSIONS}. Add it to "
        "tests/reference/landing.py (_EXPR_PATTERNS) with a unit test."
    )


# --------------------------------------------------------------------------------------
# Reading files into raw (untyped) frames
# --------------------------------------------------------------------------------------


@dataclass
class RawFile:
    frame: pd.DataFrame  # source columns (object), plus _source_line
    bad_rows: int = 0  # rows that cannot be parsed (wrong field count, broken JSON)


def _null(value: Any, nulls: tuple[str, ...]) -> Any:
    if value is None:
        return None
    if isinstance(value, str) and value in nulls:
        return None
    return value


def _group_records(text: str, quote: str) -> list[tuple[int, str]]:
    """Physical lines grouped into records: a line continues a record while the quotes
    seen so far are unbalanced (doubled-quote escaping). Blank records are skipped."""
    out: list[tuple[int, str]] = []
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines = lines[:-1]
    buf: list[str] = []
    first = 0
    for i, line in enumerate(lines, start=1):
        if line.endswith("\r"):
            line = line[:-1]
        if not buf:
            first = i
        buf.append(line)
        joined = "\n".join(buf)
        if quote and joined.count(quote) % 2 == 1:
            continue
        if joined.strip() != "":
            out.append((first, joined))
        buf = []
    if buf:
        out.append((first, "\n".join(buf)))  # unterminated quote up to the end of file
    return out


def _parse_record(record: str, delimiter: str, quote: str, escape: str) -> list[str] | None:
    """One record with Python's csv (strict); None when the quoting is broken."""
    if len(delimiter) > 1:
        record = record.replace(delimiter, "\x1f")
        delimiter = "\x1f"
    kwargs: dict[str, Any] = {"delimiter": delimiter, "strict": True}
    if quote:
        kwargs["quotechar"] = quote
        if escape and escape != quote:
            kwargs["escapechar"] = escape
            kwargs["doublequote"] = False
        else:
            kwargs["doublequote"] = True
    else:
        kwargs["quoting"] = csv.QUOTE_NONE
    if quote and record.count(quote) % 2 == 1:
        return None
    try:
        rows = list(csv.reader(io.StringIO(record, newline=""), **kwargs))
    except csv.Error:
        return None
    if len(rows) != 1:
        return None
    return rows[0]


def _header_names(names: list[str]) -> list[str]:
    out: list[str] = []
    seen: Counter = Counter()
    for i, raw in enumerate(names):
        name = raw.lstrip("\ufeff") or f"column{i}"
        if seen[name]:
            out.append(f"{name}_{seen[name]}")
        else:
            out.append(name)
        seen[name] += 1
    return out


def read_text_records(
    text: str, m: Mapping
) -> tuple[list[str] | None, list[tuple[int, list[str] | None]]]:
    """Split a text file into (header, [(physical line, fields or None if broken)])."""
    records: list[tuple[int, list[str] | None]] = []
    if m.delimiter == "whitespace":
        for i, line in enumerate(text.splitlines(), start=1):
            if line.strip() == "":
                continue
            records.append((i, re.split(r"[ \t]+", line.strip(" \t"))))
    else:
        for first, record in _group_records(text, m.quote):
            records.append((first, _parse_record(record, m.delimiter, m.quote, m.escape)))
    header = None
    if m.header and records:
        header = _header_names(records[0][1] or [])
        records = records[1:]
    return header, records


def read_file(path: Path, m: Mapping, data: bytes | None = None) -> RawFile:
    """One landing file as a frame of raw source values (strings or native Parquet
    values), with ``_source_line``; unparseable rows are counted, not returned."""
    data = path.read_bytes() if data is None else data
    if m.type == "parquet":
        table = pq.read_table(io.BytesIO(data))
        frame = table.to_pandas(types_mapper=None)
        frame = frame.astype(object).where(frame.notna(), None)
        for c in frame.columns:
            frame[c] = [_null(v, m.null_tokens) for v in frame[c]]
        frame["_source_line"] = np.arange(len(frame)) + 2
        return RawFile(frame)
    text = data.decode(m.encoding, errors="replace")
    if m.type == "jsonl":
        rows, lines, bad = [], [], 0
        for i, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if "\ufffd" in line:
                    raise json.JSONDecodeError("invalid bytes", line, 0)
            except json.JSONDecodeError:
                bad += 1
                continue
            if not isinstance(obj, dict):
                bad += 1
                continue
            rows.append({k: _null(_json_scalar(v), m.null_tokens) for k, v in obj.items()})
            lines.append(i)
        frame = pd.DataFrame(rows, dtype=object)
        # a key absent from a line (exporters omit empty keys) is NULL, like an explicit null
        frame = frame.where(frame.notna(), None)
        frame["_source_line"] = lines
        return RawFile(frame, bad)
    header, records = read_text_records(text, m)
    names = list(m.columns) if m.columns else header
    width = len(names) if names else max((len(r or []) for _, r in records), default=0)
    if names is None:
        names = [f"column{i}" for i in range(width)]
    good = [
        (ln, r)
        for ln, r in records
        if r is not None and len(r) == width and not any("\ufffd" in v for v in r)
    ]
    bad = len(records) - len(good)
    frame = pd.DataFrame(
        [[_null(v, m.null_tokens) for v in r] for _, r in good], columns=names, dtype=object
    )
    frame["_source_line"] = [ln for ln, _ in good]
    return RawFile(frame, bad)


def _json_scalar(v: Any) -> Any:
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, bool):
        return "true" if v else "false"
    return v


# --------------------------------------------------------------------------------------
# Typing
# --------------------------------------------------------------------------------------

_FAIL = object()


def _text(v: Any) -> Any:
    if v is None or (isinstance(v, float) and np.isnan(v)) or v is pd.NaT:
        return None
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def type_decimal(v: Any, scale: int) -> Any:
    """DuckDB-like TRY_CAST to decimal(18, scale): half away from zero."""
    if v is None:
        return None
    s = str(v).strip()
    if s == "":
        return None
    if not _NUMBER.match(s):
        return _FAIL
    try:
        d = Decimal(s).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)
    except InvalidOperation:
        return _FAIL
    return float(d)


def type_integer(v: Any) -> Any:
    """Digits with an optional sign and ``.0`` (docs/ingestion.md): ``4.5`` is not one."""
    if v is None:
        return None
    s = str(v).strip()
    if s == "":
        return None
    m = _INTEGER.match(s)
    if not m:
        return _FAIL
    return int(m.group(1))


def type_boolean(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, bool | np.bool_):
        return bool(v)
    s = str(v).strip().lower()
    if s == "":
        return None
    if s in BOOL_TRUE:
        return True
    if s in BOOL_FALSE:
        return False
    return _FAIL


_BAD_OFFSET = re.compile(r"[+-](\d\d):?(\d\d)$")


def _parse_iso(s: str) -> datetime | None:
    t = s.strip().replace(" ", "T", 1) if "T" not in s else s.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    off = _BAD_OFFSET.search(t)
    if off and "T" in t and (int(off.group(1)) > 23 or int(off.group(2)) > 59):
        return None  # fromisoformat reads +08:61 as +09:01
    try:
        return datetime.fromisoformat(t)
    except ValueError:
        return None


def type_timestamp(v: Any, formats: tuple[str, ...], tz: ZoneInfo) -> Any:
    """A UTC naive datetime; values without an offset are local to ``tz``."""
    if v is None:
        return None
    if isinstance(v, pd.Timestamp):
        v = v.to_pydatetime()
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, date):
        dt = datetime(v.year, v.month, v.day)
    else:
        s = str(v).strip()
        if s == "":
            return None
        dt = None
        if formats:
            for f in formats:
                try:
                    dt = datetime.strptime(s, f)
                    break
                except ValueError:
                    continue
        else:
            dt = _parse_iso(s)
        if dt is None:
            return _FAIL
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    return dt.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def type_date(v: Any, formats: tuple[str, ...]) -> Any:
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.date()
    if isinstance(v, date):
        return v
    s = str(v).strip()
    if s == "":
        return None
    for f in formats or ("%Y-%m-%d",):
        try:
            return datetime.strptime(s, f).date()
        except ValueError:
            continue
    if not formats and (dt := _parse_iso(s)) is not None:
        return dt.date()
    return _FAIL


def _type_value(kind: str, v: Any, rule: FieldRule | None, tz: ZoneInfo) -> Any:
    formats = rule.formats if rule else ()
    if kind == "text":
        return _text(v)
    if kind == "timestamp":
        return type_timestamp(v, formats, tz)
    if kind == "date":
        return type_date(v, formats)
    if kind == "integer":
        return type_integer(v)
    if kind == "boolean":
        return type_boolean(v)
    if kind.startswith("decimal"):
        return type_decimal(v, int(kind.split(":")[1]))
    raise AssertionError(kind)


def _strings(values: list[Any]) -> tuple[pd.Series, np.ndarray]:
    """Values as stripped strings (None for NULL / blank) and the mask of non-NULL."""
    s = pd.Series([None if v is None else str(v) for v in values], dtype=object)
    s = s.str.strip()
    s = s.where(s.notna() & s.ne(""), None)
    return s, s.notna().to_numpy()


def type_column(
    kind: str, values: list[Any], rule: FieldRule | None, tz: ZoneInfo
) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised typing of one column: (typed values as an object array with None for
    NULL, mask of non-empty values that do not type). Same rules as the scalar
    ``type_*`` functions, which handle the rare values the fast paths leave over."""
    n = len(values)
    formats = rule.formats if rule else ()
    if kind == "text":
        out = np.array(
            [v if (v is None or type(v) is str) else _text(v) for v in values], dtype=object
        )
        return out, np.zeros(n, dtype=bool)
    if kind == "timestamp" and n and all(isinstance(v, str) or v is None for v in values):
        s, present = _strings(values)
        result = pd.Series(pd.NaT, index=s.index, dtype="datetime64[us]")
        todo = present.copy()
        for f in formats:
            if not todo.any():
                break
            if "%z" in f:  # Python's strptime below (pandas and DuckDB disagree on offsets)
                continue
            parsed = pd.to_datetime(s[todo], format=f, errors="coerce", utc="%z" in f)
            # pandas reads 23:59:60 as the next day's 00:00:00: a value the fast path
            # settles must format back to itself (others go to Python's strptime below)
            parsed = parsed.where(parsed.dt.strftime(f) == s[todo])
            if "%z" in f:
                parsed = parsed.dt.tz_localize(None)
            else:
                parsed = parsed.dt.tz_localize(tz, ambiguous="NaT", nonexistent="NaT")
                parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
            ok = parsed.notna()
            result.loc[ok[ok].index] = parsed[ok].astype("datetime64[us]")
            todo[ok[ok].index.to_numpy()] = False
        if todo.any():  # ISO 8601 (no formats), or what the fast path could not settle
            for i in np.flatnonzero(todo):
                t = type_timestamp(s.iat[i], formats, tz)
                if t is not _FAIL and t is not None:
                    result.iat[i] = t
                    todo[i] = False
        out = np.array([None if pd.isna(t) else t.to_pydatetime() for t in result], dtype=object)
        return out, todo
    if kind.startswith("decimal") and n:
        scale = int(kind.split(":")[1])
        s, present = _strings(values)
        number = s.str.fullmatch(_NUMBER.pattern[1:-1]).fillna(False).to_numpy(dtype=bool)
        fail = present & ~number
        nums = pd.to_numeric(s.where(number, None), errors="coerce")
        exact = s.str.fullmatch(rf"[+-]?\d*(\.\d{{0,{scale}}})?").fillna(False).to_numpy(bool)
        out = nums.to_numpy(dtype=float).astype(object)
        out[~number] = None
        for i in np.flatnonzero(number & ~exact):  # more digits than the scale: round
            out[i] = type_decimal(s.iat[i], scale)
        return out, fail
    typed = [_type_value(kind, v, rule, tz) for v in values]
    fail = np.fromiter((t is _FAIL for t in typed), dtype=bool, count=n)
    out = np.array([None if t is _FAIL else t for t in typed], dtype=object)
    return out, fail


def apply_mapping(
    raw: pd.DataFrame, m: Mapping, currency: str = "CNY", business_timezone: str = "Asia/Shanghai"
) -> tuple[pd.DataFrame, Counter]:
    """Canonical typed columns of one raw frame; rows that would be quarantined are
    removed and counted by reason. Timestamps without an offset are in the mapping's
    timezone, else in ``business_timezone``."""
    canon = CANONICAL[m.entity]
    tz = ZoneInfo(m.timezone or business_timezone)
    n = len(raw)
    out: dict[str, list[Any]] = {}
    bad = np.zeros(n, dtype=bool)
    reasons: Counter = Counter()
    for fname, (kind, required) in canon.items():
        rule = m.fields.get(fname)
        if rule is None:
            values = [None] * n
        else:
            if rule.column is not None:
                if rule.column not in raw.columns:
                    if m.type == "jsonl":
                        src = pd.Series([None] * n, index=raw.index, dtype=object)
                    else:
                        raise MappingProblem(
                            f"{m.path}: the file lacks column {rule.column!r} (fields.{fname})"
                        )
                else:
                    src = raw[rule.column]
            else:
                src = _expression(rule.expr or "", str(m.path), fname)(raw)
            values = list(src)
            if rule.values:
                values = [rule.values.get(_text(v), v) if v is not None else None for v in values]
                values = [None if v == "" else v for v in values]
            if fname in NFKC_FIELDS[m.entity]:
                values = [
                    unicodedata.normalize("NFKC", v) if isinstance(v, str) else v for v in values
                ]
        typed, fail = type_column(kind, values, rule, tz)
        missing = pd.isna(typed) & ~fail
        if required:
            missing_req = missing & ~fail
            fresh = missing_req & ~bad
            reasons[f"missing {fname}"] += int(fresh.sum())
            bad |= missing_req
        fresh = fail & ~bad
        reasons[f"untypable {fname}"] += int(fresh.sum())
        bad |= fail
        out[fname] = typed
    frame = pd.DataFrame(out, index=raw.index)
    frame["_source_line"] = raw["_source_line"].to_numpy()
    frame = frame.loc[~bad].reset_index(drop=True)
    _defaults(frame, m, currency)
    if m.entity == "service_events":
        frame["event_id"] = frame["event_id"].where(frame["event_id"].notna(), _row_hash(frame))
    return frame, +reasons


def _row_hash(frame: pd.DataFrame) -> pd.Series:
    cols = [c for c in frame.columns if c != "_source_line"]
    rows = frame[cols].itertuples(index=False, name=None)
    return pd.Series(
        [hashlib.md5(repr(r).encode()).hexdigest() for r in rows], index=frame.index, dtype=object
    )


def _defaults(frame: pd.DataFrame, m: Mapping, currency: str = "CNY") -> None:
    """Documented defaults; a defaulted field mapped but NULL on a row takes it too."""
    if m.entity == "orders":
        frame["currency"] = frame["currency"].where(frame["currency"].notna(), currency)
        frame["line_no"] = frame["line_no"].where(frame["line_no"].notna(), 1)
        for c in ("discount_amount", "refunded_amount"):
            frame[c] = frame[c].where(frame[c].notna(), 0.0)
        frame["source_system"] = frame["source_system"].where(
            frame["source_system"].notna(), m.name
        )


# --------------------------------------------------------------------------------------
# A whole source / the whole landing folder
# --------------------------------------------------------------------------------------


@dataclass
class SourceFrame:
    mapping: Mapping
    frame: pd.DataFrame
    files_read: int = 0
    files_duplicate: int = 0
    excluded: Counter = field(default_factory=Counter)


def delivery_files(landing: Path, m: Mapping) -> list[tuple[date, Path]]:
    base = landing / m.name
    if not base.is_dir():
        return []
    found = []
    for day in sorted(p for p in base.iterdir() if p.is_dir()):
        if day.name.startswith(("_", ".")) or not DATE_DIR.match(day.name):
            continue
        for f in sorted(day.iterdir()):
            if f.is_file() and not f.name.startswith((".", "_")) and fnmatch(f.name, m.files):
                found.append((date.fromisoformat(day.name), f))
    return found


def read_source(
    landing: str | Path,
    m: Mapping,
    as_of: date | None = None,
    currency: str = "CNY",
    business_timezone: str = "Asia/Shanghai",
) -> SourceFrame:
    """Every file of one mapping with delivery date <= as_of (all when None), each
    distinct content once (the earliest delivery), typed to canonical columns plus
    ``_delivery_date`` and ``_source_file``. A mapping without ``timezone`` reads its
    timestamps in ``business_timezone``."""
    landing = Path(landing)
    seen: set[str] = set()
    result = SourceFrame(m, pd.DataFrame())
    parts = []
    for delivered, path in delivery_files(landing, m):
        if as_of is not None and delivered > as_of:
            continue
        data = path.read_bytes()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            result.files_duplicate += 1
            continue
        seen.add(digest)
        raw = read_file(path, m, data)
        if raw.bad_rows:
            result.excluded["unparseable row"] += raw.bad_rows
        typed, reasons = apply_mapping(raw.frame, m, currency, business_timezone)
        result.excluded.update(reasons)
        typed["_delivery_date"] = delivered
        typed["_source_file"] = str(path.relative_to(landing))
        typed["_source_name"] = m.name
        if m.entity == "service_events":
            typed["_customer_ref_system"] = m.customer_ref_system
        parts.append(typed)
        result.files_read += 1
    cols = [*CANONICAL[m.entity], "_source_line", "_delivery_date", "_source_file", "_source_name"]
    result.frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=cols)
    return result


def read_landing(
    landing: str | Path,
    mappings: str | Path | dict[str, Mapping],
    as_of: date | None = None,
    currency: str = "CNY",
    business_timezone: str = "Asia/Shanghai",
) -> dict[str, pd.DataFrame]:
    """Canonical frames per entity from every mapping's folder (delivery date <= as_of).
    Folders whose name starts with ``_`` or ``.`` are never read."""
    if not isinstance(mappings, dict):
        mappings = load_mappings(mappings)
    by_entity: dict[str, list[pd.DataFrame]] = {e: [] for e in CANONICAL}
    for name, m in sorted(mappings.items()):
        if name.startswith(("_", ".")):
            continue
        frame = read_source(landing, m, as_of, currency, business_timezone).frame
        by_entity[m.entity].append(frame)
    out = {}
    for entity, frames in by_entity.items():
        frames = [f for f in frames if len(f)]
        cols = [
            *CANONICAL[entity],
            "_source_line",
            "_delivery_date",
            "_source_file",
            "_source_name",
        ]
        out[entity] = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=cols)
    return out
