"""Deliveries of the hand-written ingest fixtures and what the loader made of them, for the
loader tests (tests/test_ingest_engine*.py)."""

from __future__ import annotations

import shutil
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "ingest"
DAY = "2026-01-06"


def deliver(landing: Path, source: str, *files: str, day: str = DAY) -> Path:
    """Copy fixture files into the landing folder of `source` for `day`."""
    folder = landing / source / day
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(FIXTURES / f, folder / f)
    return folder


def counts(result) -> dict[str, tuple[int, int, int]]:
    """(rows read, loaded, quarantined) per file name of a load result."""
    return {
        Path(f.file).name: (f.rows_read, f.rows_loaded, f.rows_quarantined) for f in result.files
    }


def quarantine(con, file: str) -> list[tuple[int, str]]:
    """(line, reason) of the quarantined rows of one file."""
    return con.execute(
        "SELECT _source_line, reason FROM raw.quarantine WHERE _source_file LIKE ? "
        "ORDER BY _source_line",
        ["%/" + file],
    ).fetchall()
