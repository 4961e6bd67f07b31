"""Readers never see an error or a half-published state while publish() swaps files."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import duckdb
from support.fixture_marts import build_fixture_warehouse
from support.readers import observe, reader_loop

from pipelines.publish.serving import publish

SIZES = (40, 80, 120, 160)
PUBLICATIONS = 12


def test_readers_see_only_complete_publications_while_publishing(tmp_path: Path):
    warehouses = [
        build_fixture_warehouse(tmp_path / f"wh{n}.duckdb", n_customers=n, seed=n) for n in SIZES
    ]
    serving_dir = tmp_path / "serving"
    first = publish(warehouses[0].path, serving_dir, formats=("duckdb",))
    published = {first.publication_id: first.row_counts["dim_customers"]}

    ctx = multiprocessing.get_context("spawn")
    stop, results = ctx.Event(), ctx.Queue()
    readers = []
    for mode in ("connect", "open_serving"):
        ready = ctx.Event()
        proc = ctx.Process(
            target=reader_loop, args=(str(first.serving_db), mode, ready, stop, results)
        )
        proc.start()
        readers.append((proc, ready))
    try:
        for _, ready in readers:
            assert ready.wait(60), "a reader process did not start reading"
        for i in range(PUBLICATIONS):
            warehouse = warehouses[(i + 1) % len(warehouses)]
            formats = ("duckdb", "parquet") if i % 4 else ("duckdb", "parquet", "hyper")
            result = publish(warehouse.path, serving_dir, formats=formats)
            published[result.publication_id] = result.row_counts["dim_customers"]
    finally:
        stop.set()
        summaries = [results.get(timeout=60) for _ in readers]
        for proc, _ in readers:
            proc.join(30)

    for summary in summaries:
        print(  # shown with pytest -s: how much the readers did
            f"{summary['mode']}: {summary['loops']} opens, "
            f"{len(summary['observations'])} publications seen, {summary['error_count']} errors"
        )
        assert summary["error_count"] == 0, summary["errors"]
        assert summary["problems"] == []
        # every publication a reader saw is one that publish() completed, with its counts
        for publication_id, customers in summary["customers"].items():
            assert published.get(publication_id) == customers
        assert summary["loops"] > PUBLICATIONS
        assert len(summary["observations"]) >= 2, summary  # the readers saw swaps happen
    # the final state is the last publication
    con = duckdb.connect(str(serving_dir / "serving.duckdb"), read_only=True)
    try:
        publication_id, customers, problems = observe(con)
    finally:
        con.close()
    assert problems == [] and published[publication_id] == customers == SIZES[PUBLICATIONS % 4]
