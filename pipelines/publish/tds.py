"""The Tableau data sources (.tds) of a publication: one per extract, and `crm.tds`, which
relates the customer, order, order line, ticket and interaction extracts.

A field of a .tds is a column of its extract with what an analyst sees in Tableau: a caption
(in English from the column's name in `<table>.tds`, in Chinese in `<table>.zh.tds`,
pipelines/publish/tds_zh.py), its description (the column's description in the dbt
manifest), its type and role (dimension or measure), a default format (the reporting
currency for amounts, percentages for rates, ISO dates), a folder (Identity, Dates,
Measures, Segments) and, for provinces and cities, a geographic role.

`crm.tds` uses Tableau's relationships (the logical layer of Tableau 2020.2 and later): one
logical table per extract (`<object-graph>`), each read from its own .hyper file (one named
connection per file), related on their keys, so that fields of several tables go into one
view without a join. The XML follows what Tableau Desktop writes for such a data source.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from pipelines.publish.tds_zh import (
    CAPTIONS_ZH,
    FOLDERS_ZH,
    LOCAL_SUFFIX_ZH,
    RELATED_CAPTION_ZH,
    TABLE_CAPTIONS_ZH,
    UTC_SUFFIX_ZH,
)

HYPER_SCHEMA = "Extract"
HYPER_TABLE = "Extract"
#: The languages of the captions, each a .tds of its own: `<table>.tds`, `<table>.zh.tds`.
LANGUAGES = ("en", "zh")

#: The data source relating the extracts: `tableau/<RELATED_SOURCE>.tds`.
RELATED_SOURCE = "crm"
RELATED_CAPTION = "CRM: customers, orders, service and social"
#: The logical tables of crm.tds, root first; each other table with the (parent, key) it is
#: related on. The parent's key is unique (the "one" side).
RELATED_TABLES: dict[str, tuple[str, str] | None] = {
    "dim_customers": None,
    "fct_orders": ("dim_customers", "customer_id"),
    "fct_order_lines": ("fct_orders", "order_id"),
    "fct_service_tickets": ("dim_customers", "customer_id"),
    "fct_social_interactions": ("dim_customers", "customer_id"),
}

TABLE_CAPTIONS = {
    "dim_customers": "Customers",
    "fct_orders": "Orders",
    "fct_order_lines": "Order Lines",
    "fct_service_tickets": "Service Tickets",
    "fct_social_interactions": "Social Interactions",
    "fct_kpi_monthly": "KPIs by Month",
    "fct_kpi_weekly": "KPIs by Week",
    "rpt_kpi_review": "KPI Review",
    "rpt_campaign_audiences": "Campaign Audiences",
    "kpi_definitions": "KPI Definitions",
    "kpi_targets": "KPI Targets",
    "sla_targets": "SLA Targets",
    "fct_agent_daily": "Agents by Day",
    "fct_ticket_backlog_daily": "Ticket Backlog by Day",
    "fct_campaign_performance": "Campaign Performance",
    "fct_customer_cohorts": "Customer Cohorts",
    "dim_products": "Products",
    "fct_category_monthly": "Categories by Month",
    "fct_product_pairs": "Product Pairs",
    "fct_customer_segments_monthly": "Customer Segments by Month",
    "fct_segment_transitions": "Segment Transitions",
}

FOLDERS = ("Identity", "Dates", "Measures", "Segments")

# DuckDB type (its first word) -> Tableau datatype, the remote type Tableau records for a
# Hyper column of that type, the default aggregation
_TYPES = {
    "VARCHAR": ("string", 129, "Count"),
    "BOOLEAN": ("boolean", 11, "Count"),
    "DATE": ("date", 133, "Year"),
    "TIMESTAMP": ("datetime", 135, "Year"),
    "TINYINT": ("integer", 2, "Sum"),
    "SMALLINT": ("integer", 2, "Sum"),
    "INTEGER": ("integer", 3, "Sum"),
    "BIGINT": ("integer", 20, "Sum"),
    "HUGEINT": ("real", 131, "Sum"),
    "FLOAT": ("real", 5, "Sum"),
    "DOUBLE": ("real", 5, "Sum"),
    "DECIMAL": ("real", 131, "Sum"),
}

# Words written in capitals in captions
_ACRONYMS = {
    "id": "ID", "sla": "SLA", "csat": "CSAT", "nps": "NPS", "kpi": "KPI", "clv": "CLV",
    "rfm": "RFM", "vip": "VIP", "fx": "FX", "utc": "UTC", "dq": "DQ", "wechat": "WeChat",
}  # fmt: skip
#: Captions the rule of caption_of would get wrong.
_CAPTIONS = {"p_alive": "P(Alive)"}
#: Numbers that are categories, not quantities (no sum): scores of a rank, years, ranks.
_NUMERIC_DIMENSIONS = {
    "r_score", "f_score", "m_score", "member_tier_rank", "birth_year", "line_no", "priority",
    "maturity_days", "min_history_days", "months_since_first", "price_band_rank",
    "category_pair_rank",
}  # fmt: skip
#: Rates and shares (0-1), shown as percentages.
_PERCENT = re.compile(
    r"(_rate|_share|_percent_rank)$|^(profile_completeness|p_alive|progress|time_elapsed)$"
)
#: Amounts in the reporting currency.
_MONEY = re.compile(r"(^|_)(amount|revenue|clv|spend)(_|$)|^clv_365d$")
#: Amounts in the order's own currency (unit_price_local) are plain numbers.
_NOT_MONEY = {"unit_price_local", "fx_rate_to_reporting"}
_GEOGRAPHY = {"province": "[State].[Name]", "city": "[City].[Name]"}
_CURRENCY_SYMBOLS = {"CNY": "¥", "USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "HKD": "HK$"}
DATE_FORMAT = "*yyyy-mm-dd"
DATETIME_FORMAT = "*yyyy-mm-dd hh:nn:ss"


@dataclass(frozen=True)
class Field:
    """One column of an extract as Tableau shows it."""

    table: str
    column: str
    datatype: str  # Tableau: string, boolean, date, datetime, integer, real
    remote_type: int
    aggregation: str
    caption: str
    caption_zh: str
    description: str | None
    role: str  # dimension or measure
    kind: str  # nominal, ordinal or quantitative
    default_format: str | None
    semantic_role: str | None
    folder: str


def caption_of(column: str) -> str:
    """`ordered_at` -> "Ordered At (UTC)", `ordered_at_local` -> "Ordered At (Business
    Time)", `is_vip` -> "Is VIP", `net_revenue_365d` -> "Net Revenue 365d"."""
    if column in _CAPTIONS:
        return _CAPTIONS[column]
    suffix = ""
    base = column
    if column.endswith("_at_local"):
        base, suffix = column[: -len("_local")], " (Business Time)"
    elif column.endswith("_at"):
        suffix = " (UTC)"
    words = [
        _ACRONYMS.get(word, word if re.fullmatch(r"\d+[a-z]", word) else word.capitalize())
        for word in base.split("_")
        if word
    ]
    return " ".join(words) + suffix


