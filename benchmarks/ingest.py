"""Loader throughput against the floor of DuckDB's own readers on the same files.

    python -m benchmarks.ingest --landing DIR --mappings DIR [--out FILE]
        [--repeat N] [--mode range|partition] [--threads N]

For every source mapping, each side runs in a fresh process (so that each one's peak RSS
is its own) against its own scratch DuckDB file:

- engine: loads every delivery date of the source through the loader. ``--mode range``
  (default): one ``load_partitions`` call over all the dates, as a Dagster backfill runs
  (single-run backfill policy); ``--mode partition``: one ``load_partition`` per date, as
  the nightly runs do.
- floor: the same files read by DuckDB's own reader into a table, with the same grouping:
  one ``read_csv`` / ``read_json`` / ``read_parquet`` call over every file of the source
  (range), or one per delivery folder (partition). Auto-detected types, the mapping's
  dialect, ``ignore_errors=true``; no lineage, no typing rules, no quarantine, no
  duplicate detection (it reads the duplicate files too). DuckDB reads GB18030 only with
  its ``encodings`` extension, which is not bundled: for such a source the floor
  transcodes each file to UTF-8 with Python's codec (timed, as the engine does) and
  reads the copies.

``engine/floor`` is the ratio of throughputs on the same bytes (floor seconds / engine
seconds). With ``--repeat N`` everything runs N times, engine and floor alternating which
goes first; the table gives medians and min–max ranges. Benchmarks are not tests: nothing
here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from pipelines.ingest.discovery import discover_partitions, partition_files
from pipelines.ingest.engine import load_partition, load_partitions
from pipelines.ingest.files import _transcode
from pipelines.ingest.mapping import SourceMapping, load_mappings


# --------------------------------------------------------------------------- workers
def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _floor_sql(mapping: SourceMapping, paths: list[Path]) -> str:
    files = "[" + ", ".join(_q(str(p)) for p in paths) + "]"
    fmt = mapping.format
    if fmt.type == "parquet":
        return f"SELECT * FROM read_parquet({files})"
    if fmt.type == "jsonl":
        return f"SELECT * FROM read_json({files}, format='newline_delimited', ignore_errors=true)"
    if fmt.whitespace:
        return (
            f"SELECT * FROM read_csv({files}, delim=' ', ignore_errors=true, "
            f"header={str(fmt.header).lower()})"
        )
    # not null_padding=true: on many files it makes the sniffer see extra columns in the
    # first file (a malformed row) that the others lack, and the read fails
    return (
        f"SELECT * FROM read_csv({files}, delim={_q(fmt.delimiter)}, quote={_q(fmt.quote)}, "
        f"escape={_q(fmt.escape)}, header={str(fmt.header).lower()}, ignore_errors=true)"
    )


def _groups(landing: Path, mapping: SourceMapping, mode: str) -> list[list[Path]]:
    per_day = [partition_files(landing, mapping, d) for d in discover_partitions(landing, mapping)]
    if mode == "partition":
        return [g for g in per_day if g]
    return [[p for g in per_day for p in g]]


def _worker_engine(landing: Path, mapping: SourceMapping, mode: str, con) -> dict:
    days = discover_partitions(landing, mapping)
    t0 = time.perf_counter()
    if mode == "range":
        out = load_partitions(con, mapping, landing, days)
        if out.failures:
            raise SystemExit(f"failed partitions: {out.failures}")
        results = out.partitions
    else:
        results = [load_partition(con, mapping, landing, d) for d in days]
    seconds = time.perf_counter() - t0
    files = [f for r in results for f in r.files]
    for f in files:
        assert f.rows_read == f.rows_loaded + f.rows_quarantined, f
    return {
        "seconds": seconds,
        "files": len(files),
        "duplicates": sum(f.status == "duplicate" for f in files),
        "bytes": sum(f.bytes for f in files),
        "rows_read": sum(f.rows_read for f in files),
        "rows_loaded": sum(f.rows_loaded for f in files),
        "rows_quarantined": sum(f.rows_quarantined for f in files),
    }


def _worker_floor(landing: Path, mapping: SourceMapping, mode: str, con, tmp: Path) -> dict:
    transcode = mapping.format.encoding != "utf-8" and mapping.format.type != "parquet"
    seconds, rows, size = 0.0, 0, 0
    for n, paths in enumerate(_groups(landing, mapping, mode)):
        size += sum(p.stat().st_size for p in paths)
        t0 = time.perf_counter()
        if transcode:
            paths = [
                _transcode(p, mapping.format.encoding, tmp, f"{n}_{i}_")
                for i, p in enumerate(paths)
            ]
        con.execute(f"CREATE TABLE floor_{n} AS {_floor_sql(mapping, paths)}")
        seconds += time.perf_counter() - t0
        rows += con.execute(f"SELECT count(*) FROM floor_{n}").fetchall()[0][0]
        if transcode:
            for p in paths:
                p.unlink()
    return {"seconds": seconds, "rows": rows, "bytes": size}


def _worker(args) -> int:
    mapping = next(m for m in load_mappings(args.mappings) if m.name == args.source)
    with tempfile.TemporaryDirectory(prefix="crm_bench_") as tmp:
        con = duckdb.connect(str(Path(tmp) / "bench.duckdb"))
        if args.threads:
            con.execute(f"SET threads = {int(args.threads)}")
        if args.worker == "engine":
            out = _worker_engine(args.landing, mapping, args.mode, con)
        else:
            out = _worker_floor(args.landing, mapping, args.mode, con, Path(tmp))
        con.close()
    print(json.dumps(out))
    return 0


def _spawn(args, side: str, source: str) -> dict:
    """Run one side for one source in a child process: its JSON result + peak RSS (MB)."""
    cmd = [sys.executable, "-m", "benchmarks.ingest", "--worker", side,
           "--source", source, "--landing", str(args.landing), "--mappings",
           str(args.mappings), "--mode", args.mode]  # fmt: skip
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise SystemExit(f"{side} worker for {source} failed ({proc.returncode})")
        out.seek(0)
        result = json.loads(out.read().decode().strip().splitlines()[-1])
    result["rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    return result


# --------------------------------------------------------------------------- report
@dataclass
class Source:
    name: str
    engine: list[dict] = field(default_factory=list)
    floor: list[dict] = field(default_factory=list)


def _rng(values: list[float], fmt: str) -> str:
    mid = format(statistics.median(values), fmt)
    if len(values) == 1:
        return mid
    return f"{mid} ({format(min(values), fmt)}–{format(max(values), fmt)})"


def to_markdown(sources: list[Source], args, header: str) -> str:
    lines = [
        header,
        "",
        "| source | files (dup) | MB | rows read | loaded | quarantined | engine s | "
        "engine rows/s | engine MB/s | engine peak RSS MB | floor s | floor rows/s | "
        "floor MB/s | floor peak RSS MB | engine/floor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    runs = len(sources[0].engine) if sources else 0
    total = Source("**total**")
    for i in range(runs):
        e = {k: sum(s.engine[i][k] for s in sources) for k in sources[0].engine[i]}
        e["rss_mb"] = max(s.engine[i]["rss_mb"] for s in sources)
        f = {k: sum(s.floor[i][k] for s in sources) for k in sources[0].floor[i]}
        f["rss_mb"] = max(s.floor[i]["rss_mb"] for s in sources)
        total.engine.append(e)
        total.floor.append(f)
    for s in [*sources, total]:
        e0 = s.engine[0]
        mb = e0["bytes"] / 1e6
        es = [r["seconds"] for r in s.engine]
        fs = [r["seconds"] for r in s.floor]
        ratio = [f / e for e, f in zip(es, fs, strict=True)]
        lines.append(
            f"| {s.name} | {e0['files']} ({e0['duplicates']}) | {mb:.1f} | "
            f"{e0['rows_read']:,} | {e0['rows_loaded']:,} | {e0['rows_quarantined']:,} | "
            f"{_rng(es, '.2f')} | {_rng([e0['rows_read'] / x for x in es], ',.0f')} | "
            f"{_rng([mb / x for x in es], '.1f')} | "
            f"{_rng([r['rss_mb'] for r in s.engine], '.0f')} | {_rng(fs, '.2f')} | "
            f"{_rng([r['rows'] / x for r, x in zip(s.floor, fs, strict=True)], ',.0f')} | "
            f"{_rng([r['bytes'] / 1e6 / x for r, x in zip(s.floor, fs, strict=True)], '.1f')} | "
            f"{_rng([r['rss_mb'] for r in s.floor], '.0f')} | {_rng(ratio, '.2f')} |"
        )
    lines += [
        "",
        "Medians over the runs, (min–max) in brackets; engine/floor = floor s ÷ engine s on "
        "the same files (total: per run, sums of the sources). Peak RSS: of the process "
        "loading one source (total: the largest).",
    ]
    return "\n".join(lines) + "\n"


def _machine() -> str:
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores{mem}, {platform.system()} {platform.machine()}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--mappings", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--repeat", type=int, default=1, help="runs (default 1)")
    parser.add_argument("--mode", choices=["range", "partition"], default="range")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    parser.add_argument("--worker", choices=["engine", "floor"], help=argparse.SUPPRESS)
    parser.add_argument("--source", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return _worker(args)
    sources = [
        Source(m.name) for m in load_mappings(args.mappings) if discover_partitions(args.landing, m)
    ]
    load = [os.getloadavg()[0]]
    started = time.monotonic()
    for run in range(args.repeat):
        for s in sources:
            order = ("engine", "floor") if (run % 2 == 0) else ("floor", "engine")
            for side in order:
                getattr(s, side).append(_spawn(args, side, s.name))
            e, f = s.engine[-1], s.floor[-1]
            print(
                f"run {run + 1}/{args.repeat} {s.name}: engine {e['seconds']:.2f} s, "
                f"floor {f['seconds']:.2f} s, ratio {f['seconds'] / e['seconds']:.2f}",
                file=sys.stderr,
                flush=True,
            )
        load.append(os.getloadavg()[0])
    cmd = " ".join(["python -m benchmarks.ingest", *(argv or sys.argv[1:])])
    grouping = (
        "one `load_partitions` call per source over all its delivery dates (a backfill); "
        "floor: one reader call per source over all its files"
        if args.mode == "range"
        else "one `load_partition` call per delivery date (nightly runs); floor: one reader "
        "call per delivery folder"
    )
    header = (
        f"# Benchmark: ingest ({args.landing.name})\n\n"
        f"Engine: {grouping} (`read_csv` / `read_json` / `read_parquet`, auto-detected types, "
        f"the mapping's dialect, `ignore_errors=true`, into a table; GB18030 files transcoded "
        f"to UTF-8 with Python's codec first, timed). Each side runs in its own process "
        f"with its own DuckDB file. See docs/ingestion.md, Throughput.\n\n"
        f"`{cmd}`\n\n"
        f"{time.strftime('%Y-%m-%d')}, mode {args.mode}, {args.repeat} run(s), wall "
        f"{time.monotonic() - started:.0f} s; machine: {_machine()}; DuckDB "
        f"{duckdb.__version__}; 1-minute load average during the runs "
        f"{min(load):.1f}–{max(load):.1f} (other jobs shared the cores)."
    )
    text = to_markdown(sources, args, header)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
