"""The review's "Campaigns" section: a table of the latest campaigns from
`fct_campaign_performance` (its `all` row, and its dormant row where the campaign reached
dormant customers: the win-back target), with the uplift against the hold-out and its 95 %
confidence interval. A row whose reached or hold-out group is below min_segment_base is
greyed, never read as a result."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import duckdb

from pipelines.publish.columns import COLUMNS
from pipelines.publish.i18n import strings, value_label
from pipelines.publish.review_format import format_number, is_missing

TABLE = "fct_campaign_performance"
#: Campaigns shown, the latest first.
CAMPAIGNS_SHOWN = 12
#: A campaign's segment row is shown beside its `all` row when the segment holds at least
#: this share of the customers it reached: the segment it targeted (a win-back's dormant
#: customers, a second-order push's new ones; some of the reached are always in another
#: stage, e.g. a follower whose orders the warehouse has not linked to her account is a
#: prospect). Pushes to a random share of all followers stay well below it.
TARGETED_SHARE = 0.8

TEXTS = {
    "en": {
        "campaigns": "Campaigns",
        "campaigns_explain": (
            "The latest campaigns: customers reached, responses within 7 days, orders and net "
            "revenue within 30 days by last touch (an order counts for the latest push before "
            "it only), the conversion of the reached customers against the unpushed hold-out "
            "of the same segment, the uplift with its 95 % confidence interval, and the "
            "reactivation of dormant customers. Greyed: a group below {min_base} customers. "
            "Italic: the 30 days after the campaign are not over yet. Below a campaign's row "
            "for all customers, the row of the segment it targeted (the lifecycle stage of at "
            "least 80 % of the customers it reached)."
        ),
        "campaigns_none": "No campaign results in this warehouse.",
        "campaign": "Campaign",
        "campaign_date": "Date",
        "segment": "Segment",
        "reached": "Reached",
        "response_rate": "Response",
        "attributed_orders": "Orders",
        "attributed_revenue": "Net revenue",
        "conversion": "Conversion",
        "holdout_conversion": "Hold-out",
        "uplift": "Uplift (95 % CI)",
        "reactivation": "Reactivated",
    },
    "zh": {
        "campaigns": "营销活动",
        "campaigns_explain": (
            "最近的营销活动：触达客户、7天内响应、末次触达归因的30天内订单与净收入（订单只计入其前最近一次推送），"
            "触达客户相对同分群未推送对照组的转化率、增量转化率及其95%置信区间，以及沉睡客户的唤醒。"
            "灰色：组内客户少于{min_base}人。斜体：活动后的30天尚未结束。"
            "每个活动的全部客户行之下，是其目标分群的行（其触达客户中至少80%所处的生命周期阶段）。"
        ),
        "campaigns_none": "本数据仓库中没有营销活动结果。",
        "campaign": "营销活动",
        "campaign_date": "日期",
        "segment": "分群",
        "reached": "触达",
        "response_rate": "响应率",
        "attributed_orders": "订单",
        "attributed_revenue": "净收入",
        "conversion": "转化率",
        "holdout_conversion": "对照组",
        "uplift": "增量（95%置信区间）",
        "reactivation": "唤醒",
    },
}


def load_campaigns(
    con: duckdb.DuckDBPyConnection, qualified: str | None, as_of: date
) -> list[dict[str, Any]]:
    """The rows the section shows: the latest CAMPAIGNS_SHOWN campaigns up to `as_of`."""
    if qualified is None:
        return []
    c = COLUMNS[TABLE]
    names = list(c)
    select = ", ".join(f'rows."{c[n]}"' for n in names)
    campaign, day, segment, reached = (
        f'"{c[n]}"' for n in ("campaign_id", "campaign_date", "segment", "reached_customers")
    )
    sql = (
        f"with latest as (select distinct {campaign} as id, {day} as d from {qualified} "
        f"where {day} <= ? order by d desc, id desc limit {CAMPAIGNS_SHOWN}), "
        f"rows as (select *, max(case when {segment} = 'all' then {reached} end) "
        f"over (partition by {campaign}) as all_reached__ from {qualified}) "
        f"select {select} from rows join latest on rows.{campaign} = latest.id "
        f"where rows.{segment} = 'all' "
        f"or rows.{reached} >= {TARGETED_SHARE} * rows.all_reached__ "
        f"order by latest.d desc, latest.id desc, rows.{segment} <> 'all', rows.{segment}"
    )
    try:
        fetched = con.execute(sql, [as_of]).fetchall()
    except duckdb.BinderException as exc:
        from pipelines.publish.review_data import ReportError

        raise ReportError(
            f"{qualified} does not have a column the KPI review reads ({exc}); update "
            f"COLUMNS[{TABLE!r}] in pipelines/publish/columns.py"
        ) from exc
    return [
        {n: float(v) if isinstance(v, Decimal) else v for n, v in zip(names, row, strict=True)}
        for row in fetched
    ]


def campaigns_section(rows: list[dict[str, Any]], language: str, min_base: int) -> dict[str, Any]:
    """The section's texts and formatted rows."""
    t = TEXTS[language]

    def pct(v: float | None) -> str:
        return format_number("pct", v, language)

    def points(v: float | None) -> str:
        return "–" if is_missing(v) else f"{v * 100:+.1f}"  # type: ignore[operator]

    shown = []
    for r in rows:
        uplift = (
            "–"
            if is_missing(r["uplift"])
            else f"{points(r['uplift'])} {strings(language)['pp']} [{points(r['uplift_ci_low'])}, "
            f"{points(r['uplift_ci_high'])}]"
        )
        reactivation = (
            "–"
            if not r["dormant_reached_customers"]
            else f"{r['reactivated_customers']:,} / {r['dormant_reached_customers']:,} "
            f"({pct(r['reactivation_rate'])})"
        )
        shown.append(
            {
                "campaign_id": r["campaign_id"],
                "segment": r["segment"],
                "segment_name": value_label(r["segment"], language),
                "date": r["campaign_date"].isoformat() if r["campaign_date"] else "–",
                "reached": f"{r['reached_customers']:,}",
                "response_rate": pct(r["response_rate"]),
                "orders": f"{r['attributed_orders']:,}",
                "revenue": format_number("money", r["attributed_net_revenue"], language),
                "conversion": pct(r["conversion_rate"]),
                "holdout": (
                    "–"
                    if not r["holdout_customers"]
                    else f"{pct(r['holdout_conversion_rate'])} (n = {r['holdout_customers']:,})"
                ),
                "uplift": uplift,
                "reactivation": reactivation,
                "small_base": bool(r["is_small_base"]) and not is_missing(r["uplift"]),
                "provisional": not r["is_complete"],
            }
        )
    return {
        "t": t,
        "explain": t["campaigns_explain"].format(min_base=min_base),
        "rows": shown,
    }
