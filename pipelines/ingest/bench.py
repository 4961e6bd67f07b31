"""Loader throughput against the floor of plain DuckDB readers on the same files.

    python -m pipelines.ingest.bench --landing DIR --mappings DIR [--out bench.md]

Loads every partition of every mapping through the engine into a scratch DuckDB file, then
loads the same files with plain ``read_csv``/``read_json``/``read_parquet`` (auto-detected
types, no lineage, no quarantine) into tables: the floor. Prints rows/s, MB/s, the ratio
engine/floor and peak RSS, and writes a markdown table when --out is given.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

from pipelines.ingest.engine import discover_partitions, load_partition, partition_files
from pipelines.ingest.mapping import SourceMapping, load_mappings


@dataclass
class Row:
    source: str
    files: int
    bytes: int
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    engine_s: float
    floor_rows: int
    floor_s: float

    @property
    def ratio(self) -> float:
        return self.floor_s / self.engine_s if self.engine_s else 0.0


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _floor_sql(mapping: SourceMapping, path: Path) -> str:
    p = "'" + str(path).replace("'", "''") + "'"
    fmt = mapping.format
    if fmt.type == "parquet":
        return f"SELECT * FROM read_parquet({p})"
    if fmt.type == "jsonl":
        return f"SELECT * FROM read_json({p}, format='newline_delimited', ignore_errors=true)"
    if fmt.whitespace:
        return (
            f"SELECT * FROM read_csv({p}, delim=' ', ignore_errors=true, "
            f"header={str(fmt.header).lower()})"
        )
    # encoding: the floor reads the UTF-8 bytes only; GB18030 files are skipped
    return (
        f"SELECT * FROM read_csv({p}, delim={_q(fmt.delimiter)}, quote={_q(fmt.quote)}, "
        f"escape={_q(fmt.escape)}, header={str(fmt.header).lower()}, ignore_errors=true, "
        f"null_padding=true)"
    )


def _q(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def run(landing: Path, mappings_dir: Path, threads: int | None = None) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="crm_bench_") as tmp:
        engine_db = duckdb.connect(str(Path(tmp) / "engine.duckdb"))
        floor_db = duckdb.connect(str(Path(tmp) / "floor.duckdb"))
        if threads:
            for c in (engine_db, floor_db):
                c.execute(f"SET threads = {int(threads)}")
        for mapping in load_mappings(mappings_dir):
            days = discover_partitions(landing, mapping)
            if not days:
                continue
            row = Row(mapping.name, 0, 0, 0, 0, 0, 0.0, 0, 0.0)
            for i, day in enumerate(days, start=1):
                t0 = time.perf_counter()
                result = load_partition(engine_db, mapping, landing, day)
                row.engine_s += time.perf_counter() - t0
                for f in result.files:
                    row.files += 1
                    row.bytes += f.bytes
                    row.rows_read += f.rows_read
                    row.rows_loaded += f.rows_loaded
                    row.rows_quarantined += f.rows_quarantined
                    assert f.rows_read == f.rows_loaded + f.rows_quarantined, f
                if i % 20 == 0 or i == len(days):
                    print(f"  {mapping.name}: {i}/{len(days)} partitions", file=sys.stderr)
            for n, day in enumerate(days):
                for k, path in enumerate(partition_files(landing, mapping, day)):
                    if mapping.format.encoding != "utf-8" and mapping.format.type != "parquet":
                        continue
                    table = f"floor_{mapping.name}_{n}_{k}"
                    t0 = time.perf_counter()
                    try:
                        floor_db.execute(f"CREATE TABLE {table} AS {_floor_sql(mapping, path)}")
                    except duckdb.Error as exc:
                        print(f"  floor could not read {path}: {exc}", file=sys.stderr)
                        continue
                    row.floor_s += time.perf_counter() - t0
                    row.floor_rows += floor_db.execute(f"SELECT count(*) FROM {table}").fetchall()[
                        0
                    ][0]
            rows.append(row)
        engine_db.close()
        floor_db.close()
    return rows


def to_markdown(rows: list[Row]) -> str:
    head = (
        "| source | files | MB | rows read | loaded | quarantined | engine s | engine rows/s "
        "| engine MB/s | floor s | floor rows/s | engine/floor |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    lines = []
    tot = Row("**total**", 0, 0, 0, 0, 0, 0.0, 0, 0.0)
    for r in [*rows, None]:
        if r is None:
            r = tot
        else:
            for attr in ("files", "bytes", "rows_read", "rows_loaded", "rows_quarantined",
                         "engine_s", "floor_rows", "floor_s"):  # fmt: skip
                setattr(tot, attr, getattr(tot, attr) + getattr(r, attr))
        mb = r.bytes / 1e6
        lines.append(
            f"| {r.source} | {r.files} | {mb:.1f} | {r.rows_read:,} | {r.rows_loaded:,} | "
            f"{r.rows_quarantined:,} | {r.engine_s:.2f} | "
            f"{r.rows_read / r.engine_s if r.engine_s else 0:,.0f} | "
            f"{mb / r.engine_s if r.engine_s else 0:.1f} | {r.floor_s:.2f} | "
            f"{r.floor_rows / r.floor_s if r.floor_s else 0:,.0f} | {r.ratio:.2f} |"
        )
    return head + "\n".join(lines) + f"\n\npeak RSS: {_peak_rss_mb():.0f} MB\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--landing", type=Path, required=True)
    parser.add_argument("--mappings", type=Path, required=True)
    parser.add_argument("--out", type=Path, help="write the markdown table here")
    parser.add_argument("--threads", type=int, help="DuckDB threads (default: all cores)")
    args = parser.parse_args(argv)
    rows = run(args.landing, args.mappings, args.threads)
    text = to_markdown(rows)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