def caption_zh_of(column: str) -> str:
    """The Chinese caption: `ordered_at` -> 下单时间（UTC）, `ordered_at_local` ->
    下单时间（业务时间）; the English caption for a column tds_zh.py does not know."""
    if column.endswith("_at_local") and column[: -len("_local")] in CAPTIONS_ZH:
        return CAPTIONS_ZH[column[: -len("_local")]] + LOCAL_SUFFIX_ZH
    if column.endswith("_at") and column in CAPTIONS_ZH:
        return CAPTIONS_ZH[column] + UTC_SUFFIX_ZH
    return CAPTIONS_ZH.get(column) or caption_of(column)


def tds_file(table: str, language: str) -> str:
    """`<table>.tds` (English captions) or `<table>.<language>.tds`."""
    return f"{table}.tds" if language == "en" else f"{table}.{language}.tds"


def table_caption(table: str, language: str) -> str:
    captions = TABLE_CAPTIONS_ZH if language == "zh" else TABLE_CAPTIONS
    return captions.get(table, table)


def currency_format(currency: str) -> str:
    symbol = _CURRENCY_SYMBOLS.get(currency.upper(), currency.upper() + " ")
    quoted = '"' + symbol + '"'
    return f"c{quoted}#,##0.00;-{quoted}#,##0.00"


