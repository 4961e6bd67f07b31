"""The metric dictionary (docs/spec/metrics.md) in pandas.

Pipeline: ``prepare`` (staging: as-of filter, deduplication, normalisation, currency
conversion, identity) -> ``customer_state`` / ``rfm_scores`` (one row per customer as of
a date) -> ``compute_kpis`` (one row per month, segment and KPI, the shape of
``marts.fct_kpi_monthly``).

Every choice the metric dictionary leaves open is a field of ``ReferenceConfig`` or is
named in docs/reference.md, aligned with the warehouse's documented choices
(docs/warehouse.md).

The modules, by subject, each importing only those above it:

    config      the dictionary's constants and ReferenceConfig
    staging     prepare: the landing frames as of D, normalised, converted, resolved
    customers   customer state, RFM, the value x potential quadrant
    months      the months of the table and the shape of a KPI value
    orders      the customer and order KPIs, per channel; profile completeness
    segments    the KPI segments and their members
    service     the service and social KPIs
    maturity    the KPIs whose outcome window is still open at D
    kpis        compute_kpis and compute_weekly_kpis: the monthly and weekly tables

This package re-exports their public names: import from ``reference.metrics``.
"""

from reference.metrics.config import (
    COUNT_KPIS,
    PROFILE_FIELDS,
    RFM_SEGMENT_MAP,
    SLA_TARGETS,
    ReferenceConfig,
    read_currency_rates,
)
from reference.metrics.customers import (
    customer_quadrants,
    customer_state,
    engagement_90d,
    expected_purchases_by_key,
    lifecycle_stage,
    order_summary,
    profile_completeness_at,
    profile_field_dates,
    rf_segment,
    rfm_scores,
    valid_orders,
    value_potential_quadrant,
    warehouse_customer_ids,
)
from reference.metrics.kpis import (
    WEEKLY_KPIS,
    compute_kpis,
    compute_weekly_kpis,
    first_data_month,
    first_data_month_date,
    kpis_for_month,
)
from reference.metrics.maturity import (
    MATURITY_DAYS,
    MatureKpis,
    mature_service_kpis,
    mature_social_kpis,
    with_maturity,
)
from reference.metrics.months import Kpis, Month, month_ends
from reference.metrics.orders import (
    channel_kpis,
    channels,
    churn_kpis,
    order_kpis,
    profile_kpis,
    reactivation_kpis,
    resolved_orders,
)
from reference.metrics.segments import (
    CHANNEL_KPIS,
    LIFECYCLE_STAGES,
    ORDER_FAMILY,
    POINT_IN_TIME_KPIS,
    QUADRANTS,
    RFM_SEGMENTS,
    SEGMENTS,
    rf_segment_at,
    segment_members,
    stage_at,
    vip_at,
)
from reference.metrics.service import service_kpis, social_kpis
from reference.metrics.staging import (
    PRIORITY_WORDS,
    Prepared,
    line_net_amount,
    normalise_priority,
    prepare,
    to_business,
)

__all__ = [
    "CHANNEL_KPIS",
    "COUNT_KPIS",
    "Kpis",
    "LIFECYCLE_STAGES",
    "MATURITY_DAYS",
    "MatureKpis",
    "Month",
    "ORDER_FAMILY",
    "POINT_IN_TIME_KPIS",
    "PRIORITY_WORDS",
    "PROFILE_FIELDS",
    "Prepared",
    "QUADRANTS",
    "RFM_SEGMENTS",
    "RFM_SEGMENT_MAP",
    "ReferenceConfig",
    "SEGMENTS",
    "SLA_TARGETS",
    "WEEKLY_KPIS",
    "channel_kpis",
    "channels",
    "churn_kpis",
    "compute_kpis",
    "compute_weekly_kpis",
    "customer_quadrants",
    "customer_state",
    "engagement_90d",
    "expected_purchases_by_key",
    "first_data_month",
    "first_data_month_date",
    "kpis_for_month",
    "lifecycle_stage",
    "line_net_amount",
    "mature_service_kpis",
    "mature_social_kpis",
    "month_ends",
    "normalise_priority",
    "order_kpis",
    "order_summary",
    "prepare",
    "profile_completeness_at",
    "profile_field_dates",
    "profile_kpis",
    "reactivation_kpis",
    "read_currency_rates",
    "resolved_orders",
    "rf_segment",
    "rf_segment_at",
    "rfm_scores",
    "segment_members",
    "service_kpis",
    "social_kpis",
    "stage_at",
    "to_business",
    "valid_orders",
    "value_potential_quadrant",
    "vip_at",
    "warehouse_customer_ids",
    "with_maturity",
]
