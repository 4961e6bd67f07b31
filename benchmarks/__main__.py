"""`make bench`: the benchmarks, each in a fresh process, results in .bench/results/.

    python -m benchmarks [--preset medium] [--only ingest,quality,clv,scale] [--work .bench]
                              [--scale-presets small,medium,large] [--peer-preset medium]

- ingest:  the loader engine against DuckDB's own readers (the floor) on the generated
           preset (generated once into <work>/<preset>/landing), rows/s, MB/s, peak RSS;
- quality: the quality gate on a 2M-row synthetic warehouse (pushed-down GX suites);
- clv:     the nightly BG/NBD + Gamma-Gamma fit on 2M synthetic customers;
- scale:   the whole pipeline from empty and one night on top, per preset (generated once
           into <work>/<preset>/landing), time per stage and peak RSS, against a DuckDB
           floor and a pandas peer (benchmarks/scale.py).

Each writes its own output to .bench/results/<name>.md (scale: .bench/results/scale.md, the
summary page, and .bench/results/scale_<preset>.json); the folder is git-ignored and
re-running replaces its files. docs/benchmarks.md keeps the table of the latest reference
run. Benchmarks are not tests: nothing here asserts a time.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.scale import RESULTS_DIR as RESULTS

REPO = Path(__file__).resolve().parents[1]


def _shown(args: list[str]) -> str:
    """The command line as a reader of the results can type it (paths relative to the repo)."""
    return " ".join(a.replace(f"{REPO}/", "") for a in args)


#: Benchmarks that write their own results files (and print their progress as they go).
OWN_RESULTS = ("ingest", "scale")


def _run(name: str, args: list[str]) -> int:
    print(f"[bench] {name}: {_shown(args)}", flush=True)
    started = time.monotonic()
    if name == "scale":  # long: progress goes straight to the terminal
        proc = subprocess.run([sys.executable, *args], cwd=REPO, text=True)
        seconds = time.monotonic() - started
        print(f"[bench] {name}: {'FAILED after ' if proc.returncode else ''}{seconds:.0f} s")
        return proc.returncode
    proc = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - started
    print(proc.stdout, flush=True)
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
        print(f"[bench] {name}: FAILED after {seconds:.0f} s", flush=True)
        return proc.returncode
    RESULTS.mkdir(parents=True, exist_ok=True)
    if name not in OWN_RESULTS:  # the ingest bench writes its own table with --out
        (RESULTS / f"{name}.md").write_text(
            f"# Benchmark: {name}\n\n`python {_shown(args)}` ({time.strftime('%Y-%m-%d')}, "
            f"wall {seconds:.0f} s)\n\n```\n{proc.stdout.strip()}\n```\n",
            encoding="utf-8",
        )
    print(f"[bench] {name}: {seconds:.0f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="medium", choices=["small", "medium", "large"])
    parser.add_argument("--only", default="ingest,quality,clv,scale")
    parser.add_argument("--work", type=Path, default=REPO / ".bench")
    parser.add_argument("--scale-presets", default="small,medium,large")
    parser.add_argument("--peer-preset", default="medium")
    ns = parser.parse_args(argv)
    wanted = {w.strip() for w in ns.only.split(",") if w.strip()}
    failed = 0
    if "ingest" in wanted:
        landing = ns.work / ns.preset / "landing"
        if not (landing / "_truth").is_dir():
            from pipelines.generate import generate

            print(f"[bench] generating the {ns.preset} preset into {landing} (once)", flush=True)
            generate(preset=ns.preset, seed=7, out=landing)
        failed |= _run(
            "ingest",
            [
                "-m", "benchmarks.ingest",
                "--landing", str(landing),
                "--mappings", str(landing / "_mappings") if (landing / "_mappings").is_dir()
                else str(REPO / "pipelines" / "ingest" / "mappings" / "demo"),
                "--out", str(RESULTS / f"ingest_{ns.preset}.md"),
            ],
        )  # fmt: skip
    if "quality" in wanted:
        failed |= _run("quality", ["-m", "benchmarks.quality", "--dir", str(ns.work / "quality")])
    if "clv" in wanted:
        failed |= _run("clv", ["-m", "benchmarks.clv", "--customers", "2000000"])
    if "scale" in wanted:
        failed |= _run(
            "scale",
            [
                "-m", "benchmarks.scale",
                "--presets", ns.scale_presets,
                "--peer-preset", ns.peer_preset,
                "--work", str(ns.work),
            ],
        )  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
