"""Every table and column name the publish step and the KPI review read, in one place.

The marts are defined in dbt (dbt_project/models/marts); when a column is renamed there, the
fix here is one line. Keys are the names this package uses, values the names in the warehouse.
"""

from __future__ import annotations

# table -> (schemas to look in, in order). The report works on the warehouse file (schemas
# as dbt writes them) and on serving.duckdb (everything in `main`).
TABLE_SCHEMAS: dict[str, tuple[str, ...]] = {
    "rpt_kpi_review": ("marts", "main"),
    "fct_kpi_monthly": ("marts", "main"),
    "dim_customers": ("marts", "main"),
    "kpi_definitions": ("seeds", "main"),
    "kpi_targets": ("targets", "main"),
    "sla_targets": ("seeds", "main"),
    "dq_results": ("quality", "main"),
    "holdout_validation": ("clv", "main"),
}

COLUMNS: dict[str, dict[str, str]] = {
    "rpt_kpi_review": {
        "target_id": "target_id",
        "kpi": "kpi",
        "segment": "segment",
        "description": "description",
        "owner": "owner",
        "direction": "direction",
        "baseline_period": "baseline_period",
        "baseline": "baseline_value",
        "current_value": "current_value",
        "target_value": "target_value",
        "progress": "progress",
        "time_elapsed": "time_elapsed",
        "status": "status",
        "start_date": "start_date",
        "due_date": "due_date",
        "as_of_date": "as_of_date",
    },
    "fct_kpi_monthly": {
        "month": "month",
        "segment": "segment",
        "kpi": "kpi",
        "value": "value",
        "is_complete": "is_complete",
    },
    "dim_customers": {
        "customer_id": "customer_id",
        "rfm_segment": "rfm_segment",
        "quadrant": "quadrant",
        "lifecycle_stage": "lifecycle_stage",
        "profile_completeness": "profile_completeness",
    },
    "kpi_definitions": {
        "kpi": "kpi",
        "description_en": "description_en",
        "description_zh": "description_zh",
    },
    "dq_results": {
        "run_id": "run_id",
        "checked_at": "checked_at",
        "suite": "suite",
        "expectation": "expectation",
        "severity": "severity",
        "observed": "observed",
        "threshold": "threshold",
        "success": "success",
    },
    "holdout_validation": {
        "bucket": "bucket",
        "customers": "customers",
        "predicted_mean": "predicted_mean",
        "actual_mean": "actual_mean",
    },
}

# Values the report relies on.
OVERALL_SEGMENT = "all"  # fct_kpi_monthly.segment of the whole customer base
SERVICE_KPIS = ("first_response_sla_rate", "resolution_sla_rate", "csat_avg")
PROFILE_KPI = "profile_completeness"
STATUSES = ("achieved", "on_track", "at_risk", "off_track", "missed")


def select_list(table: str) -> str:
    """`"warehouse_name" as logical_name, ...` for every column of `table` in COLUMNS."""
    return ", ".join(f'"{physical}" as {logical}' for logical, physical in COLUMNS[table].items())
