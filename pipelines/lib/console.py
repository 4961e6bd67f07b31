"""The console logger of the project's runs: Dagster's colored console logger, each error
said once.

A step that fails on bad input (a mapping missing a required field, a file that lost a
mapped column) raises ``dagster.Failure`` with a message naming mapping, file and field;
Dagster's console logger prints the message followed by the Python stack traces of the
failure and its cause (some 45 lines each, once per failing step), then the same error
again with the run's failure. On the console the step's message is what a user needs: the
stack traces of a ``Failure`` are cut, the run's failure line names the failed steps
without repeating their error, and the lines of every step skipped because of it
("Dependencies for step … failed … Not executing.") are dropped. A step that fails on an
unexpected exception (a bug) prints that exception's stack trace once, without Dagster's
own frames around it. The full error, stack traces included, stays in the run's event log
(Dagster UI).
"""

from __future__ import annotations

import logging

import dagster as dg

STACK_TRACE = "\n\nStack Trace:"
#: The class Dagster wraps an exception raised by a step's own code in.
STEP_ERROR = "DagsterExecutionStepExecutionError"


def without_stack_trace(message: str) -> str:
    """``message`` up to its first stack trace (the whole message if it has none)."""
    return message.split(STACK_TRACE, 1)[0]


def step_error(error):
    """The error a step raised (``SerializableErrorInfo``): the exception of the step's code
    rather than Dagster's wrapper around it."""
    if error is not None and error.cls_name == STEP_ERROR and error.cause is not None:
        return error.cause
    return error


def is_failure(error) -> bool:
    """Whether the step raised ``dagster.Failure`` (a message for the user, not a bug)."""
    return error is not None and error.cls_name == dg.Failure.__name__


class _OneErrorOnce(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.endswith("Not executing."):
            return False  # a step skipped after another failed: the failure says it all
        event = getattr(record, "dagster_meta", {}).get("dagster_event")
        if event is not None and event.is_run_failure:
            # "Execution of run for "nightly" failed. Steps failed: [...]": the steps said why
            record.msg, record.args = message.split("\n\n", 1)[0], None
        elif event is not None and event.is_step_failure:
            error = step_error(event.step_failure_data.error)
            head = message.split("\n\n", 1)[0]
            if is_failure(error):
                record.msg, record.args = (
                    f"{head}\n\n{without_stack_trace(error.to_string())}",
                    None,
                )
            elif error is not None:  # a bug: its own stack trace, once
                record.msg, record.args = f"{head}\n\n{error.to_string().rstrip()}", None
        elif STACK_TRACE in message:
            record.msg, record.args = without_stack_trace(message), None
        return True


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, is_required=False, default_value="INFO"),
        "name": dg.Field(str, is_required=False, default_value="dagster"),
    },
    description="Dagster's colored console logger, each error once (stack traces in the UI).",
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)
    log.addFilter(_OneErrorOnce())
    return log
