"""Erasure from the published releases: the rows of erased customers removed from every
release kept under serving/ (pipelines/privacy/erasure.py)."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import duckdb

from pipelines.lib.duck import duckdb_config
from pipelines.publish import tableau
from pipelines.publish.layout import (
    MANIFEST,
    PARQUET_DIR,
    PARQUET_OPTIONS,
    PUBLICATION_TABLES_TABLE,
    RELEASES_DIR,
    SERVING_DB,
    STORAGE_VERSION,
    TABLEAU_DIR,
    fsync,
    ident,
    literal,
)
from pipelines.publish.releases import publish_lock


def _customer_tables(con: duckdb.DuckDBPyConnection, database: str) -> list[str]:
    """The tables of `database` (schema main) with a customer_id column."""
    return [
        row[0]
        for row in con.execute(
            "select table_name from duckdb_columns() where database_name = ? "
            "and schema_name = 'main' and column_name = 'customer_id' order by 1",
            [database],
        ).fetchall()
    ]


def _erase_from_release(release: Path, customer_ids: list[str]) -> int:
    """Remove the rows of `customer_ids` from one release folder: every Hyper extract and
    Parquet file of a table with a customer_id is rewritten whole without them, then
    serving.duckdb is rewritten into a new file (no deleted rows in its free space) and
    renamed over the old one; the manifest's row counts follow. Each file is replaced by an
    atomic rename. Idempotent: serving.duckdb goes last, so a rewrite killed midway is
    finished by the next call. Returns the rows removed from serving.duckdb."""
    db = release / SERVING_DB
    if not db.is_file():
        return 0
    fresh_db = release / f".{SERVING_DB}.erasure"
    con = duckdb.connect(config=duckdb_config())
    try:
        con.execute(f"attach {literal(str(db))} as rel (read_only)")
        con.execute("create temp table erased (customer_id varchar)")
        con.executemany("insert into erased values (?)", [[c] for c in customer_ids])
        removed = _rows_to_remove(con)
        if not removed:
            return 0
        for name in removed:
            _rewrite_files(con, release, name)
        _rewrite_serving_db(con, release, fresh_db, removed)
    finally:
        con.close()
    os.chmod(fresh_db, db.stat().st_mode & 0o777)
    fsync(fresh_db)
    os.replace(fresh_db, db)
    _rewrite_manifest(release, removed)
    fsync(release)
    return sum(removed.values())


#: rows without a customer (guest orders) stay: NOT IN alone would drop them
_KEEP = "where customer_id is null or customer_id not in (select customer_id from erased)"


def _rows_to_remove(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """table -> rows of the erased customers (temp table `erased`) in the release `rel`."""
    removed: dict[str, int] = {}
    for name in _customer_tables(con, "rel"):
        (n,) = con.execute(
            f"select count(*) from rel.main.{ident(name)} "
            "where customer_id in (select customer_id from erased)"
        ).fetchone()
        if n:
            removed[name] = n
    return removed


def _rewrite_files(con: duckdb.DuckDBPyConnection, release: Path, name: str) -> None:
    """The Hyper extract and the Parquet file of one table rewritten without the rows."""
    source = release / f".{name}.erasure.parquet"
    con.execute(
        f"copy (select * from rel.main.{ident(name)} {_KEEP}) to "
        f"{literal(str(source))} ({PARQUET_OPTIONS})"
    )
    extract = release / TABLEAU_DIR / f"{name}.hyper"
    if extract.is_file():
        fresh = extract.with_name(f".{name}.erasure.hyper")
        tableau.write_hyper(source, fresh)
        os.chmod(fresh, extract.stat().st_mode & 0o777)
        fsync(fresh)
        os.replace(fresh, extract)
    parquet = release / PARQUET_DIR / f"{name}.parquet"
    if parquet.is_file():
        os.chmod(source, parquet.stat().st_mode & 0o777)
        fsync(source)
        os.replace(source, parquet)
    else:
        source.unlink()


def _rewrite_serving_db(
    con: duckdb.DuckDBPyConnection, release: Path, fresh_db: Path, removed: dict[str, int]
) -> None:
    """serving.duckdb copied into `fresh_db` without the rows (in the storage version the
    release asked for), its `_publication_tables` counts corrected."""
    fresh_db.unlink(missing_ok=True)
    version = STORAGE_VERSION
    with contextlib.suppress(OSError, ValueError, AttributeError):
        manifest = json.loads((release / MANIFEST).read_text(encoding="utf-8"))
        version = manifest.get("storage_version_requested") or STORAGE_VERSION
    con.execute(f"attach {literal(str(fresh_db))} as fresh (storage_version {literal(version)})")
    for (name,) in con.execute(
        "select table_name from duckdb_tables() where database_name = 'rel' "
        "and schema_name = 'main' order by 1"
    ).fetchall():
        where = _KEEP if name in removed else ""
        con.execute(
            f"create table fresh.main.{ident(name)} as select * from rel.main.{ident(name)} {where}"
        )
    for name, n in removed.items():
        con.execute(
            f"update fresh.main.{PUBLICATION_TABLES_TABLE} set row_count = row_count - ? "
            "where table_name = ?",
            [n, name],
        )
    con.execute("checkpoint fresh")
    con.execute("detach fresh")
    con.execute("detach rel")


def _rewrite_manifest(release: Path, removed: dict[str, int]) -> None:
    """The manifest's row counts and file sizes after the erasure (atomically)."""
    manifest_path = release / MANIFEST
    if not manifest_path.is_file():
        return
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    for name, n in removed.items():
        if name in manifest.get("tables", {}):
            manifest["tables"][name]["rows"] -= n
    for rel in manifest.get("files", {}):
        if (release / rel).is_file():
            manifest["files"][rel] = (release / rel).stat().st_size
    manifest["rewritten_after_erasure"] = True
    fresh_manifest = release / f".{MANIFEST}.erasure"
    fresh_manifest.write_text(
        json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    fsync(fresh_manifest)
    os.replace(fresh_manifest, manifest_path)


def erase_from_releases(serving_dir: Path, customer_ids: list[str]) -> dict[str, int]:
    """Remove the rows of `customer_ids` (erased people) from every release kept under
    `serving_dir` (the current and the previous one), under the publication lock: each
    release keeps its tables, minus those rows, in every format, so that
    `restore_previous()` stays useful and restores nobody. Returns release -> rows removed
    (from its serving.duckdb)."""
    serving_dir = Path(serving_dir)
    releases = serving_dir / RELEASES_DIR
    if not customer_ids or not releases.is_dir():
        return {}
    with publish_lock(serving_dir):
        return {
            release.name: _erase_from_release(release, customer_ids)
            for release in sorted(releases.iterdir())
            if release.is_dir()
        }
