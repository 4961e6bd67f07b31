"""The Tableau data sources (pipelines/publish/tds.py) on hand-written columns; the files of a
real publication are checked by tests/test_tableau_e2e.py."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

from pipelines.publish.tds import (
    caption_of,
    caption_zh_of,
    dbt_descriptions,
    field_of,
    fields_of,
    related_tds,
    table_tds,
)


def test_captions_from_column_names():
    assert caption_of("ordered_at") == "Ordered At (UTC)"
    assert caption_of("ordered_at_local") == "Ordered At (Business Time)"
    assert caption_of("net_revenue_365d") == "Net Revenue 365d"
    assert caption_of("first_response_sla_rate") == "First Response SLA Rate"
    assert caption_of("customer_id") == "Customer ID"
    assert caption_of("p_alive") == "P(Alive)"


def test_chinese_captions():
    assert caption_zh_of("ordered_at") == "下单时间（UTC）"
    assert caption_zh_of("ordered_at_local") == "下单时间（业务时间）"
    assert caption_zh_of("member_tier") == "会员等级"
    assert caption_zh_of("not_a_known_column") == "Not A Known Column"  # English fallback
    fields = fields_of(
        "fct_orders", [("order_id", "VARCHAR"), ("ordered_at", "TIMESTAMP")], {}, "CNY"
    )
    root = ET.fromstring(table_tds("fct_orders", fields, "zh").encode("utf-8"))
    assert root.get("formatted-name") == "订单"
    assert [c.get("caption") for c in root.findall("column")] == [
        "订单ID",
        "下单时间（UTC）",
        "订单",
    ]
    assert [f.get("name") for f in root.iter("folder")] == ["标识", "日期"]


def test_roles_formats_folders():
    def field(column: str, duck_type: str):
        f = field_of("t", column, duck_type, None, "CNY")
        return f.datatype, f.role, f.default_format, f.folder

    assert field("net_revenue", "DECIMAL(18,2)") == (
        "real", "measure", 'c"¥"#,##0.00;-"¥"#,##0.00', "Measures"
    )  # fmt: skip
    assert field("unit_price_local", "DECIMAL(18,2)") == (
        "real",
        "measure",
        "n#,##0.00",
        "Measures",
    )
    assert field("repurchase_rate", "DOUBLE") == ("real", "measure", "p0.0%", "Measures")
    assert field("line_count", "INTEGER") == ("integer", "measure", "n#,##0", "Measures")
    assert field("r_score", "INTEGER") == ("integer", "dimension", None, "Segments")
    assert field("order_id", "VARCHAR") == ("string", "dimension", None, "Identity")
    assert field("order_date", "DATE") == ("date", "dimension", "*yyyy-mm-dd", "Dates")
    assert field("ordered_at_local", "TIMESTAMP") == (
        "datetime", "dimension", "*yyyy-mm-dd hh:nn:ss", "Dates"
    )  # fmt: skip
    assert field("is_vip", "BOOLEAN") == ("boolean", "dimension", None, "Segments")
    assert field_of("t", "amount", "DOUBLE", None, "USD").default_format == (
        'c"$"#,##0.00;-"$"#,##0.00'
    )
    assert field_of("t", "province", "VARCHAR", None, "CNY").semantic_role == "[State].[Name]"


def test_descriptions_are_escaped_and_the_xml_parses():
    fields = fields_of(
        "fct_orders",
        [("order_id", "VARCHAR"), ("net_revenue", "DECIMAL(18,2)")],
        {"fct_orders": {"net_revenue": "quantity x price - discount < gross & 'net'"}},
        "CNY",
    )
    root = ET.fromstring(table_tds("fct_orders", fields).encode("utf-8"))
    (revenue,) = [c for c in root.findall("column") if c.get("name") == "[net_revenue]"]
    assert revenue.findtext("desc/formatted-text/run") == (
        "quantity x price - discount < gross & 'net'"
    )
    assert [c.get("name") for c in root.findall("column")][:2] == ["[order_id]", "[net_revenue]"]


def test_related_tds_names_repeated_columns_by_table_and_relates_on_keys():
    customers = fields_of("dim_customers", [("customer_id", "VARCHAR")], {}, "CNY")
    orders = fields_of(
        "fct_orders", [("order_id", "VARCHAR"), ("customer_id", "VARCHAR")], {}, "CNY"
    )
    lines = fields_of("fct_order_lines", [("order_id", "VARCHAR")], {}, "CNY")
    root = ET.fromstring(
        related_tds(
            {"dim_customers": customers, "fct_orders": orders, "fct_order_lines": lines}
        ).encode("utf-8")
    )
    keys = {m.get("key"): m.get("value") for m in root.iter("map")}
    assert keys == {
        "[customer_id]": "[dim_customers].[customer_id]",
        "[order_id]": "[fct_orders].[order_id]",
        "[customer_id (fct_orders)]": "[fct_orders].[customer_id]",
        "[order_id (fct_order_lines)]": "[fct_order_lines].[order_id]",
    }
    pairs = [tuple(e.get("op") for e in r.find("expression")) for r in root.iter("relationship")]
    assert pairs == [
        ("[customer_id]", "[customer_id (fct_orders)]"),
        ("[order_id]", "[order_id (fct_order_lines)]"),
    ]
    # without its parent (orders), a table is left out; without customers, no crm.tds
    assert related_tds({"dim_customers": customers, "fct_order_lines": lines}) is None
    assert related_tds({"fct_orders": orders, "fct_order_lines": lines}) is None


def test_dbt_descriptions_from_a_manifest(tmp_path):
    manifest = tmp_path / "manifest.json"
    manifest.write_text(
        json.dumps(
            {
                "nodes": {
                    "model.x.fct_orders": {
                        "resource_type": "model",
                        "name": "fct_orders",
                        "columns": {
                            "order_id": {"description": "Order\n  key."},
                            "channel": {"description": ""},
                        },
                    },
                    "test.x.t": {"resource_type": "test", "name": "t", "columns": {}},
                }
            }
        ),
        encoding="utf-8",
    )
    assert dbt_descriptions(manifest) == {"fct_orders": {"order_id": "Order key."}}
    assert dbt_descriptions(tmp_path / "missing.json") == {}


def test_every_mart_column_and_table_has_a_chinese_caption() -> None:
    """Each column a mart declares (dbt_project/models/marts/**.yml) is captioned in
    pipelines/publish/tds_zh.py, and each mart has a table caption in both languages: a
    new mart or column gets its captions with it (the e2e test sees only published data)."""
    import yaml

    from pipelines.lib.settings import DBT_PROJECT_DIR
    from pipelines.publish.tds import TABLE_CAPTIONS
    from pipelines.publish.tds_zh import CAPTIONS_ZH, TABLE_CAPTIONS_ZH

    missing = []
    for path in sorted((DBT_PROJECT_DIR / "models" / "marts").rglob("*.yml")):
        for model in yaml.safe_load(path.read_text()).get("models") or []:
            if model["name"] not in TABLE_CAPTIONS or model["name"] not in TABLE_CAPTIONS_ZH:
                missing.append(model["name"])
            for column in model.get("columns") or []:
                name = column["name"]
                base = name.removesuffix("_local") if name.endswith("_at_local") else name
                if base not in CAPTIONS_ZH:
                    missing.append(f"{model['name']}.{name}")
    assert missing == []
