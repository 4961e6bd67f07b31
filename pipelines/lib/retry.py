"""Retry policy for transient failures (a locked file, a flaky disk, a killed worker)."""

import dagster as dg

TRANSIENT_RETRY = dg.RetryPolicy(
    max_retries=2,
    delay=5,
    backoff=dg.Backoff.EXPONENTIAL,
    jitter=dg.Jitter.PLUS_MINUS,
)
