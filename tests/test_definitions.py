"""The one Definitions object: it loads, every edge points at a real asset, the schedule and
the sensor ask for the right partitions, and `dagster definitions validate` accepts the
workspace (what `make dev` loads)."""

import json
import os
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from pipelines.definitions import INGEST_JOB, NIGHTLY_JOB, build_definitions
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.settings import Settings

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def defs(tmp_path_factory):
    home = tmp_path_factory.mktemp("crm_home")
    return build_definitions(Settings.from_env({"CRM_HOME": str(home)}))


def test_jobs_schedule_sensor(defs):
    assert defs.resolve_job_def(NIGHTLY_JOB).partitions_def is not None
    assert defs.resolve_job_def(INGEST_JOB).partitions_def is not None
    assert defs.resolve_schedule_def("nightly_schedule").cron_schedule == "0 2 * * *"
    assert defs.resolve_sensor_def("new_delivery_sensor") is not None


def test_every_dependency_and_check_points_at_a_defined_asset(defs):
    specs = list(defs.resolve_all_asset_specs())
    keys = {s.key for s in specs}
    dangling = {
        (s.key.to_user_string(), d.asset_key.to_user_string())
        for s in specs
        for d in s.deps
        if d.asset_key not in keys
    }
    assert not dangling
    checks = defs.get_repository_def().asset_graph.asset_check_keys
    quality = [c for c in checks if c.name.endswith(("_integrity", "_targets"))]
    suites = len(list((REPO / "expectations").glob("*.json")))
    assert suites == 22
    assert len(quality) == 2 * suites  # each suite: blocking integrity, warning targets
    assert all(c.asset_key in keys for c in checks)


def _upstream_steps(job: dg.JobDefinition, node: str) -> set[str]:
    structure = job.graph.dependency_structure
    return {
        output.node_name
        for outputs in structure.input_to_upstream_outputs_for_node(node).values()
        for output in outputs
    }


def test_the_quality_gates_run_in_three_steps_that_block_what_follows(defs):
    """22 suites in three steps (was one step per suite): the raw tables' suites block the
    first dbt step (and the calendar built from the raw tickets), its models' suites block
    the CLV model and the customer marts, and every mart's suites block the publication."""
    job = defs.resolve_job_def(NIGHTLY_JOB)
    gates = {c.node_def.name: c for c in defs.asset_checks}
    assert sorted(n for n in job.graph.node_dict if n.startswith("quality_")) == sorted(gates)
    assert sorted(gates) == [
        "quality_dbt_customer_marts",
        "quality_dbt_warehouse",
        "quality_ingest",
    ]
    tables = {name: {k.asset_key.path[0] for k in gate.check_keys} for name, gate in gates.items()}
    assert tables["quality_ingest"] == {"raw"}
    assert {k.name for k in gates["quality_dbt_warehouse"].check_keys} >= {
        "fct_orders_integrity",
        "identity_integrity",
    }
    assert {k.name for k in gates["quality_dbt_customer_marts"].check_keys} >= {
        "dim_customers_integrity",
        "rpt_kpi_review_integrity",
    }
    assert sum(len(g.check_keys) for g in gates.values()) == 2 * 22
    assert "quality_ingest" in _upstream_steps(job, "dbt_warehouse")
    assert "quality_dbt_warehouse" in _upstream_steps(job, "clv__customer_scores")
    assert "quality_dbt_warehouse" in _upstream_steps(job, "dbt_customer_marts")
    assert {"quality_dbt_warehouse", "quality_dbt_customer_marts"} <= _upstream_steps(
        job, "serving__publication"
    )


def test_publication_waits_for_every_mart_and_the_clv_model(defs):
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    publication = specs[dg.AssetKey(["serving", "publication"])]
    deps = {d.asset_key.to_user_string() for d in publication.deps}
    assert {
        "marts/dim_customers",
        "marts/fct_orders",
        "marts/fct_order_lines",
        "marts/fct_service_tickets",
        "marts/fct_agent_daily",
        "marts/fct_campaign_performance",
        "marts/fct_customer_cohorts",
        "marts/dim_products",
        "marts/fct_category_monthly",
        "marts/fct_product_pairs",
        "marts/fct_ticket_backlog_daily",
        "marts/fct_customer_segments_monthly",
        "marts/fct_segment_transitions",
        "marts/fct_social_interactions",
        "marts/fct_kpi_monthly",
        "marts/rpt_kpi_review",
    } <= deps
    clv = specs[dg.AssetKey(["clv", "customer_scores"])]
    assert {d.asset_key.to_user_string() for d in clv.deps} == {"marts/fct_orders"}
    dim = specs[dg.AssetKey(["marts", "dim_customers"])]
    assert "staging/stg_clv__customer_scores" in {d.asset_key.to_user_string() for d in dim.deps}


