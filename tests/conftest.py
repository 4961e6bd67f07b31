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


@pytest.fixture(scope="session")
def dbt_tiny_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny dataset of tests/support/dbt_tiny.py built by the two halves of `dbt build`:
    once per session (per worker under `--dist loadgroup`: its tests share the xdist group
    "dbt"), shared by tests/test_dbt_project.py and tests/test_dbt_nightly.py."""
    from support.dbt_tiny import build_tiny  # reads CRM_PSEUDONYM_KEY (set above) on import

    return build_tiny(tmp_path_factory.mktemp("dbt_tiny"))


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`make test` runs `--dist loadgroup`: every test of an xdist group on one worker, so a
    session fixture such as `crm_home` is built once. pytest 9.2 stopped pytest-xdist 3.8
    from tagging the groups (each test then went to any worker, and both workers built the
    e2e warehouse at once); fail loudly should a future upgrade break it again."""
    if not (hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False)):
        return
    ungrouped = [
        item.nodeid
        for item in items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]
    ]
    if ungrouped:
        raise pytest.UsageError(
            "pytest-xdist --dist loadgroup did not group these tests (pytest and "
            f"pytest-xdist versions incompatible?): {ungrouped[:3]}"
        )
