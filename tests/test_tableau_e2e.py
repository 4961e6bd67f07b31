"""End to end: the Tableau files of a real publication (the backfill of fixture `crm_home`,
tests/conftest.py: a dbt build of generated data). Every `.tds` is opened as XML and every
`.hyper` with the Hyper API: captions, descriptions (the dbt manifest's), types, default
formats, folders, the business-time columns beside the UTC ones, the member tiers and the
relationships of `crm.tds`."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from pipelines.lib.settings import DBT_PROJECT_DIR

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]

# Hyper type tag -> the datatype a .tds must give the column
HYPER_TO_TABLEAU = {
    "TEXT": "string",
    "VARCHAR": "string",
    "BOOL": "boolean",
    "DATE": "date",
    "TIMESTAMP": "datetime",
    "SMALL_INT": "integer",
    "INT": "integer",
    "BIG_INT": "integer",
    "DOUBLE": "real",
    "NUMERIC": "real",
}
# The UTC timestamps of the marts; each has a business-time column `<name>_local`
UTC_COLUMNS = {
    "fct_orders": ["ordered_at"],
    "fct_order_lines": ["ordered_at"],
    "fct_service_tickets": [
        "created_at", "first_agent_reply_at", "first_resolved_at", "last_closed_at",
        "last_event_at", "csat_at", "converted_at",
        "first_response_breach_at", "resolution_breach_at",
        "first_response_business_due_at", "resolution_business_due_at",
        "first_response_business_breach_at", "resolution_business_breach_at",
        "first_assigned_at",
    ],
    "fct_social_interactions": ["occurred_at"],
}  # fmt: skip
# The generator's levels (pipelines/generate/customers.py), tiered by hand: the CRM's four
# levels and the mall's V1-V4 matched rank for rank
TIERS = {
    "普通会员": ("basic", 1), "银卡会员": ("silver", 2), "金卡会员": ("gold", 3),
    "钻石会员": ("diamond", 4), "V1": ("basic", 1), "V2": ("silver", 2), "V3": ("gold", 3),
    "V4": ("diamond", 4),
}  # fmt: skip


def _hyper(path: Path, sql: str | None = None) -> tuple[list[tuple[str, str]], list[tuple]]:
    """The extract's (column, Hyper type tag) and, given `sql` (reading table EXTRACT), its
    rows."""
    from tableauhyperapi import Connection, HyperProcess, TableName, Telemetry

    with (
        HyperProcess(Telemetry.DO_NOT_SEND_USAGE_DATA_TO_TABLEAU, parameters={"log_config": ""})
        as hyper,
        Connection(hyper.endpoint, path) as con,
    ):  # fmt: skip
        table = con.catalog.get_table_definition(TableName("Extract", "Extract"))
        columns = [(c.name.unescaped, c.type.tag.name) for c in table.columns]
        rows = []
        if sql is not None:
            rows = con.execute_list_query(sql.replace("EXTRACT", '"Extract"."Extract"'))
    return columns, rows


def _has_cjk(text: str) -> bool:
    return any("\u4e00" <= char <= "\u9fff" for char in text)


def _tds(path: Path) -> ET.Element:
    return ET.parse(path).getroot()


def _fields(root: ET.Element) -> dict[str, dict]:
    """[table].[column] of the physical column -> its <column> attributes and description."""
    physical = {m.get("key"): m.get("value") for m in root.iter("map")}
    fields = {}
    for column in root.findall("column"):
        if column.get("datatype") == "table":
            continue
        run = column.find("desc/formatted-text/run")
        fields[physical[column.get("name")]] = {
            **column.attrib,
            "description": run.text if run is not None else None,
        }
    return fields


@pytest.fixture(scope="module")
def tableau_dir(crm_home: Path) -> Path:
    return crm_home / "serving" / "tableau"


@pytest.fixture(scope="module")
def descriptions() -> dict[str, dict[str, str]]:
    manifest = json.loads((DBT_PROJECT_DIR / "target" / "manifest.json").read_text("utf-8"))
    return {
        node["name"]: {
            name: " ".join(column["description"].split())
            for name, column in node["columns"].items()
        }
        for node in manifest["nodes"].values()
        if node["resource_type"] in ("model", "seed")
    }


@pytest.mark.parametrize("suffix", [".tds", ".zh.tds"])
def test_every_tds_describes_its_hyper_column_by_column(tableau_dir, descriptions, suffix):
    extracts = sorted(tableau_dir.glob("*.hyper"))
    assert {p.stem for p in extracts} >= {"dim_customers", "fct_orders", "fct_order_lines"}
    for extract in extracts:
        table = extract.stem
        columns, _ = _hyper(extract)
        root = _tds(tableau_dir / f"{table}{suffix}")
        assert root.tag == "datasource"
        (connection,) = root.iter("named-connection")
        assert connection.find("connection").get("dbname") == f"{table}.hyper"
        fields = _fields(root)
        assert list(fields) == [f"[{table}].[{column}]" for column, _ in columns], table
        records = [r.findtext("remote-name") for r in root.iter("metadata-record")]
        assert records == [column for column, _ in columns]
        for column, tag in columns:
            field = fields[f"[{table}].[{column}]"]
            assert field["datatype"] == HYPER_TO_TABLEAU[tag], (table, column, tag)
            assert field["caption"], (table, column)
            assert field["role"] in ("dimension", "measure")
            if table in descriptions:  # a dbt model or seed: every column described
                assert field["description"] == descriptions[table][column], (table, column)
        # every field in exactly one folder
        items = [i.get("name") for i in root.iter("folder-item")]
        assert sorted(items) == sorted(
            c.get("name") for c in root.findall("column") if c.get("datatype") != "table"
        )
        assert {f.get("name") for f in root.iter("folder")} <= {
            "Identity", "Dates", "Measures", "Segments", "标识", "日期", "度量", "分群"
        }  # fmt: skip
        if suffix == ".zh.tds":  # every column captioned in Chinese (KPI, VIP stay as they are)
            for column, _ in columns:
                caption = fields[f"[{table}].[{column}]"]["caption"]
                assert caption in ("KPI", "VIP") or _has_cjk(caption), (table, column, caption)


def test_captions_formats_and_roles_analysts_read(tableau_dir, descriptions):
    orders = _fields(_tds(tableau_dir / "fct_orders.tds"))
    ordered_at = orders["[fct_orders].[ordered_at]"]
    assert ordered_at["caption"] == "Ordered At (UTC)"
    assert ordered_at["description"] == "Order time (UTC)."
    local = orders["[fct_orders].[ordered_at_local]"]
    assert local["caption"] == "Ordered At (Business Time)"
    assert local["datatype"] == "datetime" and local["default-format"] == "*yyyy-mm-dd hh:nn:ss"
    assert "Asia/Shanghai" in local["description"]
    revenue = orders["[fct_orders].[net_revenue]"]
    assert (revenue["caption"], revenue["role"], revenue["default-format"]) == (
        "Net Revenue", "measure", 'c"¥"#,##0.00;-"¥"#,##0.00'  # CRM_CURRENCY CNY
    )  # fmt: skip
    assert orders["[fct_orders].[order_id]"]["role"] == "dimension"
    assert orders["[fct_orders].[order_date]"]["default-format"] == "*yyyy-mm-dd"
    customers = _fields(_tds(tableau_dir / "dim_customers.tds"))
    assert customers["[dim_customers].[profile_completeness]"]["default-format"] == "p0.0%"
    assert customers["[dim_customers].[province]"]["semantic-role"] == "[State].[Name]"
    assert customers["[dim_customers].[city]"]["semantic-role"] == "[City].[Name]"
    assert customers["[dim_customers].[r_score]"]["role"] == "dimension"
    assert customers["[dim_customers].[is_vip]"]["caption"] == "Is VIP"
    tier = customers["[dim_customers].[member_tier]"]
    assert tier["caption"] == "Member Tier" and tier["description"].startswith("Membership tier")
    orders_zh = _fields(_tds(tableau_dir / "fct_orders.zh.tds"))
    assert orders_zh["[fct_orders].[ordered_at]"]["caption"] == "下单时间（UTC）"
    assert orders_zh["[fct_orders].[ordered_at_local]"]["caption"] == "下单时间（业务时间）"
    assert orders_zh["[fct_orders].[net_revenue]"]["default-format"] == revenue["default-format"]


def test_business_time_beside_utc_in_every_format(crm_home, tableau_dir):
    serving = crm_home / "serving"
    with duckdb.connect(str(serving / "serving.duckdb"), read_only=True) as con:
        for table, utc_columns in UTC_COLUMNS.items():
            in_db = [r[0] for r in con.execute(f"describe main.{table}").fetchall()]
            in_parquet = pq.read_schema(serving / "parquet" / f"{table}.parquet").names
            hyper_columns, _ = _hyper(tableau_dir / f"{table}.hyper")
            assert in_db == in_parquet == [c for c, _ in hyper_columns], table
            timestamps = {c for c, tag in hyper_columns if tag == "TIMESTAMP"}
            assert timestamps == {*utc_columns, *(f"{c}_local" for c in utc_columns)}, table
    # Asia/Shanghai is UTC+8 all year: every business time is its UTC time + 8 hours
    for table, utc_columns in UTC_COLUMNS.items():
        for column in utc_columns:
            _, rows = _hyper(
                tableau_dir / f"{table}.hyper",
                f"select {column}, {column}_local from EXTRACT where {column} is not null "
                f"order by {column} limit 50",
            )
            _, [[wrong]] = _hyper(
                tableau_dir / f"{table}.hyper",
                f"select count(*) from EXTRACT where {column}_local is distinct from "
                f"{column} + interval '8 hours'",
            )
            assert wrong == 0, (table, column)
            for utc, local in rows:
                assert local.to_datetime() - utc.to_datetime() == timedelta(hours=8)
    _, [[orders]] = _hyper(tableau_dir / "fct_orders.hyper", "select count(*) from EXTRACT")
    assert orders > 0


def test_member_levels_of_both_systems_become_one_tier(tableau_dir):
    _, rows = _hyper(
        tableau_dir / "dim_customers.hyper",
        "select member_level_source, member_tier, member_tier_rank, count(*) from EXTRACT "
        "group by 1, 2, 3 order by 1",
    )
    seen = {source: (tier, rank) for source, tier, rank, _ in rows}
    assert {s for s in seen if s is not None} <= set(TIERS)
    # both systems are present in generated data
    assert any(s and s.startswith("V") for s in seen) and any(s and "会员" in s for s in seen)
    for source, tiered in seen.items():
        assert tiered == (TIERS[source] if source is not None else (None, None)), source


@pytest.mark.parametrize("file_name", ["crm.tds", "crm.zh.tds"])
def test_crm_tds_relates_customers_orders_lines_tickets_interactions(
    crm_home, tableau_dir, file_name
):
    root = _tds(tableau_dir / file_name)
    connections = {
        nc.get("name"): nc.find("connection").get("dbname") for nc in root.iter("named-connection")
    }
    assert set(connections.values()) == {
        "dim_customers.hyper", "fct_orders.hyper", "fct_order_lines.hyper",
        "fct_service_tickets.hyper", "fct_social_interactions.hyper",
    }  # fmt: skip
    for dbname in connections.values():
        assert (tableau_dir / dbname).is_file()
    collection = root.find("connection/relation")
    assert collection.get("type") == "collection"
    objects = {}
    for obj in root.iter("object"):
        relation = obj.find("properties/relation")
        assert relation.get("connection") in connections
        objects[obj.get("id")] = relation.get("name")
    assert sorted(objects.values()) == sorted(r.get("name") for r in collection)
    physical = {m.get("key"): m.get("value") for m in root.iter("map")}
    related = set()
    for relationship in root.iter("relationship"):
        left, right = (e.get("op") for e in relationship.find("expression"))
        first = objects[relationship.find("first-end-point").get("object-id")]
        second = objects[relationship.find("second-end-point").get("object-id")]
        assert physical[left].startswith(f"[{first}].") and physical[right].startswith(
            f"[{second}]."
        )
        related.add((physical[left], physical[right]))
    assert related == {
        ("[dim_customers].[customer_id]", "[fct_orders].[customer_id]"),
        ("[fct_orders].[order_id]", "[fct_order_lines].[order_id]"),
        ("[dim_customers].[customer_id]", "[fct_service_tickets].[customer_id]"),
        ("[dim_customers].[customer_id]", "[fct_social_interactions].[customer_id]"),
    }
    # every field of every extract, each once, with unique captions
    fields = _fields(root)
    assert len(fields) == sum(
        len(_hyper(tableau_dir / dbname)[0]) for dbname in connections.values()
    )
    captions = [f["caption"] for f in fields.values()]
    assert len(captions) == len(set(captions))
    assert (
        fields["[fct_orders].[customer_id]"]["caption"]
        == {
            "crm.tds": "Customer ID (Orders)",
            "crm.zh.tds": "客户ID (订单)",
        }[file_name]
    )
    # the relationships hold in the data: every customer of an order, ticket, interaction
    # is a published customer; every line's order a published order
    parquet = crm_home / "serving" / "parquet"
    con = duckdb.connect()
    for parent, child in related:
        p_table, p_column = parent[1:-1].split("].[")
        c_table, c_column = child[1:-1].split("].[")
        (orphans,) = con.execute(
            f"select count(*) from '{parquet / c_table}.parquet' where {c_column} is not null "
            f"and {c_column} not in (select {p_column} from '{parquet / p_table}.parquet')"
        ).fetchone()
        assert orphans == 0, child
