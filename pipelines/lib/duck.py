"""DuckDB connections to the warehouse file.

DuckDB allows one writer per file and a reader blocks the writer, so the pipeline opens the
warehouse only for the duration of one step and analysts never open it (they use
`serving/serving.duckdb`, see the publish step).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb


class WarehouseBusyError(RuntimeError):
    """Another process holds the warehouse file."""


@contextmanager
def connect(
    path: Path, *, read_only: bool = False, wait_seconds: float = 30.0
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open `path`, waiting up to `wait_seconds` while another process holds its lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            break
        except duckdb.IOException as exc:
            if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                raise WarehouseBusyError(
                    f"{path} is in use by another process ({exc}). Only the pipeline may open "
                    "the warehouse file; analysts read serving/serving.duckdb."
                ) from exc
            time.sleep(0.5)
    try:
        yield con
    finally:
        con.close()
