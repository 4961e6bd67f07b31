"""The KPI review for managers: one self-contained HTML file per as-of date and language.

`render_review(db, out_dir, as_of)` reads the published marts (the warehouse file or
serving.duckdb) and writes, for every language of `LANGUAGES`,
`<out_dir>/<YYYY-MM-DD>/kpi_review.<language>.html`, plus the review's statuses as
`kpi_review.json` beside them: the next night reads that file to say what changed since this
review (`review_history.previous_review`). The pages have no external reference but one optional script,
`../night_status.js` (`pipelines.publish.release.record_night`), which tells a page shown
after a failed night that its data is older than the last night. Styles are inline, charts
inline SVG (`pipelines.publish.svg`), text escaped by Jinja2.

The steps, each in its module: reading the marts (`review_data`), formatting the numbers
(`review_format`), building the page's context (`review_page`), the statuses kept per night
(`review_history`); this module renders the template and writes the files. Every table and
column read is named in `pipelines.publish.columns`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import duckdb
import jinja2

from pipelines.publish.i18n import LANGUAGES
from pipelines.publish.review_data import ReportError, load_data
from pipelines.publish.review_history import (
    STATUS_FILE,
    previous_review,
    report_file,
    status_record,
)
from pipelines.publish.review_page import build_context

TEMPLATES = Path(__file__).parent / "templates"


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
