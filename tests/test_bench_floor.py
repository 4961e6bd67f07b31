"""The benchmark's floor (benchmarks/floor.sql) and pandas peer
(benchmarks/peer.py) compute the warehouse's outputs: identity components,
customer state with RFM, and the customer / order KPIs of fct_kpi_monthly (segment all).

On the session warehouse of tests/conftest.py (`crm_home`, one backfill of a small
60-day dataset) both must agree with the marts row for row, within 1e-9; so the ratios of
the scaling benchmark (docs/benchmarks.md) compare programs that compute the same thing."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
from support.e2e import END

from benchmarks.floor import (
    KPIS,
    SCRIPT,
    customer_agreement,
    identity_agreement,
    kpi_agreement,
    kpi_differences,
    prepare_db,
    run_floor,
    statements,
)
from benchmarks.peer import e164, email, run_peer
from benchmarks.sources import attach_warehouse, relation_exists


@pytest.fixture(scope="module")
def con(
    crm_home: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[duckdb.DuckDBPyConnection]:
    """A copy of the raw tables with the floor's and the peer's outputs, the warehouse
    attached read-only as `warehouse`."""
    db = tmp_path_factory.mktemp("bench_floor") / "bench.duckdb"
    prepare_db(crm_home, db)
    connection = duckdb.connect(str(db))
    run_floor(connection, END)
    outputs, _ = run_peer(connection, END)
    connection.execute("create schema peer")
    for name, frame in outputs.items():
        connection.register(f"peer_{name}", frame)
        connection.execute(f"create table peer.{name} as select * from peer_{name}")
        connection.unregister(f"peer_{name}")
    attach_warehouse(connection, crm_home)
    yield connection
    connection.close()


def _assert_kpis_agree(con: duckdb.DuckDBPyConnection, left: str, right: str) -> None:
    result = kpi_agreement(con, left, right)
    assert result["rows"] >= len(KPIS) * 2, result
    assert result["agree"] == result["rows"], (result, kpi_differences(con, left, right))


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
@pytest.mark.parametrize("implementation", ["floor", "peer"])
def test_kpis_agree_with_fct_kpi_monthly(
    con: duckdb.DuckDBPyConnection, implementation: str
) -> None:
    _assert_kpis_agree(con, f"{implementation}.kpi_monthly", "warehouse.marts.fct_kpi_monthly")


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
@pytest.mark.parametrize("implementation", ["floor", "peer"])
def test_customer_state_and_rfm_agree_with_dim_customers(
    con: duckdb.DuckDBPyConnection, implementation: str
) -> None:
    result = customer_agreement(con, f"{implementation}.customers", "warehouse.marts.dim_customers")
    assert result["left"] == result["right"] == result["agree"] > 0, result


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_floor_and_peer_agree_with_each_other(con: duckdb.DuckDBPyConnection) -> None:
    _assert_kpis_agree(con, "peer.kpi_monthly", "floor.kpi_monthly")
    customers = customer_agreement(con, "peer.customers", "floor.customers")
    assert customers["left"] == customers["right"] == customers["agree"] > 0, customers
    identity = identity_agreement(con, "peer.customer_records", "floor.customer_records")
    assert identity["left"] == identity["right"] == identity["agree"] > 0, identity
    # same customers under the same ids (md5 of the component's smallest record id)
    ids = con.execute(
        "select count(*) from floor.customers f join peer.customers p using (customer_id)"
    ).fetchone()
    assert ids is not None and ids[0] == customers["left"]


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_identity_components_agree_with_the_warehouse(con: duckdb.DuckDBPyConnection) -> None:
    for catalog, schema in (("warehouse", "intermediate"), ("restricted", "identity")):
        if relation_exists(con, catalog, schema, "int_identity_components_resolved"):
            relation = f"{catalog}.{schema}.int_identity_components_resolved"
            break
    else:
        pytest.skip("the warehouse keeps no int_identity_components_resolved")
    result = identity_agreement(con, "floor.customer_records", relation)
    assert result["left"] == result["right"] == result["agree"] > 0, result


PHONES = [
    "138 0013 8000", "+86-138-0013-8000", "8613800138000", "0086 138 0013 8000",
    "(+86) 13800138000", "010-12345678", "021/6888 8888", "0755-8888-8888", "+1 415 555 0123",
    "+44 20 7946 0958", "00 44 20 7946 0958", "12345", "+86 12345", "+0 123456789", "abc",
    "", "   ", "138-0013-800", "+86 10 1234 5678", "861380013800", "  13800138000  ",
    "\t13800138000", "１３８００１３８０００", "\u300013800138000", "138\u00a00013\u00a08000",
]  # fmt: skip
EMAILS = [
    " A.B@Example.COM ", "bad@", "x@y.z", "x@y.zz", "x y@z.com", "first.last+tag@sub.example.cn",
    "", "\tq@w.er", "\u3000q@w.er", "no-at-sign.com", "a@b@c.de",
]  # fmt: skip


def test_floor_and_peer_normalise_phones_and_emails_alike() -> None:
    """The SQL macros of floor.sql (copies of the dbt macros) and the peer's functions."""
    with duckdb.connect() as con:
        con.execute("set variable tz = 'Asia/Shanghai'")
        for statement in statements(SCRIPT.read_text(encoding="utf-8")):
            if statement.startswith("create or replace temp macro"):
                con.execute(statement)
        sql_phones = [
            con.execute("select norm_phone(?)", [v]).fetchone()[0]  # type: ignore[index]
            for v in PHONES
        ]
        sql_emails = [
            con.execute("select norm_email(?)", [v]).fetchone()[0]  # type: ignore[index]
            for v in EMAILS
        ]
    assert sql_phones == [e164(v) for v in PHONES]
    assert sql_emails == [email(v) for v in EMAILS]
    assert e164("138 0013 8000") == "+8613800138000"
    assert e164("010-12345678") == "+861012345678"


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_the_benchmark_finds_each_dbt_invocation_of_a_run(crm_home: Path, tmp_path: Path) -> None:
    """The scaling benchmark's dbt profile (docs/benchmarks.md) reads the run_results.json
    of each dbt invocation of a Dagster run: both builds of the backfill's nightly run, with
    their models and data tests, their critical paths, the slowest nodes first."""
    import json

    from benchmarks.scale import dbt_profile, run_ids
    from pipelines.lib.settings import DBT_PROJECT_DIR

    # A Dagster instance may write to its folder: read a copy (`crm_home` is shared).
    shutil.copytree(crm_home / "dagster", tmp_path / "dagster", symlinks=True)
    ids = run_ids(tmp_path / "dagster")
    profile = dbt_profile(ids, top=5)
    assets = {name.split("-")[0] for name in profile["invocations"]}
    assert assets == {"dbt_customer_marts", "dbt_warehouse"}, profile["invocations"]
    for name, invocation in profile["invocations"].items():
        results = json.loads((DBT_PROJECT_DIR / "target" / name / "run_results.json").read_text())
        models = [r for r in results["results"] if r["unique_id"].startswith("model.")]
        assert invocation["execution_by_type"]["model"] == pytest.approx(
            sum(r["execution_time"] for r in models), abs=0.01
        )
        assert "unit_test" not in invocation["execution_by_type"]  # left to `make test`
        # The critical path: chains of nodes that dbt ran one after the other, so no longer
        # than the invocation (dbt's 2 threads: nor is the summed time over 2).
        chain = invocation["critical_path"]
        assert 0 < chain["chain_of_models"] <= chain["chain_with_tests"]
        assert (
            chain["lower_bound_without_tests"]
            <= chain["lower_bound"]
            <= invocation["elapsed"] + 0.05
        )
        assert chain["chain_with_tests"] == pytest.approx(
            sum(node["seconds"] for node in chain["chain_with_tests_nodes"]), abs=0.05
        )
    seconds = [item["seconds"] for item in profile["slowest"]]
    assert len(seconds) == 5 and seconds == sorted(seconds, reverse=True)


