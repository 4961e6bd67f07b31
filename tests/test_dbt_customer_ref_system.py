"""The system a ticket's customer_ref belongs to comes from its mapping, through dbt.

Small hand-made files: two member systems, neither named `crm` (`member` and `mall`), both
holding a customer `M1` (two different people), and two help desks, desk_a answering
`member` customers and desk_b answering `mall` customers (each mapping's
`customer_ref_system`). The files are loaded with the ingestion engine, dbt runs up to
`int_source_records_resolved` with the vars the pipeline passes (`settings_vars`), and
each ticket must belong to the customer of its own system's account:

    ticket T1 (desk_a, M1) -> the customer of member:M1
    ticket T2 (desk_b, M1) -> the customer of mall:M1 (not member:M1's)
    ticket T3 (desk_b, X9) -> the customer of mall:X9
    ticket T4 (desk_b, Z0) -> no account mall:Z0: a customer of its own
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.discovery import discover_partitions
from pipelines.ingest.engine import load_partition
from pipelines.ingest.mapping import load_mappings
from pipelines.lib.settings import Settings
from pipelines.transform.assets import settings_vars

REPO = Path(__file__).resolve().parents[1]
DBT_DIR = REPO / "dbt_project"
DAY = "2026-10-30"

pytestmark = [pytest.mark.xdist_group("dbt_customer_ref_system"), pytest.mark.slow]

MEMBERS = """\
name: {name}
entity: customers
format: csv
fields:
  source_system: {{expr: "'{system}'"}}
  customer_ref: ref
  updated_at: {{column: updated, formats: ["%Y-%m-%d %H:%M:%S"]}}
  name: name
"""
DESK = """\
name: {name}
entity: service_events
customer_ref_system: {system}
format: csv
fields:
  ticket_id: ticket
  event_at: {{column: at, formats: ["%Y-%m-%d %H:%M:%S"]}}
  event_type: event
  customer_ref: member
"""


def _write(landing: Path, mappings: Path, name: str, mapping: str, rows: str) -> None:
    (mappings / f"{name}.yaml").write_text(mapping, encoding="utf-8")
    folder = landing / name / DAY
    folder.mkdir(parents=True)
    (folder / "rows.csv").write_text(rows, encoding="utf-8")


@pytest.fixture(scope="module")
def resolved(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], str]:
    work = tmp_path_factory.mktemp("customer_ref_system")
    landing, mappings = work / "landing", work / "mappings"
    mappings.mkdir()
    people = "ref,updated,name\nM1,2026-10-01 10:00:00,A\nX9,2026-10-01 10:00:00,B\n"
    _write(landing, mappings, "members", MEMBERS.format(name="members", system="member"),
           "ref,updated,name\nM1,2026-10-01 10:00:00,C\n")  # fmt: skip
    _write(landing, mappings, "mall", MEMBERS.format(name="mall", system="mall"), people)
    _write(landing, mappings, "desk_a", DESK.format(name="desk_a", system="member"),
           "ticket,at,event,member\nT1,2026-10-02 09:00:00,created,M1\n")  # fmt: skip
    _write(landing, mappings, "desk_b", DESK.format(name="desk_b", system="mall"),
           "ticket,at,event,member\nT2,2026-10-02 09:00:00,created,M1\n"
           "T3,2026-10-03 09:00:00,created,X9\nT4,2026-10-03 10:00:00,created,Z0\n")  # fmt: skip
    db = work / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    for mapping in load_mappings(mappings):
        for day in discover_partitions(landing, mapping):
            load_partition(con, mapping, landing, day)
    con.close()
    settings = Settings(home=work, mappings_dir=mappings, landing_dir=landing)
    dbt_vars = {"as_of_date": "2026-10-31", **settings_vars(settings)}
    dbt = Path(sys.executable).parent / "dbt"
    proc = subprocess.run(
        [str(dbt), "run", "--select", "+int_source_records_resolved", "--vars", json.dumps(dbt_vars),
         "--profiles-dir", str(DBT_DIR), "--project-dir", str(DBT_DIR),
         "--target-path", str(work / "target"), "--log-path", str(work / "logs")],
        cwd=DBT_DIR, env=dict(os.environ, CRM_WAREHOUSE_DB=str(db), CRM_RESTRICTED_DB=str(work / "restricted.duckdb")),
        capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:]
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute(
            "select entity, record_key, customer_id from intermediate.int_source_records_resolved"
        ).fetchall()
    return {(entity, key): customer for entity, key, customer in rows}


def test_each_help_desk_resolves_against_its_own_member_system(resolved):
    customer = {key: value for (_, key), value in resolved.items()}
    assert customer["T1"] == customer["member:M1"]
    assert customer["T2"] == customer["mall:M1"]
    assert customer["T3"] == customer["mall:X9"]
    # M1 of one system is not M1 of the other; a ref no system holds links nothing
    assert customer["mall:M1"] != customer["member:M1"]
    assert customer["T4"] not in {customer[k] for k in ("member:M1", "mall:M1", "mall:X9")}
    assert len({customer[k] for k in ("member:M1", "mall:M1", "mall:X9", "T4")}) == 4
