"""Runs started by `crm` are the UI's runs: the Dagster GraphQL API (what the UI reads) lists
them under their job of the workspace's code location, as it lists a run launched from the
UI, and they are recorded without DAGSTER_HOME (default $CRM_HOME/dagster)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import pytest

REPO = Path(__file__).resolve().parents[1]

POS_MAPPING = """\
name: pos
entity: orders
version: "1"
files: "*.csv"
format: {type: csv}
fields:
  order_id: {expr: "cust || '-' || day"}
  ordered_at: {column: day, formats: ["%Y-%m-%d"]}
  quantity: qty
  unit_price: price
  status: {expr: "'paid'"}
"""

#: The UI's query of a job page (JobOverview / the runs tab): the job's runs by job name and
#: repository label, from the workspace's own view of the job.
JOB_RUNS = """
query JobRuns($job: String!, $repo: String!, $location: String!, $label: String!) {
  pipelineOrError(params: {pipelineName: $job, repositoryName: $repo,
                           repositoryLocationName: $location}) {
    __typename
    ... on Pipeline { runs { runId status } }
  }
  runsOrError(filter: {pipelineName: $job, tags: [{key: ".dagster/repository", value: $label}]}) {
    __typename
    ... on Runs { results { runId status pipelineName } }
  }
}
"""

REPOSITORIES = """
{ repositoriesOrError { ... on RepositoryConnection { nodes { name location { name } } } } }
"""


@contextmanager
def ui_context(dagster_home: Path):
    """A GraphQL request context over the workspace `make dev` serves (workspace.yaml)."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        target = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")])
        with WorkspaceProcessContext(instance, target) as process:
            yield process.create_request_context()


