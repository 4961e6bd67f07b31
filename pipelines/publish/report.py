"""The KPI review for managers: one self-contained HTML file per as-of date and language.

`render_review(db, out_dir, as_of)` reads the published marts (the warehouse file or
serving.duckdb) and writes, for every language of `LANGUAGES`,
`<out_dir>/<YYYY-MM-DD>/kpi_review.<language>.html`, plus the review's statuses as
`kpi_review.json` beside them: the next night reads that file to say what changed since this
review (`previous_review`). The pages have no external reference but one optional script,
`../night_status.js` (`pipelines.publish.release.record_night`), which tells a page shown
after a failed night that its data is older than the last night. Styles are inline, charts
inline SVG (`pipelines.publish.svg`), text escaped by Jinja2.

Every table and column read here is named in `pipelines.publish.columns`.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import jinja2
from markupsafe import Markup, escape

from pipelines.publish import svg
from pipelines.publish.columns import (
    COLUMNS,
    MIN_SEGMENT_BASE,
    OVERALL_SEGMENT,
    PROFILE_KPI,
    SERVICE_KPIS,
    STATUSES,
    TABLE_SCHEMAS,
    select_list,
)
from pipelines.publish.i18n import LANGUAGES, strings, value_label

REPORT_STEM = "kpi_review"
#: The review's statuses per target, next to each night's pages (read by the next night).
STATUS_FILE = f"{REPORT_STEM}.json"
TEMPLATES = Path(__file__).parent / "templates"
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
REQUIRED = ("rpt_kpi_review", "fct_kpi_monthly", "fct_kpi_weekly", "kpi_definitions")


def report_file(language: str) -> str:
    """`kpi_review.<language>.html`."""
    return f"{REPORT_STEM}.{language}.html"


class ReportError(RuntimeError):
    """The report cannot be built; the message names the table or column and the fix."""


@dataclass(frozen=True)
class ReportResult:
    path: Path
    latest_path: Path
    language: str
    as_of: date
    bytes: int
    seconds: float
    status_counts: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """Plain JSON-able values for the Dagster materialization."""
        return {
            "path": str(self.path),
            "latest_path": str(self.latest_path),
            "language": self.language,
            "as_of": self.as_of.isoformat(),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "targets": sum(self.status_counts.values()),
            **{f"targets.{status}": n for status, n in self.status_counts.items()},
        }


# --------------------------------------------------------------------------------------------
# Formatting (pure functions; tests/test_publish_report.py checks them by hand)

UNIT_KINDS = {
    "ratio": "pct",
    "score": "score",
    "minutes": "minutes",
    "currency": "money",
    "customers": "count",
    "orders": "count",
    "tickets": "count",
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


def _missing(value: float | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(kind: str, value: float | None, language: str = "en") -> str:
    """A value of `kind` as shown in the review: 41.2%, 4.23, 1,234 min, 1,234,567."""
    if _missing(value):
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
    return "–" if _missing(value) else f"{value * 100:.0f}%"  # type: ignore[operator]


def format_change(
    kind: str, current: float | None, earlier: float | None, language: str = "en"
) -> str | None:
    """The change from `earlier` to `current`: percentage points for rates (+1.2 pp),
    the difference for scores (+0.05), the relative change otherwise (+10.0%); None when
    there is nothing to compare (no earlier value, or a relative change from 0)."""
    if _missing(current) or _missing(earlier):
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
    if _missing(progress):
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
    e70 = None if _missing(elapsed) else 0.7 * elapsed  # type: ignore[operator]
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
    if _missing(required):
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


def status_changes(
    now: dict[str, str], before: dict[str, str]
) -> list[tuple[str, str | None, str]]:
    """(target_id, status before or None for a new target, status now) for each target
    whose status changed."""
    return [
        (tid, before.get(tid), status)
        for tid, status in sorted(now.items())
        if before.get(tid) != status
    ]


def previous_review(reports_dir: Path | None, as_of: date) -> tuple[date, dict[str, str]] | None:
    """The statuses of the newest review written before `as_of` under `reports_dir`
    (`<date>/kpi_review.json`), or None."""
    if reports_dir is None or not Path(reports_dir).is_dir():
        return None
    found = []
    for folder in Path(reports_dir).iterdir():
        try:
            day = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if day < as_of and (folder / STATUS_FILE).is_file():
            found.append(day)
    for day in sorted(found, reverse=True):
        try:
            data = json.loads((Path(reports_dir) / day.isoformat() / STATUS_FILE).read_text())
            return day, {tid: entry["status"] for tid, entry in data["targets"].items()}
        except (OSError, ValueError, KeyError, TypeError):
            continue  # an unreadable sidecar: compare with the one before
    return None


# --------------------------------------------------------------------------------------------
# Reading


def _find_table(con: duckdb.DuckDBPyConnection, table: str) -> str | None:
    schemas = TABLE_SCHEMAS[table]
    rows = con.execute(
        "select schema_name from duckdb_tables() where table_name = ? "
        "and database_name = current_database() "
        "union all select schema_name from duckdb_views() where view_name = ? "
        "and database_name = current_database()",
        [table, table],
    ).fetchall()
    present = {row[0] for row in rows}
    for schema in schemas:
        if schema in present:
            return f'"{schema}"."{table}"'
    return None


def _rows(
    con: duckdb.DuckDBPyConnection,
    table: str,
    qualified: str,
    tail: str = "",
    params: list[Any] | None = None,
) -> list[dict[str, Any]]:
    sql = f"select {select_list(table)} from {qualified} {tail}"
    try:
        cursor = con.execute(sql, params or [])
    except duckdb.BinderException as exc:
        raise ReportError(
            f"{qualified} does not have a column the KPI review reads ({exc}). If the column was "
            f"renamed in dbt, update COLUMNS[{table!r}] in pipelines/publish/columns.py."
        ) from exc
    names = [d[0] for d in cursor.description]
    return [
        {
            name: float(v) if isinstance(v, Decimal) else v
            for name, v in zip(names, row, strict=True)
        }
        for row in cursor.fetchall()
    ]


def load_data(con: duckdb.DuckDBPyConnection, as_of: date) -> dict[str, Any]:
    """Everything the report shows, as plain Python values."""
    tables = {name: _find_table(con, name) for name in TABLE_SCHEMAS}
    missing = [name for name in REQUIRED if tables[name] is None]
    if missing:
        raise ReportError(
            f"missing table(s) {', '.join(missing)} (looked in schemas "
            f"{', '.join(sorted({s for n in missing for s in TABLE_SCHEMAS[n]}))}): "
            "run `dbt build` before the report, or point the report at serving.duckdb"
        )
    review = _rows(con, "rpt_kpi_review", tables["rpt_kpi_review"])
    table_as_of = max((r["as_of_date"] for r in review if r["as_of_date"]), default=None)
    if table_as_of is not None:
        review = [r for r in review if r["as_of_date"] == table_as_of]
    review.sort(key=lambda r: str(r["target_id"]))

    month_col = COLUMNS["fct_kpi_monthly"]["month"]
    monthly = _rows(
        con,
        "fct_kpi_monthly",
        tables["fct_kpi_monthly"],
        f'where "{month_col}" <= ? order by "{month_col}"',
        [as_of],
    )
    week_col = COLUMNS["fct_kpi_weekly"]["week"]
    weekly = _rows(
        con,
        "fct_kpi_weekly",
        tables["fct_kpi_weekly"],
        f'where "{week_col}" <= ? order by "{week_col}"',
        [as_of],
    )
    definitions = {
        row["kpi"]: row for row in _rows(con, "kpi_definitions", tables["kpi_definitions"])
    }

    mix: dict[str, list[tuple[str | None, int]]] = {}
    customers = 0
    if tables["dim_customers"]:
        dim = tables["dim_customers"]
        dcols = COLUMNS["dim_customers"]
        try:
            for key in ("rfm_segment", "quadrant", "lifecycle_stage"):
                mix[key] = con.execute(
                    f'select "{dcols[key]}", count(*) from {dim} group by 1 order by 2 desc, 1'
                ).fetchall()
            (customers,) = con.execute(f"select count(*) from {dim}").fetchone() or (0,)
        except duckdb.BinderException as exc:
            raise ReportError(
                f"{dim} does not have a column the KPI review reads ({exc}); update "
                "COLUMNS['dim_customers'] in pipelines/publish/columns.py"
            ) from exc

    quality: dict[str, Any] | None = None
    if tables["dq_results"]:
        qcols = COLUMNS["dq_results"]
        qualified = tables["dq_results"]
        latest = con.execute(
            f'select "{qcols["run_id"]}" from {qualified} '
            f'order by "{qcols["checked_at"]}" desc nulls last limit 1'
        ).fetchone()
        if latest:
            checks = _rows(
                con, "dq_results", qualified, f'where "{qcols["run_id"]}" = ?', [latest[0]]
            )
            checks.sort(key=lambda r: (str(r["suite"]), str(r["expectation"])))
            quality = {
                "run_id": latest[0],
                "checks": checks,
                "checked_at": max(
                    (c["checked_at"] for c in checks if c["checked_at"]), default=None
                ),
            }

    clv = None
    if tables["holdout_validation"]:
        clv = _rows(con, "holdout_validation", tables["holdout_validation"])

        def bucket_key(row: dict[str, Any]) -> tuple[float, str]:
            text = str(row["bucket"])
            digits = "".join(ch for ch in text.split("-")[0] if ch.isdigit() or ch == ".")
            try:
                return (float(digits), text)
            except ValueError:
                return (math.inf, text)

        clv.sort(key=bucket_key)

    return {
        "review": review,
        "table_as_of": table_as_of,
        "monthly": monthly,
        "weekly": weekly,
        "mix": mix,
        "customers": customers,
        "definitions": definitions,
        "quality": quality,
        "clv": clv,
    }


# --------------------------------------------------------------------------------------------
# Building the page


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
            if r["is_complete"] and r["has_enough_history"] and not _missing(r["value"])
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
        lines = [line for line in lines if not _missing(line.value)]
        since = parse_period(row["baseline_period"])
        if since is None and row["start_date"]:
            since = add_months(row["start_date"].replace(day=1), -1)
        description = (
            (row.get("description_zh") if language == "zh" else row.get("description"))
            or row.get("description")
            or ""
        )
        provisional = None
        if row.get("provisional_period") and not _missing(row.get("provisional_value")):
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
        if _missing(value):
            return "–"
        return f"{value * 100:.1f}%" if share else f"{value:,.4g}"  # type: ignore[operator]

    misses = []
    for c in missed:
        observed, threshold = c["observed"], c["threshold"]
        share = all(not _missing(v) and 0 <= v <= 1 for v in (observed, threshold))
        gap = None
        if not _missing(observed) and not _missing(threshold):
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
        if row is None or _missing(row["target_value"]):
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
        "profile": profile,
        "quality": _quality(rv),
        "data_docs": DATA_DOCS_LINK,
        "night_status_script": NIGHT_STATUS_SCRIPT,
        "clv": clv,
        "glossary": glossary,
        "min_base": MIN_SEGMENT_BASE,
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def _read(db: Path, as_of: date) -> dict[str, Any]:
    db = Path(db)
    if not db.exists():
        raise ReportError(f"{db} does not exist: run the pipeline (or publish) first")
    con = duckdb.connect(str(db), read_only=True)
    try:
        return load_data(con, as_of)
    finally:
        con.close()


def _render(
    data: dict[str, Any],
    as_of: date,
    language: str,
    *,
    generated_at: datetime | None = None,
    timezone: str = "Asia/Shanghai",
    previous: tuple[date, dict[str, str]] | None = None,
) -> tuple[str, dict[str, int]]:
    if language not in LANGUAGES:
        raise ReportError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
    context = build_context(
        data,
        as_of,
        language,
        generated_at or datetime.now(UTC),
        timezone=timezone,
        previous=previous,
    )
    html = _environment().get_template("kpi_review.html").render(**context)
    return html, context["status_counts"]


def build_html(
    db: Path,
    as_of: date,
    language: str = "en",
    generated_at: datetime | None = None,
    *,
    timezone: str = "Asia/Shanghai",
    history_dir: Path | None = None,
) -> tuple[str, dict[str, int]]:
    """The report as a string, and the number of targets per status."""
    if language not in LANGUAGES:
        raise ReportError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
    return _render(
        _read(db, as_of),
        as_of,
        language,
        generated_at=generated_at,
        timezone=timezone,
        previous=previous_review(history_dir, as_of),
    )


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def status_record(data: dict[str, Any], as_of: date) -> str:
    """The sidecar `kpi_review.json`: the review's status per target (what the next night
    compares with)."""
    return json.dumps(
        {
            "as_of": as_of.isoformat(),
            "targets": {
                str(r["target_id"]): {
                    "status": r["status"],
                    "current_period": r["current_period"],
                    "current_value": r["current_value"],
                }
                for r in data["review"]
            },
        },
        indent=2,
        sort_keys=True,
    )


def render_review(
    db: Path,
    out_dir: Path,
    as_of: date,
    *,
    languages: tuple[str, ...] = LANGUAGES,
    timezone: str = "Asia/Shanghai",
    history_dir: Path | None = None,
) -> list[ReportResult]:
    """Write `<out_dir>/<as_of>/kpi_review.<language>.html` for every language and the
    sidecar `kpi_review.json`; also under `<out_dir>/latest/` unless `latest` is the link a
    publication made (pipelines/publish/release.py). `history_dir`: where the earlier nights'
    reviews are (`<date>/kpi_review.json`), to say what changed since the previous one."""
    started = time.perf_counter()
    data = _read(db, as_of)
    previous = previous_review(history_dir, as_of)
    out_dir = Path(out_dir)
    latest_dir = out_dir / "latest"
    generated_at = datetime.now(UTC)
    results = []
    for language in languages:
        html, status_counts = _render(
            data,
            as_of,
            language,
            generated_at=generated_at,
            timezone=timezone,
            previous=previous,
        )
        path = out_dir / as_of.isoformat() / report_file(language)
        _write_atomic(path, html)
        if not latest_dir.is_symlink():
            _write_atomic(latest_dir / report_file(language), html)
        results.append(
            ReportResult(
                path=path,
                latest_path=latest_dir / report_file(language),
                language=language,
                as_of=as_of,
                bytes=path.stat().st_size,
                seconds=time.perf_counter() - started,
                status_counts=status_counts,
            )
        )
    record = status_record(data, as_of)
    _write_atomic(out_dir / as_of.isoformat() / STATUS_FILE, record)
    if not latest_dir.is_symlink():
        _write_atomic(latest_dir / STATUS_FILE, record)
    return results


def render_kpi_review(
    db: Path, out_dir: Path, as_of: date, language: str = "en", **options: Any
) -> ReportResult:
    """The review in one language (see `render_review`)."""
    if language not in LANGUAGES:
        raise ReportError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
    (result,) = render_review(db, out_dir, as_of, languages=(language,), **options)
    return result


def render_report(db: Path, out_dir: Path, as_of: date, language: str = "en") -> Path:
    """Render the KPI review from `db` (warehouse.duckdb or serving.duckdb); return its path."""
    return render_kpi_review(db, out_dir, as_of, language).path
