"""The KPI review travels in the release: the review shown is always the one of the published
tables (a night killed between rendering and the swap, a restore), and `.previous` is
written atomically. Runs the Dagster publication asset on fixture warehouses."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import dagster as dg
import pytest
from support.fixture_marts import AS_OF, build_fixture_warehouse

from pipelines.lib.resources import CrmSettingsResource
from pipelines.publish import assets, serving
from pipelines.publish.releases import open_serving, restore_previous
from pipelines.publish.report import render_kpi_review
from pipelines.publish.serving import publish
from pipelines.quality import runner


class Killed(BaseException):
    """A kill of the process, simulated (not an Exception: nothing may catch it)."""


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two warehouses as of the same day: 40 and 90 customers (4 and 9 prospects)."""
    folder = tmp_path_factory.mktemp("nights")
    first = build_fixture_warehouse(folder / "first.duckdb", n_customers=40, seed=1)
    second = build_fixture_warehouse(folder / "second.duckdb", n_customers=90, seed=2)
    return first.path, second.path


def _night(crm: CrmSettingsResource, warehouse: Path, monkeypatch) -> dg.ExecuteInProcessResult:
    """The publication asset as of AS_OF on a copy of `warehouse` (its gate passed)."""
    monkeypatch.setattr(assets, "mart_asset_keys", lambda: [])
    monkeypatch.setattr(runner, "recorded_gate", lambda con, run_id, as_of: [])
    crm.settings.warehouse_db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(warehouse, crm.settings.warehouse_db)
    crm.settings.restricted_db.unlink(missing_ok=True)  # the copy brings its raw tables
    asset = assets.build_publish_asset(dg.DailyPartitionsDefinition(start_date="2025-07-01"))
    return dg.materialize(
        [asset], resources={"crm": crm}, partition_key=AS_OF.isoformat(), raise_on_error=False
    )


def _shown(crm: CrmSettingsResource) -> tuple[int, int]:
    """(prospects in the review at reports/latest, customers in the published tables)."""
    latest = crm.settings.reports / "latest"
    html = (latest / "kpi_review.en.html").read_text(encoding="utf-8")
    (prospects,) = re.findall(r"Prospect: (\d+)<", html)
    html_zh = (latest / "kpi_review.zh.html").read_text(encoding="utf-8")
    assert re.findall(r"潜在客户: (\d+)<", html_zh) == [prospects]  # one night, both languages
    con = open_serving(crm.settings.serving)
    try:
        (customers,) = con.execute("select count(*) from dim_customers").fetchone()
    finally:
        con.close()
    return int(prospects), customers


def test_a_night_killed_before_the_swap_shows_the_old_review_with_the_old_tables(
    nights, tmp_path: Path, monkeypatch
) -> None:
    first, second = nights
    crm = CrmSettingsResource(
        home=str(tmp_path / "home"),
        mappings_dir=str(tmp_path),
        landing_dir=str(tmp_path / "landing"),
    )
    assert _night(crm, first, monkeypatch).success
    assert _shown(crm) == (4, 40)
    dated = crm.settings.reports / AS_OF.isoformat() / "kpi_review.en.html"
    assert "Prospect: 4<" in dated.read_text(encoding="utf-8")

    # the second night is killed after everything was written, just before the swap
    real_swap = serving.swap
    kills = []

    def killed(*args, **kwargs):
        kills.append(args)
        raise Killed("kill -9 before the swap (simulated)")

    monkeypatch.setattr(serving, "swap", killed)
    assert not _night(crm, second, monkeypatch).success
    assert len(kills) == 1
    assert _shown(crm) == (4, 40)  # the old review beside the old tables
    assert "Prospect: 4<" in dated.read_text(encoding="utf-8")

    monkeypatch.setattr(serving, "swap", real_swap)
    assert _night(crm, second, monkeypatch).success
    assert _shown(crm) == (9, 90)  # both new
    assert "Prospect: 9<" in dated.read_text(encoding="utf-8")
    # the review is a file of the release, listed with its files
    current = Path(os.readlink(crm.settings.serving / "current")).name
    files = {p.name for p in (crm.settings.serving / ".releases" / current / "reports").iterdir()}
    assert files == {"kpi_review.en.html", "kpi_review.zh.html", "kpi_review.json"}

    # a review rendered by hand into reports/ does not replace the published one
    render_kpi_review(first, crm.settings.reports, AS_OF, "en")
    assert _shown(crm) == (9, 90)

    # a restore brings back both
    restore_previous(crm.settings.serving)
    assert _shown(crm) == (4, 40)


