"""The console logger of the project's runs: Dagster's colored console logger, with the
stack traces cut from its messages.

A step that fails on bad input (a mapping missing a required field, a file that lost a
mapped column) raises ``dagster.Failure`` with a message naming mapping, file and field;
Dagster's console logger prints the message followed by the Python stack traces of the
failure and its cause (some 45 lines each, once per failing step). On the console that
one line is what a user needs, and so are not the lines of every step skipped because
of it ("Dependencies for step … failed … Not executing."); the full error, stack traces included, stays in the run's
event log (Dagster UI).
"""

from __future__ import annotations

import logging

import dagster as dg

STACK_TRACE = "\n\nStack Trace:"


def without_stack_trace(message: str) -> str:
    """``message`` up to its first stack trace (the whole message if it has none)."""
    return message.split(STACK_TRACE, 1)[0]


class _CutStackTraces(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.endswith("Not executing."):
            return False  # a step skipped after another failed: the failure says it all
        if STACK_TRACE in message:
            record.msg, record.args = without_stack_trace(message), None
        return True


@dg.logger(
    config_schema={
        "log_level": dg.Field(str, is_required=False, default_value="INFO"),
        "name": dg.Field(str, is_required=False, default_value="dagster"),
    },
    description="Dagster's colored console logger without stack traces (they stay in the UI).",
)
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    log = dg.colored_console_logger.logger_fn(init_context)
    log.addFilter(_CutStackTraces())
    return log
