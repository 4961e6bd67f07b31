"""The KPI review's "Segment movement" section: the transition matrix of the last month of
``fct_segment_transitions`` (customers by their segment at the end of the month before,
rows, and at the end of the month, columns), per segment type, as HTML tables in English
and Chinese. No personal data: the table holds counts only."""

from __future__ import annotations

from typing import Any

import duckdb
from markupsafe import Markup, escape

from pipelines.publish.i18n import value_label

TABLE = "fct_segment_transitions"
#: Where the table is published: the warehouse's marts, or serving.duckdb's main schema.
#: The segment types shown, in this order.
SEGMENT_TYPES = ("lifecycle_stage", "rfm_segment", "quadrant", "vip")
#: Segment order of the lifecycle (the others: by customers, largest first).
LIFECYCLE_ORDER = ("none", "new", "active", "dormant", "churned")

STRINGS = {
    "en": {
        "title": "Segment movement",
        "explain": (
            "Customers by their segment at the end of {from_month} (rows) and at the end of "
            "{month} (columns); the diagonal stayed. \u201cnone\u201d: no order yet, or "
            "merged into another customer."
        ),
        "from_to": "from \\ to",
        "total": "total",
        "no_data": "No complete month with a month before it yet.",
        "lifecycle_stage": "Lifecycle stage",
        "rfm_segment": "RFM segment",
        "quadrant": "Value x potential quadrant",
        "vip": "VIP",
        "none": "none",
        "unsegmented": "unsegmented",
        "unknown": "unknown",
        "not_vip": "not VIP",
    },
    "zh": {
        "title": "分群迁移",
        "explain": "行：{from_month}月末的分群；列：{month}月末的分群；对角线为未变的客户。“无”：尚未下单，或已合并到其他客户。",
        "from_to": "迁出 \\ 迁入",
        "total": "合计",
        "no_data": "尚无可比较的完整月份。",
        "lifecycle_stage": "生命周期阶段",
        "rfm_segment": "RFM分群",
        "quadrant": "价值潜力象限",
        "vip": "VIP",
        "none": "无",
        "unsegmented": "未分群",
        "unknown": "未知",
        "not_vip": "非VIP",
    },
}


def load_movement(con: duckdb.DuckDBPyConnection, table: str | None) -> dict[str, Any] | None:
    """The last month's transitions of the table `table`: {month, from_month, cells: {type:
    [(from, to, n)]}}; None without the table (None) or without a month that has a stored
    month before it."""
    if table is None:
        return None
    row = con.execute(
        f"select max(month) from {table} where from_segment <> 'none' or to_segment = 'none'"
    ).fetchone()
    if not row or row[0] is None:
        return None
    month = row[0]
    cells: dict[str, list[tuple[str, str, int]]] = {}
    for segment_type, source, target, customers in con.execute(
        f"select segment_type, from_segment, to_segment, customers from {table} "
        "where month = ? order by segment_type, from_segment, to_segment",
        [month],
    ).fetchall():
        cells.setdefault(segment_type, []).append((source, target, int(customers)))
    (from_month,) = con.execute(
        f"select min(from_month) from {table} where month = ?", [month]
    ).fetchone() or (None,)
    return {"month": month, "from_month": from_month, "cells": cells}


def _label(value: str, language: str) -> str:
    s = STRINGS[language]
    if value in ("none", "unsegmented", "unknown", "not_vip"):
        return s[value]
    if value == "vip":
        return "VIP"
    return value_label(value, language)


def _order(segment_type: str, cells: list[tuple[str, str, int]]) -> list[str]:
    totals: dict[str, int] = {}
    for source, target, n in cells:
        totals[source] = totals.get(source, 0) + n
        totals[target] = totals.get(target, 0) + n
    if segment_type == "lifecycle_stage":
        known = [v for v in LIFECYCLE_ORDER if v in totals]
        return known + sorted(v for v in totals if v not in LIFECYCLE_ORDER)
    rest = sorted((v for v in totals if v != "none"), key=lambda v: (-totals[v], v))
    return (["none"] if "none" in totals else []) + rest


def matrix_html(segment_type: str, cells: list[tuple[str, str, int]], language: str) -> Markup:
    """One transition matrix: rows from, columns to, each row's total."""
    s = STRINGS[language]
    values = _order(segment_type, cells)
    counts = {(a, b): n for a, b, n in cells}
    sources = [v for v in values if any((v, b) in counts for b in values)]
    targets = [v for v in values if any((a, v) in counts for a in values)]
    head = Markup("").join(Markup("<th>{}</th>").format(_label(v, language)) for v in targets)
    body = []
    for a in sources:
        tds = Markup("").join(
            Markup('<td class="{}">{}</td>').format(
                "stay" if a == b else "move", f"{counts[(a, b)]:,}" if (a, b) in counts else ""
            )
            for b in targets
        )
        total = sum(counts.get((a, b), 0) for b in targets)
        body.append(
            Markup("<tr><th>{}</th>{}<td>{}</td></tr>").format(
                _label(a, language), tds, f"{total:,}"
            )
        )
    return Markup(
        '<table class="transitions" data-segment-type="{}"><caption>{}</caption>'
        "<thead><tr><th>{}</th>{}<th>{}</th></tr></thead><tbody>{}</tbody></table>"
    ).format(segment_type, s[segment_type], s["from_to"], head, s["total"], Markup("").join(body))


def render_movement(movement: dict[str, Any] | None, language: str) -> Markup:
    """The section's HTML: the explanation and one matrix per segment type."""
    s = STRINGS[language]
    if not movement:
        return Markup('<p class="muted">{}</p>').format(s["no_data"])
    explain = s["explain"].format(
        from_month=movement["from_month"].strftime("%Y-%m"),
        month=movement["month"].strftime("%Y-%m"),
    )
    tables = Markup("").join(
        Markup('<div class="panel"><div class="table-wrap">{}</div></div>').format(
            matrix_html(kind, movement["cells"][kind], language)
        )
        for kind in SEGMENT_TYPES
        if kind in movement["cells"]
    )
    return Markup('<div class="explain">{}</div><div class="grid">{}</div>').format(
        escape(explain), tables
    )
