"""`make dev` stops on Ctrl-C (SIGINT) and SIGTERM, with its webserver, daemon and code
server, also when started as a background job of a script, which starts it with SIGINT
ignored (`dagster dev` then ignored both signals and needed SIGKILL)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _dev_command() -> list[str]:
    """The command of the Makefile's `dev` recipe, with this interpreter."""
    recipe = re.search(r"^dev: .*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe is not None
    [line] = recipe.group(1).split("\n")[:1]
    command = line.strip().lstrip("@").split()
    assert command[0] == "$(BIN)/python"
    return [sys.executable, *command[1:]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    # zombies of the group (reaped by nobody yet) do not count
    out = subprocess.run(["ps", "-o", "stat=", "-g", str(pgid)], capture_output=True, text=True)
    return any(not s.startswith("Z") for s in out.stdout.split())


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_make_dev_stops_on_a_signal(tmp_path: Path, sig: signal.Signals) -> None:
    env = os.environ | {"CRM_HOME": str(tmp_path), "DAGSTER_HOME": str(tmp_path / "dagster")}
    log = tmp_path / "dev.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*_dev_command(), "-p", str(_free_port())],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to find what it leaves behind
            # as `make dev &` in a non-interactive shell starts it
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        )
    try:
        deadline = time.monotonic() + 180
        while "Serving dagster-webserver" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(1)
        proc.send_signal(sig)
        proc.wait(timeout=20)
        deadline = time.monotonic() + 20
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert not _group_alive(proc.pid), "webserver, daemon or code server left running"
    finally:
        if proc.poll() is None or _group_alive(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
    assert "Dagster services shut down." in log.read_text()