def test_the_dbt_docs_are_an_asset_of_their_own_after_the_publication(defs):
    """The publication publishes (gate, review, tables); the dbt docs follow it, in the
    nightly job, not in the ingest job."""
    publication = dg.AssetKey(["serving", "publication"])
    docs = dg.AssetKey(["docs", "dbt_docs"])
    specs = {s.key: s for s in defs.resolve_all_asset_specs()}
    assert {d.asset_key for d in specs[docs].deps} == {publication}
    assert specs[docs].group_name == "publish"
    nightly = defs.resolve_job_def(NIGHTLY_JOB).asset_layer.selected_asset_keys
    assert {publication, docs} <= nightly
    assert docs not in defs.resolve_job_def(INGEST_JOB).asset_layer.selected_asset_keys


def test_nightly_schedule_runs_yesterdays_delivery_at_two_in_business_time(defs):
    schedule = defs.resolve_schedule_def("nightly_schedule")
    assert schedule.execution_timezone == "Asia/Shanghai"
    tick = datetime(2026, 11, 2, 2, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    with dg.build_schedule_context(
        scheduled_execution_time=tick, repository_def=defs.get_repository_def()
    ) as context:
        data = schedule.evaluate_tick(context)
    assert [r.partition_key for r in data.run_requests] == ["2026-11-01"]


def test_sensor_requests_one_run_per_new_delivery_folder(tmp_path, defs):
    for source, day in (
        ("crm_members", "2026-10-30"),
        ("shop_orders", "2026-10-31"),
        ("_truth", "2026-10-29"),
    ):
        (tmp_path / "landing" / source / day).mkdir(parents=True)
    crm = CrmSettingsResource.from_settings(Settings.from_env({"CRM_HOME": str(tmp_path)}))
    sensor = defs.resolve_sensor_def("new_delivery_sensor")
    repo = defs.get_repository_def()
    with dg.build_sensor_context(resources={"crm": crm}, repository_def=repo) as context:
        first = sensor.evaluate_tick(context)
        assert sorted(r.partition_key for r in first.run_requests) == ["2026-10-30", "2026-10-31"]
    with dg.build_sensor_context(
        cursor=first.cursor, resources={"crm": crm}, repository_def=repo
    ) as context:
        again = sensor.evaluate_tick(context)
    assert not again.run_requests


def test_dagster_definitions_validate_accepts_the_workspace(tmp_path):
    env = {**os.environ, "CRM_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster")}
    (tmp_path / "dagster").mkdir()
    dagster = Path(sys.executable).with_name("dagster")
    proc = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Validation successful" in proc.stdout + proc.stderr


_LOAD_MANIFEST = """
import json, sys
from pipelines.transform.project import ensure_manifest
manifest = json.loads(ensure_manifest().read_text())
assert manifest["nodes"], "empty manifest"
"""


def test_a_stale_manifest_is_parsed_once_and_never_read_half_written():
    """Fresh clone, parallel starts (CI's test workers, a backfill beside `make dev`): four
    processes find the manifest out of date at once, while a reader keeps reading it. Every
    one gets a whole manifest, and the reader never sees a partial file."""
    import json

    from pipelines.transform.project import MANIFEST, ensure_manifest

    ensure_manifest()
    reads = 0
    for _ in range(3):  # the race is short: before the fix, 2 rounds in 3 saw a torn file
        os.utime(MANIFEST, (0, 0))  # older than every project file: stale
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _LOAD_MANIFEST],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(4)
        ]
        while any(p.poll() is None for p in procs):
            json.loads(MANIFEST.read_bytes())  # raises on a half-written file
            reads += 1
        for p in procs:
            _, err = p.communicate()
            assert p.returncode == 0, err[-3000:]
        assert MANIFEST.stat().st_mtime > 0  # parsed again
    assert reads > 100
    assert not list(MANIFEST.parent.glob("parse-*")), "private parse folders left behind"


def test_the_settings_resource_carries_every_setting_to_the_assets(tmp_path):
    """The assets see the settings of the command that launched them: the Spark export
    switch and a key file outside CRM_HOME (else Dagster's runs would create and use a
    second key under restricted/, and their pseudonyms would not match `crm forget`'s)."""
    key_file = tmp_path / "secrets" / "crm.key"
    settings = Settings.from_env(
        {
            "CRM_HOME": str(tmp_path / "home"),
            "CRM_SPARK_EXPORT": "1",
            "CRM_PSEUDONYM_KEY_FILE": str(key_file),
        }
    )
    seen = CrmSettingsResource.from_settings(settings).settings
    assert seen.spark_export is True
    assert seen.pseudonym_key_file == key_file
    assert (seen.home, seen.landing) == (settings.home, settings.landing)
    default = CrmSettingsResource.from_settings(
        Settings.from_env({"CRM_HOME": str(tmp_path / "home")})
    ).settings
    assert default.spark_export is False
    assert default.pseudonym_key_file == tmp_path / "home" / "restricted" / "pseudonym.key"


