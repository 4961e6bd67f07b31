"""The fingerprints of the incremental builds follow the source text of the project's macros
(macros/sql_fingerprint.sql): an unchanged project keeps every recorded fingerprint from
one build to the next, so the nights stay incremental; an edit of the text of a macro a
model runs makes the next build of that model whole, and of no model that does not run it.

A copy of the dbt project is built over the small preset (10 delivery days): the staging
and identity models up to the golden record and the customer-change log, as in
tests/test_dbt_incremental_staging.py (which compares the incremental builds with a
`--full-refresh` build). Each build's plan (incremental, or whole and why) is read from the
dbt log, the fingerprints from the build records (`<model>__last_build`,
`<model>__build_log`).
"""

from __future__ import annotations

import re
import shutil
from datetime import date
from pathlib import Path

import duckdb
import pytest
from support.dbt_tiny import run_dbt_on_stores

from pipelines.generate.engine import generate
from pipelines.ingest.discovery import discover_partitions
from pipelines.ingest.engine import load_partition
from pipelines.ingest.mapping import load_mappings

REPO = Path(__file__).resolve().parents[1]
MAPPINGS = REPO / "pipelines" / "ingest" / "mappings" / "demo"
SELECT = "+int_source_records_logged +int_customer_profiles_merged"
STAGING = ("stg_raw__customers", "stg_raw__orders", "stg_raw__service_events",
           "stg_raw__social_interactions")  # fmt: skip
# the label each incremental identity model prints its plan under in the dbt log
IDENTITY = ("identity records", "identity identifiers", "identity edges", "identity components",
            "customers resolved", "source records", "customer-change log", "golden record")  # fmt: skip

pytestmark = [pytest.mark.xdist_group("dbt_fingerprint"), pytest.mark.slow]


def dbt(work: Path, as_of: date, command: str = "run", select: str = SELECT) -> str:
    """`dbt <command>` of the project copy in `work` on the stores in `work`; its stdout."""
    args = [command, "--select", select, "--vars", f"{{as_of_date: {as_of.isoformat()}}}"]
    return run_dbt_on_stores(work, args, project=work / "dbt_project")


def plans(out: str, complete: bool = True) -> dict[str, str]:
    """{model or label: 'incremental' | the reason of its whole build} from a dbt log: the
    staging models' `<model>: incremental (...)` / `full rebuild (reason)` lines and the
    identity models' `<label>: every ... computed (reason)` / counts lines (all of them
    when `complete`: a first build of the components and the golden record prints none)."""
    found = {}
    for line in out.splitlines():
        staged = re.search(r"(stg_raw__\w+): (incremental|full rebuild) \((.*)\)$", line)
        if staged:
            found[staged[1]] = "incremental" if staged[2] == "incremental" else staged[3]
        for label in IDENTITY:
            if f"  {label}: " in line:
                whole = re.search(rf"{label}: every [a-z ]+ (?:computed|compared) \((.*)\)$", line)
                found[label] = whole[1] if whole else "incremental"
    assert not complete or set(found) == {*STAGING, *IDENTITY}, (sorted(found), out[-3000:])
    return found


def fingerprints(work: Path) -> dict[str, str]:
    """{build record table: the fingerprint(s) it recorded}."""
    con = duckdb.connect(str(work / "warehouse.duckdb"), read_only=True)
    try:
        con.execute(f"attach '{work / 'restricted.duckdb'}' as restricted_store (read_only)")
        tables = con.execute(
            "select database_name, schema_name, table_name from duckdb_tables() "
            r"where table_name like '%\_\_last\_build' escape '\' "
            r"or table_name like '%\_\_build\_log' escape '\'"
        ).fetchall()
        found = {}
        for database, schema, table in tables:
            relation = f"{database}.{schema}.{table}"
            columns = {row[0] for row in con.execute(f"describe {relation}").fetchall()}
            column = "fingerprint" if "fingerprint" in columns else "model_checksum"
            values = con.execute(f"select distinct {column} from {relation} order by 1").fetchall()
            found[table] = ",".join(str(row[0]) for row in values)
        return found
    finally:
        con.close()


