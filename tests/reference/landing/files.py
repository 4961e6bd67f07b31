"""Reading one landing file into records: delimited text (the mapping's delimiter, quote,
escape, header, encoding and null tokens), JSON lines and Parquet."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from reference.landing.mapping import Mapping


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