def _result(
    preset: str, full_seconds: float, night_seconds: float, big_night: float | None = None
) -> dict:
    """A scaling result as benchmarks/scale.py writes it, with the fields the page
    reads (the figures are made up: only their place on the page is checked)."""
    stages = {"ingest": 1.0, "dbt": 20.0, "CLV": 0.5, "gates": 9.0, "publish": 1.5}
    phase = {
        "peak_rss": 1024**3,
        "load_average": 1.5,
        "peak_at_seconds": 10.0,
        "peak_processes": [{"pid": 1, "process": "pipelines.cli run", "rss": 512 * 1024**2}],
        "stages": stages,
        "runs": 1,
    }
    agreement = {
        "kpis_vs_warehouse": {"rows": 3, "in_both": 3, "agree": 3, "only_left": 0, "only_right": 0},
        "customers_vs_warehouse": {"left": 5, "right": 5, "agree": 5},
        "identity_vs_warehouse": {"left": 7, "right": 7, "agree": 7},
    }
    return {
        "machine": {
            "cpu": "CPU", "cores": 2, "cores_usable": 2, "ram_gib": 8.0, "os": "Linux",
            "python": "3.11", "duckdb": "x", "pandas": "x", "dagster": "x", "dbt-core": "x",
            "dbt-duckdb": "x", "commit": "unknown (not a git checkout)",
        },
        "date": "2026-01-01",
        "deliveries": {"first": "2025-12-01", "last": "2025-12-31", "count": 31},
        "landing_mb": 1.0,
        "raw_rows": {"orders": 100},
        "phases": {
            "full": {**phase, "seconds": full_seconds},
            **({"big_night": {**phase, "seconds": big_night}} if big_night else {}),
            "night": {**phase, "seconds": night_seconds},
        },
        "floor": {
            "script_seconds": 1.0, "peak_rss": 1024**2, "load_average": 1.0,
            "steps": {"orders": 0.5}, "copy_seconds": 0.1, "agreement": agreement,
        },
        "command": f"python -m benchmarks.scale --presets {preset}",
    }  # fmt: skip


