"""Writing deliveries: per-source buffers keyed by delivery day, rendering (CSV/TSV/JSON
Lines/Parquet), file-level and row-level defects, re-deliveries and the identity truth."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.generate.presets import Rates
from pipelines.generate.textgen import Clock, rng_for


@dataclass(frozen=True)
class SourceSpec:
    """How a source's files look; must agree with its mapping YAML."""

    name: str
    entity: str
    kind: str  # csv | jsonl | parquet
    stem: str  # file name stem, "{date}" = YYYYMMDD of the delivery, "{part}" = split value
    delimiter: str = ","
    encoding: str = "utf-8"
    bom: bool = False
    required: tuple[str, ...] = ()  # raw columns behind required canonical fields
    malformed: bool = False  # inject malformed rows
    truncate: bool = False  # may cut the last row of a file
    split_by: str | None = None  # one file per value of this column
    late_rate: float = 0.0
    sparse: bool = False  # JSON Lines: empty keys omitted (as many exporters write them)
    # sparse: an optional key that some days' files leave out of every line
    absent_key: str | None = None
    dates: tuple[str, ...] = ()  # text date/time columns that may hold an impossible date

    @property
    def ext(self) -> str:
        if self.kind == "csv":
            return ".csv" if self.delimiter == "," else ".tsv"
        return ".jsonl" if self.kind == "jsonl" else ".parquet"

    @property
    def id(self) -> int:
        return sum(ord(c) * 31**i for i, c in enumerate(self.name)) % 1_000_003


class IdentityWriter:
    """`_truth/identity.parquet`: entity, record_key, person_id (null = nobody in particular)."""

    SCHEMA = pa.schema(
        [("entity", pa.string()), ("record_key", pa.string()), ("person_id", pa.int64())]
    )

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._writer = pq.ParquetWriter(path, self.SCHEMA, compression="zstd")
        self._pending: list[pa.Table] = []
        self._rows = 0
        self.total = 0

    def add(self, entity: str, keys: pa.Array, person: np.ndarray) -> None:
        if len(keys) == 0:
            return
        person = np.asarray(person, dtype=np.int64)
        pid = pa.array(person, mask=person < 0)
        ent = pa.array(np.full(len(keys), entity, dtype=object), type=pa.string())
        self._pending.append(pa.table([ent, keys, pid], schema=self.SCHEMA))
        self._rows += len(keys)
        self.total += len(keys)
        if self._rows >= 1_000_000:
            self.flush()

    def flush(self) -> None:
        if self._pending:
            self._writer.write_table(pa.concat_tables(self._pending))
            self._pending, self._rows = [], 0

    def close(self) -> None:
        self.flush()
        self._writer.close()


def lines_to_bytes(lines: pa.Array) -> bytes:
    """Join strings with a trailing newline each, straight from the Arrow buffers."""
    ls = pa.large_string()
    arr = pc.binary_join_element_wise(lines.cast(ls), pa.scalar("", ls), pa.scalar("\n", ls))
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if len(arr) == 0:
        return b""
    offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)
    start, end = int(offsets[arr.offset]), int(offsets[arr.offset + len(arr)])
    return memoryview(arr.buffers()[2])[start:end].tobytes()


def csv_lines(table: pa.Table, delimiter: str) -> pa.Array:
    """One string per row, fields quoted only when they need it (RFC 4180)."""
    cols = []
    special = "[" + "".join("\\t" if c == "\t" else "\\" + c for c in delimiter) + '"\\n\\r]'
    for col in table.columns:
        col = col.combine_chunks().cast(pa.string())
        needs = pc.fill_null(pc.match_substring_regex(col, special), False)
        quoted = pc.binary_join_element_wise('"', pc.replace_substring(col, '"', '""'), '"', "")
        cols.append(pc.if_else(needs, quoted, col))
    return pc.binary_join_element_wise(
        *cols, delimiter, null_handling="replace", null_replacement=""
    )


def json_lines(table: pa.Table, sparse: bool = False) -> pa.Array:
    """One JSON object per row; strings escaped, integers bare, nulls as null (``sparse``:
    a key whose value is null is left out of its object)."""
    parts = []
    for name, col in zip(table.column_names, table.columns, strict=True):
        col = col.combine_chunks()
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            val = col.cast(pa.string())
        else:
            s = pc.replace_substring(col.cast(pa.string()), "\\", "\\\\")
            s = pc.replace_substring(s, '"', '\\"')
            val = pc.binary_join_element_wise('"', s, '"', "")
        if not sparse:
            val = pc.fill_null(val, "null")
        parts.append(pc.binary_join_element_wise(json.dumps(name, ensure_ascii=False), val, ": "))
    body = pc.binary_join_element_wise(*parts, ", ", null_handling="skip")
    return pc.binary_join_element_wise("{", body, "}", "")


