"""The choices of the reference: the constants of the metric dictionary it follows and
``ReferenceConfig``, one field per choice metrics.md leaves open (docs/reference.md)."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

PROFILE_FIELDS = ("name", "gender", "birth_date", "phone", "email", "city")

#: metrics.md, RF map (first match wins): (segment, r_min, r_max, f_min, f_max)
RFM_SEGMENT_MAP: tuple[tuple[str, int, int, int, int], ...] = (
    ("Champions", 5, 5, 4, 5),
    ("Loyal Customers", 3, 4, 4, 5),
    ("Can't Lose Them", 1, 2, 5, 5),
    ("At Risk", 1, 2, 3, 4),
    ("Hibernating", 1, 2, 1, 2),
    ("Need Attention", 3, 3, 3, 3),
    ("About to Sleep", 3, 3, 1, 2),
    ("Potential Loyalists", 4, 5, 2, 3),
    ("Promising", 4, 4, 1, 1),
    ("New Customers", 5, 5, 1, 1),
)

#: metrics.md: priority -> (first response target minutes, resolution target minutes)
SLA_TARGETS: dict[str, tuple[int, int]] = {
    "P1": (15, 4 * 60),
    "P2": (60, 24 * 60),
    "P3": (240, 72 * 60),
    "P4": (1440, 168 * 60),
}

COUNT_KPIS = (
    "purchasing_customers",
    "new_customers",
    "active_customers",
    "orders",
    "vip_customers",
    "tickets",
    "social_engaged_customers",
)


def read_currency_rates(path: str | Path) -> dict[str, float]:
    """``currency,rate_to_cny`` rows of the dbt seed (data, not logic)."""
    with open(path, encoding="utf-8") as fh:
        return {row["currency"]: float(row["rate_to_cny"]) for row in csv.DictReader(fh)}


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings and thresholds; defaults are those of metrics.md / dbt_project.yml."""

    as_of: date
    business_tz: str = "Asia/Shanghai"
    reporting_currency: str = "CNY"
    currency_rates: dict[str, float] = field(default_factory=lambda: {"CNY": 1.0})
    supernode_threshold: int = 20
    #: "warehouse": more than the threshold of accounts / social accounts in total, or of
    #: records of any kind first seen in one month (documented choice); "contract": more
    #: than the threshold of records in total (the landing contract read literally)
    supernode_rule: str = "warehouse"
    #: profile KPIs: "member_profiles" = customers with a member-profile version updated
    #: by end(M) (docs/warehouse.md); "known_customers" = every resolved customer first
    #: seen by end(M), completeness 0 without a profile
    profile_population: str = "member_profiles"
    #: contact data (order buyer name / phone / e-mail, ticket phone / e-mail, social
    #: phone) fills golden-record fields no member profile has; the warehouse: it does not
    profile_contact_data: bool = False
    #: the member system: the system of a ticket's customer_ref when its mapping names none
    ticket_ref_system: str = "crm"
    vip_revenue_365d: float = 50_000.0
    revenue_window_days: int = 364
    lifecycle_new_days: int = 89
    lifecycle_active_days: int = 179
    lifecycle_dormant_days: int = 364
    rfm_buckets: int = 5
    high_value_percent_rank: float = 0.8
    high_potential_engagement_90d: int = 3
    high_potential_expected_purchases_90d: float = 1.0
    engagement_window_days: int = 89
    demand_conversion_days: int = 30
    message_reply_hours: int = 24
    campaign_response_days: int = 7
    winback_conversion_days: int = 30
    csat_satisfied_score: int = 4
    default_ticket_priority: str = "P3"
    sla_targets: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(SLA_TARGETS))
