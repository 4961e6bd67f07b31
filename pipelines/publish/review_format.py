"""Formatting the KPI review's numbers, changes, periods and statuses (pure functions;
tests/test_publish_report.py checks them by hand)."""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from pipelines.publish.columns import (
    MIN_SEGMENT_BASE,
    PROFILE_KPI,
)
from pipelines.publish.i18n import strings

UNIT_KINDS = {
    "ratio": "pct",
    "score": "score",
    "minutes": "minutes",
    "currency": "money",
    "customers": "count",
    "orders": "count",
    "tickets": "count",
    "per_1000_orders": "score",
}


def value_kind(kpi: str, unit: str | None = None) -> str:
    """How a KPI's values are shown: pct, score, minutes, money or count (from its published
    unit; from its name when the unit is unknown)."""
    if unit in UNIT_KINDS:
        return UNIT_KINDS[unit]
    if kpi.endswith(("_rate", "_share")) or kpi == PROFILE_KPI:
        return "pct"
    if kpi.startswith("csat_avg") or kpi.endswith("_avg"):
        return "score"
    if "minutes" in kpi:
        return "minutes"
    if "revenue" in kpi or kpi in ("aov", "clv_365d"):
        return "money"
    return "count"


def is_missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(kind: str, value: float | None, language: str = "en") -> str:
    """A value of `kind` as shown in the review: 41.2%, 4.23, 1,234 min, 1,234,567."""
    if is_missing(value):
        return "–"
    assert value is not None
    if kind == "pct":
        return f"{value * 100:.1f}%"
    if kind == "score":
        return f"{value:.2f}"
    if kind == "minutes":
        return f"{value:,.0f} {strings(language)['minutes']}"
    if kind == "money":
        return f"{value:,.0f}"
    return f"{value:,.0f}"


def format_value(
    kpi: str, value: float | None, *, unit: str | None = None, language: str = "en"
) -> str:
    return format_number(value_kind(kpi, unit), value, language)


def format_share(value: float | None) -> str:
    """A share (progress, time elapsed) as a whole percentage: 62%."""
    return "–" if is_missing(value) else f"{value * 100:.0f}%"  # type: ignore[operator]


def format_change(
    kind: str, current: float | None, earlier: float | None, language: str = "en"
) -> str | None:
    """The change from `earlier` to `current`: percentage points for rates (+1.2 pp),
    the difference for scores (+0.05), the relative change otherwise (+10.0%); None when
    there is nothing to compare (no earlier value, or a relative change from 0)."""
    if is_missing(current) or is_missing(earlier):
        return None
    assert current is not None and earlier is not None
    if kind == "pct":
        return f"{(current - earlier) * 100:+.1f} {strings(language)['pp']}"
    if kind == "score":
        return f"{current - earlier:+.2f}"
    if earlier == 0:
        return None
    return f"{(current - earlier) / abs(earlier) * 100:+.1f}%"


def progress_words(progress: float | None, language: str = "en") -> str:
    """Progress as words where a percentage misleads: past the target ("above target", not
    286%), away from it ("moving away from the target", not -516%); a share in between."""
    t = strings(language)
    if is_missing(progress):
        return t["progress_none"]
    assert progress is not None
    if progress > 1 + 1e-9:
        return t["progress_above"]
    if progress >= 1 - 1e-9:
        return t["progress_at"]
    if progress < 0:
        return t["progress_away"]
    return t["progress_part"].format(p=format_share(progress))


def status_rule(
    status: str,
    progress: float | None,
    elapsed: float | None,
    reason: str | None = None,
    language: str = "en",
) -> str:
    """The rule that gave `status`, in words with the target's numbers."""
    t = strings(language)
    if status == "small_base":
        return t["rule_small_base"].format(n=MIN_SEGMENT_BASE)
    if status == "no_data":
        text = t.get(f"reason_{reason}", t["reason_unknown"])
        return t["rule_no_data"].format(reason=text)
    key = f"rule_{status}"
    if key not in t:
        return ""
    e70 = None if is_missing(elapsed) else 0.7 * elapsed  # type: ignore[operator]
    return t[key].format(p=format_share(progress), e=format_share(elapsed), e70=format_share(e70))


def month_label(value: date) -> str:
    return value.strftime("%Y-%m")


def forward_text(
    *,
    kind: str,
    status: str,
    required: float | None,
    target: float | None,
    due: date | None,
    as_of: date,
    language: str = "en",
) -> str:
    """The forward look: the monthly value still needed to reach the target by its due date
    (rpt_kpi_review.required_monthly_value)."""
    t = strings(language)
    if status == "achieved":
        return t["forward_done"]
    if due is not None and due < as_of:
        return t["forward_due_passed"]
    if is_missing(required):
        return t["forward_none"]
    return t["forward_value"].format(
        value=format_number(kind, required, language),
        target=format_number(kind, target, language),
        due=month_label(due) if due else "–",
    )


def add_months(month: date, n: int) -> date:
    index = month.year * 12 + month.month - 1 + n
    return date(index // 12, index % 12 + 1, 1)


def parse_period(text: str | None) -> date | None:
    """The first month of a baseline or current period ('2026-06', '2026-Q1', '2024-H2')."""
    if not text:
        return None
    if m := re.fullmatch(r"(\d{4})-(\d{2})", text.strip()):
        return date(int(m[1]), int(m[2]), 1)
    if m := re.fullmatch(r"(\d{4})-Q([1-4])", text.strip()):
        return date(int(m[1]), 3 * int(m[2]) - 2, 1)
    if m := re.fullmatch(r"(\d{4})-H([12])", text.strip()):
        return date(int(m[1]), 6 * int(m[2]) - 5, 1)
    return None


def business_time(moment: datetime, timezone: str) -> str:
    """`moment` in the business timezone, with its UTC offset: 2026-11-01 06:05 UTC+08:00."""
    local = moment.astimezone(ZoneInfo(timezone))
    offset = local.strftime("%z")
    return f"{local:%Y-%m-%d %H:%M} UTC{offset[:3]}:{offset[3:]}"
