"""`make dev`: the Dagster UI and daemon on this project (`dagster dev -w workspace.yaml`),
on the instance `crm` records its runs in, stopping on Ctrl-C and on SIGTERM.

`dagster dev` stops on SIGINT (Python's KeyboardInterrupt) and gives SIGTERM whatever
handling SIGINT has (dagster/_utils/interrupts.py, `setup_interrupt_handlers`). A process
started with SIGINT ignored keeps it ignored: POSIX shells start the background jobs of a
non-interactive shell that way (`make dev &` in a script, a CI step), and Python then
installs no KeyboardInterrupt handler. `dagster dev` then ignores SIGINT and SIGTERM both and
only SIGKILL stops it, leaving its webserver, daemon and code server behind. This entry
point restores Python's SIGINT handler first.

Usage: ``python -m pipelines.dev [dagster dev options]`` (`make dev` runs it).
"""

from __future__ import annotations

import os
import signal
import sys

from pipelines.lib.settings import REPO_ROOT, Settings


def main(argv: list[str] | None = None) -> int:
    from pipelines.orchestrate import ensure_dagster_home

    settings = Settings.from_env()
    assert settings.dagster_home is not None  # from_env: $DAGSTER_HOME or $CRM_HOME/dagster
    ensure_dagster_home(settings.dagster_home)
    os.environ["DAGSTER_HOME"] = str(settings.dagster_home)  # the instance of `crm`'s runs
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from dagster._cli import main as dagster

    args = sys.argv[1:] if argv is None else argv
    sys.argv = ["dagster", "dev", "-w", str(REPO_ROOT / "workspace.yaml"), *args]
    try:
        dagster()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 0
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