def test_the_benchmark_page_renders_every_result_in_its_folder(tmp_path: Path) -> None:
    """The page (.bench/results/scale.md) shows the full build and the night of every
    preset whose JSON is in the results folder, and lists the other benchmarks' files that
    are there."""
    import json

    from benchmarks.report import load, render

    figures = {"small": (73.4, 42.9, 51.0), "large": (1302.0, 321.4, None)}
    for preset, (full, night, big) in figures.items():
        (tmp_path / f"scale_{preset}.json").write_text(
            json.dumps(_result(preset, full, night, big)), encoding="utf-8"
        )
    (tmp_path / "clv.md").write_text("# Benchmark: clv\n", encoding="utf-8")
    assert set(load(tmp_path)) == {"small", "large"}
    page = render(tmp_path)
    assert "| small | full build | 73.4 |" in page
    assert "| small | one night | 42.9 |" in page
    assert "| large | full build | 1,302 |" in page  # 100 s and over: no decimals
    assert "| large | one night | 321 |" in page
    assert "| medium | pending: not run yet" in page
    assert "| small | a night of 5 deliveries | 51.0 |" in page
    assert "| large | a night of 5 deliveries |" not in page  # an older result: no big night
    # night 42.9 of full 73.4 = 58 %; 5 deliveries 51.0 / 42.9 = 1.19; full 73.4 / floor
    # 1.0 = 73; proxy: the full build's dbt 20 + gates 9 + publish 1.5 = 30.5 s; night
    # 42.9 / 30.5 = 1.41
    assert "| small | 42.9 | 58% | 51.0 | 1.19 | 73 | 30.5 | 1.41 |" in page
    assert "| large | 321 | 25% | not run | - |" in page
    assert (
        "| clv | the nightly BG/NBD + Gamma-Gamma fit on 2M synthetic customers | [clv.md](clv.md) |"
        in page
    )
    assert "ingest_medium.md" not in page  # not in the folder: not listed


def test_benchmark_results_are_written_outside_the_committed_tree() -> None:
    """Every benchmark writes under .bench/results/, which git ignores."""
    import subprocess

    from benchmarks.__main__ import RESULTS
    from benchmarks.scale import REPO, RESULTS_DIR, SUMMARY

    assert RESULTS == RESULTS_DIR and SUMMARY.parent == RESULTS_DIR
    assert RESULTS_DIR.relative_to(REPO).parts[0] == ".bench"
    probe = RESULTS_DIR / "scale_small.json"
    ignored = subprocess.run(
        ["git", "check-ignore", "--no-index", "-q", str(probe)], cwd=REPO, check=False
    )
    assert ignored.returncode == 0, f"{probe} is not git-ignored"
