"""The KPI review for managers: one self-contained HTML file per as-of date.

`render_report(db, reports_dir, as_of, language)` reads the marts (from the warehouse file or
from serving.duckdb) and writes `reports/<YYYY-MM-DD>/kpi_review.html` plus a copy at
`reports/latest/kpi_review.html`. The file has no external reference: styles are inline,
charts are inline SVG drawn by `pipelines.publish.svg`, text is escaped by Jinja2.

Every table and column read here is named in `pipelines.publish.columns`.
"""

from __future__ import annotations

import math
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import jinja2

from pipelines.publish import svg
from pipelines.publish.columns import (
    COLUMNS,
    OVERALL_SEGMENT,
    PROFILE_KPI,
    SERVICE_KPIS,
    STATUSES,
    TABLE_SCHEMAS,
    select_list,
)
from pipelines.publish.i18n import LANGUAGES, strings, value_label

REPORT_FILE = "kpi_review.html"
TEMPLATES = Path(__file__).parent / "templates"
STATUS_COLORS = {
    "achieved": "#1a7f37",
    "on_track": "#2da44e",
    "at_risk": "#bf8700",
    "off_track": "#cf222e",
    "missed": "#82071e",
}
STATUS_RAG = {
    "achieved": "green",
    "on_track": "green",
    "at_risk": "amber",
    "off_track": "red",
    "missed": "red",
}
REQUIRED = ("rpt_kpi_review", "fct_kpi_monthly", "dim_customers")


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
# Formatting


def value_kind(kpi: str) -> str:
    """How a KPI's values are shown: pct, score, minutes, money or count."""
    if kpi.endswith(("_rate", "_share")) or kpi == PROFILE_KPI:
        return "pct"
    if kpi.startswith("csat_avg") or kpi.endswith("_avg"):
        return "score"
    if "minutes" in kpi:
        return "minutes"
    if "revenue" in kpi or kpi in ("aov", "clv_365d"):
        return "money"
    return "count"


def format_value(kpi: str, value: float | None, *, axis: bool = False) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    kind = value_kind(kpi)
    if kind == "pct":
        return f"{value * 100:.0f}%" if axis else f"{value * 100:.1f}%"
    if kind == "score":
        return f"{value:.1f}" if axis else f"{value:.2f}"
    if kind == "minutes":
        return f"{value:,.0f} min"
    return f"{value:,.0f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f}%"


def _bar_width(value: float | None) -> float:
    return 0.0 if value is None else max(0.0, min(100.0, value * 100))


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
    dim = tables["dim_customers"]
    dcols = COLUMNS["dim_customers"]

    def counts(column: str) -> list[tuple[str | None, int]]:
        return [
            (value, n)
            for value, n in con.execute(
                f'select "{dcols[column]}", count(*) from {dim} group by 1 order by 2 desc, 1'
            ).fetchall()
        ]

    try:
        mix = {key: counts(key) for key in ("rfm_segment", "quadrant", "lifecycle_stage")}
        profile_mean, customers = con.execute(
            f'select avg("{dcols["profile_completeness"]}"), count(*) from {dim}'
        ).fetchone()
        profile_hist = con.execute(
            f'select round("{dcols["profile_completeness"]}" * 6)::int as fields, count(*) '
            f'from {dim} where "{dcols["profile_completeness"]}" is not null group by 1 order by 1'
        ).fetchall()
    except duckdb.BinderException as exc:
        raise ReportError(
            f"{dim} does not have a column the KPI review reads ({exc}); update "
            "COLUMNS['dim_customers'] in pipelines/publish/columns.py"
        ) from exc

    definitions: dict[str, dict[str, str]] = {}
    if tables["kpi_definitions"]:
        for row in _rows(con, "kpi_definitions", tables["kpi_definitions"]):
            definitions[row["kpi"]] = {"en": row["description_en"], "zh": row["description_zh"]}

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
            checks.sort(
                key=lambda r: (
                    bool(r["success"]),
                    r["severity"] != "blocking",
                    str(r["suite"]),
                    str(r["expectation"]),
                )
            )
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
        "mix": mix,
        "customers": customers,
        "profile_mean": None if profile_mean is None else float(profile_mean),
        "profile_hist": profile_hist,
        "definitions": definitions,
        "quality": quality,
        "clv": clv,
    }


# --------------------------------------------------------------------------------------------
# Building the page


