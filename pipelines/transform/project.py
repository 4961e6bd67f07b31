"""The dbt project, and its manifest (parsed on demand so a fresh clone just works)."""

from __future__ import annotations

import fcntl
import importlib.metadata
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

from dagster_dbt import DbtCliResource, DbtProject
from packaging import version

from pipelines.lib.child_guard import parent_env
from pipelines.lib.duck import MEMORY_LIMIT_ENV, connect_warehouse, memory_limit
from pipelines.lib.settings import DBT_PROJECT_DIR, Settings

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


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


class CrmDbtCliResource(DbtCliResource):
    """dagster-dbt's `DbtCliResource` without two things it does before every `dbt` command
    that this project does not use (about 3 s per dbt step, two steps a night):

    - it started `dbt --version` in a subprocess (1.7 s; dbt-core then also asks PyPI for
      its latest release) to learn the version of the dbt executable. The executable is the
      one of this environment (`dbt_executable`), so its version is that of the installed
      dbt-core package (tests/test_definitions.py compares the two);
    - it opened a dbt adapter in this process (1.3 s: the project, the profile, DuckDB),
      which it uses only to fetch row counts or column metadata for the materialization
      events (`.fetch_row_counts()`, `.fetch_column_metadata()`), which we do not ask for.
      Without one it behaves as it does when opening one fails (`adapter=None`)."""

    @cached_property
    def _cli_version(self) -> version.Version:
        return version.parse(importlib.metadata.version("dbt-core"))

    def _initialize_dbt_core_adapter(self, args: Sequence[str]) -> None:  # type: ignore[override]
        return None


def dbt_env(settings: Settings) -> dict[str, str]:
    """The environment variables of the profile for the deployment of `settings`: the
    warehouse file, the restricted store attached to it, the pseudonymisation key file; and
    this process's pid, so that dbt stops when this process dies (pipelines/lib/
    child_guard.py)."""
    return {
        **parent_env(),
        "CRM_WAREHOUSE_DB": str(settings.warehouse_db),
        "CRM_RESTRICTED_DB": str(settings.restricted_db),
        "CRM_PSEUDONYM_KEY_FILE": str(settings.pseudonym_key_file),
        MEMORY_LIMIT_ENV: memory_limit(),
    }


def prepare_warehouse(settings: Settings) -> dict[str, str]:
    """Before dbt runs: the key is the warehouse's (pipelines/privacy/keys.py: the key file
    is created for a new warehouse unless the key comes from $CRM_PSEUDONYM_KEY), the restricted store has owner-only permissions, the warehouse has its `raw.*` views
    over it. Returns dbt_env(settings)."""
    from pipelines.privacy import verify_key

    verify_key(settings)
    with connect_warehouse(settings.warehouse_db, settings.restricted_db):
        pass
    # rows of erased people in files delivered again, in case a crash came between the
    # load and its purge (pipelines/privacy)
    from pipelines.privacy import purge_erased

    purge_erased(settings)
    return dbt_env(settings)


def run_dbt(args: list[str], *, settings: Settings | None = None) -> None:
    """`dbt ARGS --project-dir --profiles-dir --quiet` on this project, output captured;
    RuntimeError with the end of dbt's output when it fails. `settings`: the deployment
    whose files the profile uses (default: $CRM_WAREHOUSE_DB / $CRM_RESTRICTED_DB, else
    scratch files under target/, enough for `dbt parse`)."""
    env = dict(os.environ)
    if settings is not None:
        env.update(prepare_warehouse(settings))
    env.setdefault("CRM_WAREHOUSE_DB", str(DBT_PROJECT_DIR / "target" / "parse_only.duckdb"))
    env.setdefault(
        "CRM_RESTRICTED_DB", str(DBT_PROJECT_DIR / "target" / "parse_only_restricted.duckdb")
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
