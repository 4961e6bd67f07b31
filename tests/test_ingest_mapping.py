"""Mapping YAML validation and expression safety (pipelines/ingest/mapping.py, sql_expr.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipelines.ingest.mapping import MappingError, load_mapping, load_mappings, parse_mapping
from pipelines.ingest.sql_expr import ExpressionError, validate_expression

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"

BASE = {
    "name": "shop",
    "entity": "orders",
    "format": {"type": "csv"},
    "fields": {
        "order_id": "order_no",
        "ordered_at": "ts",
        "status": "st",
        "quantity": "qty",
        "unit_price": "price",
    },
}


def _write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def _with(**changes) -> dict:
    doc = {**BASE, "fields": dict(BASE["fields"]), "format": dict(BASE["format"])}
    doc.update(changes)
    return doc


def test_fixture_mappings_load():
    names = {m.name for m in load_mappings(FIXTURES)}
    assert names == {"shop", "erp", "pos", "legacy", "app"}
    shop = load_mapping(FIXTURES / "orders_csv.yaml")
    assert shop.version == "3"
    assert shop.format.null_tokens == ("", "NULL")
    assert shop.fields["ordered_at"].formats == ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M")
    assert dict(shop.fields["status"].values)["DONE"] == "completed"
    assert set(shop.unmapped_defaults) == {"discount_amount", "refunded_amount", "source_system"}


def test_format_aliases(tmp_path):
    m = load_mapping(_write(tmp_path, _with(format={"type": "tsv"})))
    assert (m.format.type, m.format.delimiter) == ("csv", "\t")
    m = load_mapping(_write(tmp_path, _with(format={"type": "txt", "delimiter": "whitespace"})))
    assert m.format.whitespace
    m = load_mapping(_write(tmp_path, _with(format={"type": "csv", "encoding": "GBK"})))
    assert m.format.encoding == "gbk"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"entity": "invoices"}, "unknown entity 'invoices'"),
        ({"name": "Shop-1"}, "name 'Shop-1' must match"),
        ({"format": {"type": "xlsx"}}, "format.type 'xlsx' is not supported"),
        ({"format": {"type": "csv", "encoding": "latin-9"}}, "format.encoding 'latin-9'"),
        ({"format": {"type": "csv", "delim": ";"}}, "format: unknown key(s) ['delim']"),
        ({"timezone": "Mars/Olympus"}, "timezone 'Mars/Olympus'"),
        ({"colour": "red"}, "unknown key(s) ['colour']"),
    ],
)
def test_bad_mapping_is_refused_with_file_and_problem(tmp_path, change, message):
    path = _write(tmp_path, _with(**change))
    with pytest.raises(MappingError) as exc:
        load_mapping(path)
    assert str(exc.value).startswith(str(path))
    assert message in str(exc.value)


def test_unknown_canonical_field(tmp_path):
    doc = _with()
    doc["fields"]["order_total"] = "total"
    with pytest.raises(MappingError, match=r"fields\.order_total: unknown canonical field"):
        load_mapping(_write(tmp_path, doc))


def test_missing_required_field(tmp_path):
    doc = _with()
    del doc["fields"]["unit_price"]
    del doc["fields"]["status"]
    with pytest.raises(MappingError, match="not mapped for orders: status, unit_price"):
        load_mapping(_write(tmp_path, doc))


def test_defaulted_fields_need_no_mapping(tmp_path):
    doc = {
        "name": "desk",
        "entity": "service_events",
        "fields": {"ticket_id": "t", "event_at": "at", "event_type": "ty"},
    }
    m = load_mapping(_write(tmp_path, doc))
    assert m.unmapped_defaults == ("event_id",)


def test_yaml_boolean_column_name_is_explained(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text(
        "name: shop\nentity: orders\nfields:\n  order_id: no\n  ordered_at: ts\n"
        "  status: st\n  quantity: q\n  unit_price: p\n",
        encoding="utf-8",
    )
    with pytest.raises(MappingError, match="quote names YAML reads as booleans"):
        load_mapping(path)


def test_formats_only_for_time_fields(tmp_path):
    doc = _with()
    doc["fields"]["quantity"] = {"column": "qty", "formats": ["%d"]}
    with pytest.raises(MappingError, match="formats only apply to timestamp and date"):
        load_mapping(_write(tmp_path, doc))


def test_column_xor_expr(tmp_path):
    doc = _with()
    doc["fields"]["quantity"] = {"column": "qty", "expr": "1"}
    with pytest.raises(MappingError, match="exactly one of column or expr"):
        load_mapping(_write(tmp_path, doc))


# --------------------------------------------------------------------------- expressions
@pytest.mark.parametrize(
    ("expr", "columns"),
    [
        ("coalesce(ccy, 'CNY')", ("ccy",)),
        ("cust_id || '-' || strftime(dt::date, '%Y%m%d')", ("cust_id", "dt")),
        ("case when a in ('1', '2') then b else upper(c) end", ("a", "b", "c")),
        ("list_transform(string_split(tags, '|'), x -> trim(x))[1]", ("tags",)),
        ('"订单号" || \'-\' || "行号"', ("订单号", "行号")),
        ("round(price::decimal(18,2) * 1.06, 2)", ("price",)),
        ("regexp_replace(phone, '[^0-9]', '', 'g')", ("phone",)),
    ],
)
def test_scalar_expressions_are_accepted(expr, columns):
    checked = validate_expression(expr)
    assert checked.columns == columns


def test_expressions_run_failure_tolerant():
    # strptime / CAST become their try_ forms: one bad value quarantines a row, not a file
    assert "try_strptime" in validate_expression("strptime(d, '%Y%m%d')").sql
    assert "TRY_CAST" in validate_expression("x::int").sql


@pytest.mark.parametrize(
    "expr",
    [
        "1; DROP TABLE raw.orders",
        "(SELECT 1)",
        "(SELECT secret FROM raw.customers LIMIT 1)",
        "a IN (SELECT order_id FROM raw.orders)",
        "EXISTS (SELECT 1)",
        "read_csv('/etc/passwd')",
        "read_text('/etc/passwd')",
        "read_blob('/etc/passwd')",
        "read_parquet('x.parquet')",
        "glob('/*')",
        "getenv('HOME')",
        "current_setting('home_directory')",
        "getvariable('x')",
        "nextval('seq')",
        "random()",
        "sum(price)",
        "count(*)",
        "row_number() OVER ()",
        "a) FROM read_csv('/etc/passwd') --",
        "a /* comment */",
        "x FROM __src; COPY raw.orders TO '/tmp/x.csv'",
        "1 UNION SELECT 2",
        "main.upper(a)",
        "t.a",
        "query('SELECT 1')",
        "json_execute_serialized_sql('{}')",
        "",
    ],
)
def test_unsafe_expressions_are_refused(expr):
    with pytest.raises(ExpressionError):
        validate_expression(expr)


@pytest.mark.parametrize(
    "statement",
    [
        "COPY (SELECT 1) TO '/tmp/x'",
        "ATTACH '/tmp/x.db'",
        "INSTALL httpfs",
        "LOAD httpfs",
        "PRAGMA version",
        "SET threads = 1",
        "CALL pragma_version()",
    ],
)
def test_statements_are_refused(statement):
    with pytest.raises(ExpressionError):
        validate_expression(statement)


def test_refused_expression_names_mapping_and_field(tmp_path):
    doc = _with()
    doc["fields"]["status"] = {"expr": "read_text('/etc/passwd')"}
    path = _write(tmp_path, doc)
    with pytest.raises(MappingError) as exc:
        load_mapping(path)
    assert str(path) in str(exc.value)
    assert "fields.status" in str(exc.value)
    assert "read_text" in str(exc.value)


def test_parse_mapping_without_file():
    m = parse_mapping({**BASE})
    assert m.label == "<mapping shop>"


# --------------------------------------------------------------------------- sandbox escapes
@pytest.mark.parametrize(
    ("expr", "function"),
    [
        ("regexp_split_to_table(tags, ',')", "regexp_split_to_table"),  # multiplies rows
        ("pg_get_viewdef('main.v')", "pg_get_viewdef"),  # reads view SQL
        ("today()", "today"),  # time of the run
        ("ago(INTERVAL 1 DAY)", "ago"),
        ("pg_postmaster_start_time()", "pg_postmaster_start_time"),
        ("now()", "now"),
        ("unnest(string_split(tags, ','))", "unnest"),
        ("current_database()", "current_database"),
    ],
)
def test_functions_outside_the_allow_list_are_refused_by_name(expr, function):
    with pytest.raises(ExpressionError, match=rf"function {function}\(\) is not allowed"):
        validate_expression(expr)


@pytest.mark.parametrize(
    "expr",
    [
        "try_strptime(d, '%Y%m%d')",
        "make_date(y::int, m::int, d::int)",
        "strftime(strptime(d, '%Y%m%d'), '%Y-%m-%d')",
        "regexp_extract(phone, '[0-9]+')",
        "regexp_matches(phone, '^1[0-9]{10}$')",
        "md5(a || b)",
        "nullif(trim(a), '')",
        "CASE WHEN a LIKE 'x%' THEN 1 ELSE 0 END",
    ],
)
def test_the_functions_mappings_need_are_allowed(expr):
    validate_expression(expr)


@pytest.mark.parametrize("glob", ["../../../etc/pass*", "sub/../../x.csv", "/etc/passwd", "..\\x"])
def test_a_files_glob_leaving_the_delivery_folder_is_refused(tmp_path, glob):
    doc = _with()
    doc["files"] = glob
    with pytest.raises(MappingError, match="delivery folder"):
        load_mapping(_write(tmp_path, doc))


def test_the_demo_mappings_still_load():
    demo = Path(__file__).parent.parent / "pipelines" / "ingest" / "mappings" / "demo"
    assert len(load_mappings(demo)) == len(list(demo.glob("*.yaml")))
