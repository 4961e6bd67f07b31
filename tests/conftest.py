"""Fixtures shared across test modules."""

import os
from pathlib import Path

import pytest
from support.e2e import DAYS, END, SEED, backfill

# The pseudonymisation key of every test (dbt's plugin, the pipeline and the reference read
# it from the environment); tests of the key file unset it.
os.environ.setdefault("CRM_PSEUDONYM_KEY", "tests-only-pseudonym-key-0123456789")


@pytest.fixture(scope="session")
def crm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One backfill over every delivery of a small 60-day dataset: downstream built once,
    as of END, and published. Used only by tests in the xdist group "e2e" (one worker)."""
    from pipelines.generate import generate

    home = tmp_path_factory.mktemp("crm_home")
    result = generate("small", SEED, home / "landing", days=DAYS)
    print(f"pipeline: {backfill(home, result.start, END):.1f} s")
    return home