def field_of(
    table: str, column: str, duck_type: str, description: str | None, currency: str
) -> Field:
    """The Tableau field of column `column` (DuckDB type `duck_type`) of extract `table`."""
    datatype, remote_type, aggregation = _TYPES.get(
        re.split(r"[(\s]", duck_type.upper(), maxsplit=1)[0], ("string", 129, "Count")
    )
    is_key = column.endswith(("_id", "_key")) or column == "id"
    numeric = datatype in ("integer", "real")
    role = (
        "measure" if numeric and not is_key and column not in _NUMERIC_DIMENSIONS else "dimension"
    )
    if role == "measure":
        kind = "quantitative"
    elif datatype in ("date", "datetime") or numeric:
        kind = "ordinal"
    else:
        kind = "nominal"
    default_format = None
    if datatype == "date":
        default_format = DATE_FORMAT
    elif datatype == "datetime":
        default_format = DATETIME_FORMAT
    elif role == "measure" and _PERCENT.search(column):
        default_format = "p0.0%"
    elif role == "measure" and _MONEY.search(column) and column not in _NOT_MONEY:
        default_format = currency_format(currency)
    elif role == "measure":
        default_format = "n#,##0" if datatype == "integer" else "n#,##0.00"
    if is_key or column.startswith("source_"):
        folder = "Identity"
    elif datatype in ("date", "datetime"):
        folder = "Dates"
    elif role == "measure":
        folder = "Measures"
    else:
        folder = "Segments"
    return Field(
        table=table,
        column=column,
        datatype=datatype,
        remote_type=remote_type,
        aggregation=aggregation,
        caption=caption_of(column),
        caption_zh=caption_zh_of(column),
        description=description or None,
        role=role,
        kind=kind,
        default_format=default_format,
        semantic_role=_GEOGRAPHY.get(column),
        folder=folder,
    )


def fields_of(
    table: str,
    columns: Iterable[tuple[str, str]],
    descriptions: dict[str, dict[str, str]],
    currency: str,
) -> list[Field]:
    """The fields of extract `table` from its (column, DuckDB type) pairs, in order."""
    described = descriptions.get(table, {})
    return [
        field_of(table, column, duck_type, described.get(column), currency)
        for column, duck_type in columns
    ]


def dbt_descriptions(manifest: Path | None) -> dict[str, dict[str, str]]:
    """model or seed name -> column -> its description, from a dbt manifest (docs blocks
    rendered); {} when there is no manifest."""
    if manifest is None or not Path(manifest).is_file():
        return {}
    nodes = json.loads(Path(manifest).read_text(encoding="utf-8")).get("nodes", {})
    found: dict[str, dict[str, str]] = {}
    for node in nodes.values():
        if node.get("resource_type") not in ("model", "seed"):
            continue
        columns = {
            name: " ".join(str(column.get("description") or "").split())
            for name, column in (node.get("columns") or {}).items()
        }
        found[node["name"]] = {name: text for name, text in columns.items() if text}
    return found


def object_id(table: str) -> str:
    """The id of a logical table, as Tableau writes them: the name, '_', 32 hex digits."""
    return f"{table}_{uuid.uuid5(uuid.NAMESPACE_URL, 'crm-tableau/' + table).hex.upper()}"


def _connection_name(table: str) -> str:
    return f"hyper.{table}"


def _hyper_connection(table: str, hyper_file: str, language: str) -> list[str]:
    return [
        f"      <named-connection caption={quoteattr(table_caption(table, language))} "
        f"name={quoteattr(_connection_name(table))}>",
        "        <connection authentication='auth-none' author-locale='en_US' class='hyper' "
        f"dbname={quoteattr(hyper_file)} default-settings='yes' schema='{HYPER_SCHEMA}' "
        f"sslmode='' tablename='{HYPER_TABLE}' username='tableau_internal_user' />",
        "      </named-connection>",
    ]