def test_the_next_dbt_step_reuses_the_parse_and_reads_the_date_from_the_environment(
    tmp_path, monkeypatch
):
    """keep_partial_parse leaves a step's `partial_parse.msgpack` in the project's target/,
    which Dagster copies into the next invocation's new target folder: dbt then skips the
    parse when vars and files are those of the step before: the night's second step, and
    the next night too, whose date is in the environment, not in the vars (run_dates_env);
    a changed var (a setting) parses in full. The date is read when the models compile."""
    import shutil

    from pipelines.transform import assets
    from pipelines.transform.project import run_dbt

    project = tmp_path / "project"
    monkeypatch.setattr(assets, "DBT_PROJECT_DIR", project)
    settings = json.dumps({"business_timezone": "Asia/Shanghai"})

    def dbt(name: str, command: str, dbt_vars: str, as_of: str) -> str:
        target = tmp_path / name
        kept = project / "target" / assets.PARTIAL_PARSE
        if kept.exists():  # what Dagster does for a new invocation
            target.mkdir()
            shutil.copyfile(kept, target / assets.PARTIAL_PARSE)
        for variable, value in assets.run_dates_env(as_of, "2026-10-01").items():
            monkeypatch.setenv(variable, value)
        extra = ["--select", "int_kpi_months"] if command == "compile" else []
        run_dbt([command, *extra, "--vars", dbt_vars, "--target-path", str(target),
                 "--log-path", str(target)])  # fmt: skip
        assets.keep_partial_parse(target)
        return (target / "dbt.log").read_text(encoding="utf-8")

    first = dbt("first", "parse", settings, "2026-10-31")
    assert "Partial parsing enabled" not in first
    assert (project / "target" / assets.PARTIAL_PARSE).is_file()
    assert list((project / "target").glob(".*.tmp")) == []
    skipped = "Partial parsing enabled, no changes found, skipping parsing"
    assert skipped in dbt("second", "parse", settings, "2026-10-31")
    assert skipped in dbt("next", "compile", settings, "2026-11-01")
    compiled = next((tmp_path / "next" / "compiled").rglob("int_kpi_months.sql"))
    assert "2026-11-01" in compiled.read_text(encoding="utf-8")
    assert "2026-10-31" not in compiled.read_text(encoding="utf-8")
    changed = dbt("setting", "parse", json.dumps({"business_timezone": "UTC"}), "2026-11-01")
    assert "Unable to do partial parsing because config vars" in changed


def test_old_dbt_target_folders_are_pruned_per_step(tmp_path, monkeypatch):
    """Only the newest target folders of each dbt step stay, and a folder goes only once
    nothing was written to it for days; other files of target/ stay."""
    from pipelines.transform import assets

    monkeypatch.setattr(assets, "DBT_PROJECT_DIR", tmp_path)
    target = tmp_path / "target"
    names = []
    now = time.time()
    for step in ("dbt_warehouse", "dbt_customer_marts"):
        for age in range(4):
            folder = target / f"{step}-run{age}-abc"
            folder.mkdir(parents=True)
            (folder / "dbt.log").write_text("log")
            then = now - (3 + age) * 86_400  # run0 the newest, all older than two days
            os.utime(folder / "dbt.log", (then, then))
            os.utime(folder, (then, then))
            names.append(folder.name)
    # an old folder whose log is being written (another deployment's long run) stays
    busy = target / "dbt_warehouse-busy-abc"
    busy.mkdir()
    (busy / "dbt.log").write_text("log")
    os.utime(busy, (now - 10 * 86_400, now - 10 * 86_400))
    (target / "manifest.json").write_text("{}")
    (target / "parse-xyz").mkdir()

    assert assets.prune_invocation_folders(keep=2, min_age_days=30) == []
    removed = assets.prune_invocation_folders(keep=2)

    left = sorted(path.name for path in target.iterdir())
    assert left == sorted(
        ["dbt_customer_marts-run0-abc", "dbt_customer_marts-run1-abc", "dbt_warehouse-busy-abc",
         "dbt_warehouse-run0-abc", "manifest.json", "parse-xyz"]
    )  # fmt: skip
    assert sorted(path.name for path in removed) == sorted(
        [name for name in names if name.split("-")[1] in ("run2", "run3")]
        + ["dbt_warehouse-run1-abc"]
    )


