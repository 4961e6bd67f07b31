"""The dbt project, and its manifest (parsed on demand so a fresh clone just works)."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dagster_dbt import DbtProject

from pipelines.lib.child_env import child_env
from pipelines.lib.child_guard import parent_env
from pipelines.lib.duck import MEMORY_LIMIT_ENV, connect_warehouse
from pipelines.lib.erasure_guards import purge_erased
from pipelines.lib.key_check import verify_key
from pipelines.lib.pseudonym import KEY_ENV
from pipelines.lib.settings import DBT_PROJECT_DIR, Settings
from pipelines.transform.dbt_cli import CrmDbtCliResource, dbt_executable

__all__ = ["CrmDbtCliResource", "dbt_executable"]  # the dbt resource lives in dbt_cli.py

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


def _project_files() -> list[Path]:
    """Every source file of the dbt project (not dbt's output folders), sorted."""
    paths = [DBT_PROJECT_DIR / name for name in ("dbt_project.yml", "profiles.yml")]
    for folder in ("models", "macros", "seeds", "tests", "analyses", "snapshots"):
        paths += (DBT_PROJECT_DIR / folder).rglob("*")
    return sorted(p for p in paths if p.is_file())


def _newest_source_mtime() -> float:
    return max((path.stat().st_mtime for path in _project_files()), default=0.0)


def project_fingerprint() -> str:
    """sha256 of every source file of the dbt project (paths and contents): changes when,
    and only when, the project does."""
    import hashlib

    digest = hashlib.sha256()
    for path in _project_files():
        digest.update(str(path.relative_to(DBT_PROJECT_DIR)).encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment variables of the profile for the deployment of `settings`: the
    warehouse file, the restricted store attached to it, the pseudonymisation key file (and
    the key itself when it comes from $CRM_PSEUDONYM_KEY: the project's dbt plugin reads it
    in the dbt process), DuckDB's memory limit; and this process's pid, so that dbt stops
    when this process dies (pipelines/lib/child_guard.py)."""
    env = {
        **parent_env(),
        "CRM_WAREHOUSE_DB": str(settings.warehouse_db),
        "CRM_RESTRICTED_DB": str(settings.restricted_db),
        "CRM_PSEUDONYM_KEY_FILE": str(settings.pseudonym_key_file),
        MEMORY_LIMIT_ENV: settings.duckdb_memory_limit,
    }
    if settings.pseudonym_key:
        env[KEY_ENV] = settings.pseudonym_key
    return env


def prepare_warehouse(settings: Settings) -> dict[str, str]:
    """Before dbt runs: the key is the warehouse's (pipelines/lib/key_check.py: the key file
    is created for a new warehouse unless the key comes from $CRM_PSEUDONYM_KEY), the restricted store has owner-only permissions, the warehouse has its `raw.*` views
    over it. Returns dbt_env(settings)."""
    verify_key(settings)
    with connect_warehouse(settings.warehouse_db, settings.restricted_db):
        pass
    # rows of erased people in files delivered again, in case a crash came between the
    # load and its purge (pipelines/lib/erasure_guards.py)
    purge_erased(settings)
    return dbt_env(settings)


def run_dbt(args: list[str], *, settings: Settings | None = None) -> None:
    """`dbt ARGS --project-dir --profiles-dir --quiet` on this project, output captured;
    RuntimeError with the end of dbt's output when it fails. `settings`: the deployment
    whose files the profile uses (default: scratch files under target/, enough for `dbt
    parse`)."""
    if settings is not None:
        env = child_env(prepare_warehouse(settings))
    else:
        env = child_env(
            {
                "CRM_WAREHOUSE_DB": str(DBT_PROJECT_DIR / "target" / "parse_only.duckdb"),
                "CRM_RESTRICTED_DB": str(
                    DBT_PROJECT_DIR / "target" / "parse_only_restricted.duckdb"
                ),
            }
        )
    project = ["--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir", str(DBT_PROJECT_DIR)]
    proc = subprocess.run(
        [dbt_executable(), *args, *project, "--quiet"],
        cwd=DBT_PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"dbt {args[0]} failed in {DBT_PROJECT_DIR}:\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )


def _manifest_is_fresh() -> bool:
    return MANIFEST.exists() and MANIFEST.stat().st_mtime >= _newest_source_mtime()


def ensure_manifest() -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project files.

    Several processes may ask at once (a backfill while the web server loads the code
    location; parallel test workers on a fresh clone): one parses at a time (a lock file
    under target/), into a private target folder, and the manifest is moved into place
    in one step, so no reader ever sees a half-written file."""
    if _manifest_is_fresh():
        return MANIFEST
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    with open(MANIFEST.parent / ".parse.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _manifest_is_fresh():  # another process parsed while we waited
                return MANIFEST
            work = Path(tempfile.mkdtemp(prefix="parse-", dir=MANIFEST.parent))
            try:
                run_dbt(["parse", "--target-path", str(work)])
                os.replace(work / "manifest.json", MANIFEST)
            finally:
                shutil.rmtree(work, ignore_errors=True)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return MANIFEST


def dbt_project() -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