def edit_macro(work: Path, file: str, macro: str, line: str) -> None:
    """Insert `line` as the first line of the body of `macro` in the project copy's
    macros/`file`."""
    path = work / "dbt_project" / "macros" / file
    text = path.read_text(encoding="utf-8")
    head = f"{{% macro {macro}("
    start = text.index(head)
    body = text.index("-%}\n", start) + len("-%}\n")
    path.write_text(text[:body] + line + "\n" + text[body:], encoding="utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, date]:
    """A work folder (stores, project copy) after a first build as of the last night."""
    root = tmp_path_factory.mktemp("fingerprint")
    generate("small", 5, root / "landing", days=10, progress=False)
    work = root / "work"
    work.mkdir()
    shutil.copytree(REPO / "dbt_project", work / "dbt_project",
                    ignore=shutil.ignore_patterns("target", "logs", "dbt_packages"))  # fmt: skip
    con = duckdb.connect(str(work / "warehouse.duckdb"))
    nights = set()
    try:
        for mapping in load_mappings(MAPPINGS):
            for day in discover_partitions(root / "landing", mapping):
                load_partition(con, mapping, root / "landing", day)
                nights.add(day)
    finally:
        con.close()
    night = max(nights)
    dbt(work, night, command="seed", select="source_priority")  # read by the golden record
    first = plans(dbt(work, night), complete=False)
    assert set(first.values()) == {"first build"}, first
    return work, night


def copy_of(built: tuple[Path, date], tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(built[0], work, ignore=shutil.ignore_patterns("target", "logs"))
    return work


def test_an_unchanged_project_stays_incremental(built, tmp_path) -> None:
    work, night = copy_of(built, tmp_path), built[1]
    recorded = fingerprints(work)
    # every incremental model keeps a fingerprint (the identifiers and records keep theirs
    # in their build log, beside their staging state)
    assert len(recorded) == 14 and all(recorded.values()), recorded
    # twice: the first build parses the project afresh (no target folder in the copy), the
    # second reuses dbt's saved parse
    for _ in range(2):
        out = plans(dbt(work, night))
        assert set(out.values()) == {"incremental"}, out
        assert fingerprints(work) == recorded


def test_an_edited_macro_makes_its_models_whole(built, tmp_path) -> None:
    work, night = copy_of(built, tmp_path), built[1]
    recorded = fingerprints(work)

    # a comment outside every macro changes no macro's text: no build is whole
    edges_file = work / "dbt_project" / "macros" / "identity_edges.sql"
    with edges_file.open("a", encoding="utf-8") as f:
        f.write("\n-- an edit outside the macros\n")
    out = plans(dbt(work, night))
    assert set(out.values()) == {"incremental"}, out
    assert fingerprints(work) == recorded

    # a line in the text of a macro the edges' build runs (no version bumped): the edges
    # are computed whole; every other model stays incremental (a whole edges build on an
    # existing table keeps the edges that changed, from which the components start)
    edit_macro(work, "identity_edges.sql", "identity_edges_plan", "    {#- an edit -#}")
    out = plans(dbt(work, night))
    assert out.pop("identity edges") == "the model or its macros changed"
    assert set(out.values()) == {"incremental"}, out
    after = fingerprints(work)
    changed = {table for table in recorded if after[table] != recorded[table]}
    assert changed == {"int_identity_edges__last_build"}, (recorded, after)

    # the next build after it is incremental again: the new fingerprint was recorded
    out = plans(dbt(work, night))
    assert set(out.values()) == {"incremental"}, out
    assert fingerprints(work) == after

    # a macro only stg_raw__orders calls (the order statuses): that staging table is rebuilt,
    # the identity models reading it are computed whole
    edit_macro(work, "normalize_codes.sql", "order_statuses", "    {#- an edit -#}")
    out = plans(dbt(work, night))
    assert out.pop("stg_raw__orders") == (
        "the model, the macros it calls or its settings changed since the last build"
    )
    for label in ("identity records", "identity identifiers"):
        assert out.pop(label) == "stg_raw__orders was built with other SQL or settings"
    assert all(out[model] == "incremental" for model in STAGING if model in out), out
    rebuilt = {table for table in after if fingerprints(work)[table] != after[table]}
    assert rebuilt == {"stg_raw__orders__build_log"}, rebuilt
