"""The console of a failing run says each error once: a bug's stack trace once (not again
with the run's failure), a `dagster.Failure` as its message without stack traces, and the
`[crm] FAILED` line names the step's own exception, not Dagster's wrapper."""

from __future__ import annotations

import dagster as dg
import pytest

from pipelines.lib.console import console_logger
from pipelines.orchestrate import _report


def _inner() -> None:
    raise ValueError("the cause")


@dg.asset
def buggy() -> None:
    try:
        _inner()
    except ValueError as exc:
        raise RuntimeError("the bug") from exc


@dg.asset
def refused() -> None:
    raise dg.Failure(description="pos.yaml: file a.csv lacks column 'qty'")


def _run(asset) -> dg.ExecuteInProcessResult:
    job = dg.Definitions(
        assets=[asset],
        jobs=[dg.define_asset_job("j")],
        loggers={"console": console_logger},
        executor=dg.in_process_executor,
    ).resolve_job_def("j")
    with dg.DagsterInstance.ephemeral() as instance:
        return job.execute_in_process(
            instance=instance,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        )


def test_a_bug_prints_its_stack_trace_once(capsys: pytest.CaptureFixture) -> None:
    result = _run(buggy)
    assert not _report(result, "night", 1.0)
    out = capsys.readouterr()
    console = out.out + out.err
    # the frames of the step's code and of its cause: once each (Dagster printed them with
    # the step's failure and again with the run's)
    assert console.count('in _inner\n    raise ValueError("the cause")') == 1
    assert console.count("RuntimeError: the bug") == 2  # the step's failure + [crm] FAILED
    assert console.count("ValueError: the cause") == 1
    assert "DagsterExecutionStepExecutionError" not in console
    assert "[crm] FAILED step buggy: RuntimeError: the bug" in out.out.splitlines()
    [run_failure] = [line for line in console.splitlines() if "RUN_FAILURE" in line]
    assert run_failure.endswith("Steps failed: ['buggy'].")


def test_a_failure_prints_its_message_without_stack_traces(capsys: pytest.CaptureFixture) -> None:
    result = _run(refused)
    assert not _report(result, "night", 1.0)
    out = capsys.readouterr()
    console = out.out + out.err
    assert "Stack Trace" not in console and "Traceback" not in console
    # the step's failure and [crm] FAILED; not again with the run's failure
    assert console.count("lacks column 'qty'") == 2
    assert "[crm] FAILED step refused: pos.yaml: file a.csv lacks column 'qty'" in out.out
