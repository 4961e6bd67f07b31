"""Fixtures shared across test modules."""

from pathlib import Path

import pytest
from support.e2e import DAYS, END, SEED, backfill


@pytest.fixture(scope="session")
def crm_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One backfill over every delivery of a small 60-day dataset: downstream built once,
    as of END, and published. Used only by tests in the xdist group "e2e" (one worker)."""
    from pipelines.generate import generate

    home = tmp_path_factory.mktemp("crm_home")
    result = generate("small", SEED, home / "landing", days=DAYS)
    print(f"pipeline: {backfill(home, result.start, END):.1f} s")
    return home
