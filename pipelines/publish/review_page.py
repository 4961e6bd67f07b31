"""Building the KPI review's page context from its data: the headline, the targets, the
segments, the weekly trends and the data quality section (rendered by
`pipelines.publish.report` with templates/kpi_review.html)."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from typing import Any

from markupsafe import Markup, escape

from pipelines.publish import svg
from pipelines.publish.columns import (
    BACKLOG_DAYS_SHOWN,
    MIN_SEGMENT_BASE,
    OVERALL_SEGMENT,
    PROFILE_KPI,
    SERVICE_KPIS,
    STATUSES,
)
from pipelines.publish.i18n import strings, value_label
from pipelines.publish.review_campaigns import campaigns_section
from pipelines.publish.review_format import (
    add_months,
    business_time,
    format_change,
    format_number,
    format_share,
    forward_text,
    is_missing,
    month_label,
    parse_period,
    progress_words,
    status_rule,
    value_kind,
)
from pipelines.publish.review_history import status_changes
from pipelines.publish.review_retention import retention_section
from pipelines.publish.review_segments import STRINGS as MOVEMENT_STRINGS
from pipelines.publish.review_segments import render_movement

#: The quality gate's Data Docs, relative to a review under reports/<date>/ or reports/latest/.
DATA_DOCS_LINK = "../data_docs/index.html"
NIGHT_STATUS_SCRIPT = "../night_status.js"
STATUS_COLORS = {
    "achieved": "#1a7f37",
    "on_track": "#2da44e",
    "at_risk": "#bf8700",
    "off_track": "#cf222e",
    "missed": "#82071e",
    "no_data": "#57606a",
    "small_base": "#8c959f",
}
HEADLINE_KPIS = (
    "net_revenue",
    "orders",
    "purchasing_customers",
    "new_customers",
    "repurchase_rate",
    "churn_rate",
    "csat_avg",
    "first_response_sla_rate",
)
SEGMENT_TYPES = ("vip", "lifecycle_stage", "quadrant", "rfm_segment", "channel")
SEGMENT_KPIS = (
    "purchasing_customers",
    "orders",
    "net_revenue",
    "aov",
    "repurchase_rate",
    "churn_rate",
    "csat_avg",
    "first_response_sla_rate",
)
WEEKLY_KPIS = (
    "orders",
    "net_revenue",
    "tickets",
    "first_response_sla_rate",
    "resolution_sla_rate",
    "csat_avg",
    "csat_satisfied_rate",
)
WEEKS_SHOWN = 8
TICK_FORMATS = {"pct": svg.percent_ticks, "score": svg.plain_ticks}


class Review:
    """The data of one review in one language, with the lookups the sections share."""

    def __init__(self, data: dict[str, Any], as_of: date, language: str) -> None:
        self.data = data
        self.as_of = as_of
        self.language = language
        self.t = strings(language)
        self.definitions: dict[str, dict[str, Any]] = data["definitions"]
        self.by_key: dict[tuple[str, str, str], dict[date, dict[str, Any]]] = defaultdict(dict)
        for row in data["monthly"]:
            self.by_key[(row["kpi"], row["segment_type"], row["segment"])][row["month"]] = row

    def unit(self, kpi: str) -> str | None:
        return (self.definitions.get(kpi) or {}).get("unit")

    def kind(self, kpi: str) -> str:
        return value_kind(kpi, self.unit(kpi))

    def fmt(self, kpi: str, value: float | None) -> str:
        return format_number(self.kind(kpi), value, self.language)

    def name(self, kpi: str) -> str:
        entry = self.definitions.get(kpi) or {}
        return entry.get(f"name_{self.language}") or entry.get("name_en") or kpi

    def explain(self, kpi: str) -> str:
        entry = self.definitions.get(kpi) or {}
        return entry.get(f"description_{self.language}") or entry.get("description_en") or ""

    def series(self, kpi: str, segment_type: str, segment: str) -> dict[date, dict[str, Any]]:
        return self.by_key.get((kpi, segment_type, segment), {})

    def latest_complete(self, kpi: str, segment_type: str = "all", segment: str = "all"):
        rows = self.series(kpi, segment_type, segment)
        done = [
            m
            for m, r in rows.items()
            if r["is_complete"] and r["has_enough_history"] and not is_missing(r["value"])
        ]
        return max(done) if done else None

    def value_at(self, kpi: str, month: date, segment_type: str = "all", segment: str = "all"):
        row = self.series(kpi, segment_type, segment).get(month)
        if row is None or not row["has_enough_history"]:
            return None
        return row["value"]

    def trend(
        self,
        kpi: str,
        segment_type: str,
        segment: str,
        *,
        since: date | None,
        label: str,
        lines: list[svg.Line],
    ) -> Any:
        rows = self.series(kpi, segment_type, segment)
        months = sorted(m for m in rows if since is None or m >= since)
        values = [rows[m]["value"] for m in months]
        provisional = frozenset(i for i, m in enumerate(months) if not rows[m]["is_complete"])
        muted = frozenset(i for i, m in enumerate(months) if not rows[m]["has_enough_history"])
        return svg.line_chart(
            [month_label(m) for m in months],
            [svg.Series(self.name(kpi), values, svg.PALETTE[0], provisional, muted)],
            lines=lines,
            label=label,
            empty_text=self.t["no_data"],
            muted_text=self.t["not_enough_history"],
            y_format=lambda v: self.fmt(kpi, v),
            tick_format=TICK_FORMATS.get(self.kind(kpi), svg.plain_ticks),
        )


def _headline(rv: Review) -> list[dict[str, Any]]:
    cards = []
    for kpi in HEADLINE_KPIS:
        month = rv.latest_complete(kpi)
        if month is None:
            continue
        kind = rv.kind(kpi)
        value = rv.value_at(kpi, month)
        cards.append(
            {
                "kpi": kpi,
                "name": rv.name(kpi),
                "month": month_label(month),
                "value": rv.fmt(kpi, value),
                "mom": format_change(
                    kind, value, rv.value_at(kpi, add_months(month, -1)), rv.language
                ),
                "yoy": format_change(
                    kind, value, rv.value_at(kpi, add_months(month, -12)), rv.language
                ),
            }
        )
    return cards


def _targets(rv: Review) -> list[dict[str, Any]]:
    t, language = rv.t, rv.language
    targets = []
    for row in rv.data["review"]:
        kpi, status = row["kpi"], row["status"]
        kind = rv.kind(kpi)
        segment_type = row.get("segment_type") or "all"
        lines = [
            svg.Line(row["target_value"], t["target_line"], "#1a7f37"),
            svg.Line(row["baseline"], t["baseline_line"], "#6e7781"),
        ]
        lines = [line for line in lines if not is_missing(line.value)]
        since = parse_period(row["baseline_period"])
        if since is None and row["start_date"]:
            since = add_months(row["start_date"].replace(day=1), -1)
        description = (
            (row.get("description_zh") if language == "zh" else row.get("description"))
            or row.get("description")
            or ""
        )
        provisional = None
        if row.get("provisional_period") and not is_missing(row.get("provisional_value")):
            provisional = t["provisional_note"].format(
                month=row["provisional_period"], value=rv.fmt(kpi, row["provisional_value"])
            )
        targets.append(
            {
                **row,
                "anchor": f"target-{row['target_id']}",
                "kpi_name": rv.name(kpi),
                "description_text": description,
                "status_label": t.get(f"status_{status}", status),
                "status_color": STATUS_COLORS.get(status, "#57606a"),
                "small_base": status == "small_base" or bool(row.get("is_small_base")),
                "segment_label": value_label(row["segment"], language),
                "owner_label": value_label(row["owner"], language),
                "direction_label": t.get(f"direction_{row['direction']}", row["direction"]),
                "baseline_text": rv.fmt(kpi, row["baseline"]),
                "current_text": rv.fmt(kpi, row["current_value"]),
                "current_provisional": row.get("current_is_complete") is False,
                "target_text": rv.fmt(kpi, row["target_value"]),
                "progress_text": progress_words(row["progress"], language),
                "elapsed_text": format_share(row["time_elapsed"]),
                "bullet": svg.bullet_chart(
                    row["progress"],
                    row["time_elapsed"],
                    status_color=STATUS_COLORS.get(status, "#57606a"),
                    label=t["bullet_label"].format(
                        progress=progress_words(row["progress"], language),
                        elapsed=format_share(row["time_elapsed"]),
                    ),
                    width=420,
                ),
                "rule": status_rule(
                    status, row["progress"], row["time_elapsed"], row.get("status_reason"), language
                ),
                "forward": forward_text(
                    kind=kind,
                    status=status,
                    required=row.get("required_monthly_value"),
                    target=row["target_value"],
                    due=row["due_date"],
                    as_of=rv.as_of,
                    language=language,
                ),
                "provisional_text": provisional,
                "explanation": rv.explain(kpi),
                "chart": rv.trend(
                    kpi,
                    segment_type,
                    row["segment"],
                    since=since,
                    lines=lines,
                    label=f"{row['target_id']} {rv.name(kpi)} ({value_label(row['segment'], language)})",
                ),
            }
        )
    return targets


def _segments(rv: Review) -> list[dict[str, Any]]:
    """Per segment type: the key KPIs of each segment for its latest complete month."""
    reference = rv.latest_complete("orders")
    tables = []
    for segment_type in SEGMENT_TYPES:
        rows = [r for r in rv.data["monthly"] if r["segment_type"] == segment_type]
        if not rows:
            continue
        complete = {r["month"] for r in rows if r["is_complete"]}
        candidates = [m for m in complete if reference is None or m <= reference]
        month = max(candidates) if candidates else max(r["month"] for r in rows)
        in_month = [r for r in rows if r["month"] == month]
        kpis = [k for k in SEGMENT_KPIS if any(r["kpi"] == k for r in in_month)]
        cells: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        for r in in_month:
            if r["kpi"] in kpis:
                cells[r["segment"]][r["kpi"]] = {
                    "text": rv.fmt(r["kpi"], r["value"] if r["has_enough_history"] else None),
                    "small": bool(r["is_small_base"]),
                    "provisional": not r["is_complete"],
                }
        tables.append(
            {
                "segment_type": segment_type,
                "title": rv.t[f"segment_type_{segment_type}"],
                "month": month_label(month),
                "provisional": month not in complete,
                "kpis": [(k, rv.name(k)) for k in kpis],
                "rows": [
                    (value_label(segment, rv.language), segment, cells[segment])
                    for segment in sorted(cells)
                ],
            }
        )
    return tables


def _weekly(rv: Review) -> dict[str, Any]:
    by_week: dict[date, dict[str, dict[str, Any]]] = defaultdict(dict)
    labels: dict[date, str] = {}
    for row in rv.data["weekly"]:
        by_week[row["week"]][row["kpi"]] = row
        labels[row["week"]] = row["week_label"]
    weeks = sorted(by_week)[-WEEKS_SHOWN:]
    kpis = [k for k in WEEKLY_KPIS if any(k in by_week[w] for w in weeks)]
    rows = []
    for week in weeks:
        cells = {}
        for kpi in kpis:
            row = by_week[week].get(kpi)
            cells[kpi] = {
                "text": rv.fmt(kpi, row["value"] if row else None),
                "provisional": bool(row) and not row["is_complete"],
            }
        flags = [c["provisional"] for c in cells.values()]
        rows.append(
            {
                "week": labels[week],
                "start": week.isoformat(),
                "cells": cells,
                "provisional": any(flags),
                "provisional_all": bool(flags) and all(flags),
            }
        )
    return {"kpis": [(k, rv.name(k)) for k in kpis], "rows": rows}


def _quality(rv: Review) -> dict[str, Any] | None:
    if not rv.data["quality"]:
        return None
    t = rv.t
    checks = rv.data["quality"]["checks"]
    blocking = [c for c in checks if c["severity"] == "blocking" and c["success"] is not None]
    blocking_failed = [c for c in blocking if not c["success"]]
    targets = [c for c in checks if c["severity"] == "target" and c["success"] is not None]
    missed = [c for c in targets if not c["success"]]

    def number(value: float | None, share: bool) -> str:
        if is_missing(value):
            return "–"
        return f"{value * 100:.1f}%" if share else f"{value:,.4g}"  # type: ignore[operator]

    misses = []
    for c in missed:
        observed, threshold = c["observed"], c["threshold"]
        share = all(not is_missing(v) and 0 <= v <= 1 for v in (observed, threshold))
        gap = None
        if not is_missing(observed) and not is_missing(threshold):
            gap = abs(observed - threshold)
        gap_text = (
            "–" if gap is None else f"{gap * 100:.1f} {t['pp']}" if share else number(gap, False)
        )
        misses.append(
            Markup(escape(t["quality_miss"])).format(
                check=Markup("<code>{}</code>").format(c["expectation"]),
                suite=Markup("<code>{}</code>").format(c["suite"]),
                observed=number(observed, share),
                threshold=number(threshold, share),
                gap=gap_text,
            )
        )
    return {
        "ok": not blocking_failed,
        "blocking_text": t["quality_blocking_ok"].format(n=len(blocking))
        if not blocking_failed
        else t["quality_blocked"].format(n=len(blocking_failed)),
        "targets_text": t["quality_targets_ok"].format(n=len(targets))
        if not missed
        else t["quality_targets_missed"].format(n=len(missed), total=len(targets)),
        "misses": misses,
        "checked_at": rv.data["quality"]["checked_at"],
    }


def build_context(
    data: dict[str, Any],
    as_of: date,
    language: str,
    generated_at: datetime,
    *,
    timezone: str = "Asia/Shanghai",
    previous: tuple[date, dict[str, str]] | None = None,
) -> dict[str, Any]:
    rv = Review(data, as_of, language)
    t = rv.t
    targets = _targets(rv)
    status_counts = {s: sum(1 for r in data["review"] if r["status"] == s) for s in STATUSES}

    now = {str(r["target_id"]): r["status"] for r in data["review"]}
    changes = None
    if previous is not None:
        changes = {
            "date": previous[0].isoformat(),
            "rows": [
                {
                    "target_id": tid,
                    "before": t.get(f"status_{before}", before) if before else t["changes_new"],
                    "after": t.get(f"status_{after}", after),
                    "after_status": after,
                }
                for tid, before, after in status_changes(now, previous[1])
            ],
        }

    mix_titles = {
        "rfm_segment": t["rfm_segments"],
        "quadrant": t["quadrants"],
        "lifecycle_stage": t["lifecycle_stages"],
    }
    mix = [
        {
            "title": mix_titles[key],
            "chart": svg.bar_chart(
                [(value_label(value, language), n) for value, n in rows],
                label=mix_titles[key],
                color=svg.PALETTE[n % len(svg.PALETTE)],
                empty_text=t["no_data"],
                width=560,
            ),
        }
        for n, (key, rows) in enumerate(data["mix"].items())
    ]

    target_of = {(r["kpi"], r["segment"]): r for r in data["review"]}

    def target_lines(kpi: str) -> list[svg.Line]:
        row = target_of.get((kpi, OVERALL_SEGMENT))
        if row is None or is_missing(row["target_value"]):
            return []
        return [svg.Line(row["target_value"], t["target_line"], "#1a7f37")]

    service = [
        {
            "kpi": kpi,
            "name": rv.name(kpi),
            "explain": rv.explain(kpi),
            "chart": rv.trend(
                kpi, "all", "all", since=None, label=rv.name(kpi), lines=target_lines(kpi)
            ),
        }
        for kpi in SERVICE_KPIS
    ]
    profile_targets = [
        {
            "text": t["profile_target"].format(
                target_id=r["target_id"],
                current=r["current_text"],
                month=r["current_period"] or "–",
                target=r["target_text"],
                due=r["due_date"],
            ),
            "anchor": r["anchor"],
        }
        for r in targets
        if r["kpi"] == PROFILE_KPI
    ]
    profile = {
        "name": rv.name(PROFILE_KPI),
        "explain": rv.explain(PROFILE_KPI),
        "targets": profile_targets,
        "trend": rv.trend(
            PROFILE_KPI,
            "all",
            "all",
            since=None,
            label=t["profile_trend"],
            lines=target_lines(PROFILE_KPI),
        ),
    }

    clv = None
    if data["clv"]:
        rows = data["clv"]
        clv = {
            "chart": svg.grouped_bar_chart(
                [str(r["bucket"]) for r in rows],
                [
                    svg.Series(t["predicted"], [r["predicted_mean"] for r in rows], svg.PALETTE[0]),
                    svg.Series(t["actual"], [r["actual_mean"] for r in rows], svg.PALETTE[1]),
                ],
                label=t["clv_caption"],
                y_format=lambda v: f"{v:.2f}",
            ),
            "rows": rows,
        }

    backlog_rows = data.get("backlog", [])[-BACKLOG_DAYS_SHOWN:]
    backlog = svg.line_chart(
        [r["date"].isoformat() for r in backlog_rows],
        [
            svg.Series(
                t["open_tickets"], [r["open_tickets"] for r in backlog_rows], svg.PALETTE[0]
            ),
            svg.Series(
                t["open_breaches"], [r["open_breaches"] for r in backlog_rows], svg.PALETTE[1]
            ),
        ],
        y_format=lambda v: f"{v:,.0f}",
        include_zero=True,
        label=t["backlog_trend"],
        empty_text=t["no_data"],
    )

    headline = _headline(rv)
    glossary = [(kpi, rv.name(kpi), rv.explain(kpi)) for kpi in sorted(rv.definitions)]
    return {
        "t": t,
        "lang": "zh-CN" if language == "zh" else "en",
        "language": language,
        "as_of": as_of.isoformat(),
        "table_as_of": data["table_as_of"],
        "as_of_mismatch": data["table_as_of"] is not None and data["table_as_of"] != as_of,
        "generated_at": business_time(generated_at, timezone),
        "headline": headline,
        "headline_month": headline[0]["month"] if headline else None,
        "targets": targets,
        "status_counts": status_counts,
        "status_colors": STATUS_COLORS,
        "changes": changes,
        "segments": _segments(rv),
        "weekly": _weekly(rv),
        "customers": data["customers"],
        "mix": mix,
        "service": service,
        "backlog": backlog,
        "movement": render_movement(data.get("movement"), language),
        "movement_title": MOVEMENT_STRINGS[language]["title"],
        "profile": profile,
        "quality": _quality(rv),
        "data_docs": DATA_DOCS_LINK,
        "night_status_script": NIGHT_STATUS_SCRIPT,
        "clv": clv,
        "campaigns": campaigns_section(data.get("campaigns", []), language, MIN_SEGMENT_BASE),
        "retention": retention_section(data.get("retention") or [], language),
        "glossary": glossary,
        "min_base": MIN_SEGMENT_BASE,
    }
