"""Publish the marts for BI: serving.duckdb, Parquet, Hyper, a manifest — swapped in atomically.

```
$CRM_HOME/serving/
  serving.duckdb  -> current/serving.duckdb   the published tables (schema main) + _publication,
                                              _publication_tables
  parquet         -> current/parquet          one file per table (zstd, level 1)
  tableau         -> current/tableau          <table>.hyper ("Extract"."Extract") and .tds
  manifest.json   -> current/manifest.json    what was published, when, as of which date, rows
  current         -> .releases/<publication id>   THE one link that changes
  .releases/<publication id>/                 the current and the previous publication,
                                              each with its KPI review (reports/, see
                                              pipelines/publish/release.py)
```

How a publication happens (docs/publishing.md explains why):

1. Under an exclusive lock (`serving/.publish.lock`), the new publication is built in its own
   release folder `serving/.releases/<publication id>/`: the warehouse is ATTACHed READ_ONLY
   to an in-memory DuckDB, each table is copied into a new DuckDB file written with a fixed
   storage version (`STORAGE_VERSION`, so older DuckDB and JDBC clients can open it),
   CHECKPOINTed and closed; Parquet and Hyper files are written from that staged copy, so all
   formats hold the same rows (the Hyper extracts by a worker thread beside DuckDB's work,
   `HyperWorker`). Everything is fsynced.
2. Then one atomic step publishes all of it: a new symbolic link to the release replaces
   `serving/current` (`os.replace`, atomic on POSIX). The fixed links `serving.duckdb`,
   `parquet/`, `tableau/` and `manifest.json` point through `current`, so a reader sees
   either the whole old publication or the whole new one, at every instant, even if the
   process is killed at any point: there is no state in which some files are new and
   others old. A reader that has the old serving.duckdb open keeps reading it (the previous
   release stays on disk until the next publication).
3. A publication killed before step 2 leaves an unfinished release folder, which the next
   publication deletes; the previous publication stays current. Releases older than the
   previous one are deleted after the swap. `restore_previous()` points `current` back at
   the previous release (docs/operations.md).

**By difference.** The large facts (`ROW_KEYS`) change in a small share of their rows each
night. When the current release was written by the same DuckDB version in the same storage
version, the new release starts from a copy of its serving.duckdb (and of its Hyper
extracts) and each of those facts is patched: the rows whose key is new, gone, or whose
content hash (DuckDB `hash()` of every column) differs from the warehouse's are deleted and
inserted again; the row count is checked against the warehouse. Every other table is
written whole, and so is a fact whose columns changed, whose rows patched since its last
whole write pass `PATCH_LIMIT` of its rows (deleted rows keep their space until a file is
rewritten), or when `.publish-whole` is present in the serving folder (written by an
erasure, so that no file of the new release keeps the person's deleted rows; removed after
the next publication). Parquet files are always written whole. The manifest records, per
table, how it was written.

**Only the keys the builds wrote.** dbt keeps, beside each fact, the keys every build of it
wrote (`main.<fact>__written_keys`, macro `keep_written_keys`): a fact built `delete+insert`
by its dbt `unique_key` changes no other row. The manifest records the last build the
release saw (`written_keys_through`); the next publication compares only the rows whose
`unique_key` was written after it, on both sides. It compares every row when the log is
missing, when it no longer holds that build (a warehouse older than the release, or
pruned), or when a whole build (first build, `--full-refresh`) came after it.

The parts, each in its module: the names and formats of the layout (`layout`), one release's
files (`build`), publication by difference (`patching`), the Hyper extracts
(`hyper_worker`, `tableau`), the release folders, the swap, `restore_previous` and
`open_serving` (`releases`), erasure from the releases (`erasure`).
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipelines.lib.settings import DBT_PROJECT_DIR
from pipelines.lib.whole_publication import read_whole_request
from pipelines.publish.build import build_release
from pipelines.publish.layout import (
    FORMATS,
    MANIFEST,
    RELEASES_DIR,
    SERVING_DB,
    STORAGE_VERSION,
    WHOLE_MARKER,
    PublishError,
)
from pipelines.publish.releases import (
    current_release,
    previous_releases,
    publish_lock,
    stage_review,
    swap,
)
from pipelines.publish.tds import dbt_descriptions

#: The dbt manifest the column descriptions of the Tableau data sources come from.
DEFAULT_MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


@dataclass(frozen=True)
class PublishResult:
    """What one publication wrote (for the Dagster materialization metadata)."""

    publication_id: str
    published_at: datetime
    as_of_date: date | None
    serving_dir: Path
    serving_db: Path
    manifest_path: Path
    storage_version: str
    row_counts: dict[str, int]
    files: dict[str, int]  # path relative to serving_dir -> bytes
    seconds: float
    step_seconds: dict[str, float] = field(default_factory=dict)
    #: tables published by difference -> keys whose row was replaced, added or removed (the
    #: others were written whole)
    patched: dict[str, int] = field(default_factory=dict)

    @property
    def total_rows(self) -> int:
        return sum(self.row_counts.values())

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    def metadata(self) -> dict[str, Any]:
        """Plain JSON-able values: pass to `dg.MaterializeResult(metadata=...)`."""
        return {
            "publication_id": self.publication_id,
            "published_at": self.published_at.isoformat(),
            "as_of_date": self.as_of_date.isoformat() if self.as_of_date else None,
            "serving_db": str(self.serving_db),
            "storage_version": self.storage_version,
            "tables": len(self.row_counts),
            "total_rows": self.total_rows,
            "total_bytes": self.total_bytes,
            "seconds": round(self.seconds, 3),
            **{f"rows.{name}": rows for name, rows in sorted(self.row_counts.items())},
            **{f"seconds.{step}": round(s, 3) for step, s in self.step_seconds.items()},
            **{f"patched_rows.{name}": rows for name, rows in sorted(self.patched.items())},
        }


def publish(
    warehouse_db: Path,
    serving_dir: Path,
    *,
    marts: list[str] | None = None,
    as_of: date | None = None,
    storage_version: str = STORAGE_VERSION,
    formats: tuple[str, ...] = FORMATS,
    by_difference: bool = True,
    review: Path | None = None,
    dbt_manifest: Path | None = None,
    currency: str = "CNY",
) -> PublishResult:
    """Publish the marts of `warehouse_db` under `serving_dir` (see the module docstring).

    `marts`: the tables to publish (default: every table and view in schema `marts`, plus
    `EXTRA_TABLES`: kpi_definitions, kpi_targets, sla_targets). `as_of`: the as-of date
    recorded in the manifest (default: the `as_of_date` of rpt_kpi_review). `formats`: a subset of ("duckdb", "parquet", "hyper");
    serving.duckdb is always written. `by_difference`: patch the `ROW_KEYS` tables of a copy
    of the current release where possible (False: every table whole). `review`: the rendered
    KPI review (a file, or a folder of files), copied into the release under `reports/`
    before the swap (None:
    the release has an empty `reports/`, and no review is shown beside its tables).
    `dbt_manifest`: the dbt manifest whose column descriptions the Tableau data sources show
    (default: the dbt project's target/manifest.json, when it exists); `currency`: the
    reporting currency, the default format of amounts in Tableau. Raises
    `PiiColumnError` before writing anything if a column looks like personal data,
    `PublishError` if a table is missing.
    """
    started = time.perf_counter()
    warehouse_db = Path(warehouse_db)
    serving_dir = Path(serving_dir)
    if not warehouse_db.exists():
        raise PublishError(f"{warehouse_db} does not exist: run the pipeline first")
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise PublishError(f"unknown format(s) {sorted(unknown)}; use {FORMATS}")
    serving_dir.mkdir(parents=True, exist_ok=True)
    published_at = datetime.now(UTC).replace(tzinfo=None, microsecond=0)
    publication_id = f"{published_at:%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"
    steps: dict[str, float] = {}

    with publish_lock(serving_dir):
        releases = serving_dir / RELEASES_DIR
        releases.mkdir(exist_ok=True)
        for stale in serving_dir.glob(".staging-*"):  # older layouts, left by a killed run
            shutil.rmtree(stale, ignore_errors=True)
        keep = {current_release(serving_dir), *previous_releases(serving_dir)}
        for unfinished in releases.iterdir():  # killed before its swap; we hold the lock
            if unfinished.is_dir() and unfinished.name not in keep:
                shutil.rmtree(unfinished, ignore_errors=True)
        staging = releases / publication_id
        staging.mkdir()
        request = read_whole_request(serving_dir)
        current = current_release(serving_dir)
        base = (
            releases / current
            if by_difference and request is None and current and (releases / current).is_dir()
            else None
        )
        try:
            built = build_release(
                warehouse_db,
                staging,
                marts,
                as_of,
                storage_version,
                formats,
                publication_id,
                published_at,
                steps,
                base,
                dbt_descriptions(DEFAULT_MANIFEST if dbt_manifest is None else dbt_manifest),
                currency,
            )
            t = time.perf_counter()
            review_files = stage_review(staging, review)
            files = swap(staging, serving_dir, [*built["files"], *review_files])
            steps["swap"] = time.perf_counter() - t
            # only the request this publication saw: one written meanwhile (an erasure
            # while the files were written) stays for the next publication
            if request is not None and read_whole_request(serving_dir) == request:
                (serving_dir / WHOLE_MARKER).unlink(missing_ok=True)
        except BaseException:
            if current_release(serving_dir) != staging.name:  # not if it was swapped in
                shutil.rmtree(staging, ignore_errors=True)
            with contextlib.suppress(OSError):  # nothing was ever published here
                releases.rmdir()
            raise

    return PublishResult(
        publication_id=publication_id,
        published_at=published_at,
        as_of_date=built["as_of"],
        serving_dir=serving_dir,
        serving_db=serving_dir / SERVING_DB,
        manifest_path=serving_dir / MANIFEST,
        storage_version=built["storage_version"],
        row_counts=built["row_counts"],
        files=files,
        seconds=time.perf_counter() - started,
        step_seconds=steps,
        patched=built["patched"],
    )
