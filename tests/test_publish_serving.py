"""publish(): what lands in serving/, in which formats, and what happens when it fails."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from support.fixture_marts import AS_OF, build_fixture_warehouse
from support.published_marts import MARTS
from support.published_marts import digest as _digest
from support.published_marts import sorted_table as _sorted
from support.published_marts import warehouse_table as _warehouse_table

from pipelines.publish import layout, tableau
from pipelines.publish.layout import PublishError
from pipelines.publish.pii import PiiColumnError, is_pii_column
from pipelines.publish.releases import open_serving, read_manifest
from pipelines.publish.serving import publish


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory):
    return build_fixture_warehouse(tmp_path_factory.mktemp("wh") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def published(warehouse, tmp_path_factory: pytest.TempPathFactory):
    serving_dir = tmp_path_factory.mktemp("serving")
    return publish(warehouse.path, serving_dir)


def test_serving_db_holds_exactly_the_marts_with_the_warehouse_row_counts(warehouse, published):
    con = open_serving(published.serving_dir)
    try:
        tables = {
            row[0]
            for row in con.execute(
                "select table_name from duckdb_tables() where database_name = 'serving'"
            ).fetchall()
        }
        assert tables == MARTS | {"_publication", "_publication_tables"}
        counts = {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in MARTS}
    finally:
        con.close()
    # the fixture counted the warehouse tables itself, with its own connection
    assert counts == warehouse.row_counts
    assert published.row_counts == warehouse.row_counts
    assert counts["dim_customers"] == 240 and counts["fct_orders"] == 720


def test_raw_quality_and_clv_tables_are_not_published(published):
    con = open_serving(published.serving_dir)
    try:
        names = {r[0] for r in con.execute("select table_name from duckdb_tables()").fetchall()}
        schemas = {
            r[0]
            for r in con.execute(
                "select distinct schema_name from duckdb_tables() where database_name = 'serving'"
            ).fetchall()
        }
    finally:
        con.close()
    assert schemas == {"main"}
    assert not names & {"customers", "dq_results", "holdout_validation"}


@pytest.mark.parametrize("mart", sorted(MARTS))
def test_parquet_and_hyper_read_back_equal_to_the_warehouse(warehouse, published, mart):
    expected = _warehouse_table(
        warehouse.path, mart, "seeds" if mart == "kpi_definitions" else "marts"
    )
    from_parquet = _sorted(pq.read_table(published.serving_dir / "parquet" / f"{mart}.parquet"))
    assert from_parquet.equals(expected)
    hyper = tableau.read_hyper(
        published.serving_dir / "tableau" / f"{mart}.hyper", return_type="pyarrow"
    )
    assert hyper.column_names == expected.column_names
    assert _sorted(hyper.cast(expected.schema)).equals(expected)
    # the pandas route analysts use reads the same values
    frame = tableau.read_hyper(published.serving_dir / "tableau" / f"{mart}.hyper")
    assert len(frame) == warehouse.row_counts[mart]


def test_chinese_text_survives_every_format(published):
    description = "会员资料完整度从60%提升到90%"
    con = open_serving(published.serving_dir)
    try:
        in_db = con.execute(
            "select description from rpt_kpi_review where target_id = 'T02'"
        ).fetchone()[0]
    finally:
        con.close()
    in_parquet = pq.read_table(published.serving_dir / "parquet" / "rpt_kpi_review.parquet")
    in_hyper = tableau.read_hyper(published.serving_dir / "tableau" / "rpt_kpi_review.hyper")
    assert in_db == description
    assert description in in_parquet.column("description").to_pylist()
    assert description in set(in_hyper["description"])


def test_manifest_describes_the_publication(warehouse, published):
    manifest = read_manifest(published.serving_dir)
    assert manifest["publication_id"] == published.publication_id
    assert manifest["as_of_date"] == AS_OF.isoformat() == "2025-07-15"
    assert manifest["storage_version"] == "v1.0.0+"
    assert {name: t["rows"] for name, t in manifest["tables"].items()} == warehouse.row_counts
    assert manifest["tables"]["dim_customers"]["source"] == "marts.dim_customers"
    for rel, size in manifest["files"].items():
        assert (published.serving_dir / rel).stat().st_size == size, rel
    assert set(manifest["files"]) == (
        {"serving.duckdb"}
        | {f"parquet/{m}.parquet" for m in MARTS}
        | {f"tableau/{m}.hyper" for m in MARTS}
        | {f"tableau/{m}.tds" for m in MARTS}
        | {f"tableau/{m}.zh.tds" for m in MARTS}
        # customers related to their orders, tickets and interactions
        | {"tableau/crm.tds", "tableau/crm.zh.tds"}
    )
    con = open_serving(published.serving_dir)
    try:
        pub = con.execute("select publication_id, as_of_date from _publication").fetchall()
        per_table = dict(
            con.execute("select table_name, row_count from _publication_tables").fetchall()
        )
    finally:
        con.close()
    assert pub == [(published.publication_id, AS_OF)]
    assert per_table == warehouse.row_counts
    json.dumps(published.metadata())  # the Dagster metadata is plain JSON


def test_serving_db_is_written_in_the_documented_storage_version(published):
    con = duckdb.connect()
    con.execute(f"attach '{published.serving_db}' as s (read_only)")
    tags = dict(
        con.execute("select tags from duckdb_databases() where database_name = 's'").fetchone()[0]
    )
    assert tags["storage_version"] == "v1.0.0+"
    assert layout.STORAGE_VERSION == "v1.0.0"


def test_tds_points_at_its_hyper_file(published):
    text = (published.serving_dir / "tableau" / "fct_orders.tds").read_text(encoding="utf-8")
    assert "class='hyper'" in text and 'dbname="fct_orders.hyper"' in text
    assert "table='[Extract].[Extract]'" in text


def test_no_staging_or_wal_left_behind(published):
    leftovers = [p.name for p in published.serving_dir.iterdir() if p.name.startswith(".staging")]
    assert leftovers == []
    assert not (published.serving_dir / "serving.duckdb.wal").exists()


def test_hyper_without_parquet_leaves_no_parquet_behind(tmp_path):
    """Hyper reads Parquet: with formats duckdb + hyper, temporary Parquet files feed the
    extracts and are removed; the extracts hold every row."""
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=30)
    result = publish(info.path, tmp_path / "serving", formats=("duckdb", "hyper"))
    serving = tmp_path / "serving"
    assert not list((serving / "parquet").glob("*"))
    assert not list(serving.rglob("*.parquet"))
    for name, rows in result.row_counts.items():
        assert len(tableau.read_hyper(serving / "tableau" / f"{name}.hyper")) == rows, name
    assert "parquet" not in result.step_seconds and "hyper" in result.step_seconds


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("name", True),
        ("Phone", True),
        ("email", True),
        ("address", True),
        ("content", True),
        ("buyer_name", True),
        ("buyer_phone", True),
        ("shipping_address", True),
        ("birth_date", True),
        ("unionid", True),
        ("customer_id", False),
        ("product_name", False),
        ("rfm_segment", False),
        ("profile_completeness", False),
        ("campaign_id", False),
        ("city", False),
        ("has_phone", False),
        ("has_address", False),
        ("contact_email", True),
    ],
)
def test_pii_deny_list(column, expected):
    assert is_pii_column(column) is expected


def test_pii_column_in_a_mart_refuses_to_publish(tmp_path):
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=30)
    con = duckdb.connect(str(info.path))
    con.execute("alter table marts.fct_orders add column buyer_phone varchar")
    con.execute("alter table marts.dim_customers add column email varchar")
    con.close()
    with pytest.raises(PiiColumnError) as caught:
        publish(info.path, tmp_path / "serving")
    message = str(caught.value)
    assert "fct_orders.buyer_phone" in message and "dim_customers.email" in message
    assert "pipelines/publish/pii.py" in message
    assert not (tmp_path / "serving" / "serving.duckdb").exists()
    assert [p.name for p in (tmp_path / "serving").iterdir()] == [".publish.lock"]


def test_unknown_mart_is_a_clear_error(warehouse, tmp_path):
    with pytest.raises(PublishError, match="not in the warehouse: fct_nope"):
        publish(warehouse.path, tmp_path / "serving", marts=["fct_nope"])


def test_failed_publish_leaves_the_previous_publication_untouched(tmp_path, monkeypatch):
    first = build_fixture_warehouse(tmp_path / "a.duckdb", n_customers=40, seed=1)
    second = build_fixture_warehouse(tmp_path / "b.duckdb", n_customers=90, seed=2)
    serving_dir = tmp_path / "serving"
    before = publish(first.path, serving_dir)
    files_before = _digest(serving_dir)
    manifest_before = read_manifest(serving_dir)

    calls = {"n": 0}
    real_write_hyper = tableau.write_hyper

    def failing_write_hyper(stream, path):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError("disk full (simulated)")
        return real_write_hyper(stream, path)

    monkeypatch.setattr(tableau, "write_hyper", failing_write_hyper)
    with pytest.raises(OSError, match="simulated"):
        publish(second.path, serving_dir)
    assert calls["n"] == 3

    assert _digest(serving_dir) == files_before  # same bytes, same inodes
    assert read_manifest(serving_dir) == manifest_before
    assert not [p for p in serving_dir.iterdir() if p.name.startswith(".staging")]
    con = open_serving(serving_dir)
    try:
        assert con.execute("select publication_id from _publication").fetchone()[0] == (
            before.publication_id
        )
        assert con.execute("select count(*) from dim_customers").fetchone()[0] == 40
    finally:
        con.close()

    monkeypatch.setattr(tableau, "write_hyper", real_write_hyper)
    after = publish(second.path, serving_dir)
    assert after.row_counts["dim_customers"] == 90
    assert read_manifest(serving_dir)["publication_id"] == after.publication_id


def test_files_of_marts_no_longer_published_are_removed(warehouse, tmp_path):
    serving_dir = tmp_path / "serving"
    publish(warehouse.path, serving_dir)
    result = publish(warehouse.path, serving_dir, marts=["dim_customers", "rpt_kpi_review"])
    assert sorted(p.name for p in (serving_dir / "parquet").iterdir()) == [
        "dim_customers.parquet",
        "rpt_kpi_review.parquet",
    ]
    assert sorted(p.name for p in (serving_dir / "tableau").iterdir()) == [
        "dim_customers.hyper",
        "dim_customers.tds",
        "dim_customers.zh.tds",
        "rpt_kpi_review.hyper",
        "rpt_kpi_review.tds",
        "rpt_kpi_review.zh.tds",
    ]
    assert set(result.row_counts) == {"dim_customers", "rpt_kpi_review"}


def test_an_open_connection_keeps_its_publication_and_a_new_one_sees_the_next(tmp_path):
    first = build_fixture_warehouse(tmp_path / "a.duckdb", n_customers=30, seed=3)
    second = build_fixture_warehouse(tmp_path / "b.duckdb", n_customers=60, seed=4)
    serving_dir = tmp_path / "serving"
    publish(first.path, serving_dir, formats=("duckdb",))
    old = open_serving(serving_dir)
    try:
        result = publish(second.path, serving_dir, formats=("duckdb",))
        assert old.execute("select count(*) from dim_customers").fetchone()[0] == 30
        new = open_serving(serving_dir)  # same process, while `old` is still open
        try:
            assert new.execute("select publication_id from _publication").fetchone()[0] == (
                result.publication_id
            )
            assert new.execute("select count(*) from dim_customers").fetchone()[0] == 60
        finally:
            new.close()
    finally:
        old.close()


def test_open_serving_retries_until_the_first_publication_appears(warehouse, tmp_path):
    serving_dir = tmp_path / "serving"
    with pytest.raises(PublishError, match="cannot open .*serving.duckdb read-only"):
        open_serving(serving_dir, attempts=2, wait_seconds=0.01)

    thread = threading.Thread(
        target=lambda: (time.sleep(0.3), publish(warehouse.path, serving_dir, formats=("duckdb",)))
    )
    thread.start()
    try:
        con = open_serving(serving_dir, attempts=8, wait_seconds=0.1)  # waits up to ~25 s
        assert con.execute("select count(*) from dim_customers").fetchone()[0] == 240
        con.close()
    finally:
        thread.join()


def test_small_negative_amounts_reach_the_hyper_extract_exactly(tmp_path):
    """A refund of -0.05 (the case pantab's Arrow writer mis-formats) stays -0.05."""
    from decimal import Decimal

    db = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(db))
    con.execute("create schema marts")
    con.execute(
        "create table marts.fct_refunds as select * from (values "
        "('o1', -0.05::decimal(18, 2)), ('o2', -0.5::decimal(18, 2)), "
        "('o3', 0.04::decimal(18, 2)), ('o4', -12345.67::decimal(18, 2))) t(order_id, amount)"
    )
    con.close()
    result = publish(db, tmp_path / "serving", marts=["fct_refunds"], as_of=AS_OF)
    frame = tableau.read_hyper(result.serving_dir / "tableau" / "fct_refunds.hyper")
    got = {row.order_id: Decimal(str(row.amount)) for row in frame.itertuples()}
    assert got == {
        "o1": Decimal("-0.05"),
        "o2": Decimal("-0.50"),
        "o3": Decimal("0.04"),
        "o4": Decimal("-12345.67"),
    }


