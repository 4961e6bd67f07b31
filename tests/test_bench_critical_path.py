"""The critical path of a dbt invocation (benchmarks/critical_path.py), on a
small graph whose chains are worked out by hand below."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.critical_path import critical_path, main

# seed s (1 s) -> model a (2 s) -> model b (3 s) -> model d (0.5 s)
#          s   -> model c (1 s) -------------------> model d
# tests: ta on a (5 s), tb on b (1 s), r = relationships a -> c (0.5 s)
TIMES = {
    "seed.p.s": 1.0,
    "model.p.a": 2.0,
    "model.p.b": 3.0,
    "model.p.c": 1.0,
    "model.p.d": 0.5,
    "test.p.ta": 5.0,
    "test.p.tb": 1.0,
    "test.p.r": 0.5,
}
READS = {
    "seed.p.s": [],
    "model.p.a": ["seed.p.s"],
    "model.p.b": ["model.p.a"],
    "model.p.c": ["seed.p.s", "source.p.raw.x"],
    "model.p.d": ["model.p.b", "model.p.c"],
    "test.p.ta": ["model.p.a"],
    "test.p.tb": ["model.p.b"],
    "test.p.r": ["model.p.a", "model.p.c"],
}


def _files() -> tuple[dict, dict]:
    run_results = {
        "elapsed_time": 14.0,
        "results": [{"unique_id": uid, "execution_time": sec} for uid, sec in TIMES.items()],
    }
    manifest = {"nodes": {uid: {"depends_on": {"nodes": reads}} for uid, reads in READS.items()}}
    return run_results, manifest


def test_chains_and_bounds_match_the_hand_computed_ones() -> None:
    result = critical_path(*_files(), threads=2)
    # b waits for a's test ta (it reads a): s 1 + a 2 + ta 5 + b 3 + tb 1 + d 0.5 = 12.5.
    # d also waits for r (it reads c, and a is its ancestor), which ends at 3 + 0.5 = 3.5.
    assert result["chain_with_tests"] == pytest.approx(12.5)
    assert [n["node"] for n in result["chain_with_tests_nodes"]] == [
        "seed.p.s",
        "model.p.a",
        "test.p.ta",
        "model.p.b",
        "test.p.tb",
        "model.p.d",
    ]
    # Without tests: s 1 + a 2 + b 3 + d 0.5 = 6.5 (the branch through c: 1 + 1 + 0.5).
    assert result["chain_of_models"] == pytest.approx(6.5)
    assert [n["node"] for n in result["chain_of_models_nodes"]] == [
        "seed.p.s",
        "model.p.a",
        "model.p.b",
        "model.p.d",
    ]
    # Summed: 14 s of nodes, 7.5 s of models and the seed; on 2 threads 7 and 3.75.
    assert result["execution_by_type"] == {"model": 6.5, "seed": 1.0, "test": 6.5}
    assert result["lower_bound"] == pytest.approx(12.5)
    assert result["lower_bound_without_tests"] == pytest.approx(6.5)
    # One thread: the sums bound it (14 and 7.5 s), not the chains.
    one = critical_path(*_files(), threads=1)
    assert one["lower_bound"] == pytest.approx(14.0)
    assert one["lower_bound_without_tests"] == pytest.approx(7.5)


def test_a_model_does_not_wait_for_a_test_reading_a_model_outside_its_ancestors() -> None:
    run_results, manifest = _files()
    # r reads a and c; b reads only a, and c is not b's ancestor: b must not wait for r.
    # Make r long enough to be the chain if it were (mis)placed before b.
    run_results["results"] = [
        {**item, "execution_time": 50.0} if item["unique_id"] == "test.p.r" else item
        for item in run_results["results"]
    ]
    result = critical_path(run_results, manifest)
    # r ends at max(a 3, c 2) + 50 = 53, then d (which does wait for it) 53.5.
    assert result["chain_with_tests"] == pytest.approx(53.5)
    assert [n["node"] for n in result["chain_with_tests_nodes"]][-2:] == ["test.p.r", "model.p.d"]
    nodes = [n["node"] for n in result["chain_with_tests_nodes"]]
    assert "model.p.b" not in nodes


def test_the_command_reads_a_target_folder_and_names_what_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path)]) == 2
    assert "holds no run_results.json and no manifest.json" in capsys.readouterr().err
    run_results, manifest = _files()
    (tmp_path / "run_results.json").write_text(json.dumps(run_results), encoding="utf-8")
    (tmp_path / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert main([str(tmp_path), "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "chain with tests 12.5 s, of models alone 6.5 s" in out
    assert "   12.50     0.50  model.p.d" in out
