"""A dbt process stops when the pipeline process that started it is killed with SIGKILL
(pipelines/lib/child_guard.py): a real `dbt show` of a long query, started through
`run_dbt`, its parent killed while dbt holds the warehouse open."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipelines.lib import child_guard

#: minutes of work for DuckDB (a sum over 10^11 rows)
SLOW_QUERY = "select sum(i % 7) as s from range(100000000000) as t(i)"


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _holds(pid: int, path: Path) -> bool:
    try:
        return any(os.readlink(fd) == str(path) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux only")
def test_dbt_stops_when_its_parent_is_killed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    script = textwrap.dedent(
        f"""
        from pathlib import Path
        from pipelines.lib.settings import Settings
        from pipelines.transform.project import run_dbt
        run_dbt(["show", "--inline", {SLOW_QUERY!r}], settings=Settings(home=Path({str(home)!r})))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop(child_guard.PARENT_ENV, None)
    parent = subprocess.Popen([sys.executable, "-c", script], env=env)
    warehouse = home / "warehouse" / "warehouse.duckdb"
    dbt = None
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and parent.poll() is None:
            running = [c for c in _children(parent.pid) if _holds(c, warehouse)]
            if running:
                dbt = running[0]
                break
            time.sleep(0.2)
        assert dbt is not None, "dbt never opened the warehouse"
        time.sleep(1.0)  # dbt is running the query
        assert _alive(dbt)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _alive(dbt):
            time.sleep(0.1)
        assert not _alive(dbt), "dbt went on running after its parent was killed"
    finally:
        if parent.poll() is None:
            parent.kill()
        if dbt is not None and _alive(dbt):
            os.kill(dbt, signal.SIGKILL)


def test_a_child_whose_parent_is_already_gone_exits(tmp_path: Path) -> None:
    """The parent died before the child armed the signal: the child stops at once."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from pipelines.lib.child_guard import die_with_parent; "
            "die_with_parent(os.environ); "
            "print('went on')",
        ],
        env={**os.environ, child_guard.PARENT_ENV: str(gone.pid)},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 143 and "went on" not in proc.stdout
    assert f"pipeline process {gone.pid} is gone" in proc.stderr
    # the real parent: armed, goes on
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os; from pipelines.lib.child_guard import die_with_parent; "
            "print(die_with_parent(os.environ))",
        ],
        env={**os.environ, child_guard.PARENT_ENV: str(os.getpid())},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.stdout.strip() == ("True" if sys.platform.startswith("linux") else "False")
