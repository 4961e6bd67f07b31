"""Scaling benchmark: the whole pipeline from empty and one night on top, against a floor
and a peer, at growing sizes. Results: .bench/results/scale.md (.bench/results/scale_<preset>.json holds
each preset's figures; the page is rendered from every JSON present). The folder is not
committed; docs/benchmarks.md keeps the table of the latest reference run.

    python -m benchmarks.scale [--presets small,medium,large] [--work .bench]
                                          [--peer-preset medium] [--seed 7]

Per preset, in one run:

1. the generated preset in <work>/<preset>/landing (generated once, kept);
2. full build from empty: `crm backfill` over every delivery date but the last
   `BIG_NIGHT + 1`, in a fresh CRM_HOME (<work>/<preset>/home), in its own process;
3. a night of `BIG_NIGHT` (5) deliveries at once on top of that history: `crm backfill` over
   the next five delivery dates (one run: a delivery five times a normal one);
4. one night on top of that: `crm run --date <last delivery date>`;
   for each: wall time, peak RSS of the process tree (the crm process and its children,
   dbt included; /proc sampled every 0.2 s, and the kernel's maximum for the largest single
   process), and time per stage (ingest, dbt, CLV, gates, publish) from the step
   statistics of the Dagster runs in the run storage under DAGSTER_HOME;
5. the floor: benchmarks/floor.sql, DuckDB alone, on a copy of the raw tables,
   as of the last date, in its own process; agreement with marts.fct_kpi_monthly,
   marts.dim_customers and the identity components;
6. the pandas peer (benchmarks/peer.py) on the same copy, for --peer-preset only
   (default medium), in its own process; agreement with the floor and the warehouse.

Benchmarks are not tests: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import date
from importlib import metadata
from pathlib import Path

import duckdb

REPO = Path(__file__).resolve().parents[1]
#: Where every benchmark writes its results (git-ignored: results are not committed).
RESULTS_DIR = REPO / ".bench" / "results"
SUMMARY = RESULTS_DIR / "scale.md"
DEMO_MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
PRESETS = ("small", "medium", "large")
STAGES = ("ingest", "dbt", "CLV", "gates", "publish")
#: The deliveries of the large night: the night's time should grow with its delivery.
BIG_NIGHT = 5
SAMPLE_SECONDS = 0.2


def _echo(message: str) -> None:
    print(f"[scale] {message}", flush=True)


# Peak memory of a process tree -------------------------------------------------------


def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="utf-8", errors="replace") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    return children


def _process_label(pid: int) -> str:
    """A short name for a process: the program and what it runs (`crm nightly`, `dbt build`,
    `hyperd`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = [a.decode(errors="replace") for a in fh.read().split(b"\0") if a]
    except OSError:
        return "?"
    if not args:
        return "?"
    words = [Path(args[0]).name] + [a for a in args[1:] if not a.startswith("-")][:2]
    if words[0].startswith("python") and len(args) > 2 and args[1] == "-m":
        words = [args[2]] + [a for a in args[3:] if not a.startswith("-")][:1]
    return " ".join(words)[:60]


def _tree_rss(root: int) -> tuple[int, int, dict[int, int]]:
    """(sum, largest, pid -> bytes) resident set size of `root` and its descendants."""
    children = _children_map()
    page = os.sysconf("SC_PAGE_SIZE")
    total = largest = 0
    each: dict[int, int] = {}
    todo = [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            with open(f"/proc/{pid}/statm", encoding="ascii") as fh:
                rss = int(fh.read().split()[1]) * page
        except (OSError, IndexError, ValueError):
            continue
        total += rss
        largest = max(largest, rss)
        each[pid] = rss
    return total, largest, each


@dataclass
class Measured:
    seconds: float
    peak_rss: int  # bytes, the process tree (sampled sum, at least the largest process)
    peak_process: int  # bytes, the largest single process (kernel maximum)
    returncode: int
    load_average: float  # mean 1-minute load average while it ran (other jobs included)
    # when the sampled sum peaked (seconds from the start) and what each process held then
    peak_at_seconds: float = 0.0
    peak_processes: list[dict] = field(default_factory=list)


def measure(cmd: list[str], *, env: dict[str, str], log: Path, cwd: Path = REPO) -> Measured:
    """Run `cmd`, its output to `log`; wall time and peak RSS of its process tree (with the
    processes that made up the peak)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    peak = [0, 0]
    at_peak: dict = {"seconds": 0.0, "processes": {}}
    loads: list[float] = []
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                total, largest, each = _tree_rss(proc.pid)
                if total > peak[0]:
                    at_peak["seconds"] = time.monotonic() - started
                    at_peak["processes"] = {
                        pid: (rss, _process_label(pid)) for pid, rss in each.items()
                    }
                peak[0], peak[1] = max(peak[0], total), max(peak[1], largest)
                loads.append(os.getloadavg()[0])
                done.wait(SAMPLE_SECONDS)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss (KiB): the largest of the process and the descendants it waited for
    largest = max(peak[1], usage.ru_maxrss * 1024)
    load = round(sum(loads) / len(loads), 2) if loads else os.getloadavg()[0]
    processes = [
        {"pid": pid, "process": label, "rss": rss}
        for pid, (rss, label) in sorted(at_peak["processes"].items(), key=lambda kv: -kv[1][0])
        if rss >= 16 * 2**20  # the processes that matter (>= 16 MiB)
    ]
    return Measured(
        seconds,
        max(peak[0], largest),
        largest,
        proc.returncode,
        load,
        round(at_peak["seconds"], 1),
        processes,
    )


def measure_module(module: str, args: list[str], *, env: dict[str, str], log: Path) -> Measured:
    return measure([sys.executable, "-m", module, *args], env=env, log=log)


# Stage times from the Dagster run storage --------------------------------------------


def stage_of(step_key: str) -> str:
    if step_key.startswith("raw__"):
        return "ingest"
    if step_key.startswith("dbt_"):
        return "dbt"
    if step_key.startswith("clv__"):
        return "CLV"
    if step_key.startswith("quality_"):
        return "gates"
    if step_key.startswith("serving__"):
        return "publish"
    return "other"


def run_ids(dagster_home: Path) -> list[str]:
    import dagster as dg

    if not (dagster_home / "dagster.yaml").exists():
        return []
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        return [record.dagster_run.run_id for record in instance.get_run_records()]


def stage_seconds(dagster_home: Path, ids: list[str]) -> dict:
    """Seconds per stage over the steps of the runs `ids` (step start to end, from the
    run storage), plus the steps themselves."""
    import dagster as dg

    stages = dict.fromkeys((*STAGES, "other"), 0.0)
    steps: dict[str, float] = {}
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run_id in ids:
            for stat in instance.get_run_step_stats(run_id):
                if stat.start_time is None or stat.end_time is None:
                    continue
                seconds = stat.end_time - stat.start_time
                stages[stage_of(stat.step_key)] += seconds
                steps[stat.step_key] = steps.get(stat.step_key, 0.0) + seconds
    return {"stages": stages, "steps": steps}


def dbt_profile(ids: list[str], top: int = 12) -> dict:
    """Where dbt's time went in the runs `ids`: per invocation (Dagster's dbt target
    folders are named <asset>-<run id[:7]>-<random>) the wall time, the execution time
    summed per resource type (models, data tests, ...: with 2 threads the sum exceeds the
    wall time), its critical path (benchmarks/critical_path.py), the `top`
    slowest nodes and the `top` slowest data tests."""
    from benchmarks.critical_path import critical_path
    from pipelines.lib.settings import DBT_PROJECT_DIR

    invocations: dict[str, dict] = {}
    nodes: list[tuple[float, str]] = []
    for run_id in ids:
        for path in sorted((DBT_PROJECT_DIR / "target").glob(f"*-{run_id[:7]}-*/run_results.json")):
            results = json.loads(path.read_text(encoding="utf-8"))
            per_type: dict[str, float] = {}
            for item in results.get("results", []):
                kind = item["unique_id"].split(".")[0]
                per_type[kind] = per_type.get(kind, 0.0) + item["execution_time"]
                nodes.append((item["execution_time"], item["unique_id"]))
            invocations[path.parent.name] = {
                "elapsed": round(results.get("elapsed_time", 0.0), 2),
                "execution_by_type": {k: round(v, 2) for k, v in sorted(per_type.items())},
            }
            manifest = path.parent / "manifest.json"
            if manifest.is_file():
                chain = critical_path(results, json.loads(manifest.read_text(encoding="utf-8")))
                invocations[path.parent.name]["critical_path"] = {
                    k: v for k, v in chain.items() if k not in ("elapsed", "execution_by_type")
                }
    nodes.sort(reverse=True)
    return {
        "invocations": invocations,
        "slowest": [{"node": node, "seconds": round(sec, 2)} for sec, node in nodes[:top]],
        "slowest_tests": [
            {"node": node, "seconds": round(sec, 2)}
            for sec, node in [item for item in nodes if item[1].startswith("test.")][:top]
        ],
    }


# Context ------------------------------------------------------------------------------


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def machine() -> dict:
    model = "-"
    with open("/proc/cpuinfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with open("/proc/meminfo", encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
    )
    # Tracked files only (a worktree's link to the venv is not code; the results this
    # benchmark writes are git-ignored).
    status = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no", "--", "."],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if head.returncode == 0:
        commit = head.stdout.strip() + (" + uncommitted changes" if status.stdout.strip() else "")
    else:
        commit = "unknown (not a git checkout)"
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "ram_gib": round(mem_kib / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "pandas": _version("pandas"),
        "dagster": _version("dagster"),
        "dbt-core": _version("dbt-core"),
        "dbt-duckdb": _version("dbt-duckdb"),
        "commit": commit,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def crm_env(home: Path, landing: Path) -> dict[str, str]:
    mappings = landing / "_mappings"
    env = os.environ | {
        "CRM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "CRM_LANDING_DIR": str(landing),
        "CRM_MAPPINGS_DIR": str(mappings if mappings.is_dir() else DEMO_MAPPINGS),
    }
    return env


def _mb(n: int | float) -> float:
    return round(n / 1024 / 1024, 1)


def landing_size(landing: Path) -> int:
    return sum(
        p.stat().st_size
        for p in landing.rglob("*")
        if p.is_file() and not any(part.startswith("_") for part in p.relative_to(landing).parts)
    )


def raw_counts(home: Path) -> dict[str, int]:
    from benchmarks.sources import RAW_TABLES, attach_raw

    with duckdb.connect() as con:
        source = attach_raw(con, home)
        return {
            table: con.execute(f"select count(*) from {source}.{table}").fetchone()[0]  # type: ignore[index]
            for table in RAW_TABLES
        }


# One preset ---------------------------------------------------------------------------


def agreements(
    con: duckdb.DuckDBPyConnection, left_prefix: str, home: Path, with_floor: bool
) -> dict:
    """Agreement of one implementation's outputs (`<left_prefix>kpi_monthly`, ...) with the
    warehouse (and with the floor's tables when `with_floor`)."""
    from benchmarks.floor import customer_agreement, identity_agreement, kpi_agreement
    from benchmarks.sources import attach_warehouse, relation_exists

    wh = attach_warehouse(con, home)
    out: dict = {
        "kpis_vs_warehouse": kpi_agreement(
            con, f"{left_prefix}kpi_monthly", f"{wh}.marts.fct_kpi_monthly"
        ),
        "customers_vs_warehouse": customer_agreement(
            con, f"{left_prefix}customers", f"{wh}.marts.dim_customers"
        ),
    }
    for catalog, schema in ((wh, "intermediate"), ("restricted", "identity")):
        if relation_exists(con, catalog, schema, "int_identity_components_resolved"):
            out["identity_vs_warehouse"] = identity_agreement(
                con,
                f"{left_prefix}customer_records",
                f"{catalog}.{schema}.int_identity_components_resolved",
            )
            break
    if with_floor:
        out["kpis_vs_floor"] = kpi_agreement(con, f"{left_prefix}kpi_monthly", "floor.kpi_monthly")
        out["customers_vs_floor"] = customer_agreement(
            con, f"{left_prefix}customers", "floor.customers"
        )
        out["identity_vs_floor"] = identity_agreement(
            con, f"{left_prefix}customer_records", "floor.customer_records"
        )
    return out


def bench_preset(preset: str, work: Path, seed: int, with_peer: bool) -> dict:
    from pipelines.ingest.sensors import delivery_dates

    base = work / preset
    landing = base / "landing"
    result: dict = {
        "preset": preset,
        "seed": seed,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if (landing / "_truth").is_dir():
        _echo(f"{preset}: landing data present in {landing} (generated earlier, kept)")
    else:
        from pipelines.generate import generate

        _echo(f"{preset}: generating the preset into {landing} (once)")
        started = time.monotonic()
        generate(preset=preset, seed=seed, out=landing)
        result["generate_seconds"] = round(time.monotonic() - started, 1)
    dates = [date.fromisoformat(d) for d in delivery_dates(landing)]
    if len(dates) < BIG_NIGHT + 3:
        raise SystemExit(
            f"{preset}: {len(dates)} delivery dates; the benchmark needs {BIG_NIGHT + 3}"
        )
    first, last = dates[0], dates[-1]
    big_first, big_last = dates[-BIG_NIGHT - 1], dates[-2]
    result["deliveries"] = {
        "first": first.isoformat(),
        "last": last.isoformat(),
        "count": len(dates),
    }
    result["landing_mb"] = _mb(landing_size(landing))

    home = base / "home"
    if home.exists():
        shutil.rmtree(home)
    env = crm_env(home, landing)
    dagster_home = home / "dagster"

    phases = {}
    for name, args in (
        ("full", ["backfill", "--start", first.isoformat(),
                  "--end", dates[-BIG_NIGHT - 2].isoformat()]),
        ("big_night", ["backfill", "--start", big_first.isoformat(), "--end", big_last.isoformat()]),
        ("night", ["run", "--date", last.isoformat()]),
    ):  # fmt: skip
        _echo(f"{preset}: {name}: crm {' '.join(args)}")
        known = set(run_ids(dagster_home))
        measured = measure_module("pipelines.cli", args, env=env, log=base / f"{name}.log")
        if measured.returncode != 0:
            raise SystemExit(
                f"crm {' '.join(args)} failed ({measured.returncode}); see {base / f'{name}.log'}"
            )
        new = [r for r in run_ids(dagster_home) if r not in known]
        phases[name] = (
            asdict(measured)
            | stage_seconds(dagster_home, new)
            | {
                "command": "crm " + " ".join(args),
                "runs": len(new),
                "dbt_profile": dbt_profile(new),
            }
        )
        _echo(f"{preset}: {name}: {measured.seconds:.1f} s, peak RSS {_mb(measured.peak_rss)} MiB")
    result["phases"] = phases
    result["raw_rows"] = raw_counts(home)
    result["warehouse_mb"] = _mb(
        sum(p.stat().st_size for p in home.rglob("*.duckdb") if p.parent.name != "serving")
    )
    # kept in the work folder: if the floor or the peer fails (e.g. for lack of disk space),
    # the measured full build and night are not lost
    (base / "phases.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    # the floor ---------------------------------------------------------------------
    from benchmarks.floor import prepare_db

    floor_db = base / "bench.duckdb"
    copy_seconds = prepare_db(home, floor_db)
    _echo(f"{preset}: floor: raw tables copied in {copy_seconds:.1f} s")
    floor_json = base / "floor.json"
    measured = measure_module(
        "benchmarks.floor",
        ["--db", str(floor_db), "--as-of", last.isoformat(), "--json", str(floor_json)],
        env=env,
        log=base / "floor.log",
    )
    if measured.returncode != 0:
        raise SystemExit(
            f"the floor failed; see {base / 'floor.log'} (the full build and the night: "
            f"{base / 'phases.json'})"
        )
    floor = json.loads(floor_json.read_text(encoding="utf-8"))
    result["floor"] = asdict(measured) | {
        "script_seconds": floor["seconds"],
        "steps": floor["steps"],
        "rows": floor["rows"],
        "copy_seconds": copy_seconds,
    }
    with duckdb.connect(str(floor_db)) as con:
        result["floor"]["agreement"] = agreements(con, "floor.", home, with_floor=False)
    _echo(f"{preset}: floor: {floor['seconds']:.1f} s, peak RSS {_mb(measured.peak_rss)} MiB")

    # the pandas peer ---------------------------------------------------------------
    if with_peer:
        peer_dir = base / "peer"
        peer_json = base / "peer.json"
        measured = measure_module(
            "benchmarks.peer",
            ["--db", str(floor_db), "--as-of", last.isoformat(), "--out", str(peer_dir),
             "--json", str(peer_json)],
            env=env,
            log=base / "peer.log",
        )  # fmt: skip
        if measured.returncode != 0:
            raise SystemExit(f"the pandas peer failed; see {base / 'peer.log'}")
        peer = json.loads(peer_json.read_text(encoding="utf-8"))
        result["peer"] = asdict(measured) | peer
        with duckdb.connect(str(floor_db)) as con:
            con.execute("create schema if not exists peer")
            for name in ("customer_records", "customers", "kpi_monthly"):
                con.execute(
                    f"create or replace table peer.{name} as "
                    f"select * from read_parquet('{peer_dir / name}.parquet')"
                )
            result["peer"]["agreement"] = agreements(con, "peer.", home, with_floor=True)
        _echo(f"{preset}: peer: {peer['seconds']:.1f} s, peak RSS {_mb(measured.peak_rss)} MiB")
    result["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    return result


def result_path(preset: str) -> Path:
    return RESULTS_DIR / f"scale_{preset}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", default="small,medium,large")
    parser.add_argument("--work", type=Path, default=REPO / ".bench")
    parser.add_argument("--peer-preset", default="medium", help="presets the pandas peer runs on")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite .bench/results/scale.md from the JSON files",
    )
    ns = parser.parse_args(argv)
    from benchmarks.report import render

    presets = [p.strip() for p in ns.presets.split(",") if p.strip()]
    peers = {p.strip() for p in ns.peer_preset.split(",") if p.strip()}
    unknown = [p for p in presets if p not in PRESETS]
    if unknown:
        parser.error(f"unknown preset(s) {unknown}; choose from {PRESETS}")
    if not ns.render_only:
        work = ns.work.resolve()
        for preset in presets:
            result = bench_preset(preset, work, ns.seed, with_peer=preset in peers)
            result["command"] = (
                f"python -m benchmarks.scale --presets {preset} "
                f"--peer-preset {ns.peer_preset} --seed {ns.seed}"
            )
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            result_path(preset).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
            SUMMARY.write_text(render(RESULTS_DIR), encoding="utf-8")
            _echo(
                f"{preset}: results in {result_path(preset).relative_to(REPO)} and {SUMMARY.relative_to(REPO)}"
            )
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    SUMMARY.write_text(render(RESULTS_DIR), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
