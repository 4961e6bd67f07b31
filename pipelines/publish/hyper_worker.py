"""The worker thread that writes a publication's Tableau Hyper extracts while DuckDB works
(pipelines/publish/build.py)."""

from __future__ import annotations

import os
import shutil
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pipelines.publish import tableau
from pipelines.publish.layout import WHOLE_MARKER, PublishError


class HyperWorker:
    """Writes the Hyper extracts of a publication, one task after the other, in a thread.

    The tasks run in the order they are given: `copy` a base extract (before the `patch` of
    that table), `patch` a copied extract from a fact's changed keys and rows, `write` an
    extract whole from a Parquet file. Each extract gets its .tds files (`tds`: name -> file
    name -> the file's XML, pipelines/publish/tds.py) and the mode of serving.duckdb. After a task fails, the others are skipped. `wait` returns when every
    task is done and raises the first error;
    `cancel` drops the tasks not started and waits for the running one (the caller then
    deletes the release folder)."""

    def __init__(self, folder: Path, staged_db: Path, tds: dict[str, dict[str, str]]) -> None:
        self.folder = folder
        self.tds = tds
        self.staged_db = staged_db
        self.seconds = 0.0
        self._copied: set[str] = set()
        self._failed = False
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hyper")
        self._tasks: list[Future] = []

    def _submit(self, task: Any, *args: Any) -> None:
        def timed() -> None:
            if self._failed:  # the publication fails anyway: write nothing more
                return
            started = time.perf_counter()
            try:
                task(*args)
            except BaseException:
                self._failed = True
                raise
            finally:
                self.seconds += time.perf_counter() - started

        self._tasks.append(self._pool.submit(timed))

    def _extract(self, name: str) -> Path:
        return self.folder / f"{name}.hyper"

    def _finish(self, name: str) -> None:
        for file_name, xml in self.tds[name].items():
            (self.folder / file_name).write_text(xml, encoding="utf-8")
        # Hyper creates its files owner-only; give them the mode of the other files
        os.chmod(self._extract(name), self.staged_db.stat().st_mode & 0o777)

    def copied(self, name: str) -> bool:
        return name in self._copied

    def copy(self, base_extract: Path, name: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self._copied.add(name)
        self._submit(shutil.copyfile, base_extract, self._extract(name))

    def patch(self, name: str, key: str, keys_file: Path, rows_file: Path, rows: int) -> None:
        def task() -> None:
            extract = self._extract(name)
            patched = tableau.patch_hyper(extract, key, keys_file, rows_file)
            keys_file.unlink()
            rows_file.unlink()
            if patched != rows:
                raise PublishError(
                    f"{extract}: {patched:,} rows after the patch, {rows:,} in serving.duckdb; "
                    f"nothing was published. Create serving/{WHOLE_MARKER} (the next "
                    "publication writes every file whole) and publish again"
                )
            self._finish(name)

        self._submit(task)

    def write(self, name: str, parquet: Path, *, temporary: bool) -> None:
        def task() -> None:
            tableau.write_hyper(parquet, self._extract(name))
            if temporary:
                parquet.unlink()
            self._finish(name)

        self._submit(task)

    def wait(self) -> None:
        try:
            for done in self._tasks:
                done.result()
        except BaseException:
            self.cancel()
            raise
        self._pool.shutdown()

    def cancel(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
