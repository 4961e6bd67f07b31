"""The dbt project on Apache Spark (dbt-spark, `method: session`, local PySpark) equals the
DuckDB build.

One run on the small preset (20,000 customers, 180 delivery days, fixed seed):
1. `crm backfill` with CRM_SPARK_EXPORT=1: the DuckDB pipeline, whose ingest and CLV assets
   also write their tables as Parquet for Spark;
2. `crm spark build --as-of END`: `dbt build --target spark` (seeds, every model, every
   data test) over those files;
3. every mart of the Spark build, read from its Parquet files, against the same mart in
   the DuckDB warehouse, row for row by the mart's key: same columns, same rows, values
   equal, doubles within 1e-9 relative (1e-9 absolute near zero: sums and quotients are
   computed in another order), everything else (text, integers, decimals, dates,
   timestamps, booleans, NULLs) exactly.

Cost: about 2 min for the DuckDB run and 4 to 5 min for the Spark build on 2 cores (JVM
start, then some 200 Spark jobs); its own xdist group, so it runs beside the e2e group.
Needs a Java runtime (17+), as PySpark does; `make test` installs one when missing
(tests/support/ensure_system_packages.sh).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import pytest
from support.e2e import MAPPINGS, REPO, SEED, crm_env

from pipelines.spark import RAW_TABLES, hmac_pads, java_home

END = date(2026, 10, 31)
MARTS = (
    "fct_kpi_monthly",
    "dim_customers",
    "rpt_kpi_review",
    "fct_orders",
    "fct_order_lines",
    "fct_service_tickets",
    "fct_agent_daily",
    "fct_campaign_performance",
    "fct_ticket_backlog_daily",
    "fct_social_interactions",
    "rpt_campaign_audiences",
    "fct_customer_cohorts",
    "dim_products",
    "fct_category_monthly",
    "fct_product_pairs",
    "fct_customer_segments_monthly",
    "fct_segment_transitions",
)
REL_TOL = 1e-9

pytestmark = [pytest.mark.slow, pytest.mark.spark, pytest.mark.xdist_group("spark")]


def _crm(home: Path, *args: str, timeout: int = 1800) -> subprocess.CompletedProcess:
    env = crm_env(home) | {"CRM_SPARK_EXPORT": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"crm {' '.join(args)} failed ({proc.returncode}):\n"
            f"{proc.stdout[-6000:]}\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def spark_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pipelines.generate import generate

    assert java_home(), "PySpark needs a Java runtime (17+): none on this machine"
    home = tmp_path_factory.mktemp("spark_home")
    result = generate("small", SEED, home / "landing")
    assert (result.end, (result.end - result.start).days + 1) == (END, 180)
    started = time.monotonic()
    _crm(home, "backfill", "--start", result.start.isoformat(), "--end", END.isoformat())
    duck_seconds = time.monotonic() - started
    started = time.monotonic()
    proc = _crm(home, "spark", "build", "--as-of", END.isoformat())
    print(
        f"DuckDB pipeline {duck_seconds:.0f} s, Spark build {time.monotonic() - started:.0f} s\n"
        + "\n".join(proc.stdout.splitlines()[-4:])
    )
    (home / "spark_build.log").write_text(proc.stdout)
    return home


def _duckdb_rows(home: Path, table: str) -> tuple[list[str], list[str], list[tuple]]:
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        rel = con.sql(f"select * from marts.{table}")
        return rel.columns, [str(t) for t in rel.types], rel.order(rel.columns[0]).fetchall()


def _spark_rows(home: Path, table: str) -> tuple[list[str], list[str], list[tuple]]:
    files = home / "restricted" / "spark" / "warehouse" / "marts.db" / table
    assert any(files.glob("*.parquet")), f"Spark wrote no Parquet file for marts.{table}"
    with duckdb.connect() as con:
        rel = con.sql(f"select * from read_parquet('{files}/*.parquet')")
        return rel.columns, [str(t) for t in rel.types], rel.order(rel.columns[0]).fetchall()


def _same(a: object, b: object) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) or isinstance(b, float):
        a, b = float(a), float(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL) or (
            math.isnan(a) and math.isnan(b)
        )
    return a == b


@pytest.mark.parametrize("table", MARTS)
def test_every_mart_built_on_spark_equals_the_duckdb_build(spark_home: Path, table: str) -> None:
    duck_columns, duck_types, duck_rows = _duckdb_rows(spark_home, table)
    spark_columns, spark_types, spark_rows = _spark_rows(spark_home, table)
    assert spark_columns == duck_columns
    # the types too (contracts are enforced on DuckDB only): DECIMAL(18,2), INTEGER, ...
    assert spark_types == duck_types
    assert len(duck_rows) > 0, f"marts.{table} is empty: nothing was compared"
    duck_keys = [row[0] for row in duck_rows]
    spark_keys = [row[0] for row in spark_rows]
    assert len(set(duck_keys)) == len(duck_keys), f"{duck_columns[0]} is not a key"
    assert set(spark_keys) == set(duck_keys), (
        f"rows only in DuckDB: {sorted(set(duck_keys) - set(spark_keys))[:5]}, "
        f"only in Spark: {sorted(set(spark_keys) - set(duck_keys))[:5]}"
    )
    differences = [
        (duck_row[0], column, duck_value, spark_value)
        for duck_row, spark_row in zip(duck_rows, spark_rows, strict=True)
        for column, duck_value, spark_value in zip(duck_columns, duck_row, spark_row, strict=True)
        if not _same(duck_value, spark_value)
    ]
    assert not differences, (
        f"marts.{table}: {len(differences)} value(s) differ (key, column, DuckDB, Spark), "
        f"e.g. {differences[:8]}"
    )


def test_the_spark_build_ran_every_model_and_data_test(spark_home: Path) -> None:
    log = (spark_home / "spark_build.log").read_text()
    done = [line for line in log.splitlines() if "Done. PASS=" in line]
    assert done, log[-3000:]
    counts = dict(part.split("=") for part in done[-1].split("Done. ")[1].split())
    assert int(counts["ERROR"]) == 0 and int(counts["SKIP"]) == 0
    # 6 seeds + 34 models + the data tests (>150)
    assert int(counts["PASS"]) > 190, done[-1]


def test_ingestion_wrote_every_raw_table_as_parquet_for_spark(spark_home: Path) -> None:
    """Rows in the Parquet files = rows in the restricted store, per table and delivery."""
    sources = spark_home / "restricted" / "spark" / "sources"
    with duckdb.connect(
        str(spark_home / "restricted" / "restricted.duckdb"), read_only=True
    ) as con:
        for table in RAW_TABLES:
            store = con.execute(
                f"select _delivery_date, count(*) from raw.{table} group by all order by 1"
            ).fetchall()
            files = con.execute(
                f"select _delivery_date, count(*) from read_parquet('{sources}/raw/{table}/*.parquet') "
                "group by all order by 1"
            ).fetchall()
            assert files == store, table
            assert len(store) == 180 or table == "customers", (table, len(store))
        scores = con.execute(
            f"select count(*) from read_parquet('{sources}/clv/customer_scores/*.parquet')"
        ).fetchone()[0]
    assert scores > 1000


def test_the_pseudonymisation_key_is_in_no_file_of_the_spark_build(spark_home: Path) -> None:
    """The Spark macro reads the HMAC pads from the driver's environment (dbt secrets):
    neither they nor the key appear in any file of the Spark area (dbt's compiled SQL, run
    results and logs, Spark's metastore and its logs, the tables) nor in the build's
    console output."""
    import os

    key = os.environ["CRM_PSEUDONYM_KEY"].encode()
    secrets = [s.encode() for s in (key.decode(), *hmac_pads(key))]
    spark_area = spark_home / "restricted" / "spark"
    files = [p for p in spark_area.rglob("*") if p.is_file()] + [spark_home / "spark_build.log"]
    for path in files:
        data = path.read_bytes()
        assert not any(s in data or s.upper() in data for s in secrets), path
    assert len(files) > 100
    compiled = next((spark_area / "dbt_target").rglob("int_identity_components_resolved.sql"))
    assert "${env:DBT_ENV_SECRET_CRM_PSEUDONYM_IPAD}" in compiled.read_text()


def _store_and_files(home: Path) -> tuple[dict, dict]:
    """Rows per (table, delivery) in the restricted store and in the Parquet copies."""
    sources = home / "restricted" / "spark" / "sources" / "raw"
    store, files = {}, {}
    with duckdb.connect(str(home / "restricted" / "restricted.duckdb"), read_only=True) as con:
        for table in RAW_TABLES:
            for day, n in con.execute(
                f"select _delivery_date, count(*) from raw.{table} group by all"
            ).fetchall():
                store[(table, day)] = n
            for day, n in con.execute(
                f"select _delivery_date, count(*) from read_parquet('{sources}/{table}/*.parquet') "
                "group by all"
            ).fetchall():
                files[(table, day)] = n
    return store, files


def test_crm_spark_export_rewrites_the_copies_and_drops_stale_files(spark_home: Path) -> None:
    folder = spark_home / "restricted" / "spark" / "sources" / "raw" / "orders"
    last = folder / f"{END.isoformat()}.parquet"
    first = sorted(folder.glob("*.parquet"))[0]
    stale = folder / "2001-01-01.parquet"
    stale.write_bytes(last.read_bytes())  # a delivery the store no longer has
    before = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
    _crm(spark_home, "spark", "export", "--delivery", END.isoformat())
    after = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.parquet")}
    assert after[last.name] != before[last.name] and after[first.name] == before[first.name]
    assert stale.exists()  # a one-delivery export touches only that delivery
    proc = _crm(spark_home, "spark", "export")
    assert not stale.exists()
    assert "raw.orders:" in proc.stdout and "clv.customer_scores:" in proc.stdout
    store, files = _store_and_files(spark_home)
    assert files == store and len(store) > 500
    assert not list(folder.parent.rglob(".*.partial"))


def test_an_erasure_reaches_the_spark_copies(spark_home: Path, tmp_path: Path) -> None:
    """After `crm forget` (on a copy of the stores), the Parquet copies hold exactly the
    rows left in the restricted store (the person's rows are gone from every delivery's
    file) and the tables Spark built from the old copies are dropped."""
    import shutil

    home = tmp_path / "home"
    for folder in ("restricted", "warehouse"):
        shutil.copytree(spark_home / folder, home / folder, symlinks=True)
    with duckdb.connect(str(home / "restricted" / "restricted.duckdb"), read_only=True) as con:
        phone = con.execute(
            "select buyer_phone from raw.orders where regexp_full_match(buyer_phone, '1[3-9][0-9]{9}') "
            "group by all having count(distinct _delivery_date) >= 3 order by 1 limit 1"
        ).fetchone()[0]
    store_before, files_before = _store_and_files(home)
    assert files_before == store_before
    proc = _crm(home, "forget", "--phone", phone, "--request-id", "spark-test-1")
    assert "Spark copies rewritten" in proc.stdout, proc.stdout
    store, files = _store_and_files(home)
    assert sum(store.values()) < sum(store_before.values())
    assert files == store
    assert not (home / "restricted" / "spark" / "warehouse").exists()


@pytest.mark.parametrize("key", [b"k" * 16, b"0123456789abcdef" * 4, b"x" * 100])
def test_hmac_pads_give_the_pseudonym_of_the_duckdb_udf(key: bytes) -> None:
    """What the Spark macro computes, H(opad || H(ipad || m)), with the pads of hmac_pads,
    equals HMAC-SHA256 (keys shorter than, equal to and longer than the block)."""
    ipad, opad = hmac_pads(key)
    for message in (b"account:crm:M0001", "张三".encode(), b""):
        inner = hashlib.sha256(bytes.fromhex(ipad) + message).digest()
        outer = hashlib.sha256(bytes.fromhex(opad) + inner).hexdigest()
        assert outer == hmac.new(key, message, hashlib.sha256).hexdigest()


def test_spark_build_without_exported_sources_says_what_to_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "spark", "build", "--as-of", "2026-10-31"],
        env=crm_env(tmp_path) | {"CRM_MAPPINGS_DIR": str(MAPPINGS)},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "crm spark export" in proc.stderr and "Traceback" not in proc.stderr


def test_great_expectations_imports_in_a_python_c_process() -> None:
    """pytest-xdist's workers run `python -c`: there, without pyspark's connect extras, GX's
    import of pyspark.sql.connect called sys.exit(0) and every quality test failed."""
    proc = subprocess.run(
        [sys.executable, "-c", "import pipelines.quality, great_expectations; print('imported')"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0 and "imported" in proc.stdout, proc.stderr[-2000:]
    assert "FutureWarning" not in proc.stderr
