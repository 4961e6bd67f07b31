"""The columns the KPI review reads exist in the dbt contracts of the marts (no drift between
pipelines/publish/columns.py and dbt_project/models/marts/**.yml)."""

from pathlib import Path

import pytest
import yaml

from pipelines.lib.settings import DBT_PROJECT_DIR
from pipelines.publish.columns import COLUMNS, TABLE_SCHEMAS


def _contract_columns() -> dict[str, set[str]]:
    models: dict[str, set[str]] = {}
    for path in Path(DBT_PROJECT_DIR, "models", "marts").rglob("*.yml"):
        for model in (yaml.safe_load(path.read_text()) or {}).get("models", []):
            models[model["name"]] = {c["name"] for c in model.get("columns", [])}
    return models


MART_TABLES = sorted(
    t
    for t, schemas in TABLE_SCHEMAS.items()
    if schemas[0] == "marts" and t in COLUMNS and t != "kpi_definitions"
)


@pytest.mark.parametrize("table", MART_TABLES)
def test_report_columns_exist_in_the_dbt_contract(table):
    contract = _contract_columns()
    assert table in contract, f"no dbt contract for {table}"
    missing = sorted(set(COLUMNS[table].values()) - contract[table])
    assert not missing, f"{table}: the report reads {missing}, not in the dbt contract"
