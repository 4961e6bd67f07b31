"""Runs started by `crm` are the UI's runs: the Dagster GraphQL API (what the UI reads) lists
them under their job of the workspace's code location, as it lists a run launched from the
UI, and they are recorded without DAGSTER_HOME (default $CRM_HOME/dagster)."""

from __future__ import annotations

import os
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
