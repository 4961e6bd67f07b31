"""The critical path of a `dbt build` invocation: the longest chain of nodes that had to run
one after the other, by the execution times dbt recorded.

    python -m benchmarks.critical_path TARGET_DIR [--threads 2]

TARGET_DIR is a dbt target folder holding the invocation's `run_results.json` and
`manifest.json` (Dagster's dbt steps leave one per step under dbt_project/target/).

In `dbt build` a node starts when its parents are built and the data tests of those parents
have passed: a model waits for the tests of the models it reads, not only for the models. A
test waits for every node it reads. So the chain is computed on that graph, with each node
weighing its execution time; a test reading several models (`relationships`) is waited for by
a node only when every model it reads is that node's ancestor (dbt runs such a test after
the last of them).

What it tells: no schedule on any number of threads finishes the invocation's nodes in less
than the chain with tests, nor, if every data test took no time, in less than the chain
of models and seeds alone; and no schedule on `threads` threads in less than the summed
execution time over `threads`. Those are lower bounds of the invocation's node time at the
speed of that run, given its models as they are.
"""

from __future__ import annotations

import argparse
import json
import sys
from functools import cache
from pathlib import Path

#: Resource types that run as nodes of `dbt build` (sources and exposures take no time).
RUN_TYPES = ("model", "seed", "snapshot", "test", "unit_test")


def _is_test(uid: str) -> bool:
    """A data test or a unit test (by the resource type that starts its unique_id)."""
    return uid.split(".")[0] in ("test", "unit_test")


def _graph(manifest: dict, timed: dict[str, float]) -> dict[str, set[str]]:
    """node -> the timed nodes it waits for (directly) in `dbt build`."""
    nodes = {**manifest.get("nodes", {}), **manifest.get("unit_tests", {})}
    parents: dict[str, set[str]] = {
        uid: {p for p in nodes[uid].get("depends_on", {}).get("nodes", []) if p in timed}
        for uid in timed
        if uid in nodes
    }

    @cache
    def ancestors(uid: str) -> frozenset[str]:
        found: set[str] = set()
        for parent in parents.get(uid, ()):
            found.add(parent)
            found |= ancestors(parent)
        return frozenset(found)

    tests = [uid for uid in parents if _is_test(uid)]
    waits = {uid: set(ps) for uid, ps in parents.items()}
    for uid, ps in parents.items():
        if _is_test(uid):
            continue
        mine = ancestors(uid)
        for test in tests:
            read = parents[test]
            if read and read & ps and read <= mine:
                waits[uid].add(test)
    return waits


def _longest(waits: dict[str, set[str]], weight: dict[str, float]) -> tuple[float, list[str]]:
    best: dict[str, tuple[float, str | None]] = {}

    def visit(uid: str) -> float:
        stack = [uid]
        while stack:
            node = stack[-1]
            if node in best:
                stack.pop()
                continue
            pending = [p for p in waits.get(node, ()) if p not in best]
            if pending:
                stack.extend(pending)
                continue
            before = max(((best[p][0], p) for p in waits.get(node, ())), default=(0.0, None))
            best[node] = (before[0] + weight.get(node, 0.0), before[1])
            stack.pop()
        return best[uid][0]

    end = max(waits, key=visit, default=None)
    if end is None:
        return 0.0, []
    path: list[str] = []
    node: str | None = end
    while node is not None:
        path.append(node)
        node = best[node][1]
    return best[end][0], path[::-1]


def critical_path(run_results: dict, manifest: dict, threads: int = 2) -> dict:
    """The chain with tests, the chain of models alone (tests weighing nothing), the summed
    execution time per resource type and the lower bound on `threads` threads."""
    timed = {
        item["unique_id"]: float(item.get("execution_time") or 0.0)
        for item in run_results.get("results", [])
        if item["unique_id"].split(".")[0] in RUN_TYPES
    }
    waits = _graph(manifest, timed)
    with_tests, path = _longest(waits, timed)
    no_tests = {uid: (0.0 if _is_test(uid) else sec) for uid, sec in timed.items()}
    models_only, models_path = _longest(waits, no_tests)
    by_type: dict[str, float] = {}
    for uid, sec in timed.items():
        by_type[uid.split(".")[0]] = by_type.get(uid.split(".")[0], 0.0) + sec
    models_sum = sum(sec for uid, sec in timed.items() if not _is_test(uid))
    return {
        "elapsed": round(float(run_results.get("elapsed_time") or 0.0), 2),
        "threads": threads,
        "execution_by_type": {k: round(v, 2) for k, v in sorted(by_type.items())},
        "chain_with_tests": round(with_tests, 2),
        "chain_with_tests_nodes": [{"node": uid, "seconds": round(timed[uid], 2)} for uid in path],
        "chain_of_models": round(models_only, 2),
        "chain_of_models_nodes": [
            {"node": uid, "seconds": round(timed[uid], 2)}
            for uid in models_path
            if not _is_test(uid)
        ],
        "lower_bound": round(max(with_tests, sum(timed.values()) / threads), 2),
        "lower_bound_without_tests": round(max(models_only, models_sum / threads), 2),
    }


def from_target(target: Path, threads: int = 2) -> dict:
    """critical_path() of the invocation whose files are in the dbt target folder `target`."""
    run_results = json.loads((target / "run_results.json").read_text(encoding="utf-8"))
    manifest = json.loads((target / "manifest.json").read_text(encoding="utf-8"))
    return critical_path(run_results, manifest, threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "target", type=Path, help="a dbt target folder (run_results.json, manifest.json)"
    )
    parser.add_argument("--threads", type=int, default=2)
    ns = parser.parse_args(argv)
    missing = [n for n in ("run_results.json", "manifest.json") if not (ns.target / n).is_file()]
    if missing:
        print(f"error: {ns.target} holds no {' and no '.join(missing)}", file=sys.stderr)
        return 2
    result = from_target(ns.target, ns.threads)
    print(
        f"elapsed {result['elapsed']} s; execution {result['execution_by_type']}\n"
        f"chain with tests {result['chain_with_tests']} s, of models alone {result['chain_of_models']} s; "
        f"lower bound on {ns.threads} threads {result['lower_bound']} s "
        f"({result['lower_bound_without_tests']} s if tests took no time)"
    )
    for title, key in (
        ("chain with tests", "chain_with_tests_nodes"),
        ("chain of models", "chain_of_models_nodes"),
    ):
        print(f"\n{title}:")
        total = 0.0
        for item in result[key]:
            total += item["seconds"]
            print(f"  {total:8.2f}  {item['seconds']:7.2f}  {item['node']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