def test_the_dbt_resource_starts_no_version_probe_and_opens_no_adapter(defs, monkeypatch):
    """The dbt resource knows its executable's version without running `dbt --version` (the
    version the executable itself reports) and opens no dbt adapter in this process."""
    from pipelines.transform.project import CrmDbtCliResource, dbt_executable

    resource = defs.resources["dbt"]
    assert isinstance(resource, CrmDbtCliResource)
    assert resource.dbt_executable == dbt_executable()
    reported = subprocess.run(
        [dbt_executable(), "--version"], capture_output=True, text=True, check=True
    ).stdout
    started = []
    monkeypatch.setattr(subprocess, "check_output", lambda *a, **k: started.append(a) or b"")
    version = CrmDbtCliResource(
        project_dir=resource.project_dir,
        profiles_dir=resource.profiles_dir,
        dbt_executable=resource.dbt_executable,
    )._cli_version
    assert f"installed: {version}" in reported
    assert started == []
    assert resource._initialize_dbt_core_adapter(["build"]) is None


def test_the_settings_resource_round_trips_every_setting_and_hides_the_key(tmp_path, monkeypatch):
    """Every field of Settings reaches the assets unchanged through the `crm` resource; the
    key travels as Dagster's EnvVar (its name, never its value, in the resource's config)."""
    import dataclasses

    import dagster as dg

    key = "the-key-from-a-secret-store-0123"
    monkeypatch.setenv("CRM_PSEUDONYM_KEY", key)
    settings = Settings.from_env(
        {
            "CRM_HOME": str(tmp_path / "home"),
            "CRM_PSEUDONYM_KEY": key,
            "CRM_PSEUDONYM_KEY_FILE": str(tmp_path / "k" / "crm.key"),
            "CRM_DUCKDB_MEMORY_LIMIT": "1GB",
            "CRM_PARTITIONS_START": "2025-03-01",
            "CRM_SPARK_SOURCES_DIR": str(tmp_path / "spark"),
            "DAGSTER_HOME": str(tmp_path / "dagster"),
            "JAVA_HOME": "/opt/java",
            "CRM_MEMBER_SYSTEM": "crm",
            "CRM_VIP_REVENUE_365D": "1234.5",
        }
    )
    resource = CrmSettingsResource.from_settings(settings)
    assert isinstance(resource.pseudonym_key, dg.EnvVar)
    assert resource.pseudonym_key.env_var_name == "CRM_PSEUDONYM_KEY"
    seen = resource.settings
    for field in dataclasses.fields(Settings):
        if field.name != "landing_dir":  # the resource holds the resolved landing folder
            assert getattr(seen, field.name) == getattr(settings, field.name), field.name
    assert seen.landing == settings.landing
    assert key not in repr(seen)
    assert (
        build_definitions(settings)
        .resolve_job_def(NIGHTLY_JOB)
        .partitions_def.get_first_partition_key()
        == "2025-03-01"
    )


def test_dbt_gets_the_profile_inputs_and_the_process_environment_stays_as_it_was(
    tmp_path, monkeypatch
):
    """The dbt step passes the deployment's profile inputs to the dbt process only: they are
    in the environment dagster-dbt starts dbt with, and not in this process's afterwards."""
    from dagster_dbt import DbtCliInvocation

    from pipelines.lib.settings import DBT_PROJECT_DIR
    from pipelines.transform.dbt_cli import CrmDbtCliResource, dbt_executable
    from pipelines.transform.project import dbt_env

    settings = Settings.from_env(
        {
            "CRM_HOME": str(tmp_path / "home"),
            "CRM_PSEUDONYM_KEY": "the-key-from-a-secret-store-0123",
            "CRM_DUCKDB_MEMORY_LIMIT": "1GB",
        }
    )
    monkeypatch.delenv("CRM_WAREHOUSE_DB", raising=False)
    monkeypatch.setenv("CRM_DUCKDB_MEMORY_LIMIT", "7GB")  # restored afterwards
    started = {}

    def run(**kwargs):
        started.update(kwargs["env"])
        return "invocation"

    monkeypatch.setattr(DbtCliInvocation, "run", staticmethod(run))
    resource = CrmDbtCliResource(
        project_dir=str(DBT_PROJECT_DIR),
        profiles_dir=str(DBT_PROJECT_DIR),
        dbt_executable=dbt_executable(),
    )
    env = dbt_env(settings)
    assert resource.cli(["parse"], env=env, raise_on_error=False) == "invocation"
    assert started["CRM_WAREHOUSE_DB"] == str(settings.warehouse_db)
    assert started["CRM_RESTRICTED_DB"] == str(settings.restricted_db)
    assert started["CRM_PSEUDONYM_KEY_FILE"] == str(settings.pseudonym_key_file)
    assert started["CRM_PSEUDONYM_KEY"] == "the-key-from-a-secret-store-0123"
    assert started["CRM_DUCKDB_MEMORY_LIMIT"] == "1GB"
    assert started["CRM_DBT_PARENT_PID"] == str(os.getpid())
    assert "CRM_WAREHOUSE_DB" not in os.environ
    assert os.environ["CRM_DUCKDB_MEMORY_LIMIT"] == "7GB"