def test_latest_of_the_earlier_layout_becomes_a_link(nights, tmp_path: Path, monkeypatch) -> None:
    first, _ = nights
    crm = CrmSettingsResource(
        home=str(tmp_path / "home"),
        mappings_dir=str(tmp_path),
        landing_dir=str(tmp_path / "landing"),
    )
    latest = crm.settings.reports / "latest"
    latest.mkdir(parents=True)
    (latest / "kpi_review.en.html").write_text("<html>an earlier night</html>")
    assert _night(crm, first, monkeypatch).success
    assert latest.is_symlink() and _shown(crm) == (4, 40)
    assert [p.name for p in crm.settings.reports.iterdir() if p.name.startswith(".")] == []


def test_previous_is_replaced_atomically(nights, tmp_path: Path, monkeypatch) -> None:
    """A kill while `.previous` is written leaves the old name or the new one, never a
    truncated file: with a truncated one the next publication deleted the previous release
    (still open by readers) and `restore_previous` had nothing to restore."""
    first, second = nights
    folder = tmp_path / "serving"
    a = publish(first, folder, formats=("duckdb",))
    b = publish(second, folder, formats=("duckdb",))
    marker = folder / ".releases" / ".previous"
    assert marker.read_text() == a.publication_id

    real_write_text = Path.write_text
    real_replace = os.replace

    def killed_while_writing(path: Path, data: str, *args, **kwargs):
        if path.name.startswith(".previous"):
            real_write_text(path, "", *args, **kwargs)  # opened (truncated), not yet written
            raise Killed("kill -9 while .previous is written (simulated)")
        return real_write_text(path, data, *args, **kwargs)

    def killed_before_rename(source, target):
        if Path(target).name == ".previous":
            raise Killed("kill -9 before .previous is renamed (simulated)")
        return real_replace(source, target)

    monkeypatch.setattr(Path, "write_text", killed_while_writing)
    monkeypatch.setattr(os, "replace", killed_before_rename)
    with pytest.raises(Killed):
        publish(first, folder, formats=("duckdb",))
    monkeypatch.undo()
    # the swap happened; `.previous` names a release that is still there
    name = marker.read_text()
    assert name in {a.publication_id, b.publication_id}
    assert not list((folder / ".releases").glob(".previous.*"))
    assert restore_previous(folder) == name
    assert (folder / "serving.duckdb").resolve().parent.name == name


def test_a_night_failed_under_the_daemon_is_recorded_for_the_reviews(tmp_path: Path) -> None:
    """The run-failure sensor writes reports/night_status.js with the failed run's date."""
    from pipelines.publish.sensors import build_failed_night_sensor

    @dg.asset(partitions_def=dg.DailyPartitionsDefinition(start_date="2026-10-01"))
    def broken() -> None:
        raise RuntimeError("a step of the night fails")

    job = dg.define_asset_job("nightly", selection=[broken])
    defs = dg.Definitions(assets=[broken], jobs=[job])
    with dg.DagsterInstance.ephemeral() as instance:
        result = defs.resolve_job_def("nightly").execute_in_process(
            instance=instance, partition_key="2026-10-31", raise_on_error=False
        )
        failure = next(e for e in result.all_events if e.event_type_value == "PIPELINE_FAILURE")
        context = dg.build_run_status_sensor_context(
            sensor_name="failed_night_banner",
            dagster_event=failure,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
        ).for_run_failure()
        crm = CrmSettingsResource(
            home=str(tmp_path / "home"), mappings_dir=str(tmp_path), landing_dir=str(tmp_path)
        )
        build_failed_night_sensor(job)(context, crm=crm)
    status = (crm.settings.reports / "night_status.js").read_text()
    assert '"night": "2026-10-31", "outcome": "failed"' in status
