"""The managers' targets file (pipelines/targets): validation with one error per bad row
(file, line, column, reason), `crm targets check`, the setting CRM_TARGETS_FILE, and the
Dagster asset that loads the validated rows before the dbt build."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest
from click.testing import CliRunner

from pipelines.cli import main
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.settings import DEMO_TARGETS_FILE, Settings
from pipelines.targets import (
    COLUMNS,
    TargetsError,
    load_targets,
    read_targets,
    validate_targets,
)
from pipelines.targets.assets import build_targets_asset

HEADER = ",".join(COLUMNS)
GOOD = (
    "T01,returning_customer_rate,all,2026-07,+5%,increase,2026-08-01,2026-12-31,"
    "crm_vip_team,Returning-customer rate up 5%,老客占比提升5%"
)


def _file(tmp_path: Path, *rows: str, header: str = HEADER) -> Path:
    path = tmp_path / "targets.csv"
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _row(**changes: str) -> str:
    values = dict(zip(COLUMNS, GOOD.split(","), strict=True))
    values.update(changes)
    return ",".join(values[c] for c in COLUMNS)


def _errors(path: Path) -> list[str]:
    return [str(e) for e in validate_targets(path)[1]]


def test_the_demo_targets_are_valid():
    targets = read_targets(DEMO_TARGETS_FILE)
    assert [t.target_id for t in targets] == [f"T{i:02d}" for i in range(1, 12)]
    t11 = targets[-1]
    assert (t11.kpi, t11.segment, t11.target_value, t11.direction) == (
        "repurchase_rate",
        "vip",
        "+15%",
        "increase",
    )
    assert t11.description_zh == "三个月内VIP复购率提升15%"


@pytest.mark.parametrize(
    ("changes", "column", "reason"),
    [
        ({"kpi": "vip_repurchase_rate"}, "kpi", "unknown KPI 'vip_repurchase_rate'"),
        ({"segment": "VIP"}, "segment", "'VIP' is not a segment"),
        ({"segment": "high value"}, "segment", "'high value' is not a segment"),
        ({"baseline_period": "2026-7"}, "baseline_period", "'2026-7' is not a month YYYY-MM"),
        ({"baseline_period": "2026-13"}, "baseline_period", "'2026-13' is not a month YYYY-MM"),
        ({"baseline_period": "July"}, "baseline_period", "'July' is not a month YYYY-MM"),
        ({"target_value": "15 %"}, "target_value", "'15 %' is neither a number (0.90) nor"),
        ({"target_value": "abc"}, "target_value", "'abc' is neither a number"),
        ({"target_value": "+0%"}, "target_value", "'+0%' changes nothing"),
        (
            {"target_value": "-120%", "direction": "decrease"},
            "target_value",
            "'-120%' is a fall of more",
        ),
        ({"target_value": "90"}, "target_value", "'90': returning_customer_rate is a rate"),
        ({"direction": "up"}, "direction", "'up' is neither increase nor decrease"),
        ({"direction": "decrease"}, "direction", "decrease, but the target +5% is an increase"),
        (
            {"target_value": "-5%", "direction": "increase"},
            "direction",
            "increase, but the target -5% is a decrease",
        ),
        ({"due_date": "2026-08-01"}, "due_date", "2026-08-01 is not after start_date 2026-08-01"),
        ({"due_date": "2026-07-31"}, "due_date", "2026-07-31 is not after start_date 2026-08-01"),
        ({"start_date": "2026/08/01"}, "start_date", "'2026/08/01' is not a date YYYY-MM-DD"),
        ({"due_date": "2026-02-30"}, "due_date", "'2026-02-30' is not a date of the calendar"),
        ({"description_en": ""}, "description_en", "missing description (English)"),
        ({"description_zh": "  "}, "description_zh", "missing description (Chinese)"),
        ({"owner": ""}, "owner", "is empty"),
        ({"target_id": ""}, "target_id", "is empty"),
    ],
)
def test_each_error_names_the_file_the_line_the_column_and_the_reason(
    tmp_path, changes, column, reason
):
    path = _file(tmp_path, _row(**changes))
    errors = _errors(path)
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"{path}, line 2: column {column}: {reason}"), errors[0]


def test_an_absolute_target_of_a_count_is_any_number(tmp_path):
    path = _file(tmp_path, _row(kpi="vip_customers", target_value="1200"))
    assert _errors(path) == []


@pytest.mark.parametrize("segment", ["all", "vip", "dormant", "low_value_high_potential",
                                     "Can't Lose Them", "tmall"])  # fmt: skip
def test_every_kind_of_segment_is_accepted(tmp_path, segment):
    path = tmp_path / "targets.csv"
    row = _row(segment='"' + segment + '"')
    path.write_text(HEADER + "\n" + row + "\n", encoding="utf-8")
    (target,) = read_targets(path)
    assert target.segment == segment


def test_several_bad_rows_give_one_error_each_with_the_right_line(tmp_path):
    """Line numbers are those of the file as an editor shows it: blank lines and a quoted
    description over two lines count."""
    rows = [
        _row(target_id="T01"),  # line 2
        "",  # line 3: blank, skipped
        _row(target_id="T02", description_en='"first line\nsecond line"'),  # lines 4-5
        _row(target_id="T03", kpi="nope", direction="sideways"),  # line 6: two problems
        _row(target_id="T01"),  # line 7: duplicate of line 2
        _row(target_id="T04"),  # line 8: good
        _row(target_id="T05", baseline_period="2026-6"),  # line 9
    ]
    path = _file(tmp_path, *rows)
    targets, errors = validate_targets(path)
    assert [t.target_id for t in targets] == ["T01", "T02", "T04"]
    assert targets[1].description_en == "first line\nsecond line"
    assert [str(e) for e in errors] == [
        f"{path}, line 6: column kpi: unknown KPI 'nope' (the KPIs are those of "
        f"dbt_project/seeds/kpi_definitions.csv: {_kpis()}); "
        "column direction: 'sideways' is neither increase nor decrease",
        f"{path}, line 7: column target_id: T01 is already the id of line 2",
        f"{path}, line 9: column baseline_period: '2026-6' is not a month YYYY-MM (e.g. 2026-06)",
    ]
    with pytest.raises(TargetsError) as raised:
        read_targets(path)
    assert str(raised.value).count("\n") == 2  # three lines, one per bad row


def _kpis() -> str:
    import csv

    from pipelines.lib.settings import DBT_PROJECT_DIR

    with (DBT_PROJECT_DIR / "seeds" / "kpi_definitions.csv").open(encoding="utf-8") as handle:
        return ", ".join(row["kpi"] for row in csv.DictReader(handle))


def test_a_row_with_too_few_fields(tmp_path):
    path = _file(tmp_path, GOOD, "T02,orders,all")
    assert _errors(path) == [f"{path}, line 3: 3 fields, the header has 11"]


def test_a_wrong_header_is_one_error_on_line_1(tmp_path):
    header = HEADER.replace("description_zh", "description_cn")
    path = _file(tmp_path, GOOD, header=header)
    (error,) = _errors(path)
    assert error.startswith(
        f"{path}, line 1: column header: missing description_zh; "
        "column header: unknown column 'description_cn'; column header: expected: target_id,"
    )


def test_a_file_not_in_utf8_names_the_line(tmp_path):
    path = tmp_path / "targets.csv"
    text = "\n".join([HEADER, GOOD, _row(target_id="T02")]) + "\n"
    path.write_bytes(text.encode("gb18030"))
    assert _errors(path) == [f"{path}, line 2: not UTF-8 text (save the file as CSV UTF-8)"]


def test_a_byte_order_mark_is_accepted(tmp_path):
    path = tmp_path / "targets.csv"
    path.write_bytes(("\n".join([HEADER, GOOD]) + "\n").encode("utf-8-sig"))
    assert [t.target_id for t in read_targets(path)] == ["T01"]


def test_a_missing_file_is_one_error(tmp_path):
    path = tmp_path / "nowhere.csv"
    assert _errors(path) == [f"{path}: no such file (setting CRM_TARGETS_FILE)"]


# --------------------------------------------------------------------------- crm targets check
def test_crm_targets_check_prints_every_error_and_fails(tmp_path):
    path = _file(tmp_path, _row(target_id="T01", segment="VIP"), _row(target_id="T01"))
    result = CliRunner().invoke(main, ["targets", "check", str(path)])
    assert result.exit_code == 1, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"error: {path}, line 2: column segment: 'VIP' is not a segment")
    assert lines[1] == f"error: {path}, line 3: column target_id: T01 is already the id of line 2"
    assert lines[2].startswith(f"2 bad row(s) in {path}")
    assert "Traceback" not in result.output


def test_crm_targets_check_reads_the_setting_by_default(tmp_path):
    path = _file(tmp_path, GOOD, _row(target_id="T02"))
    result = CliRunner().invoke(main, ["targets", "check"], env={"CRM_TARGETS_FILE": str(path)})
    assert result.exit_code == 0, result.output
    assert result.output == f"{path}: 2 target(s), all valid\n"
    demo = CliRunner().invoke(main, ["targets", "check"], env={"CRM_TARGETS_FILE": ""})
    assert demo.output == f"{DEMO_TARGETS_FILE}: 11 target(s), all valid\n"


# --------------------------------------------------------------------------- setting and asset
def test_the_setting_and_its_resource(tmp_path):
    assert Settings.from_env({"CRM_HOME": str(tmp_path)}).targets_file == DEMO_TARGETS_FILE
    assert DEMO_TARGETS_FILE.parts[-4:] == ("pipelines", "targets", "demo", "kpi_targets.csv")
    settings = Settings.from_env(
        {"CRM_HOME": str(tmp_path), "CRM_TARGETS_FILE": str(tmp_path / "t.csv")}
    )
    assert settings.targets_file == tmp_path / "t.csv"
    resource = CrmSettingsResource.from_settings(settings)
    assert resource.settings.targets_file == tmp_path / "t.csv"


def _materialize(tmp_path: Path, targets_file: Path) -> dg.ExecuteInProcessResult:
    settings = Settings.from_env(
        {"CRM_HOME": str(tmp_path / "home"), "CRM_TARGETS_FILE": str(targets_file)}
    )
    asset = build_targets_asset(dg.DailyPartitionsDefinition(start_date="2026-10-01"))
    return dg.materialize(
        [asset],
        resources={"crm": CrmSettingsResource.from_settings(settings)},
        partition_key="2026-10-31",
        raise_on_error=False,
    )


def _loaded(tmp_path: Path) -> list[tuple]:
    with duckdb.connect(str(tmp_path / "home" / "warehouse" / "warehouse.duckdb")) as con:
        return con.execute(
            "select target_id, start_date, description_zh from targets.kpi_targets order by 1"
        ).fetchall()


def test_the_asset_loads_the_validated_targets_and_replaces_the_old_ones(tmp_path):
    from datetime import date

    assert _materialize(tmp_path, DEMO_TARGETS_FILE).success
    rows = _loaded(tmp_path)
    assert len(rows) == 11
    assert rows[10] == ("T11", date(2026, 9, 1), "三个月内VIP复购率提升15%")
    smaller = _file(tmp_path, GOOD)
    assert _materialize(tmp_path, smaller).success
    assert [r[0] for r in _loaded(tmp_path)] == ["T01"]


def test_a_bad_file_fails_the_asset_with_its_errors_and_keeps_the_loaded_targets(tmp_path):
    assert _materialize(tmp_path, DEMO_TARGETS_FILE).success
    bad = _file(tmp_path, GOOD, _row(target_id="T02", due_date="2026-01-01"))
    result = _materialize(tmp_path, bad)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert f"{bad}, line 3: column due_date: 2026-01-01 is not after start_date" in message
    assert "crm targets check" in message
    assert len(_loaded(tmp_path)) == 11


def test_load_targets_on_an_empty_file(tmp_path):
    path = _file(tmp_path)
    with duckdb.connect() as con:
        assert load_targets(con, read_targets(path)) == 0
        columns = con.execute("describe targets.kpi_targets").fetchall()
    assert [c[0] for c in columns] == list(COLUMNS)
    assert dict((c[0], c[1]) for c in columns)["due_date"] == "DATE"
