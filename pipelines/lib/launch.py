"""Run a job of the project's code location in this process, recorded as the UI records its
own runs.

The Dagster UI lists a job's runs (the job page, Overview) by the job name and the run's
repository label (``__repository__@<code location>``), which Dagster derives from the run's
remote origin. ``JobDefinition.execute_in_process`` creates its run without one (the run then
shows under Runs only), and Dagster has no public call that executes a run in-process with an
origin (dagster-io/dagster#17707, open: runs executed outside the UI are missing from the
job's Runs tab; #19458: the UI could not re-execute them). This module is that call: it
creates the run as ``execute_in_process`` does (same tags for a partition, same ephemeral
job: in-process executor, in-memory I/O manager) but with the origin of the code location
that workspace.yaml defines, then executes it in this process and returns the same
``ExecuteInProcessResult``. Each private name it uses is imported here only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.lib.settings import REPO_ROOT

#: The code location of the project (workspace.yaml: python_module pipelines.definitions).
WORKSPACE_FILE = REPO_ROOT / "workspace.yaml"
CODE_LOCATION = "pipelines.definitions"
#: The repository name Dagster gives a `Definitions` object.
REPOSITORY = "__repository__"


def code_location_origin(workspace_file: Path = WORKSPACE_FILE):
    """The origin of the project's code location as the UI (`dagster dev -w workspace.yaml`)
    loads it; without the workspace file (an installed package), the same module target."""
    from dagster._core.remote_origin import ManagedGrpcPythonEnvCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    if workspace_file.exists():
        for origin in WorkspaceFileTarget(paths=[str(workspace_file)]).create_origins():
            if origin.location_name == CODE_LOCATION:
                return origin
    return ManagedGrpcPythonEnvCodeLocationOrigin(
        loadable_target_origin=LoadableTargetOrigin(
            module_name=CODE_LOCATION, working_directory=str(REPO_ROOT)
        ),
        location_name=CODE_LOCATION,
    )


def execute_in_code_location(
    job: dg.JobDefinition,
    instance: dg.DagsterInstance,
    *,
    partition_key: str | None = None,
    tags: Mapping[str, str] | None = None,
    run_config: Mapping[str, Any] | None = None,
    resources: Mapping[str, object] | None = None,
    raise_on_error: bool = False,
) -> dg.ExecuteInProcessResult:
    """`job.execute_in_process(...)`, the run attached to the job of the code location."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.execution.api import (
        ExecuteRunWithPlanIterable,
        create_execution_plan,
        job_execution_iterator,
    )
    from dagster._core.execution.build_resources import wrap_resources_for_execution
    from dagster._core.execution.context_creation_job import (
        PlanOrchestrationContextManager,
        orchestration_context_event_generator,
    )
    from dagster._core.execution.execute_in_process import merge_run_tags
    from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin

    run_config = dict(run_config or {})
    ephemeral = job.as_ephemeral_job(
        resource_defs=wrap_resources_for_execution(resources or {}), input_values={}
    )
    run_tags = {
        **job.run_tags,
        **merge_run_tags(
            job_def=job,
            partition_key=partition_key,
            tags=tags,
            asset_selection=None,
            instance=instance,
            run_config=run_config,
        ),
    }
    origin = RemoteJobOrigin(
        repository_origin=RemoteRepositoryOrigin(
            code_location_origin=code_location_origin(), repository_name=REPOSITORY
        ),
        job_name=job.name,
    )
    wrapped = InMemoryJob(job_def=ephemeral)
    ref = instance.get_ref() if instance.is_persistent else None
    plan = create_execution_plan(wrapped, run_config=run_config, instance_ref=ref)
    run = instance.create_run_for_job(
        job_def=ephemeral,
        run_config=run_config,
        tags=run_tags,
        execution_plan=plan,
        remote_job_origin=origin,
    )
    output_capture: dict = {}
    events = list(
        ExecuteRunWithPlanIterable(
            execution_plan=plan,
            iterator=job_execution_iterator,
            execution_context_manager=PlanOrchestrationContextManager(
                context_event_generator=orchestration_context_event_generator,
                job=wrapped,
                execution_plan=plan,
                dagster_run=run,
                instance=instance,
                run_config=run_config,
                executor_defs=None,
                output_capture=output_capture,
                raise_on_error=raise_on_error,
            ),
        )
    )
    return dg.ExecuteInProcessResult(
        job_def=ephemeral,
        event_list=events,
        dagster_run=instance.get_run_by_id(run.run_id),
        output_capture=output_capture,
    )
