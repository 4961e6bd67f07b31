"""The dbt project, and its manifest (parsed on demand so a fresh clone just works)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dagster_dbt import DbtProject

from pipelines.lib.settings import DBT_PROJECT_DIR

MANIFEST = DBT_PROJECT_DIR / "target" / "manifest.json"


def _newest_source_mtime() -> float:
    newest = 0.0
    for folder in ("models", "macros", "seeds", "tests", "analyses", "snapshots"):
        for path in (DBT_PROJECT_DIR / folder).rglob("*"):
            if path.is_file():
                newest = max(newest, path.stat().st_mtime)
    for name in ("dbt_project.yml", "profiles.yml"):
        path = DBT_PROJECT_DIR / name
        if path.exists():
            newest = max(newest, path.stat().st_mtime)
    return newest


def dbt_executable() -> str:
    candidate = Path(sys.executable).with_name("dbt")
    return str(candidate) if candidate.exists() else "dbt"


def run_dbt(args: list[str], *, warehouse_db: str | Path | None = None) -> None:
    """`dbt ARGS --project-dir --profiles-dir --quiet` on this project, output captured;
    RuntimeError with the end of dbt's output when it fails. `warehouse_db`: the DuckDB file
    of the profile (default: $CRM_WAREHOUSE_DB, else a scratch file under target/)."""
    env = dict(os.environ)
    if warehouse_db is not None:
        env["CRM_WAREHOUSE_DB"] = str(warehouse_db)
    env.setdefault("CRM_WAREHOUSE_DB", str(DBT_PROJECT_DIR / "target" / "parse_only.duckdb"))
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


def ensure_manifest() -> Path:
    """Run `dbt parse` when the manifest is missing or older than the project files."""
    if MANIFEST.exists() and MANIFEST.stat().st_mtime >= _newest_source_mtime():
        return MANIFEST
    run_dbt(["parse"])
    return MANIFEST


def dbt_project() -> DbtProject:
    return DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
