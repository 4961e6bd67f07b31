"""Crash safety: the pipeline killed with SIGKILL at random points of ingest, dbt and
publish, then run again, ends with exactly the tables of an undisturbed run, and
`serving/` holds a complete publication at every moment.

Kill points: at least 10, in turn after the start of the ingest, the dbt builds and the
publication, each at a random delay within that stage's duration in the undisturbed run
(so that it lands inside the stage). The seed is random per run and logged; reproduce a
failure with CRM_CRASH_SEED=<seed>. The whole process group is killed (the pipeline and
its dbt subprocess), as a power cut or an OOM kill would.

Cost: ~12 delivery days of a 2,000-customer population; one undisturbed backfill, then
10 killed runs and one to completion: about 8 minutes on 2 cores.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pytest
from support.e2e import REPO, crm_env

pytestmark = pytest.mark.xdist_group("crash")

END = date(2026, 10, 31)
DAYS = 12
KILLS = int(os.environ.get("CRM_CRASH_KILLS", "10"))
START = END - timedelta(days=DAYS - 1)
#: stage -> the output line that starts it
MARKERS = {
    "ingest": "[crm] ingesting deliveries",
    "dbt": "dbt_warehouse - Running dbt command",
    "publish": "serving__publication - publication as of",
}
#: columns that legitimately differ between runs (load times, durations, build times)
VOLATILE = {"_loaded_at", "loaded_at", "loaded_through", "seconds", "built_at",
            "first_logged_at", "changed_at", "rebuilt_at"}  # fmt: skip
#: tables that record runs rather than data (one row per attempt; the build record models
#: crm_builds_*: a row per model per successful build, tested_build numbers from the clock)
RUN_LOGS = {"clv.clv_model_runs", "quality.dq_results", "main.crm_builds_warehouse",
            "main.crm_builds_customer_marts"}  # fmt: skip
#: what the last dbt build of an incremental identity model changed and which upstream
#: builds it read (dbt invocation ids), and the staging state its changed keys were found
#: from (`__changed_keys_from`), and the keys each build of a fact wrote
#: (`__written_keys`, build numbers from the clock): state for the next build or
#: publication, not data. A resumed run
#: makes builds that an undisturbed one does not, so these differ by design; the tables
#: they describe are compared like every other
BUILD_STATE = re.compile(r"__(last_build|changes|changed_[a-z_]+|written_keys)$")


class Run:
    """`crm backfill` in its own process group; output lines with their arrival time."""

    def __init__(self, home: Path, *extra: str) -> None:
        self.lines: list[tuple[float, str]] = []
        self.home = home
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "backfill", "--start", START.isoformat(),
             "--end", END.isoformat(), *extra],
            env=crm_env(home), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append((time.monotonic() - self.started, line.rstrip("\n")))

    def seen(self, marker: str) -> float | None:
        return next((t for t, line in list(self.lines) if marker in line), None)

    def wait(self, timeout: float = 1200) -> int:
        code = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code

    def kill(self) -> None:
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=60)
        self._reader.join(timeout=10)
        # Dagster's compute-log capture runs `tail -F` helpers in their own session; a
        # killed run leaves them behind (they only read its log files)
        subprocess.run(["pkill", "-f", f"tail -F -c \\+0 {self.home}"], check=False)

    def tail(self, n: int = 40) -> str:
        return "\n".join(line for _, line in self.lines[-n:])


def _fingerprints(con: duckdb.DuckDBPyConnection, catalog: str) -> dict[str, tuple[int, int]]:
    """(rows, order-independent hash of the rows) per table; doubles rounded to 1e-9."""
    out = {}
    tables = con.execute(
        "select schema_name, table_name from duckdb_tables() where database_name = ? "
        "and not temporary order by all",
        [catalog],
    ).fetchall()
    for schema, table in tables:
        name = f"{schema}.{table}"
        if name in RUN_LOGS or schema in ("privacy",) or BUILD_STATE.search(table):
            continue
        cols = con.execute(
            "select column_name, data_type from duckdb_columns() where database_name = ? "
            "and schema_name = ? and table_name = ? order by column_index",
            [catalog, schema, table],
        ).fetchall()
        exprs = [
            f'round("{c}", 9)' if t in ("DOUBLE", "FLOAT") else f'"{c}"'
            for c, t in cols
            if c not in VOLATILE
        ]
        row = con.execute(
            f"select count(*), coalesce(sum(hash({', '.join(exprs)})), 0) "
            f'from "{catalog}"."{schema}"."{table}"'
        ).fetchone()
        out[name] = (int(row[0]), int(row[1]))
    return out


def snapshot(home: Path) -> dict[str, tuple[int, int]]:
    """Every table of the restricted store, the warehouse and serving.duckdb."""
    con = duckdb.connect()
    files = {
        "restricted": home / "restricted" / "restricted.duckdb",
        "warehouse": home / "warehouse" / "warehouse.duckdb",
        "serving": home / "serving" / "serving.duckdb",
    }
    out = {}
    for alias, path in files.items():
        con.execute(f"attach '{path}' as {alias} (read_only)")
        for name, fp in _fingerprints(con, alias).items():
            if alias == "serving" and name.startswith("main._publication"):
                continue
            out[f"{alias}:{name}"] = fp
    con.close()
    return out


def check_serving(serving: Path) -> str | None:
    """The id of the complete publication `serving/` shows, None if nothing was published
    yet; fails if what it shows is not one whole publication."""
    db = serving / "serving.duckdb"
    if not db.exists():
        assert not (serving / "manifest.json").exists()
        return None
    con = duckdb.connect()
    con.execute(f"attach '{db}' as s (read_only)")
    pub_id = con.execute("select publication_id from s._publication").fetchone()[0]
    tables = con.execute("select table_name, row_count from s._publication_tables").fetchall()
    manifest = (serving / "manifest.json").read_text(encoding="utf-8")
    assert pub_id in manifest
    for table, rows in tables:
        parquet = serving / "parquet" / f"{table}.parquet"
        assert con.execute(f"select count(*) from read_parquet('{parquet}')").fetchone()[0] == rows
        assert (serving / "tableau" / f"{table}.hyper").stat().st_size > 0
        # every file of the publication comes from the same release as serving.duckdb
        assert parquet.resolve().parent.parent == db.resolve().parent
    con.close()
    return pub_id


@pytest.fixture(scope="module")
def landing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.generate import generate

    folder = tmp_path_factory.mktemp("crash_landing") / "landing"
    generate("small", 11, folder, start=START, days=DAYS, progress=False,
             customers=2_000, history_days=120)  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def undisturbed(landing: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    home = tmp_path_factory.mktemp("undisturbed")
    os.symlink(landing, home / "landing")
    run = Run(home)
    assert run.wait() == 0, run.tail()
    marks = {stage: run.seen(marker) for stage, marker in MARKERS.items()}
    assert all(v is not None for v in marks.values()), marks
    total = run.lines[-1][0]
    order = sorted(marks, key=marks.get)
    windows = {
        stage: (order_next - marks[stage])
        for stage, order_next in zip(order, [marks[s] for s in order[1:]] + [total], strict=True)
    }
    return {"home": home, "snapshot": snapshot(home), "windows": windows, "total": total}


def test_killed_runs_end_with_the_tables_of_an_undisturbed_run(
    landing: Path, undisturbed: dict, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CRM_CRASH_SEED", random.SystemRandom().randrange(2**31)))
    rng = random.Random(seed)
    print(f"crash test seed: {seed} (reproduce with CRM_CRASH_SEED={seed})")
    home = tmp_path / "home"
    home.mkdir()
    os.symlink(landing, home / "landing")
    log: list[str] = [f"seed {seed}; stage windows (s): {undisturbed['windows']}"]
    stages = list(MARKERS)
    for i in range(KILLS):
        stage = stages[i % len(stages)] if i < KILLS - 1 else rng.choice(stages)
        delay = rng.uniform(0.0, undisturbed["windows"][stage])
        # ingest kills reload every delivery (--force), so that the load itself is hit
        run = Run(home, *(["--force"] if stage == "ingest" else []))
        deadline = time.monotonic() + 900
        while run.seen(MARKERS[stage]) is None and run.proc.poll() is None:
            assert time.monotonic() < deadline, run.tail()
            time.sleep(0.05)
        if run.proc.poll() is not None:  # finished before the stage (nothing to do): fine
            log.append(f"kill {i + 1}: {stage}: run ended (code {run.proc.returncode}) first")
            assert run.proc.returncode == 0, run.tail()
        else:
            time.sleep(delay)
            last = run.lines[-1][1][:160] if run.lines else ""
            if run.proc.poll() is None:
                run.kill()
                log.append(f"kill {i + 1}: {stage} + {delay:.1f} s; last line: {last}")
            else:
                assert run.proc.returncode == 0, run.tail()
                log.append(f"kill {i + 1}: {stage} + {delay:.1f} s: the run had ended")
        check_serving(home / "serving")
    final = Run(home)
    code = final.wait()
    assert code == 0, "\n".join(log) + "\n" + final.tail()
    after = snapshot(home)
    expected = undisturbed["snapshot"]
    differing = sorted(k for k in expected.keys() | after.keys() if expected.get(k) != after.get(k))
    assert not differing, (
        "\n".join(log)
        + "\ntables differing from the undisturbed run:\n"
        + "\n".join(f"{k}: expected {expected.get(k)}, got {after.get(k)}" for k in differing)
    )
    assert check_serving(home / "serving") is not None
    print("\n".join(log))
