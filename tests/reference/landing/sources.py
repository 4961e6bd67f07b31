"""A source as the loader would load it: ``apply_mapping`` (canonical typed columns, the
rows the loader would quarantine left out and counted), ``read_source`` (every delivery
of one mapping) and ``read_landing`` (every mapping of a landing folder)."""

from __future__ import annotations

import hashlib
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from fnmatch import fnmatch
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from reference.landing.files import read_file
from reference.landing.mapping import (
    CANONICAL,
    DATE_DIR,
    NFKC_FIELDS,
    Mapping,
    MappingProblem,
    _expression,
    load_mappings,
)
from reference.landing.values import _text, type_column


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
