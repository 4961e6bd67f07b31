"""The release folders under serving/: the review staged into a release, the one atomic
swap of `current`, the previous release kept and restored, and reading the current release
(the manifest, the read-only connection analysts use)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb

from pipelines.lib.whole_publication import request_whole_publication
from pipelines.publish.layout import (
    CURRENT,
    ENTRY_POINTS,
    MANIFEST,
    PARQUET_DIR,
    RELEASES_DIR,
    REVIEW_DIR,
    REVIEW_FILE,
    SERVING_DB,
    TABLEAU_DIR,
    PublishError,
    fsync,
    literal,
)


@contextlib.contextmanager
def publish_lock(serving_dir: Path) -> Iterator[None]:
    """One publication at a time per serving folder (a second one waits)."""
    with open(serving_dir / ".publish.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def stage_review(staging: Path, review: Path | None) -> list[str]:
    """Copy the KPI review into the release `staging` (fsynced): a file as
    `reports/kpi_review.html`, a folder (the review in every language and its status file,
    pipelines/publish/release.py) file by file under `reports/`; the release's files it adds."""
    folder = staging / REVIEW_DIR
    folder.mkdir(exist_ok=True)
    written = []
    if review is not None:
        sources = (
            sorted((f, f.name) for f in Path(review).iterdir() if f.is_file())
            if Path(review).is_dir()
            else [(Path(review), REVIEW_FILE)]
        )
        for source, name in sources:
            shutil.copyfile(source, folder / name)
            fsync(folder / name)
            written.append(f"{REVIEW_DIR}/{name}")
    fsync(folder)
    return written


def current_release(serving_dir: Path) -> str | None:
    link = serving_dir / CURRENT
    return Path(os.readlink(link)).name if link.is_symlink() else None


def previous_releases(serving_dir: Path) -> set[str]:
    """The release published before the current one (kept for open readers and restores)."""
    marker = serving_dir / RELEASES_DIR / ".previous"
    return {marker.read_text(encoding="utf-8").strip()} if marker.exists() else set()


def _write_previous(serving_dir: Path, release: str) -> None:
    """Record `release` as the previous one, atomically: a temporary file, fsynced, renamed
    over `.previous`, then the folder fsynced. A crash leaves the old or the new name, never
    an empty or partial file (which would let the next publication delete the release a
    reader or a restore still needs)."""
    releases = serving_dir / RELEASES_DIR
    tmp = releases / f".previous.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(release)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, releases / ".previous")
    finally:
        tmp.unlink(missing_ok=True)
    fsync(releases)


def _link(target: str, path: Path) -> None:
    """Make `path` a symbolic link to `target`, atomically (a new link renamed over it)."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def _ensure_layout(serving_dir: Path) -> None:
    """The entry points are links through `current`. A serving folder of the earlier layout
    (plain files) is moved into a release of its own first: once, at the first publication
    after an upgrade."""
    releases = serving_dir / RELEASES_DIR
    releases.mkdir(exist_ok=True)
    plain = [
        name
        for name in ENTRY_POINTS
        if (serving_dir / name).exists() and not (serving_dir / name).is_symlink()
    ]
    if plain and not (serving_dir / CURRENT).is_symlink():
        legacy = releases / "earlier-layout"
        legacy.mkdir(exist_ok=True)
        for name in plain:
            os.replace(serving_dir / name, legacy / name)
        _link(f"{RELEASES_DIR}/{legacy.name}", serving_dir / CURRENT)
    for name in ENTRY_POINTS:
        entry = serving_dir / name
        if not entry.is_symlink():
            _link(f"{CURRENT}/{name}", entry)


def swap(staging: Path, serving_dir: Path, files: list[str]) -> dict[str, int]:
    """Publish the release `staging` in one atomic step (the `current` link), then delete
    releases older than the previous one."""
    sizes = {rel: (staging / rel).stat().st_size for rel in files}
    for folder in (PARQUET_DIR, TABLEAU_DIR):  # every entry point resolves, whatever formats
        (staging / folder).mkdir(exist_ok=True)
    for folder in {staging, staging / PARQUET_DIR, staging / TABLEAU_DIR}:
        fsync(folder)
    _ensure_layout(serving_dir)
    before = current_release(serving_dir)
    _link(f"{RELEASES_DIR}/{staging.name}", serving_dir / CURRENT)
    fsync(serving_dir)
    releases = serving_dir / RELEASES_DIR
    if before and before != staging.name:
        _write_previous(serving_dir, before)
    keep = {staging.name, before}
    for release in releases.iterdir():
        if release.is_dir() and release.name not in keep:
            shutil.rmtree(release, ignore_errors=True)
    return sizes


def restore_previous(serving_dir: Path) -> str:
    """Point `current` back at the previous publication (after a bad one was published);
    returns its publication id. The next publication replaces it as usual."""
    serving_dir = Path(serving_dir)
    with publish_lock(serving_dir):
        previous = previous_releases(serving_dir)
        target = next(iter(previous), None)
        if not target or not (serving_dir / RELEASES_DIR / target).is_dir():
            raise PublishError(f"no previous publication under {serving_dir / RELEASES_DIR}")
        now = current_release(serving_dir)
        _link(f"{RELEASES_DIR}/{target}", serving_dir / CURRENT)
        fsync(serving_dir)
        if now:
            _write_previous(serving_dir, now)
        # the restored release may predate an erasure: the next publication starts afresh
        request_whole_publication(serving_dir, f"restore of {target}")
        return target


# --------------------------------------------------------------------------------------------
# Reading


def read_manifest(serving_dir: Path) -> dict[str, Any]:
    return json.loads((Path(serving_dir) / MANIFEST).read_text(encoding="utf-8"))


def open_serving(
    serving: Path, *, attempts: int = 5, wait_seconds: float = 0.2
) -> duckdb.DuckDBPyConnection:
    """Open the published DuckDB file read-only (the way analysts should open it).

    `serving` is the serving folder or the serving.duckdb file. The file is ATTACHed
    READ_ONLY as `serving` to a fresh in-memory database (and made the default with USE), not
    opened with `duckdb.connect(path)`: within one Python process, `duckdb.connect(path)`
    returns the already open database instance when one exists, so a second connection would
    keep showing the publication the first one opened. Opening is retried on an I/O error (no
    file yet during a first publication, a lock held by someone who opened the file
    read-write by mistake). An open connection keeps reading the publication it opened; open
    a new one to see a newer publication.
    """
    path = Path(serving)
    if path.is_dir() or path.suffix != ".duckdb":
        path = path / SERVING_DB
    last: Exception | None = None
    for attempt in range(max(1, attempts)):
        con = duckdb.connect()
        try:
            con.execute(f"attach {literal(str(path))} as serving (read_only)")
            con.execute("use serving")
            return con
        except duckdb.IOException as exc:
            con.close()
            last = exc
            if attempt + 1 < attempts:
                time.sleep(wait_seconds * (2**attempt))
    raise PublishError(
        f"cannot open {path} read-only after {attempts} attempts ({last}). Has the pipeline "
        "published yet, and does nobody hold the file open read-write?"
    ) from last