def _relation(table: str) -> str:
    return (
        f"<relation connection={quoteattr(_connection_name(table))} name={quoteattr(table)} "
        f"table='[{HYPER_SCHEMA}].[{HYPER_TABLE}]' type='table' />"
    )


def local_names(tables: dict[str, list[Field]]) -> dict[tuple[str, str], str]:
    """(table, column) -> the field's name in the data source. As in Tableau: the first table
    with a column name keeps it, the others get `name (table)`."""
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    for table, fields in tables.items():
        for field in fields:
            name = field.column if field.column not in taken else f"{field.column} ({table})"
            taken.add(name)
            names[(table, field.column)] = name
    return names


def _captions(tables: dict[str, list[Field]], language: str) -> dict[tuple[str, str], str]:
    """Captions unique in the data source: a repeated one gets the table's caption."""
    seen: set[str] = set()
    captions: dict[tuple[str, str], str] = {}
    for table, fields in tables.items():
        for field in fields:
            caption = field.caption_zh if language == "zh" else field.caption
            if caption in seen:
                caption = f"{caption} ({table_caption(table, language)})"
            seen.add(caption)
            captions[(table, field.column)] = caption
    return captions


def datasource_xml(
    caption: str,
    tables: dict[str, list[Field]],
    hyper_files: dict[str, str],
    language: str = "en",
) -> str:
    """A .tds over the extracts `tables` (table -> its fields), each read from
    `hyper_files[table]` (relative to the .tds), captioned in `language`; with more than one
    table, the tables are related as RELATED_TABLES says."""
    names = local_names(tables)
    captions = _captions(tables, language)
    several = len(tables) > 1
    out = [
        "<?xml version='1.0' encoding='utf-8' ?>",
        f"<datasource formatted-name={quoteattr(caption)} inline='true' version='18.1' "
        "xmlns:user='http://www.tableausoftware.com/xml/user'>",
        "  <document-format-change-manifest>",
        "    <ObjectModelEncapsulateLegacy />",
        "    <ObjectModelTableType />",
        "    <SchemaViewerObjectModel />",
        "  </document-format-change-manifest>",
        "  <connection class='federated'>",
        "    <named-connections>",
    ]
    for table in tables:
        out += _hyper_connection(table, hyper_files[table], language)
    out.append("    </named-connections>")
    if several:
        out.append("    <relation type='collection'>")
        out += [f"      {_relation(table)}" for table in tables]
        out.append("    </relation>")
    else:
        out.append(f"    {_relation(next(iter(tables)))}")
    out.append("    <cols>")
    for table, fields in tables.items():
        for field in fields:
            out.append(
                f"      <map key={quoteattr('[' + names[(table, field.column)] + ']')} "
                f"value={quoteattr(f'[{table}].[{field.column}]')} />"
            )
    out += ["    </cols>", "    <metadata-records>"]
    for table, fields in tables.items():
        for ordinal, field in enumerate(fields):
            out += [
                "      <metadata-record class='column'>",
                f"        <remote-name>{escape(field.column)}</remote-name>",
                f"        <remote-type>{field.remote_type}</remote-type>",
                f"        <local-name>{escape('[' + names[(table, field.column)] + ']')}"
                "</local-name>",
                f"        <parent-name>{escape('[' + table + ']')}</parent-name>",
                f"        <remote-alias>{escape(field.column)}</remote-alias>",
                f"        <ordinal>{ordinal}</ordinal>",
                f"        <local-type>{field.datatype}</local-type>",
                f"        <aggregation>{field.aggregation}</aggregation>",
                "        <contains-null>true</contains-null>",
                f"        <object-id>{escape('[' + object_id(table) + ']')}</object-id>",
                "      </metadata-record>",
            ]
    out += ["    </metadata-records>", "  </connection>", "  <aliases enabled='yes' />"]
    for table, fields in tables.items():
        for field in fields:
            out += _column_xml(field, names[(table, field.column)], captions[(table, field.column)])
        out.append(
            f"  <column caption={quoteattr(table_caption(table, language))} datatype='table' "
            f"name={quoteattr(f'[__tableau_internal_object_id__].[{object_id(table)}]')} "
            "role='measure' type='quantitative' />"
        )
    out += _folders_xml(tables, names, several, language)
    out.append(
        "  <layout dim-ordering='alphabetic' measure-ordering='alphabetic' show-structure='true' />"
    )
    out += _object_graph_xml(tables, names, language)
    out.append("</datasource>")
    return "\n".join(out) + "\n"


