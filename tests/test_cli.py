"""The crm command: every subcommand documents itself and rejects bad input clearly."""

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.settings import Settings


def _subcommands() -> list[str]:
    return sorted(main.commands)


def test_expected_subcommands_exist():
    assert {"generate", "run", "backfill", "check-mapping", "demo"} <= set(_subcommands())


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: main " + name in result.output or f"Usage: crm {name}" in result.output
    assert len(result.output.splitlines()) > 3


def test_bad_date_is_a_clear_error():
    result = CliRunner().invoke(main, ["run", "--date", "2026-13-45"])
    assert result.exit_code == 2
    assert "'2026-13-45' is not a date in YYYY-MM-DD form" in result.output


def test_backfill_end_before_start_is_refused():
    result = CliRunner().invoke(main, ["backfill", "--start", "2026-05-02", "--end", "2026-05-01"])
    assert result.exit_code == 2
    assert "--end is before --start" in result.output


def test_a_run_ends_with_rows_per_source(tmp_path, capsys):
    """The summary printed at the end of `crm run` / `crm backfill`, from the load log of
    two hand-made deliveries of a POS export without line ids (counted by hand below)."""
    from pipelines.ingest.engine import load_partitions
    from pipelines.ingest.mapping import parse_mapping
    from pipelines.lib.duck import connect_restricted
    from pipelines.orchestrate import print_ingest_summary

    settings = Settings(home=tmp_path).ensure_dirs()
    mapping = parse_mapping(
        {
            "name": "pos",
            "entity": "orders",
            "version": "1",
            "files": "*.csv",
            "format": {"type": "csv"},
            "fields": {
                "order_id": {"expr": "cust || '-' || replace(day, '-', '')"},
                "ordered_at": {"column": "day", "formats": ["%Y-%m-%d"]},
                "status": {"expr": "'paid'"},
                "quantity": "qty",
                "unit_price": "price",
            },
        }
    )
    header = "cust,day,qty,price\n"
    days = {
        # A bought twice: two lines; the third row has no quantity
        "2026-01-06": header + "A,2026-01-05,1,10\nA,2026-01-05,2,3\nB,2026-01-05,,4\n",
        # A's first line again, unchanged; A's second line with a corrected price
        "2026-01-07": header + "A,2026-01-05,1,10\nA,2026-01-05,2,4\n",
    }
    for day, text in days.items():
        folder = settings.landing / "pos" / day
        folder.mkdir(parents=True)
        (folder / "pos.csv").write_text(text, encoding="utf-8")
    with connect_restricted(settings.restricted_db) as con:
        load_partitions(con, mapping, settings.landing, list(days))
    print_ingest_summary(settings, date(2026, 1, 6), date(2026, 1, 7))
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines[:3]] == [
        ["[crm]", "deliveries", "2026-01-06", "..", "2026-01-07,", "rows", "per", "source:"],
        ["source", "entity", "read", "loaded", "quarantined", "duplicates", "superseded"],
        ["pos", "orders", "5", "4", "1", "1", "1"],
    ]
    assert lines[3:] == [
        "[crm] pos: 1 row(s) quarantined (20.0% of rows read, above "
        "CRM_MAX_QUARANTINE_SHARE=0.05); reasons in raw.quarantine"
    ]


POS_MAPPING = """name: pos
entity: orders
version: "1"
files: "*.csv"
format: {type: csv}
fields:
  order_id: {expr: "cust || '-' || day"}
  ordered_at: {column: day, formats: ["%Y-%m-%d"]}
  quantity: qty
  unit_price: price
"""


def _crm_run(tmp_path, mapping: str, csv: str) -> subprocess.CompletedProcess:
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "pos.yaml").write_text(mapping, encoding="utf-8")
    folder = tmp_path / "home" / "landing" / "pos" / "2026-01-06"
    folder.mkdir(parents=True)
    (folder / "pos.csv").write_text(csv, encoding="utf-8")
    env = os.environ | {
        "CRM_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
        "CRM_MAPPINGS_DIR": str(tmp_path / "maps"),
    }
    env.pop("CRM_LANDING_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--date", "2026-01-06"],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_mapping_missing_a_required_field_is_one_line(tmp_path):
    proc = _crm_run(tmp_path, POS_MAPPING, "cust,day,qty,price\nA,2026-01-05,1,10\n")
    assert proc.returncode == 1
    mapping = tmp_path / "maps" / "pos.yaml"
    assert proc.stdout.splitlines() == [
        f"[crm] error: {mapping}: required canonical field(s) not mapped for orders: status",
        "[crm] nothing was run: fix the mapping (check it with `crm check-mapping FILE`)",
    ]
    assert "Traceback" not in proc.stderr


