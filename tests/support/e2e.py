"""The end-to-end run shared by the slow tests: a small generated dataset (60 delivery
days, fixed seed) through the real pipeline (`crm backfill` in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
SEED = 20261031
DAYS = 60
END = date(2026, 10, 31)


def crm_env(home: Path) -> dict[str, str]:
    env = os.environ | {
        "CRM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "CRM_MAPPINGS_DIR": str(MAPPINGS),
    }
    env.pop("CRM_LANDING_DIR", None)
    return env


def crm(
    home: Path, *args: str, timeout: int = 1800, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """`crm ARGS` (python -m pipelines.cli) in a subprocess on CRM_HOME = home; `env`: more
    settings."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=crm_env(home) | (env or {}),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def console_log(home: Path) -> Path:
    """Where `backfill` keeps the console output of the run on `home` (beside it)."""
    return home.parent / f"{home.name}.console.log"


def backfill(home: Path, start: date, end: date) -> float:
    """``crm backfill --start --end`` on CRM_HOME = home; seconds taken. Its console output
    is kept in `console_log(home)`."""
    started = time.monotonic()
    proc = crm(home, "backfill", "--start", start.isoformat(), "--end", end.isoformat())
    console_log(home).write_text(proc.stdout + proc.stderr, encoding="utf-8")
    if proc.returncode != 0:
        pytest.fail(
            f"crm backfill {start}..{end} failed ({proc.returncode}):\n"
            f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
        )
    return time.monotonic() - started
