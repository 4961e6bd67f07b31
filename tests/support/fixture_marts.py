"""A small warehouse DuckDB file with plausible marts, for the publish and report tests.

`build_fixture_warehouse(path)` writes the tables the dbt project publishes (schema `marts`),
the seed `kpi_definitions` (schema `seeds`, where dbt builds it), the quality results (`quality.dq_results`), the CLV holdout
validation (`clv.holdout_validation`) and a `raw.customers` table with clear personal data that
must never reach serving/. Values are deterministic for a given `seed`; `n_customers` changes
every row count, which the reader-safety test uses to tell publications apart.

The SMART targets are hand-picked so that, as of 2025-07-15, every status of the KPI review
appears once (see `EXPECTED_STATUS`, computed by hand in the comments below).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

AS_OF = date(2025, 7, 15)
MONTHS = [date(2024, m, 1) for m in range(7, 13)] + [date(2025, m, 1) for m in range(1, 8)]

# target_id -> status, by hand with D = 2025-07-15 (progress = (cur - base) / (tgt - base),
# time_elapsed = (D - start) / (due - start)):
# T01 repurchase_rate (segment vip) 0.32 -> 0.368, cur 0.35: progress 0.625, elapsed 105/182 = 0.577 -> on_track
# T02 profile_completeness 0.60 -> 0.90, cur 0.66: progress 0.2, elapsed 195/364 = 0.536,
#     0.2 < 0.7 * 0.536 = 0.375 -> off_track
# T03 first_response_sla_rate 0.82 -> 0.95, cur 0.885: progress 0.5, elapsed 136/213 = 0.638,
#     0.447 <= 0.5 < 0.638 -> at_risk
# T04 churn_rate 0.12 -> 0.096 (decrease), cur 0.104: progress 0.667, due 2025-06-30 < D -> missed
# T05 csat_avg 4.2 -> 4.5, cur 4.53: progress 1.1 -> achieved
EXPECTED_STATUS = {
    "T01": "on_track",
    "T02": "off_track",
    "T03": "at_risk",
    "T04": "missed",
    "T05": "achieved",
}

TARGETS = [
    # target_id, kpi, segment, description, owner, direction, baseline_period, baseline,
    # current, target, start, due
    (
        "T01",
        "repurchase_rate",
        "vip",
        "VIP repurchase rate +15% within the quarter",
        "crm_retention_team",
        "increase",
        "2025-Q1",
        0.32,
        0.35,
        0.368,
        date(2025, 4, 1),
        date(2025, 9, 30),
    ),
    (
        "T02",
        "profile_completeness",
        "all",
        "会员资料完整度从60%提升到90%",
        "crm_data_team",
        "increase",
        "2024-12",
        0.60,
        0.66,
        0.90,
        date(2025, 1, 1),
        date(2025, 12, 31),
    ),
    (
        "T03",
        "first_response_sla_rate",
        "all",
        "First-response SLA to 95% <all channels>",
        "service_lead",
        "increase",
        "2025-02",
        0.82,
        0.885,
        0.95,
        date(2025, 3, 1),
        date(2025, 9, 30),
    ),
    (
        "T04",
        "churn_rate",
        "all",
        "Churn rate down 20%",
        "crm_retention_team",
        "decrease",
        "2024-H2",
        0.12,
        0.104,
        0.096,
        date(2025, 1, 1),
        date(2025, 6, 30),
    ),
    (
        "T05",
        "csat_avg",
        "all",
        "CSAT average to 4.5",
        "service_lead",
        "increase",
        "2025-01",
        4.2,
        4.53,
        4.5,
        date(2025, 2, 1),
        date(2025, 8, 31),
    ),
]

# kpi, unit, direction, maturity_days, min_history_days, name_en, name_zh, description_en,
# description_zh (the columns of the kpi_definitions seed)
TARGET_TEXTS_ZH = {
    "T01": "本季度VIP复购率提升15%",
    "T02": "会员资料完整度从60%提升到90%",
    "T03": "首次响应达标率提升到95%（全部渠道）",
    "T04": "流失率下降20%",
    "T05": "满意度均分提升到4.5",
}

KPI_DEFINITIONS = [
    ("purchasing_customers", "customers", "increase", 0, 0, "Purchasing customers", "购买客户数",
     "Customers with at least one order in the month.", "当月至少下单一次的客户数。"),
    ("new_customers", "customers", "increase", 0, 0, "New customers", "新客户数",
     "Customers whose first order is in the month.", "首单发生在当月的客户数。"),
    ("active_customers", "customers", "increase", 0, 180, "Active customers", "活跃客户数",
     "Customers with an order in the 180 days up to month end.", "截至月末180天内有订单的客户数。"),
    ("net_revenue", "currency", "increase", 0, 0, "Net revenue", "净收入",
     "Net revenue of the month's orders (after discounts and refunds).",
     "当月订单净收入（扣除折扣与退款）。"),
    ("orders", "orders", "increase", 0, 0, "Orders", "订单数",
     "Orders in the month (cancelled orders excluded).", "当月订单数（不含取消订单）。"),
    ("aov", "currency", "increase", 0, 0, "Average order value", "客单价",
     "Average order value: net revenue / orders.", "客单价：净收入 / 订单数。"),
    ("repurchase_rate", "ratio", "increase", 0, 0, "Repurchase rate", "复购率",
     "Customers of the segment at month start who had ordered before and order again in the month.",
     "月初已下过单的客户中当月再次下单的比例。"),
    ("churn_rate", "ratio", "decrease", 0, 180, "Churn rate", "流失率",
     "Active customers at month start who are no longer active at month end.",
     "月初活跃、月末不再活跃的客户占月初活跃客户的比例。"),
    ("profile_completeness", "ratio", "increase", 0, 0, "Profile completeness", "资料完整度",
     "Mean share of the six profile fields filled in, over customers with a member profile.",
     "有会员资料的客户六个资料字段的平均填写比例。"),
    ("tickets", "tickets", "neutral", 0, 0, "Tickets", "工单数",
     "Tickets created in the period.", "期间内创建的工单数。"),
    ("first_response_sla_rate", "ratio", "increase", 1, 0, "First-response SLA", "首次响应达标率",
     "Tickets answered within their priority's first-response target.",
     "在优先级首次响应时限内得到回复的工单比例。"),
    ("resolution_sla_rate", "ratio", "increase", 7, 0, "Resolution SLA", "解决时效达标率",
     "Tickets resolved within their priority's resolution target.",
     "在优先级解决时限内解决的工单比例。"),
    ("csat_avg", "score", "increase", 0, 0, "CSAT average", "满意度均分",
     "Mean satisfaction score (1-5) of surveys answered in the month.",
     "当月回收的满意度调查平均分（1-5）。"),
    ("csat_satisfied_rate", "ratio", "increase", 0, 0, "CSAT satisfied", "满意率",
     "Share of answered surveys with a score of 4 or 5.", "评分为4或5的问卷比例。"),
]  # fmt: skip
DEFINITION_COLUMNS = [
    "kpi", "unit", "direction", "maturity_days", "min_history_days", "name_en", "name_zh",
    "description_en", "description_zh",
]  # fmt: skip

RFM_SEGMENTS = [
    ("Champions", 0.12),
    ("Loyal Customers", 0.14),
    ("Potential Loyalists", 0.13),
    ("New Customers", 0.08),
    ("Promising", 0.07),
    ("Need Attention", 0.08),
    ("About to Sleep", 0.09),
    ("At Risk", 0.10),
    ("Can't Lose Them", 0.04),
    ("Hibernating", 0.15),
]
QUADRANTS = [
    "high_value_high_potential",
    "high_value_low_potential",
    "low_value_high_potential",
    "low_value_low_potential",
]


@dataclass(frozen=True)
class FixtureInfo:
    path: Path
    as_of: date
    row_counts: dict[str, int]


def _kpi_series(rng: random.Random, start: float, end: float, noise: float) -> list[float]:
    """Values for MONTHS[:-1] moving from start to end (the last complete month is `end`)."""
    n = len(MONTHS) - 1
    values = [start + (end - start) * i / (n - 1) + rng.uniform(-noise, noise) for i in range(n)]
    values[-1] = end
    return values


def _kpi_monthly(rng: random.Random, scale: float) -> pd.DataFrame:
    current = {t[1]: t[8] for t in TARGETS}
    plan = {
        # kpi: (start, end, noise, kind) kind: rate|count|money|score
        "purchasing_customers": (410 * scale, 520 * scale, 25 * scale, "count"),
        "new_customers": (120 * scale, 140 * scale, 15 * scale, "count"),
        "active_customers": (1900 * scale, 2150 * scale, 40 * scale, "count"),
        "net_revenue": (380_000 * scale, 455_000 * scale, 30_000 * scale, "money"),
        "orders": (560 * scale, 700 * scale, 30 * scale, "count"),
        "repurchase_rate": (0.38, 0.41, 0.015, "rate"),
        "churn_rate": (0.125, current["churn_rate"], 0.006, "rate"),
        "profile_completeness": (0.58, current["profile_completeness"], 0.005, "rate"),
        "first_response_sla_rate": (0.80, current["first_response_sla_rate"], 0.015, "rate"),
        "resolution_sla_rate": (0.74, 0.81, 0.02, "rate"),
        "csat_avg": (4.15, current["csat_avg"], 0.05, "score"),
    }
    rows = []
    for kpi, (start, end, noise, kind) in plan.items():
        values = _kpi_series(rng, start, end, noise)
        # the running month (July, incomplete) continues the trend a little
        values.append(values[-1] + rng.uniform(-noise, noise))
        for month, value in zip(MONTHS, values, strict=True):
            numerator: float | None
            denominator: float | None
            if kind == "count":
                value, numerator, denominator = float(round(value)), None, None
            elif kind == "money":
                value, numerator, denominator = round(value, 2), None, None
            elif kind == "rate":
                denominator = float(round(800 * scale + rng.randint(0, 60)))
                numerator = round(value * denominator, 4)
            else:
                denominator = float(150 + rng.randint(0, 40))
                numerator = round(value * denominator, 4)
            rows.append(
                ("all", month, "all", kpi, value, numerator, denominator, month != MONTHS[-1])
            )
    # the VIP cohort repurchase rate (T01), its base 60 customers
    vip = _kpi_series(rng, 0.31, current["repurchase_rate"], 0.01)
    vip.append(vip[-1] + rng.uniform(-0.01, 0.01))
    for month, value in zip(MONTHS, vip, strict=True):
        rows.append(
            ("vip", month, "vip", "repurchase_rate", value, value * 60, 60.0, month != MONTHS[-1])
        )
    # per-segment rows for a few KPIs; the lifecycle segment `dormant` has a base below 30
    for segment_type, segment, share in (
        ("vip", "vip", 0.08),
        ("lifecycle_stage", "active", 0.7),
        ("lifecycle_stage", "dormant", 0.05),
    ):
        for kpi in ("purchasing_customers", "net_revenue"):
            for month in MONTHS:
                base = 450 * scale if kpi == "purchasing_customers" else 410_000 * scale
                value = round(base * share * (1 + rng.uniform(-0.05, 0.05)), 2)
                rows.append(
                    (segment_type, month, segment, kpi, value, None, None, month != MONTHS[-1])
                )
        if segment_type == "lifecycle_stage":
            base = 22.0 if segment == "dormant" else 300.0
            for month in MONTHS:
                numerator = float(round(base * 0.3))
                rows.append(
                    (
                        segment_type,
                        month,
                        segment,
                        "repurchase_rate",
                        numerator / base,
                        numerator,
                        base,
                        month != MONTHS[-1],
                    )
                )
    aov = {}
    frame = pd.DataFrame(
        rows,
        columns=[
            "segment_type",
            "month",
            "segment",
            "kpi",
            "value",
            "numerator",
            "denominator",
            "is_complete",
        ],
    )
    for month in MONTHS:
        sel = frame[(frame.month == month) & (frame.segment == "all")]
        rev = float(sel[sel.kpi == "net_revenue"].value.iloc[0])
        orders = float(sel[sel.kpi == "orders"].value.iloc[0])
        aov[month] = (round(rev / orders, 2), rev, orders)
    extra = pd.DataFrame(
        [("all", m, "all", "aov", v, n, d, m != MONTHS[-1]) for m, (v, n, d) in aov.items()],
        columns=frame.columns,
    )
    frame = pd.concat([frame, extra], ignore_index=True)
    frame["is_small_base"] = frame["denominator"].notna() & (frame["denominator"] < 30)
    # churn needs 180 days of history: the first six months of the fixture lack it
    frame["has_enough_history"] = ~(
        (frame["kpi"] == "churn_rate") & (frame["month"] < date(2025, 1, 1))
    )
    return frame


def _kpi_weekly(rng: random.Random, scale: float) -> pd.DataFrame:
    """Ten ISO weeks up to the running week of AS_OF (2025-W29, Monday 2025-07-14)."""
    rows = []
    running = AS_OF - timedelta(days=AS_OF.weekday())
    for n in range(10):
        week = running - timedelta(weeks=9 - n)
        iso = week.isocalendar()
        label = f"{iso.year}-W{iso.week:02d}"
        complete = week != running
        for kpi, value in (
            ("orders", float(round(150 * scale + rng.randint(-10, 10)))),
            ("net_revenue", round(100_000 * scale * rng.uniform(0.9, 1.1), 2)),
            ("tickets", float(round(40 * scale + rng.randint(-5, 5)))),
            ("first_response_sla_rate", round(rng.uniform(0.8, 0.9), 4)),
            ("resolution_sla_rate", round(rng.uniform(0.7, 0.85), 4)),
            ("csat_avg", round(rng.uniform(4.1, 4.6), 3)),
            ("csat_satisfied_rate", round(rng.uniform(0.75, 0.9), 4)),
        ):
            rows.append((f"{label}|{kpi}", week, label, kpi, value, complete))
    return pd.DataFrame(
        rows, columns=["kpi_weekly_id", "week", "week_label", "kpi", "value", "is_complete"]
    )


def _review() -> pd.DataFrame:
    rows = []
    for tid, kpi, seg, desc, owner, direction, period, base, cur, tgt, start, due in TARGETS:
        progress = (cur - base) / (tgt - base)
        current_month = date(2025, 6, 1)
        months_remaining = (due.year - 2025) * 12 + due.month - current_month.month
        required = cur + (tgt - cur) / months_remaining if months_remaining > 0 else None
        elapsed = (AS_OF - start).days / (due - start).days
        if progress >= 1:
            status = "achieved"
        elif due < AS_OF:
            status = "missed"
        elif progress >= elapsed:
            status = "on_track"
        elif progress >= 0.7 * elapsed:
            status = "at_risk"
        else:
            status = "off_track"
        rows.append(
            (
                tid,
                kpi,
                "all" if seg == "all" else "vip",
                seg,
                desc,
                TARGET_TEXTS_ZH[tid],
                owner,
                direction,
                period,
                base,
                "2025-06",
                cur,
                True,
                "2025-07",
                cur,
                str(tgt),
                tgt,
                round(progress, 6),
                round(min(elapsed, 1.0), 6),
                status,
                None,
                False,
                months_remaining,
                required,
                start,
                due,
                AS_OF,
            )
        )
    return pd.DataFrame(
        rows,
        columns=[
            "target_id",
            "kpi",
            "segment_type",
            "segment",
            "description",
            "description_zh",
            "owner",
            "direction",
            "baseline_period",
            "baseline_value",
            "current_period",
            "current_value",
            "current_is_complete",
            "provisional_period",
            "provisional_value",
            "target_value_text",
            "target_value",
            "progress",
            "time_elapsed",
            "status",
            "status_reason",
            "is_small_base",
            "months_remaining",
            "required_monthly_value",
            "start_date",
            "due_date",
            "as_of_date",
        ],
    )


def _customers(rng: random.Random, n: int) -> pd.DataFrame:
    names, weights = zip(*RFM_SEGMENTS, strict=True)
    rows = []
    for i in range(n):
        cid = f"C{i + 1:06d}"
        if i % 10 == 9:  # prospects: no order ever
            rows.append(
                (
                    cid,
                    None,
                    None,
                    None,
                    None,
                    "low_value_low_potential",
                    "prospect",
                    False,
                    round(rng.randint(1, 4) / 6, 6),
                    0.0,
                    0,
                    None,
                    None,
                    None,
                )
            )
            continue
        segment = rng.choices(names, weights)[0]
        revenue = round(rng.lognormvariate(8.0, 1.2), 2)
        last = AS_OF - timedelta(days=rng.randint(0, 500))
        first = last - timedelta(days=rng.randint(0, 900))
        if first >= AS_OF - timedelta(days=89):
            stage = "new"
        elif last >= AS_OF - timedelta(days=179):
            stage = "active"
        elif last >= AS_OF - timedelta(days=364):
            stage = "dormant"
        else:
            stage = "churned"
        rows.append(
            (
                cid,
                segment,
                rng.randint(1, 5),
                rng.randint(1, 5),
                rng.randint(1, 5),
                QUADRANTS[rng.randint(0, 3)],
                stage,
                revenue >= 50_000,
                round(rng.randint(2, 6) / 6, 6),
                revenue,
                rng.randint(1, 12),
                first,
                last,
                round(rng.uniform(0.05, 0.99), 4),
            )
        )
    frame = pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "rfm_segment",
            "r_score",
            "f_score",
            "m_score",
            "quadrant",
            "lifecycle_stage",
            "is_vip",
            "profile_completeness",
            "net_revenue_365d",
            "orders_lifetime",
            "first_order_date",
            "last_order_date",
            "p_alive",
        ],
    )
    frame["net_revenue_365d"] = frame["net_revenue_365d"].astype(float)
    return frame


def build_fixture_warehouse(
    path: Path,
    *,
    seed: int = 7,
    n_customers: int = 240,
    kpi_definitions_schema: str = "seeds",
    with_quality: bool = True,
    with_clv: bool = True,
) -> FixtureInfo:
    """Write a warehouse DuckDB file at `path` (replacing it) and return its row counts."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)
    scale = n_customers / 240
    customers = _customers(rng, n_customers)
    buyers = customers[customers.lifecycle_stage != "prospect"].customer_id.tolist()

    orders = []
    for i in range(n_customers * 3):
        ordered = datetime(2024, 7, 1, 9) + timedelta(minutes=rng.randint(0, 380 * 24 * 60))
        orders.append(
            (
                f"O{i + 1:07d}",
                rng.choice(buyers),
                ordered.date(),
                ordered,
                rng.choice(["tmall", "jd", "wechat_mall", "store"]),
                rng.choices(["completed", "shipped", "refunded"], [0.85, 0.1, 0.05])[0],
                rng.randint(1, 5),
                round(rng.uniform(39, 2_400), 2),
            )
        )
    fct_orders = pd.DataFrame(
        orders,
        columns=[
            "order_id",
            "customer_id",
            "order_date",
            "ordered_at",
            "channel",
            "status",
            "items",
            "net_revenue",
        ],
    )

    tickets = []
    targets = {"P1": 15, "P2": 60, "P3": 240, "P4": 1440}
    for i in range(n_customers):
        created = datetime(2024, 7, 1, 8) + timedelta(minutes=rng.randint(0, 380 * 24 * 60))
        priority = rng.choices(list(targets), [0.05, 0.25, 0.5, 0.2])[0]
        minutes = round(rng.expovariate(1 / (targets[priority] * 0.6)), 1)
        answered = rng.random() > 0.03
        csat = rng.choices([1, 2, 3, 4, 5], [0.04, 0.06, 0.12, 0.33, 0.45])[0]
        tickets.append(
            (
                f"TK{i + 1:06d}",
                rng.choice(buyers),
                created,
                created.date(),
                priority,
                rng.choice(["inquiry", "complaint", "return", "delivery"]),
                minutes if answered else None,
                answered and minutes <= targets[priority],
                rng.random() < 0.8,
                csat if rng.random() < 0.4 else None,
            )
        )
    fct_tickets = pd.DataFrame(
        tickets,
        columns=[
            "ticket_id",
            "customer_id",
            "created_at",
            "created_date",
            "priority",
            "category",
            "first_response_minutes",
            "is_first_response_within_sla",
            "is_resolved_within_sla",
            "csat_score",
        ],
    )
    fct_tickets["csat_score"] = fct_tickets["csat_score"].astype("Int32")

    social = []
    for i in range(n_customers * 2):
        occurred = datetime(2024, 7, 1) + timedelta(minutes=rng.randint(0, 380 * 24 * 60))
        social.append(
            (
                f"S{i + 1:07d}",
                rng.choice(buyers) if rng.random() < 0.8 else None,
                occurred,
                rng.choice(["wechat", "weibo", "douyin"]),
                rng.choice(["inbound", "outbound"]),
                rng.choice(["message", "comment", "like", "campaign_push"]),
                f"CMP{rng.randint(1, 9):02d}" if rng.random() < 0.3 else None,
            )
        )
    fct_social = pd.DataFrame(
        social,
        columns=[
            "interaction_id",
            "customer_id",
            "occurred_at",
            "platform",
            "direction",
            "interaction_type",
            "campaign_id",
        ],
    )

    kpi_monthly = _kpi_monthly(rng, scale)
    kpi_weekly = _kpi_weekly(rng, scale)
    review = _review()
    definitions = pd.DataFrame(KPI_DEFINITIONS, columns=DEFINITION_COLUMNS)

    raw_customers = pd.DataFrame(
        [
            ("crm", f"R{i}", f"张{i}", f"1380000{i:04d}", f"user{i}@example.cn", "上海市某路1号")
            for i in range(5)
        ],
        columns=["source_system", "customer_ref", "name", "phone", "email", "address"],
    )

    con = duckdb.connect(str(path))
    try:
        for schema in ("marts", "seeds", "raw", "quality", "clv", kpi_definitions_schema):
            con.execute(f"create schema if not exists {schema}")
        frames = {
            "marts.dim_customers": customers,
            "marts.fct_orders": fct_orders,
            "marts.fct_service_tickets": fct_tickets,
            "marts.fct_social_interactions": fct_social,
            "marts.fct_kpi_monthly": kpi_monthly,
            "marts.fct_kpi_weekly": kpi_weekly,
            "marts.rpt_kpi_review": review,
            f"{kpi_definitions_schema}.kpi_definitions": definitions,
            "raw.customers": raw_customers,
        }
        for name, frame in frames.items():
            con.register("frame", frame)
            con.execute(f"create table {name} as select * from frame")
            con.unregister("frame")
        # dbt-like types: money as decimal, months as dates
        con.execute("alter table marts.fct_orders alter net_revenue type decimal(18, 2)")
        con.execute("alter table marts.dim_customers alter net_revenue_365d type decimal(18, 2)")
        con.execute("alter table marts.fct_kpi_monthly alter month type date")
        con.execute("alter table marts.fct_kpi_weekly alter week type date")
        con.execute("alter table marts.rpt_kpi_review alter provisional_value type double")
        con.execute("alter table marts.rpt_kpi_review alter status_reason type varchar")
        for score in ("r_score", "f_score", "m_score"):
            con.execute(f"alter table marts.dim_customers alter {score} type integer")
        if with_quality:
            _quality(con, rng)
        if with_clv:
            con.execute("""
                create table clv.holdout_validation as
                select * from (values
                    ('0', 412, 0.21, 0.19), ('1', 188, 0.48, 0.52), ('2', 97, 0.83, 0.79),
                    ('3', 61, 1.12, 1.20), ('4', 38, 1.46, 1.39), ('5', 22, 1.78, 1.70),
                    ('6', 14, 2.05, 2.21), ('7+', 19, 2.61, 2.48)
                ) as t(bucket, customers, predicted_mean, actual_mean)
            """)
        counts = {
            table: con.execute(f"select count(*) from marts.{table}").fetchone()[0]
            for (table,) in con.execute(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        }
        counts["kpi_definitions"] = len(definitions)
        con.execute("checkpoint")
    finally:
        con.close()
    return FixtureInfo(path=path, as_of=AS_OF, row_counts=counts)


def _quality(con: duckdb.DuckDBPyConnection, rng: random.Random) -> None:
    checks = [
        ("dim_customers", "customer_id_unique", "blocking", 0.0, 0.0),
        ("dim_customers", "customer_id_not_null", "blocking", 0.0, 0.0),
        ("fct_orders", "net_revenue_not_negative", "blocking", 0.0, 0.0),
        ("fct_orders", "row_count", "blocking", 720.0, 1.0),
        ("fct_kpi_monthly", "month_segment_kpi_unique", "blocking", 0.0, 0.0),
        ("identity", "duplicate_record_rate", "target", 0.041, 0.05),
        ("identity", "orders_resolved_rate", "target", 0.962, 0.95),
        # missed by hand: 0.66 against 0.90, 24.0 pp short
        ("dim_customers", "profile_completeness_mean", "target", 0.66, 0.90),
        ("fct_service_tickets", "tickets_with_priority_rate", "target", 0.998, 0.99),
    ]
    rows = []
    for run_id, checked_at in (
        ("run-2025-07-14", datetime(2025, 7, 14, 18, 5)),
        ("run-2025-07-15", datetime(2025, 7, 15, 18, 7)),
    ):
        for suite, expectation, severity, observed, threshold in checks:
            success = expectation != "profile_completeness_mean"
            if run_id.endswith("14") and expectation == "orders_resolved_rate":
                observed, success = 0.931, False
            rows.append(
                (run_id, checked_at, suite, expectation, severity, observed, threshold, success)
            )
    frame = pd.DataFrame(
        rows,
        columns=[
            "run_id",
            "checked_at",
            "suite",
            "expectation",
            "severity",
            "observed",
            "threshold",
            "success",
        ],
    )
    con.register("frame", frame)
    con.execute("create table quality.dq_results as select * from frame")
    con.unregister("frame")