def test_a_file_missing_a_mapped_column_fails_without_stack_traces(tmp_path):
    mapping = POS_MAPPING + "  status: {expr: \"'paid'\"}\n"
    proc = _crm_run(tmp_path, mapping, "cust,day,price\nA,2026-01-05,10\n")
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert "Stack Trace" not in out and "Traceback" not in out and "Not executing" not in out
    reason = (
        f"{tmp_path / 'maps' / 'pos.yaml'}: no file of pos delivered on 2026-01-06 is readable: "
        "data file pos/2026-01-06/pos.csv lacks source column(s) 'qty' (used by "
        "fields.quantity <- 'qty'). Fix the mapping or the export;"
    )
    failed = [line for line in proc.stdout.splitlines() if line.startswith("[crm] FAILED")]
    assert failed == [
        "[crm] FAILED step raw__orders: raw.orders: 1 source partition(s) failed; nothing "
        "partial was loaded for them:"
    ]
    assert reason in proc.stdout


def test_a_mapping_edited_since_earlier_deliveries_says_how_to_apply_it(tmp_path, capsys):
    """The same mapping version with another price column: the deliveries loaded with the
    earlier content are named, with the command that loads them again."""
    from pipelines.ingest.engine import load_partition, partition_is_unchanged
    from pipelines.ingest.mapping import load_mapping
    from pipelines.lib.duck import connect_restricted
    from pipelines.orchestrate import print_ingest_summary

    maps = tmp_path / "maps"
    maps.mkdir()
    settings = Settings(home=tmp_path / "home", mappings_dir=maps).ensure_dirs()
    path = maps / "pos.yaml"
    path.write_text(POS_MAPPING + "  status: {expr: \"'paid'\"}\n", encoding="utf-8")
    days = ["2026-01-06", "2026-01-07", "2026-01-08"]
    for day in days:
        folder = settings.landing / "pos" / day
        folder.mkdir(parents=True)
        (folder / "pos.csv").write_text(f"cust,day,qty,price,net\nA,{day},1,10,9\n")
    with connect_restricted(settings.restricted_db) as con:
        for day in days:
            load_partition(con, load_mapping(path), settings.landing, day)
        path.write_text(path.read_text().replace("unit_price: price", "unit_price: net"))
        edited = load_mapping(path)
        assert not partition_is_unchanged(con, edited, settings.landing, days[2])
        load_partition(con, edited, settings.landing, days[2])  # tonight's delivery
        assert partition_is_unchanged(con, edited, settings.landing, days[2])
    print_ingest_summary(settings, date(2026, 1, 8), date(2026, 1, 8))
    assert capsys.readouterr().out.splitlines()[-1] == (
        f"[crm] pos: 2 delivery date(s) (2026-01-06 .. 2026-01-07) were loaded with another "
        f"version of {path}; to load them again with it and rebuild the marts: "
        "crm backfill --start 2026-01-06 --end 2026-01-08 --force --full-refresh"
    )


def test_check_mapping_shows_source_and_loaded_values_without_dagster_lines(tmp_path):
    (tmp_path / "maps").mkdir()
    mapping = tmp_path / "maps" / "pos.yaml"
    mapping.write_text(POS_MAPPING + "  status: {expr: \"'paid'\"}\n", encoding="utf-8")
    folder = tmp_path / "home" / "landing" / "pos" / "2026-01-06"
    folder.mkdir(parents=True)
    (folder / "pos.csv").write_text("cust,day,qty,price\nA,2026-01-05,1,10\nB,2026-01-05,x,5\n")
    env = os.environ | {
        "CRM_HOME": str(tmp_path / "home"),
        "DAGSTER_HOME": str(tmp_path / "home" / "dagster"),
    }
    env.pop("CRM_LANDING_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "check-mapping", str(mapping)],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    assert "dagster" not in proc.stdout + proc.stderr
    lines = [line.split() for line in proc.stdout.splitlines()]
    # order_id from two source columns; qty 'x' is not a number: NULL, its row quarantined
    assert ["cust='A',", "day='2026-01-05'", "|", "'A-2026-01-05'"] in lines
    assert ["qty='x'", "|", "NULL"] in lines
    assert ["qty='1'", "|", "1.0000"] in lines
    assert ["day='2026-01-05'", "|", "2026-01-04", "16:00:00", "UTC"] in lines  # +08:00
