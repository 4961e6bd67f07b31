"""End to end: the KPI definitions, the managers' SMART targets and the SLA targets are
published with the marts, in every format, from a real dbt build of generated data (the
backfill of fixture `crm_home`, tests/conftest.py); a bad targets file stops the night
before anything runs, with its errors in the output."""

from __future__ import annotations

import csv
import hashlib
import shutil
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from support.e2e import END, crm

from pipelines.lib.settings import DBT_PROJECT_DIR, DEMO_TARGETS_FILE
from pipelines.publish import tableau

# Readers of the shared `crm_home` in group "e2e"; a test that runs the pipeline in a group of
# its own (tests/conftest.py, GROUP_ORDER).
pytestmark = pytest.mark.slow

SEEDS = DBT_PROJECT_DIR / "seeds"


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _published(crm_home: Path, table: str) -> dict[str, list[dict]]:
    """`table` as serving.duckdb, the release's Parquet file and its Hyper extract hold it."""
    serving = crm_home / "serving"
    with duckdb.connect(str(serving / "serving.duckdb"), read_only=True) as con:
        cursor = con.execute(f"select * from main.{table}")
        names = [d[0] for d in cursor.description]
        in_db = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    in_parquet = pq.read_table(serving / "parquet" / f"{table}.parquet").to_pylist()
    in_hyper = tableau.read_hyper(serving / "tableau" / f"{table}.hyper").to_dict("records")
    return {"duckdb": in_db, "parquet": in_parquet, "hyper": in_hyper}


@pytest.mark.xdist_group("e2e")
def test_kpi_definitions_are_published_with_every_kpi_in_both_languages(crm_home: Path) -> None:
    seed = {row["kpi"]: row for row in _csv(SEEDS / "kpi_definitions.csv")}
    for fmt, rows in _published(crm_home, "kpi_definitions").items():
        by_kpi = {row["kpi"]: row for row in rows}
        assert sorted(by_kpi) == sorted(seed), fmt
        for kpi, row in by_kpi.items():
            assert str(row["description_en"]).strip(), (fmt, kpi)
            assert str(row["description_zh"]).strip(), (fmt, kpi)
            assert row["description_zh"] == seed[kpi]["description_zh"], (fmt, kpi)
            assert int(row["maturity_days"]) == int(seed[kpi]["maturity_days"]), (fmt, kpi)


@pytest.mark.xdist_group("e2e")
def test_the_managers_targets_are_published_as_validated(crm_home: Path) -> None:
    demo = {row["target_id"]: row for row in _csv(DEMO_TARGETS_FILE)}
    for fmt, rows in _published(crm_home, "kpi_targets").items():
        by_id = {row["target_id"]: row for row in rows}
        assert sorted(by_id) == sorted(demo), fmt
        for target_id, row in by_id.items():
            expected = demo[target_id]
            for column in ("kpi", "segment", "target_value", "direction", "description_zh"):
                assert row[column] == expected[column], (fmt, target_id, column)
            assert str(row["due_date"])[:10] == expected["due_date"], (fmt, target_id)


@pytest.mark.xdist_group("e2e")
def test_sla_targets_are_published(crm_home: Path) -> None:
    seed = {row["priority"]: row for row in _csv(SEEDS / "sla_targets.csv")}
    for fmt, rows in _published(crm_home, "sla_targets").items():
        by_priority = {row["priority"]: row for row in rows}
        assert sorted(by_priority) == sorted(seed), fmt
        for priority, row in by_priority.items():
            assert int(row["first_response_minutes"]) == int(
                seed[priority]["first_response_minutes"]
            ), (fmt, priority)


@pytest.mark.xdist_group("e2e")
def test_every_mart_of_the_warehouse_is_published(crm_home: Path) -> None:
    """Publication takes every table of schema `marts` as dbt built it (a new mart such as
    fct_kpi_weekly appears without a list to update), plus the three reference tables."""
    with duckdb.connect(str(crm_home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        marts = {
            r[0]
            for r in con.execute(
                "select table_name from duckdb_tables() where schema_name = 'marts'"
            ).fetchall()
        }
    with duckdb.connect(str(crm_home / "serving" / "serving.duckdb"), read_only=True) as con:
        published = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
    assert marts | {"kpi_definitions", "kpi_targets", "sla_targets"} <= published
    for table in marts | {"kpi_definitions", "kpi_targets", "sla_targets"}:
        assert (crm_home / "serving" / "parquet" / f"{table}.parquet").exists(), table
        assert (crm_home / "serving" / "tableau" / f"{table}.hyper").exists(), table


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


@pytest.mark.xdist_group("e2e_definitions")
def test_a_bad_targets_file_stops_the_night_with_its_errors(crm_home: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(crm_home, home, symlinks=True)
    before = _digest(home / "serving")
    bad = tmp_path / "targets.csv"
    lines = DEMO_TARGETS_FILE.read_text(encoding="utf-8").splitlines()
    lines[3] = lines[3].replace("first_response_sla_rate", "first_response_rate")  # line 4
    lines[5] = lines[5].replace(",2026-12-31,", ",2026-06-30,")  # line 6: due before start
    bad.write_text("\n".join(lines) + "\n", encoding="utf-8")
    proc = crm(home, "run", "--date", END.isoformat(), env={"CRM_TARGETS_FILE": str(bad)})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1, output[-3000:]
    assert f"{bad}, line 4: column kpi: unknown KPI 'first_response_rate'" in output
    assert f"{bad}, line 6: column due_date: 2026-06-30 is not after start_date" in output
    assert "Traceback" not in output
    assert "crm targets check" in output
    assert _digest(home / "serving") == before
