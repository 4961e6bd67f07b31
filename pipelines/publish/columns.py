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
    "fct_kpi_weekly": ("marts", "main"),
    "dim_customers": ("marts", "main"),
    "kpi_definitions": ("seeds", "main"),
    "kpi_targets": ("targets", "main"),
    "sla_targets": ("seeds", "main"),
    "dq_results": ("quality", "main"),
    "holdout_validation": ("clv", "main"),
    "fct_ticket_backlog_daily": ("marts", "main"),
    "fct_campaign_performance": ("marts", "main"),
    "fct_customer_cohorts": ("marts", "main"),
    "fct_segment_transitions": ("marts", "main"),
}

COLUMNS: dict[str, dict[str, str]] = {
    "rpt_kpi_review": {
        "target_id": "target_id",
        "kpi": "kpi",
        "segment_type": "segment_type",
        "segment": "segment",
        "description": "description",
        "description_zh": "description_zh",
        "owner": "owner",
        "direction": "direction",
        "baseline_period": "baseline_period",
        "baseline": "baseline_value",
        "current_period": "current_period",
        "current_value": "current_value",
        "current_is_complete": "current_is_complete",
        "provisional_period": "provisional_period",
        "provisional_value": "provisional_value",
        "target_value_text": "target_value_text",
        "target_value": "target_value",
        "progress": "progress",
        "time_elapsed": "time_elapsed",
        "status": "status",
        "status_reason": "status_reason",
        "is_small_base": "is_small_base",
        "months_remaining": "months_remaining",
        "required_monthly_value": "required_monthly_value",
        "start_date": "start_date",
        "due_date": "due_date",
        "as_of_date": "as_of_date",
    },
    "fct_kpi_monthly": {
        "month": "month",
        "segment_type": "segment_type",
        "segment": "segment",
        "kpi": "kpi",
        "value": "value",
        "numerator": "numerator",
        "denominator": "denominator",
        "is_complete": "is_complete",
        "is_small_base": "is_small_base",
        "has_enough_history": "has_enough_history",
    },
    "fct_kpi_weekly": {
        "week": "week",
        "week_label": "week_label",
        "kpi": "kpi",
        "value": "value",
        "is_complete": "is_complete",
    },
    "dim_customers": {
        "customer_id": "customer_id",
        "rfm_segment": "rfm_segment",
        "quadrant": "quadrant",
        "lifecycle_stage": "lifecycle_stage",
    },
    "kpi_definitions": {
        "kpi": "kpi",
        "unit": "unit",
        "direction": "direction",
        "maturity_days": "maturity_days",
        "min_history_days": "min_history_days",
        "name_en": "name_en",
        "name_zh": "name_zh",
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
    "fct_ticket_backlog_daily": {
        "snapshot_date": "snapshot_date",
        "open_tickets": "open_tickets",
        "resolution_breached_tickets": "resolution_breached_tickets",
    },
    "fct_campaign_performance": {
        "campaign_id": "campaign_id",
        "campaign_date": "campaign_date",
        "segment": "segment",
        "reached_customers": "reached_customers",
        "response_rate": "response_rate",
        "attributed_orders": "attributed_orders",
        "attributed_net_revenue": "attributed_net_revenue",
        "conversion_rate": "conversion_rate",
        "holdout_customers": "holdout_customers",
        "holdout_conversion_rate": "holdout_conversion_rate",
        "uplift": "uplift",
        "uplift_ci_low": "uplift_ci_low",
        "uplift_ci_high": "uplift_ci_high",
        "is_small_base": "is_small_base",
        "dormant_reached_customers": "dormant_reached_customers",
        "reactivated_customers": "reactivated_customers",
        "reactivation_rate": "reactivation_rate",
        "is_complete": "is_complete",
    },
    "fct_customer_cohorts": {
        "cohort_month": "cohort_month",
        "first_order_channel": "first_order_channel",
        "months_since_first": "months_since_first",
        "cohort_customers": "cohort_customers",
        "active_share": "active_share",
    },
}

# Values the report relies on.
OVERALL_SEGMENT = "all"  # fct_kpi_monthly.segment of the whole customer base
SERVICE_KPIS = (
    "first_response_sla_rate",
    "first_response_business_sla_rate",
    "resolution_sla_rate",
    "resolution_business_sla_rate",
    "csat_avg",
)
PROFILE_KPI = "profile_completeness"
STATUSES = ("achieved", "on_track", "at_risk", "off_track", "missed", "no_data", "small_base")
#: The published rates below this base are flagged is_small_base (dbt var min_segment_base).
MIN_SEGMENT_BASE = 30
#: Days of the ticket backlog the review draws (up to D).
BACKLOG_DAYS_SHOWN = 60


def select_list(table: str) -> str:
    """`"warehouse_name" as logical_name, ...` for every column of `table` in COLUMNS."""
    return ", ".join(f'"{physical}" as {logical}' for logical, physical in COLUMNS[table].items())