def _column_xml(field: Field, name: str, caption: str) -> list[str]:
    attributes = [
        f"caption={quoteattr(caption)}",
        f"datatype='{field.datatype}'",
        *([f"default-format={quoteattr(field.default_format)}"] if field.default_format else []),
        f"name={quoteattr('[' + name + ']')}",
        f"role='{field.role}'",
        *([f"semantic-role={quoteattr(field.semantic_role)}"] if field.semantic_role else []),
        f"type='{field.kind}'",
    ]
    if field.description is None:
        return [f"  <column {' '.join(attributes)} />"]
    return [
        f"  <column {' '.join(attributes)}>",
        "    <desc>",
        "      <formatted-text>",
        f"        <run>{escape(field.description)}</run>",
        "      </formatted-text>",
        "    </desc>",
        "  </column>",
    ]


def _folders_xml(
    tables: dict[str, list[Field]],
    names: dict[tuple[str, str], str],
    several: bool,
    language: str,
) -> list[str]:
    out = ["  <folders-common>"]
    for table, fields in tables.items():
        for folder in FOLDERS:
            members = [field for field in fields if field.folder == folder]
            if not members:
                continue
            label = FOLDERS_ZH[folder] if language == "zh" else folder
            if several:
                label = f"{label} ({table_caption(table, language)})"
            out.append(f"    <folder name={quoteattr(label)}>")
            out += [
                f"      <folder-item name={quoteattr('[' + names[(table, f.column)] + ']')} "
                "type='field' />"
                for f in members
            ]
            out.append("    </folder>")
    out.append("  </folders-common>")
    return out


def _object_graph_xml(
    tables: dict[str, list[Field]], names: dict[tuple[str, str], str], language: str
) -> list[str]:
    out = ["  <object-graph>", "    <objects>"]
    for table in tables:
        out += [
            f"      <object caption={quoteattr(table_caption(table, language))} "
            f"id={quoteattr(object_id(table))}>",
            "        <properties context=''>",
            f"          {_relation(table)}",
            "        </properties>",
            "      </object>",
        ]
    out.append("    </objects>")
    related = [
        (parent, key, table)
        for table, edge in RELATED_TABLES.items()
        if edge is not None and table in tables
        for parent, key in [edge]
        if parent in tables
    ]
    if related:
        out.append("    <relationships>")
        for parent, key, table in related:
            out += [
                "      <relationship>",
                "        <expression op='='>",
                f"          <expression op={quoteattr('[' + names[(parent, key)] + ']')} />",
                f"          <expression op={quoteattr('[' + names[(table, key)] + ']')} />",
                "        </expression>",
                f"        <first-end-point object-id={quoteattr(object_id(parent))} "
                "unique-key='true' />",
                f"        <second-end-point object-id={quoteattr(object_id(table))} />",
                "      </relationship>",
            ]
        out.append("    </relationships>")
    out.append("  </object-graph>")
    return out


def table_tds(table: str, fields: list[Field], language: str = "en") -> str:
    """The .tds of one extract, `<table>.hyper` beside it, captioned in `language`."""
    return datasource_xml(
        table_caption(table, language), {table: fields}, {table: f"{table}.hyper"}, language
    )


def related_tds(fields: dict[str, list[Field]], language: str = "en") -> str | None:
    """crm.tds (crm.zh.tds) over the RELATED_TABLES among `fields` (table -> its fields), or
    None when customers and at least one table related to them are not all there."""
    tables = {
        table: fields[table]
        for table in RELATED_TABLES
        if table in fields and (RELATED_TABLES[table] is None or RELATED_TABLES[table][0] in fields)
    }
    if "dim_customers" not in tables or len(tables) < 2:
        return None
    caption = RELATED_CAPTION_ZH if language == "zh" else RELATED_CAPTION
    return datasource_xml(caption, tables, {t: f"{t}.hyper" for t in tables}, language)
