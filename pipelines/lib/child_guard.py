"""A dbt process never outlives the pipeline process that started it.

dbt runs as a child process (dagster-dbt's `DbtCliResource.cli`, and `run_dbt` for `dbt
docs generate`). When the parent stops normally the child stops with it: on SIGINT/SIGTERM
Dagster raises an interrupt in the step and dagster-dbt forwards SIGINT to dbt and waits
for it; `subprocess.run` kills its child on KeyboardInterrupt. A parent killed with SIGKILL
(the OOM killer, `kill -9`) runs no code, and its dbt child went on writing the warehouse
on its own, beside the next run.

So the dbt process asks Linux itself to be sent SIGTERM when its parent dies
(`prctl(PR_SET_PDEATHSIG)`, armed by a thread of its own that lives as long as the
process), as soon as dbt-duckdb loads the project's plugin (pipelines/lib/dbt_plugin.py),
before it opens the warehouse. SIGTERM's default action ends the process even while DuckDB
runs a query; DuckDB's write-ahead log leaves the warehouse as of its last commit. The parent names itself in
`CRM_DBT_PARENT_PID` just before it starts dbt (`dbt_env`); if that process is already
gone when the child arms the signal (it died in between), the child exits at once.

Why not a process group of its own: dbt-duckdb runs in one process (threads, no children),
so a group would hold nothing more to terminate, and it would stop a Ctrl-C at the terminal
from reaching dbt. Linux only: elsewhere the guard does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
from collections.abc import Mapping

#: The pid of the process that starts dbt, set in dbt's environment (`dbt_env`).
PARENT_ENV = "CRM_DBT_PARENT_PID"
#: linux/prctl.h
PR_SET_PDEATHSIG = 1


def parent_env() -> dict[str, str]:
    """The variable naming this process as the parent of the dbt process it starts."""
    return {PARENT_ENV: str(os.getpid())}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _arm(expected: int) -> bool:
    """In the calling thread: PR_SET_PDEATHSIG, and exit if the parent is already gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return False
    # the parent died before the signal was armed: its child was re-parented
    if os.getppid() != expected and not _alive(expected):
        with contextlib.suppress(Exception):
            sys.stderr.write(f"dbt: the pipeline process {expected} is gone; stopping\n")
        os._exit(143)
    return True


_guard: threading.Thread | None = None
_armed: list[bool] = []


def die_with_parent(env: Mapping[str, str]) -> bool:
    """In the dbt process: receive SIGTERM when the parent dies; exit now if the parent named
    in `CRM_DBT_PARENT_PID` of `env` (the dbt process's environment, which the plugin
    passes) is already gone. True when the signal is armed.

    Linux keeps the parent-death signal per thread and forgets it when that thread ends;
    dbt-duckdb loads plugins in a worker thread that ends early. So the signal is armed by
    a daemon thread of its own that lives as long as the process (it only waits); the
    kernel then signals the whole process."""
    global _guard
    expected = env.get(PARENT_ENV, "")
    if not expected.isdigit() or not sys.platform.startswith("linux"):
        return False
    if _guard is None:
        ready = threading.Event()

        def guard() -> None:
            _armed.append(_arm(int(expected)))
            ready.set()
            threading.Event().wait()  # keep this thread (and its setting) alive

        _guard = threading.Thread(target=guard, name="crm-parent-death-guard", daemon=True)
        _guard.start()
        ready.wait()
    return bool(_armed and _armed[0])