def _monthly_index(monthly: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    index: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in monthly:
        index[(row["kpi"], row["segment"])].append(row)
    return index


def _trend(
    index: dict[tuple[str, str], list[dict[str, Any]]],
    kpis: list[str],
    segment: str,
    *,
    label: str,
    lines: list[svg.Line],
    t: dict[str, str],
    names: dict[str, str] | None = None,
) -> Any:
    months = sorted({row["month"] for kpi in kpis for row in index.get((kpi, segment), [])})
    x_labels = [m.strftime("%Y-%m") for m in months]
    series = []
    for n, kpi in enumerate(kpis):
        by_month = {row["month"]: row for row in index.get((kpi, segment), [])}
        values = [by_month[m]["value"] if m in by_month else None for m in months]
        open_points = frozenset(
            i for i, m in enumerate(months) if m in by_month and not by_month[m]["is_complete"]
        )
        series.append(
            svg.Series(
                (names or {}).get(kpi, kpi), values, svg.PALETTE[n % len(svg.PALETTE)], open_points
            )
        )
    kpi = kpis[0]
    return svg.line_chart(
        x_labels,
        series,
        lines=lines,
        label=label,
        empty_text=t["no_data"],
        y_format=lambda v: format_value(kpi, v, axis=True),
        line_format=lambda v: format_value(kpi, v),
    )


def build_context(
    data: dict[str, Any], as_of: date, language: str, generated_at: datetime
) -> dict[str, Any]:
    t = strings(language)
    definitions = data["definitions"]

    def explain(kpi: str) -> str:
        entry = definitions.get(kpi)
        if not entry:
            return ""
        return entry.get(language) or entry.get("en") or ""

    index = _monthly_index(data["monthly"])
    targets = []
    for row in data["review"]:
        kpi, status = row["kpi"], row["status"]
        lines = [
            svg.Line(row["target_value"], t["target_line"], "#1a7f37"),
            svg.Line(row["baseline"], t["baseline_line"], "#6e7781"),
        ]
        lines = [line for line in lines if line.value is not None]
        targets.append(
            {
                **row,
                "status_label": t.get(f"status_{status}", status),
                "status_color": STATUS_COLORS.get(status, "#57606a"),
                "rag": STATUS_RAG.get(status, "grey"),
                "segment_label": value_label(row["segment"], language),
                "direction_label": t.get(f"direction_{row['direction']}", row["direction"]),
                "baseline_text": format_value(kpi, row["baseline"]),
                "current_text": format_value(kpi, row["current_value"]),
                "target_text": format_value(kpi, row["target_value"]),
                "progress_text": _pct(row["progress"]),
                "elapsed_text": _pct(row["time_elapsed"]),
                "progress_width": _bar_width(row["progress"]),
                "elapsed_width": _bar_width(row["time_elapsed"]),
                "explanation": explain(kpi),
                "chart": _trend(
                    index,
                    [kpi],
                    row["segment"],
                    lines=lines,
                    t=t,
                    label=f"{row['target_id']} {kpi} ({row['segment']})",
                ),
            }
        )
    status_counts = {s: sum(1 for r in data["review"] if r["status"] == s) for s in STATUSES}

    mix_titles = {
        "rfm_segment": t["rfm_segments"],
        "quadrant": t["quadrants"],
        "lifecycle_stage": t["lifecycle_stages"],
    }
    mix_colors = {
        "rfm_segment": svg.PALETTE[0],
        "quadrant": svg.PALETTE[2],
        "lifecycle_stage": svg.PALETTE[3],
    }
    mix = [
        {
            "title": mix_titles[key],
            "chart": svg.bar_chart(
                [(value_label(value, language), n) for value, n in rows],
                label=mix_titles[key],
                color=mix_colors[key],
                empty_text=t["no_data"],
                width=560,
            ),
        }
        for key, rows in data["mix"].items()
    ]

    target_of = {(r["kpi"], r["segment"]): r for r in data["review"]}

    def target_lines(kpis: tuple[str, ...]) -> list[svg.Line]:
        return [
            svg.Line(
                target_of[(k, OVERALL_SEGMENT)]["target_value"],
                f"{t['target_line']} ({k.split('_')[0]})" if len(kpis) > 1 else t["target_line"],
                "#1a7f37",
            )
            for k in kpis
            if (k, OVERALL_SEGMENT) in target_of
        ]

    sla_kpis = [k for k in SERVICE_KPIS if k != "csat_avg"]
    service = {
        "sla_chart": _trend(
            index,
            sla_kpis,
            OVERALL_SEGMENT,
            label=t["sla_rates"],
            lines=target_lines(tuple(sla_kpis)),
            t=t,
        ),
        "sla_explain": [(k, explain(k)) for k in sla_kpis],
        "csat_chart": _trend(
            index,
            ["csat_avg"],
            OVERALL_SEGMENT,
            label=t["csat"],
            lines=target_lines(("csat_avg",)),
            t=t,
        ),
        "csat_explain": explain("csat_avg"),
    }
    profile = {
        "trend": _trend(
            index,
            [PROFILE_KPI],
            OVERALL_SEGMENT,
            label=t["profile_trend"],
            lines=target_lines((PROFILE_KPI,)),
            t=t,
        ),
        "distribution": svg.bar_chart(
            [(f"{fields}/6", n) for fields, n in data["profile_hist"]],
            label=t["profile_distribution"],
            color=svg.PALETTE[1],
            width=480,
            empty_text=t["no_data"],
        ),
        "mean_text": format_value(PROFILE_KPI, data["profile_mean"]),
        "target": target_of.get((PROFILE_KPI, OVERALL_SEGMENT)),
        "explain": explain(PROFILE_KPI),
    }
    if profile["target"]:
        profile["target_text"] = format_value(PROFILE_KPI, profile["target"]["target_value"])

    quality = None
    if data["quality"]:
        checks = data["quality"]["checks"]
        summary = {}
        for severity in ("blocking", "target"):
            rows = [c for c in checks if c["severity"] == severity]
            summary[severity] = {
                "passed": sum(1 for c in rows if c["success"]),
                "failed": sum(1 for c in rows if not c["success"]),
            }
        blocking_failed = summary["blocking"]["failed"]
        quality = {
            **data["quality"],
            "summary": summary,
            "ok": blocking_failed == 0,
            "verdict": t["quality_ok"]
            if blocking_failed == 0
            else t["quality_blocked"].format(n=blocking_failed),
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

    glossary = sorted((kpi, explain(kpi)) for kpi in definitions)
    return {
        "t": t,
        "lang": "zh-CN" if language == "zh" else "en",
        "as_of": as_of.isoformat(),
        "table_as_of": data["table_as_of"],
        "as_of_mismatch": data["table_as_of"] is not None and data["table_as_of"] != as_of,
        "generated_at": generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        "targets": targets,
        "status_counts": status_counts,
        "status_colors": STATUS_COLORS,
        "customers": data["customers"],
        "mix": mix,
        "service": service,
        "profile": profile,
        "quality": quality,
        "clv": clv,
        "glossary": glossary,
    }


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def build_html(
    db: Path, as_of: date, language: str = "en", generated_at: datetime | None = None
) -> tuple[str, dict[str, int]]:
    """The report as a string, and the number of targets per status."""
    if language not in LANGUAGES:
        raise ReportError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
    db = Path(db)
    if not db.exists():
        raise ReportError(f"{db} does not exist: run the pipeline (or publish) first")
    con = duckdb.connect(str(db), read_only=True)
    try:
        data = load_data(con, as_of)
    finally:
        con.close()
    context = build_context(data, as_of, language, generated_at or datetime.now(UTC))
    html = _environment().get_template("kpi_review.html").render(**context)
    return html, context["status_counts"]


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def render_kpi_review(db: Path, out_dir: Path, as_of: date, language: str = "en") -> ReportResult:
    """Write `<out_dir>/<as_of>/kpi_review.html` and `<out_dir>/latest/kpi_review.html` (not
    when `latest` is the link a publication made: see pipelines/publish/release.py)."""
    started = time.perf_counter()
    html, status_counts = build_html(db, as_of, language)
    out_dir = Path(out_dir)
    path = out_dir / as_of.isoformat() / REPORT_FILE
    latest = out_dir / "latest" / REPORT_FILE
    _write_atomic(path, html)
    # `latest` as a link belongs to the publication (pipelines/publish/release.py): only a
    # swap changes the review shown there
    if not latest.parent.is_symlink():
        _write_atomic(latest, html)
    return ReportResult(
        path=path,
        latest_path=latest,
        language=language,
        as_of=as_of,
        bytes=path.stat().st_size,
        seconds=time.perf_counter() - started,
        status_counts=status_counts,
    )


def render_report(db: Path, out_dir: Path, as_of: date, language: str = "en") -> Path:
    """Render the KPI review from `db` (warehouse.duckdb or serving.duckdb); return its path."""
    return render_kpi_review(db, out_dir, as_of, language).path
