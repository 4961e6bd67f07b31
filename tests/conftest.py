"""Fixtures shared across test modules."""

import os
import shutil
from pathlib import Path

import pytest
from filelock import FileLock
from support.e2e import DAYS, END, SEED, backfill

# The pseudonymisation key of every test (dbt's plugin, the pipeline and the reference read
# it from the environment); tests of the key file unset it.
os.environ.setdefault("CRM_PSEUDONYM_KEY", "tests-only-pseudonym-key-0123456789")


def _build_crm_home(home: Path) -> Path:
    from pipelines.generate import generate

    result = generate("small", SEED, home / "landing", days=DAYS)
    print(f"pipeline: {backfill(home, result.start, END):.1f} s")
    return home


@pytest.fixture(scope="session")
def crm_home(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """One backfill over every delivery of a small 60-day dataset: downstream built once,
    as of END, and published. Built once per session and shared by the workers (the first
    worker to need it builds it under a file lock; the other waits, then reads it). Shared,
    so read only: a test that runs the pipeline or writes copies it first
    (`shutil.copytree(crm_home, ..., symlinks=True)`)."""
    if worker_id == "master":  # not under xdist
        return _build_crm_home(tmp_path_factory.mktemp("crm_home"))
    root = tmp_path_factory.getbasetemp().parent  # the session's folder, common to workers
    home, built = root / "crm_home", root / "crm_home.built"
    with FileLock(root / "crm_home.lock"):
        if not built.exists():
            shutil.rmtree(home, ignore_errors=True)  # a worker's failed attempt
            home.mkdir()
            _build_crm_home(home)
            built.touch()
    return home


@pytest.fixture(scope="session")
def dbt_tiny_build(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny dataset of tests/support/dbt_tiny.py built by the two halves of `dbt build`:
    once per worker that runs tests/test_dbt_project.py (xdist group "dbt") or
    tests/test_dbt_nightly.py (group "dbt_nightly"); each copies it before writing."""
    from support.dbt_tiny import build_tiny  # reads CRM_PSEUDONYM_KEY (set above) on import

    return build_tiny(tmp_path_factory.mktemp("dbt_tiny"))


#: The xdist groups, the slowest first. `make test` runs `--dist loadgroup
#: --no-loadscope-reorder`: a worker takes the next group in this order when it is nearly
#: idle, so the long groups start first and the short ones fill the end. The first "e2e"
#: group builds `crm_home`; the next groups need no `crm_home`, so the other worker does not
#: wait for it. Tests without a group are grouped by module (a module fixture is built once).
GROUP_ORDER = (
    "e2e",
    "spark",
    "dbt_incremental_staging",
    "dbt",
    "dbt_nightly",
    "crash",
    "e2e_resumed",
    "e2e_erasure",
    "e2e_orders_only",
    "dbt_late_corrections",
    "dbt_identity",
    "dbt_customer_ref_system",
    "dbt_order_lines",
    "e2e_key_rotation",
    "e2e_nightly",
    "e2e_privacy",
    "e2e_definitions",
    "e2e_unknown_status",
    "generate",
)


def _group(item: pytest.Item) -> str | None:
    mark = item.get_closest_marker("xdist_group")
    if mark is None:
        return None
    return str(mark.args[0] if mark.args else mark.kwargs.get("name", "default"))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under `--dist loadgroup`: group each ungrouped test by its module, and order the
    tests by GROUP_ORDER (the groups are handed out in the order they are collected).
    Runs before pytest-xdist's own hook, which tags each test with its group."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if _group(item) is None:
            item.add_marker(pytest.mark.xdist_group(item.nodeid.split("::", 1)[0]))
    rank = {name: index for index, name in enumerate(GROUP_ORDER)}
    items.sort(key=lambda item: rank.get(_group(item), len(rank)))  # stable: modules stay


def pytest_collection_finish(session: pytest.Session) -> None:
    """`make test` runs `--dist loadgroup`: every test of an xdist group on one worker, so a
    module fixture is built once and the groups above keep their order. pytest 9.2 once
    stopped pytest-xdist 3.8 from tagging the groups (each test then went to any worker);
    fail loudly should a future upgrade break it again."""
    config = session.config
    if not (hasattr(config, "workerinput") and getattr(config.option, "loadgroup", False)):
        return
    ungrouped = [
        item.nodeid
        for item in session.items
        if item.get_closest_marker("xdist_group") and "@" not in item.nodeid.rsplit("]", 1)[-1]
    ]
    if ungrouped:
        raise pytest.UsageError(
            "pytest-xdist --dist loadgroup did not group these tests (pytest and "
            f"pytest-xdist versions incompatible?): {ungrouped[:3]}"
        )
