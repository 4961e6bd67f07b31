"""Files quarantined whole: a file never read (as a file: name, size, sha256, reason) or
one the reader gave up on (line by line, with the reader's reason), and the schema
drift that fails a delivery none of whose files is readable.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pipelines.ingest.batch import _Item, _Job, _Unreadable
from pipelines.ingest.canonical import QUARANTINE_COLUMNS, RAW_SCHEMA
from pipelines.ingest.files import _line_breaks
from pipelines.ingest.line_reader import BLANK_RE
from pipelines.ingest.mapping import SchemaDriftError, SourceMapping
from pipelines.ingest.rows import _insert_values


def _quarantine_whole(job: _Job, item: _Item, reason: str) -> None:
    """Quarantine a file as a file: one row naming it, its size, sha256 and the reason;
    no line and never its content (counted as one row read and quarantined)."""
    mapping = job.mapping
    reason = f"unreadable file ({item.scan.size} bytes, sha256 {item.scan.sha256}): {reason}"
    row = [mapping.name, mapping.entity, item.rel, None, None, reason]
    row += [item.delivery, job.loaded_at, item.scan.sha256]
    _insert_values(job.con, f"{RAW_SCHEMA}.quarantine", QUARANTINE_COLUMNS, [row], job.tmp)
    item.result.rows_read = item.result.rows_quarantined = 1
    item.result.rows_loaded = 0
    item.result.warnings.append(f"quarantined as a file: {reason}")


def _quarantine_file(job: _Job, item: _Item, reason: str) -> None:
    """Quarantine a file the reader cannot read, with the reader's reason: every line that
    would be a row (neither blank nor the header) as it is in the file; a Parquet file as
    one row without line or text."""
    mapping, fmt = job.mapping, job.mapping.format
    hint = _line_breaks(item.path) if fmt.type != "parquet" else ""
    reason = f"unreadable file{f' ({hint})' if hint else ''}: {reason}"
    lineage = [item.delivery, job.loaded_at, item.scan.sha256]
    rows: list[list] = []
    count = 0

    def flush() -> None:
        nonlocal count
        _insert_values(job.con, f"{RAW_SCHEMA}.quarantine", QUARANTINE_COLUMNS, rows, job.tmp)
        count += len(rows)
        rows.clear()

    if fmt.type == "parquet":
        rows.append([mapping.name, mapping.entity, item.rel, None, None, reason, *lineage])
    else:
        header = fmt.type == "csv" and fmt.header
        with item.path.open("rb") as fh:
            for line_no, raw in enumerate(fh, 1):
                text = raw.removesuffix(b"\n").removesuffix(b"\r")
                text = text.decode(fmt.encoding, errors="replace")
                if line_no == 1:
                    text = text.removeprefix("\ufeff")
                if header and not fmt.whitespace:  # delimited text: line 1 is the header
                    header = False
                    continue
                if BLANK_RE.fullmatch(text):
                    continue
                if header:  # whitespace-delimited: the first non-blank line
                    header = False
                    continue
                rows.append(
                    [mapping.name, mapping.entity, item.rel, line_no, text, reason, *lineage]
                )
                if len(rows) >= 100_000:
                    flush()
    flush()
    item.result.rows_read = item.result.rows_quarantined = count
    item.result.rows_loaded = 0
    item.result.warnings.append(f"every row quarantined: {reason}")


def _no_file_readable(
    mapping: SourceMapping,
    plan: list[tuple[date, list[_Item]]],
    todo: list[_Item],
    unreadable: dict[Path, _Unreadable],
) -> None:
    """Schema drift: a delivery none of whose files is readable, one of them for lacking a
    mapped column, fails (SchemaDriftError naming mapping, files and fields; no content)."""
    for day, items in plan:
        ids = {id(it) for it in items}
        mine = [it for it in todo if id(it) in ids]
        bad = [unreadable[it.path] for it in mine if it.path in unreadable]
        if mine and len(bad) == len(mine) and any(b.drift for b in bad):
            raise SchemaDriftError(
                f"{mapping.label}: no file of {mapping.name} delivered on {day} is readable: "
                + "; ".join(f"data file {b.rel}{' ' if b.drift else ': '}{b.reason}" for b in bad)
                + f". Fix the mapping or the export; nothing was loaded for {mapping.name} "
                "on this delivery date."
            )
