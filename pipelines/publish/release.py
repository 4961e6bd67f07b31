"""The night's publication with its KPI review: both in one release, changed by one swap.

`publish_with_review` renders the review from the warehouse into a scratch folder, hands it
to `publish(review=...)`, which copies it into the new release (`reports/kpi_review.html`)
before the one atomic swap of `serving/current`. `$CRM_HOME/reports/latest` is a symbolic
link to `serving/current/reports`, so a reader of `reports/latest/kpi_review.html` sees the
review of the publication analysts see, at every instant: a night killed before its swap
shows the previous night's review beside the previous night's tables, and
`restore_previous()` brings back both. The dated copy `reports/<as_of>/kpi_review.html`
(the archive of what was published each night) is written after the swap.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import uuid
from datetime import date
from pathlib import Path
from typing import Any

from pipelines.publish.report import REPORT_FILE, ReportResult, render_kpi_review
from pipelines.publish.serving import (
    CURRENT,
    REVIEW_DIR,
    PublishResult,
    publish,
)

LATEST = "latest"


def _atomic_link(target: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def link_latest_review(reports_dir: Path, serving_dir: Path) -> Path:
    """Make `reports_dir/latest` a link to `serving_dir/current/reports` (relative, so a
    copied home keeps working); returns `latest/kpi_review.html`. A `latest` folder of the
    earlier layout (a copy of the review) is replaced once."""
    reports_dir = Path(reports_dir)
    reports_dir.mkdir(parents=True, exist_ok=True)
    latest = reports_dir / LATEST
    target = os.path.relpath(
        Path(serving_dir).resolve() / CURRENT / REVIEW_DIR, reports_dir.resolve()
    )
    if latest.is_symlink():
        if os.readlink(latest) != target:
            _atomic_link(target, latest)
    elif latest.exists():
        aside = reports_dir / f".{LATEST}-earlier-{uuid.uuid4().hex[:8]}"
        os.replace(latest, aside)
        _atomic_link(target, latest)
        shutil.rmtree(aside, ignore_errors=True)
    else:
        _atomic_link(target, latest)
    return latest / REPORT_FILE


def _copy_atomic(source: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    shutil.copyfile(source, tmp)
    os.replace(tmp, path)


def publish_with_review(
    warehouse_db: Path,
    serving_dir: Path,
    reports_dir: Path,
    as_of: date,
    language: str = "en",
    **options: Any,
) -> tuple[PublishResult, ReportResult]:
    """Render the KPI review as of `as_of` and publish it with the marts in one release (see
    the module docstring); `options` go to `publish`. A review that cannot be rendered
    raises `ReportError` before anything is published."""
    with tempfile.TemporaryDirectory(prefix="kpi-review-") as work:
        report = render_kpi_review(warehouse_db, Path(work), as_of, language)
        # before the swap: from then on `latest` shows the review of the current release
        # (a release of the earlier layout has none: no review until this swap)
        latest = link_latest_review(reports_dir, serving_dir)
        result = publish(warehouse_db, serving_dir, as_of=as_of, review=report.path, **options)
        dated = Path(reports_dir) / as_of.isoformat() / REPORT_FILE
        _copy_atomic(report.path, dated)
    return result, dataclasses.replace(report, path=dated, latest_path=latest)