def test_restore_previous_and_the_earlier_layout(tmp_path):
    """A serving folder of the earlier layout (plain files) becomes a release of its own at
    the first publication; restore_previous() points `current` back at it, atomically."""
    from pipelines.publish.releases import restore_previous

    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=30)
    serving = tmp_path / "serving"
    (serving / "parquet").mkdir(parents=True)
    (serving / "serving.duckdb").write_bytes(b"earlier")
    (serving / "parquet" / "old.parquet").write_bytes(b"x")
    (serving / "manifest.json").write_text("{}")
    first = publish(info.path, serving, formats=("duckdb", "parquet"))
    assert (serving / "current").is_symlink()
    for entry in ("serving.duckdb", "parquet", "tableau", "manifest.json"):
        assert (serving / entry).is_symlink(), entry
    assert first.publication_id in (serving / "manifest.json").read_text()
    assert not (serving / "parquet" / "old.parquet").exists()
    assert restore_previous(serving) == "earlier-layout"
    assert (serving / "serving.duckdb").read_bytes() == b"earlier"
    assert (serving / "parquet" / "old.parquet").exists()
    # the restored release may predate an erasure: the next publication is written whole
    assert (serving / layout.WHOLE_MARKER).exists()
    second = publish(info.path, serving, formats=("duckdb",))
    assert second.publication_id in (serving / "manifest.json").read_text()
    assert not (serving / layout.WHOLE_MARKER).exists()
    # two releases at most: the current one and the one before
    assert len([p for p in (serving / ".releases").iterdir() if p.is_dir()]) <= 2


