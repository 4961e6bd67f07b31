"""`make dev`: the Dagster UI and daemon on this project (`dagster dev -w workspace.yaml`),
on the instance `crm` records its runs in, stopping on Ctrl-C and on SIGTERM.

`dagster dev` stops on SIGINT (Python's KeyboardInterrupt) and gives SIGTERM whatever
handling SIGINT has (dagster/_utils/interrupts.py, `setup_interrupt_handlers`). A process
started with SIGINT ignored keeps it ignored: POSIX shells start the background jobs of a
non-interactive shell that way (`make dev &` in a script, a CI step), and Python then
installs no KeyboardInterrupt handler. `dagster dev` then ignores SIGINT and SIGTERM both and
only SIGKILL stops it, leaving its webserver, daemon and code server behind. This entry
point resets SIGINT to its default before it becomes `dagster dev` (exec: the same process,
so `make` and a Ctrl-C reach it directly), where Python installs its handler again.

Usage: ``python -m pipelines.dev [dagster dev options]`` (`make dev` runs it).
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path

from pipelines.lib.settings import REPO_ROOT, Settings


def main(argv: list[str] | None = None) -> None:
    from pipelines.orchestrate import ensure_dagster_home

    settings = Settings.from_env()
    assert settings.dagster_home is not None  # from_env: $DAGSTER_HOME or $CRM_HOME/dagster
    ensure_dagster_home(settings.dagster_home)
    env = os.environ | {"DAGSTER_HOME": str(settings.dagster_home)}  # where `crm` records
    args = sys.argv[1:] if argv is None else argv
    dagster = shutil.which("dagster", path=str(Path(sys.executable).parent)) or shutil.which(
        "dagster"
    )
    if dagster is None:
        raise SystemExit("error: the `dagster` command is not installed (run make env)")
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # an exec keeps SIG_IGN, not SIG_DFL
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.execve(dagster, [dagster, "dev", "-w", str(REPO_ROOT / "workspace.yaml"), *args], env)


if __name__ == "__main__":  # pragma: no cover
    main()