class Landing:
    """Buffers rows per (source, delivery day) and writes them as files with defects."""

    def __init__(
        self,
        out: Path,
        clock: Clock,
        timeline_total: int,
        first_day: int,
        rates: Rates,
        seed: int,
        specs: dict[str, SourceSpec],
    ) -> None:
        self.out, self.clock, self.rates, self.seed = out, clock, rates, seed
        self.last_day = timeline_total - 1
        self.first_day = first_day
        self.specs = specs
        self.buffers: dict[str, dict[int, list[pa.Table]]] = {s: defaultdict(list) for s in specs}
        self.id_buffers: dict[int, list[tuple[str, pa.Array, np.ndarray]]] = defaultdict(list)
        self.identity = IdentityWriter(out / "_truth" / "identity.parquet")
        self.files: dict[str, dict] = {}
        self.duplicates: list[dict[str, str]] = []
        self.totals: dict[str, dict] = {
            s: {"rows": 0, "files": 0, "malformed_rows": 0, "truncated_rows": 0,
                "missing_required": defaultdict(int), "impossible_dates": defaultdict(int)}
            for s in specs
        }  # fmt: skip
        self.extra: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.bytes_written = 0
        self.written: list[Path] = []

    # --- buffering --------------------------------------------------------------------
    def add(
        self,
        source: str,
        day: np.ndarray,
        table: pa.Table,
        identity: tuple[str, pa.Array, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Queue rows for delivery on `day` (one per row; clipped to the first delivered day;
        rows due after the last day are never delivered). `identity` = (entity, keys,
        person, row index of the key's row) is written when that row is delivered."""
        day = np.maximum(np.asarray(day, dtype=np.int64), self.first_day)
        if len(day) == 0:
            return
        uniq = np.unique(day)
        if identity is not None:
            entity, keys, person, rows = identity
            id_day = day[rows]
        for d in uniq:
            if d > self.last_day:
                continue
            mask = day == d
            self.buffers[source][int(d)].append(
                table if len(uniq) == 1 else table.filter(pa.array(mask))
            )
            if identity is not None:
                m = id_day == d
                if m.any():
                    sel = np.flatnonzero(m)
                    self.id_buffers[int(d)].append((entity, keys.take(pa.array(sel)), person[sel]))

    def count(self, source: str, key: str, n: int) -> None:
        self.extra[source][key] += int(n)

    def flush(self, k: int) -> None:
        """Write every source's deliveries for day k."""
        for source, spec in self.specs.items():
            tables = self.buffers[source].pop(k, [])
            if not tables:
                continue
            table = pa.concat_tables(tables) if len(tables) > 1 else tables[0]
            ymd = self.clock.date(k).strftime("%Y%m%d")
            if spec.split_by:
                values = table[spec.split_by]
                for v in sorted(set(pc.unique(values).to_pylist()) - {None}):
                    part = table.filter(pc.equal(values, v))
                    self.write_file(source, k, spec.stem.format(date=ymd, part=v) + spec.ext, part)
            else:
                self.write_file(source, k, spec.stem.format(date=ymd, part="") + spec.ext, table)
        for entity, keys, person in self.id_buffers.pop(k, []):
            self.identity.add(entity, keys, person)

    # --- writing ----------------------------------------------------------------------
    def write_file(self, source: str, k: int, name: str, table: pa.Table) -> Path:
        spec = self.specs[source]
        rel = f"{source}/{self.clock.date(k).isoformat()}/{name}"
        salt = sum(map(ord, name)) % 100_003
        rng = rng_for(self.seed, "defects", spec.id, k, salt)
        n = table.num_rows
        info: dict = {"rows": n, "malformed_rows": 0, "truncated_rows": 0, "missing_required": {}}
        if n:
            table = self._drop_optional_key(spec, k, salt, table, info)
            table = self._impossible_dates(spec, k, salt, table, info)
            table = self._blank_required(spec, rng, table, info)
        path = self.out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if spec.kind == "parquet":
            pq.write_table(table, path, compression="snappy")
            data = path.read_bytes()
        else:
            data = self._text_file(spec, rng, table, info)
            path.write_bytes(data)
        self._record(source, rel, path, len(data), info)
        self._redeliver(source, spec, k, name, rel, data)
        return path

    def _drop_optional_key(
        self, spec: SourceSpec, k: int, salt: int, table: pa.Table, info: dict
    ) -> pa.Table:
        """A day's file in which no line has the optional key (the exporter omits empty keys)."""
        if not spec.absent_key:
            return table
        krng = rng_for(self.seed, "defects", spec.id, k, salt, 2)
        if krng.random() < self.rates.absent_key_file:
            i_col = table.column_names.index(spec.absent_key)
            empty = pa.nulls(table.num_rows, table.schema.field(spec.absent_key).type)
            table = table.set_column(i_col, spec.absent_key, empty)
            info["absent_key"] = spec.absent_key
        return table

    def _impossible_dates(
        self, spec: SourceSpec, k: int, salt: int, table: pa.Table, info: dict
    ) -> pa.Table:
        """Impossible calendar dates and times (2025-02-30, 25:61) in the column's own format."""
        if not spec.dates:
            return table
        n = table.num_rows
        drng = rng_for(self.seed, "defects", spec.id, k, salt, 1)
        hit = drng.random(n) < self.rates.impossible_date
        which = drng.integers(0, len(spec.dates), n)
        variant = drng.integers(0, 4, n)
        for j, col in enumerate(spec.dates):
            arr = table[col].combine_chunks()
            m = hit & (which == j) & arr.is_valid().to_numpy(zero_copy_only=False)
            if m.any():
                values = arr.to_pylist()
                for i in np.flatnonzero(m):
                    values[i] = impossible_date(values[i], int(variant[i]))
                i_col = table.column_names.index(col)
                table = table.set_column(i_col, col, pa.array(values, pa.string()))
                info.setdefault("impossible_dates", {})[col] = int(m.sum())
        return table

    def _blank_required(
        self, spec: SourceSpec, rng: np.random.Generator, table: pa.Table, info: dict
    ) -> pa.Table:
        """Missing required fields: one required column blanked per affected row."""
        if not spec.required:
            return table
        n = table.num_rows
        hit = rng.random(n) < self.rates.missing_required
        which = rng.integers(0, len(spec.required), n)
        for j, col in enumerate(spec.required):
            m = hit & (which == j)
            c = int(m.sum())
            if c:
                i = table.column_names.index(col)
                arr = table[col].combine_chunks()
                table = table.set_column(
                    i, col, pc.if_else(pa.array(m), pa.scalar(None, arr.type), arr)
                )
                info["missing_required"][col] = c
        return table

    def _text_file(
        self, spec: SourceSpec, rng: np.random.Generator, table: pa.Table, info: dict
    ) -> bytes:
        """The bytes of a CSV or JSON-lines file, with its malformed lines and a truncated
        last line, in the source's encoding (and BOM)."""
        n = table.num_rows
        if spec.kind == "csv":
            lines = csv_lines(table, spec.delimiter)
            header = spec.delimiter.join(table.column_names) + "\n"
        else:
            lines = json_lines(table, spec.sparse)
            header = ""
        truncate = spec.truncate and n >= 2 and rng.random() < self.rates.truncated_file
        if spec.malformed and n:
            lines = self._malform_lines(spec, rng, lines, n, truncate, info)
        body = lines_to_bytes(lines)
        if truncate:
            last = lines[n - 1].as_py()
            cut = _truncate(last, spec, rng)
            body = body[: len(body) - len(last.encode()) - 1] + cut.encode()
            info["truncated_rows"] = 1
        text = header.encode() + body
        if spec.encoding != "utf-8":
            text = text.decode("utf-8").encode(spec.encoding)
        return (b"\xef\xbb\xbf" if spec.bom else b"") + text

    def _malform_lines(
        self,
        spec: SourceSpec,
        rng: np.random.Generator,
        lines: pa.Array,
        n: int,
        truncate: bool,
        info: dict,
    ) -> pa.Array:
        """Malformed lines (never the last line of a file that gets truncated)."""
        bad = rng.random(n) < self.rates.malformed_row
        if truncate:
            bad[-1] = False
        sel = np.flatnonzero(bad)
        if len(sel):
            old = lines.take(pa.array(sel)).to_pylist()
            new = [_malform(s, spec, rng) for s in old]
            lines = pc.replace_with_mask(lines, pa.array(bad), pa.array(new, pa.string()))
            info["malformed_rows"] = len(sel)
        return lines

    def _redeliver(
        self, source: str, spec: SourceSpec, k: int, name: str, rel: str, data: bytes
    ) -> None:
        """Re-delivery of the same bytes 1-3 days later, same or other name."""
        frng = rng_for(self.seed, "files", spec.id, k, sum(map(ord, name)) % 100_003)
        if frng.random() >= self.rates.duplicate_file:
            return
        k2 = k + int(frng.integers(1, 4))
        if k2 > self.last_day:
            return
        stem, dot, ext = name.rpartition(".")
        name2 = name if frng.random() < 0.5 else f"{stem}_resend.{ext}"
        rel2 = f"{source}/{self.clock.date(k2).isoformat()}/{name2}"
        path2 = self.out / rel2
        path2.parent.mkdir(parents=True, exist_ok=True)
        path2.write_bytes(data)
        self.duplicates.append({"path": rel2, "original": rel})
        self.bytes_written += len(data)
        self.written.append(path2)
        self.totals[source]["duplicate_files"] = self.totals[source].get("duplicate_files", 0) + 1

    def _record(self, source: str, rel: str, path: Path, size: int, info: dict) -> None:
        self.files[rel] = info
        t = self.totals[source]
        t["rows"] += info["rows"]
        t["files"] += 1
        t["malformed_rows"] += info["malformed_rows"]
        t["truncated_rows"] += info["truncated_rows"]
        for col, c in info["missing_required"].items():
            t["missing_required"][col] += c
        for col, c in info.get("impossible_dates", {}).items():
            t["impossible_dates"][col] += c
        if "absent_key" in info:
            t["files_without_key"] = t.get("files_without_key", 0) + 1
        self.bytes_written += size
        self.written.append(path)

    def close(self) -> None:
        self.identity.close()


_DATE_RE = re.compile(r"^(\d{4})([-/]?)(\d{2})\2(\d{2})(.*)$")
_TIME_RE = re.compile(r"^([T ])\d{2}:\d{2}(.*)$")


def impossible_date(value: str, variant: int) -> str:
    """``value`` (a date or timestamp as written: 2025-01-05 10:00:00, 2025/01/05 10:00,
    20250105100000, 2025-01-05T10:00:00+08:00, 19900105) made impossible in its own
    format: 0 February 30, 1 February 29 of a common year, 2 April 31, 3 the time 25:61
    (February 30 when the value has no time)."""
    m = _DATE_RE.match(value)
    if m is None:
        return value
    year, sep, month, day, rest = m.groups()
    if variant == 3:
        t = _TIME_RE.match(rest)
        if t is not None:
            return f"{year}{sep}{month}{sep}{day}{t[1]}25:61{t[2]}"
        if len(rest) == 6 and rest.isdigit():  # %H%M%S
            return f"{year}{sep}{month}{sep}{day}2561{rest[4:]}"
    if variant == 1:
        common = int(year) - 1 if int(year) % 4 == 0 else int(year)
        return f"{common:04d}{sep}02{sep}29{rest}"
    month, day = ("04", "31") if variant == 2 else ("02", "30")
    return f"{year}{sep}{month}{sep}{day}{rest}"


def _malform(line: str, spec: SourceSpec, rng: np.random.Generator) -> str:
    """CSV/TSV: an unquoted delimiter inside a field (one field too many) or a field lost
    (one too few). JSON Lines: the object cut in half."""
    if spec.kind == "jsonl":
        return line[: max(1, len(line) // 2)]
    d = spec.delimiter
    if rng.random() < 0.5:
        pos = line.find(d, len(line) // 2)
        pos = len(line) if pos < 0 else pos
        bad = line[:pos] + d + "x" + line[pos:]
        # an empty last field would pass for a trailing delimiter in lenient readers
        return bad + "x" if bad.endswith(d) else bad
    return line[: line.rfind(d)]


def _truncate(line: str, spec: SourceSpec, rng: np.random.Generator) -> str:
    """Cut a row before its last field (the transfer stopped mid-row)."""
    if spec.kind == "jsonl":
        return line[: max(1, int(len(line) * rng.uniform(0.2, 0.8)))]
    first, last = line.find(spec.delimiter), line.rfind(spec.delimiter)
    return line[: int(rng.integers(first + 1, last + 1))] if last > first >= 0 else ""