def job_runs(dagster_home: Path, job: str) -> dict[str, list[str]]:
    """Run ids of `job` as the job page and the run filter of the UI list them."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    with ui_context(dagster_home) as context:
        repos = execute_dagster_graphql(context, REPOSITORIES).data
        [repo] = repos["repositoriesOrError"]["nodes"]
        variables = {
            "job": job,
            "repo": repo["name"],
            "location": repo["location"]["name"],
            "label": f"{repo['name']}@{repo['location']['name']}",
        }
        data = execute_dagster_graphql(context, JOB_RUNS, variables).data
    assert data["pipelineOrError"]["__typename"] == "Pipeline", data
    return {
        "job page": [r["runId"] for r in data["pipelineOrError"]["runs"]],
        "runs filter": [r["runId"] for r in data["runsOrError"]["results"]],
    }


def test_a_crm_run_without_dagster_home_is_recorded_under_the_nightly_job(tmp_path, monkeypatch):
    """`crm run` with DAGSTER_HOME unset: the run is in $CRM_HOME/dagster and the UI lists
    it on the `nightly` job page. The delivery's file lacks a column, so the night fails at
    ingest within seconds (a failed run is listed as a successful one is)."""
    home = tmp_path / "home"
    maps = tmp_path / "maps"
    maps.mkdir()
    (maps / "pos.yaml").write_text(POS_MAPPING, encoding="utf-8")
    folder = home / "landing" / "pos" / "2026-01-06"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text("cust,day,qty\nA,2026-01-05,1\n", encoding="utf-8")
    env = os.environ | {"CRM_HOME": str(home), "CRM_MAPPINGS_DIR": str(maps)}
    for name in ("DAGSTER_HOME", "CRM_LANDING_DIR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--date", "2026-01-06"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        [run] = instance.get_runs()
    assert run.job_name == "nightly"
    assert run.tags["dagster/partition"] == "2026-01-06"
    # the code location (`make dev`) reads the same settings as `crm`
    monkeypatch.setenv("CRM_HOME", str(home))
    monkeypatch.setenv("CRM_MAPPINGS_DIR", str(maps))
    monkeypatch.delenv("CRM_LANDING_DIR", raising=False)
    assert job_runs(home / "dagster", "nightly") == {
        "job page": [run.run_id],
        "runs filter": [run.run_id],
    }


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_the_backfills_runs_are_listed_under_their_jobs(crm_home: Path, monkeypatch) -> None:
    """The e2e backfill (`crm backfill`): one ingest run over the range, one nightly run."""
    monkeypatch.setenv("CRM_HOME", str(crm_home))
    monkeypatch.setenv("CRM_MAPPINGS_DIR", str(REPO / "pipelines/ingest/mappings/demo"))
    monkeypatch.delenv("CRM_LANDING_DIR", raising=False)
    with dg.DagsterInstance.from_config(str(crm_home / "dagster")) as instance:
        runs = {
            job: [r.run_id for r in instance.get_runs(dg.RunsFilter(job_name=job))]
            for job in ("nightly", "ingest")
        }
    assert len(runs["nightly"]) >= 1 and len(runs["ingest"]) >= 1
    for job, ids in runs.items():
        listed = job_runs(crm_home / "dagster", job)
        assert set(ids) <= set(listed["job page"]), job
        assert set(ids) <= set(listed["runs filter"]), job


ASSET_NODES = """
query Assets($keys: [AssetKeyInput!]) {
  assetNodes(assetKeys: $keys) {
    assetKey { path }
    groupName
    description
    owners { ... on TeamAssetOwner { team } ... on UserAssetOwner { email } }
    internalFreshnessPolicy { ... on CronFreshnessPolicy { deadlineCron lowerBoundDeltaSeconds } }
  }
}
"""


def _published_assets(serving_db: Path) -> dict[tuple[str, ...], str]:
    """Asset key -> its table in serving.duckdb: every mart, the seeds and the targets."""
    import duckdb

    with duckdb.connect(str(serving_db), read_only=True) as con:
        tables = {
            r[0]
            for r in con.execute("select table_name from duckdb_tables()").fetchall()
            if not r[0].startswith("_")  # the publication's own bookkeeping
        }
    prefixes = {"kpi_definitions": "seeds", "sla_targets": "seeds", "kpi_targets": "targets"}
    return {(prefixes.get(t, "marts"), t): t for t in tables}


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_every_published_asset_has_an_owner_and_its_row_count(crm_home: Path, monkeypatch) -> None:
    """After the e2e backfill: each published table's asset (the marts, the seeds and the
    targets) and the publication have an owner, a group, a description and the nightly
    freshness policy in the UI, and their last materialization's row count equals the rows
    of the published table (counted in serving.duckdb)."""
    import duckdb
    from dagster_graphql.test.utils import execute_dagster_graphql

    serving_db = crm_home / "serving" / "serving.duckdb"
    published = _published_assets(serving_db)
    assert len(published) >= 10, published  # the marts, 2 seeds, the targets
    with duckdb.connect(str(serving_db), read_only=True) as con:
        rows = {
            t: con.execute(f'select count(*) from main."{t}"').fetchone()[0]
            for t in published.values()
        }
    keys = [*published, ("serving", "publication")]
    monkeypatch.setenv("CRM_HOME", str(crm_home))
    monkeypatch.setenv("CRM_MAPPINGS_DIR", str(REPO / "pipelines/ingest/mappings/demo"))
    monkeypatch.delenv("CRM_LANDING_DIR", raising=False)
    with ui_context(crm_home / "dagster") as context:
        nodes = execute_dagster_graphql(
            context, ASSET_NODES, {"keys": [{"path": list(k)} for k in keys]}
        ).data["assetNodes"]
    assert {tuple(n["assetKey"]["path"]) for n in nodes} == set(keys)
    for node in nodes:
        key = "/".join(node["assetKey"]["path"])
        assert node["owners"] == [{"team": "crm-data-team"}], key
        assert node["groupName"] and node["description"], key
        # due by 08:00 business time, materialized in the 6 hours before (from 02:00)
        assert node["internalFreshnessPolicy"] == {
            "deadlineCron": "0 8 * * *",
            "lowerBoundDeltaSeconds": 6 * 3600,
        }, key
    with dg.DagsterInstance.from_config(str(crm_home / "dagster")) as instance:

        def row_count(key: tuple[str, ...]) -> int:
            event = instance.get_latest_materialization_event(dg.AssetKey(list(key)))
            assert event is not None, key
            return event.asset_materialization.metadata["dagster/row_count"].value

        assert {k: row_count(k) for k in published} == {k: rows[t] for k, t in published.items()}
        # the publication: the rows of every table it published
        assert row_count(("serving", "publication")) == sum(rows.values())


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_the_backfill_prints_no_repeated_warning(crm_home: Path) -> None:
    """The console of the e2e backfill (two runs: ingest, nightly) says each warning once
    per run; the extra columns of a source's files are one line per source and run."""
    from collections import Counter

    from support.e2e import console_log

    warnings = Counter()
    extra = Counter()
    text = re.sub(r"\x1b\[[0-9;]*m", "", console_log(crm_home).read_text(encoding="utf-8"))
    for line in text.splitlines():
        parts = line.split(" - ")
        if len(parts) < 6 or parts[2] != "WARNING":
            continue
        job, step, message = parts[3], parts[5], " - ".join(parts[6:])
        warnings[(job, step, message)] += 1
        if "extra column(s) ignored" in message:
            extra[(job, message.split(":", 1)[0])] += 1
    assert [w for w, n in warnings.items() if n > 1] == []
    assert all(n == 1 for n in extra.values()), extra