def test_dbt_docs_are_regenerated_only_when_the_project_changes(
    tmp_path: Path, monkeypatch
) -> None:
    """The docs page documents the dbt project: generated on the first publication, kept
    while the project's files are unchanged, generated again when they change or when
    the page is gone."""
    from datetime import date

    from pipelines.lib.settings import Settings
    from pipelines.publish import assets

    calls: list[list[str]] = []

    def fake_dbt(args: list[str], *, settings: Settings) -> None:
        calls.append(args)
        work = Path(args[args.index("--target-path") + 1])
        work.mkdir(parents=True, exist_ok=True)
        (work / "static_index.html").write_text(f"<html>{len(calls)}</html>")

    fingerprint = ["a" * 64]
    monkeypatch.setattr(assets, "run_dbt", fake_dbt)
    monkeypatch.setattr(assets, "project_fingerprint", lambda: fingerprint[0])
    settings = Settings.from_env({"CRM_HOME": str(tmp_path)})
    page = settings.home / "docs" / "dbt" / "index.html"

    assert assets.generate_dbt_docs(settings, date(2026, 10, 31)) == page
    assert assets.generate_dbt_docs(settings, date(2026, 11, 1)) is None  # unchanged
    assert len(calls) == 1 and page.read_text() == "<html>1</html>"
    fingerprint[0] = "b" * 64  # a model changed
    assert assets.generate_dbt_docs(settings, date(2026, 11, 2)) == page
    page.unlink()
    assert assets.generate_dbt_docs(settings, date(2026, 11, 3)) == page
    assert len(calls) == 3 and page.read_text() == "<html>3</html>"


def test_the_dbt_docs_asset_never_fails_the_night(tmp_path: Path, monkeypatch) -> None:
    """The dbt docs are their own asset, after the publication; docs that cannot be
    generated are a warning: the asset succeeds and says the page was not generated."""
    import dagster as dg

    from pipelines.lib.resources import CrmSettingsResource
    from pipelines.lib.settings import Settings
    from pipelines.publish import assets

    def broken(settings: Settings, as_of) -> None:
        raise RuntimeError("dbt docs generate failed")

    monkeypatch.setattr(assets, "generate_dbt_docs", broken)
    docs = assets.build_dbt_docs_asset(dg.DailyPartitionsDefinition(start_date="2025-07-01"))
    assert docs.asset_deps[assets.DBT_DOCS_KEY] == {assets.PUBLICATION_KEY}
    crm = CrmSettingsResource.from_settings(Settings.from_env({"CRM_HOME": str(tmp_path)}))
    result = dg.materialize([docs], resources={"crm": crm}, partition_key="2026-10-31")
    assert result.success
    (event,) = result.get_asset_materialization_events()
    assert event.materialization.metadata["dbt_docs"].value == "not generated"


def test_project_fingerprint_follows_the_dbt_project_files(tmp_path: Path, monkeypatch) -> None:
    """Stable while the project's files are, changed by an edited or an added model, blind
    to dbt's own output folders (target/, logs/)."""
    from pipelines.transform import project

    (tmp_path / "models").mkdir()
    (tmp_path / "dbt_project.yml").write_text("name: x\n")
    model = tmp_path / "models" / "a.sql"
    model.write_text("select 1")
    monkeypatch.setattr(project, "DBT_PROJECT_DIR", tmp_path)

    first = project.project_fingerprint()
    assert project.project_fingerprint() == first
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "manifest.json").write_text("{}")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "dbt.log").write_text("...")
    assert project.project_fingerprint() == first
    model.write_text("select 2")
    edited = project.project_fingerprint()
    assert edited != first
    (tmp_path / "models" / "b.sql").write_text("select 3")
    assert project.project_fingerprint() not in (first, edited)
