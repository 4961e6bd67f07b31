"""The night's publication with its KPI review: both in one release, changed by one swap.

`publish_with_review` renders the review from the warehouse into a scratch folder, in every
language (`kpi_review.en.html`, `kpi_review.zh.html`) with its status file
(`kpi_review.json`), hands the folder to `publish(review=...)`, which copies it into the new
release (`reports/`) before the one atomic swap of `serving/current`.
`$CRM_HOME/reports/latest` is a symbolic link to `serving/current/reports`, so a reader of
`reports/latest/kpi_review.<language>.html` sees the review of the publication analysts see,
at every instant: a night killed before its swap shows the previous night's review beside
the previous night's tables, and `restore_previous()` brings back both. The dated copies
`reports/<as_of>/` (the archive of what was published each night, and what the next night
compares its statuses with) are written after the swap.

`record_night` writes `reports/night_status.js`, the outcome of the last night (published
or failed, and its date). Every review loads it (`../night_status.js`): a review shown after
a failed night says so in a banner, and an archived review says a newer one exists.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import uuid
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from pipelines.publish.i18n import LANGUAGES
from pipelines.publish.layout import CURRENT, REVIEW_DIR
from pipelines.publish.report import ReportResult, render_review
from pipelines.publish.review_history import report_file
from pipelines.publish.serving import PublishResult, publish

LATEST = "latest"
NIGHT_STATUS = "night_status.js"


def _atomic_link(target: str, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    os.symlink(target, tmp)
    os.replace(tmp, path)


def link_latest_review(reports_dir: Path, serving_dir: Path) -> Path:
    """Make `reports_dir/latest` a link to `serving_dir/current/reports` (relative, so a
    copied home keeps working); returns the link. A `latest` folder of the
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
    return latest


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
    languages: tuple[str, ...] = LANGUAGES,
    *,
    timezone: str = "Asia/Shanghai",
    **options: Any,
) -> tuple[PublishResult, list[ReportResult]]:
    """Render the KPI review as of `as_of` in every language and publish it with the marts
    in one release (see the module docstring); `options` go to `publish`. A review that
    cannot be rendered raises `ReportError` before anything is published."""
    reports_dir = Path(reports_dir)
    with tempfile.TemporaryDirectory(prefix="kpi-review-") as work:
        reports = render_review(
            warehouse_db, Path(work), as_of, languages=languages, timezone=timezone,
            history_dir=reports_dir,
        )  # fmt: skip
        night = Path(work) / as_of.isoformat()
        # before the swap: from then on `latest` shows the review of the current release
        # (a release of the earlier layout has none: no review until this swap)
        latest = link_latest_review(reports_dir, serving_dir)
        result = publish(warehouse_db, serving_dir, as_of=as_of, review=night, **options)
        for source in sorted(night.iterdir()):
            _copy_atomic(source, reports_dir / as_of.isoformat() / source.name)
    record_night(reports_dir, as_of, "published")
    return result, [
        dataclasses.replace(
            report,
            path=reports_dir / as_of.isoformat() / report_file(report.language),
            latest_path=latest / report_file(report.language),
        )
        for report in reports
    ]


def record_night(reports_dir: Path, night: date, outcome: str) -> Path:
    """Write `reports_dir/night_status.js`: the last night's date and outcome ("published"
    or "failed"), read by every review to warn when it is older than the last night."""
    if outcome not in ("published", "failed"):
        raise ValueError(f"outcome {outcome!r}: published or failed")
    path = Path(reports_dir) / NIGHT_STATUS
    path.parent.mkdir(parents=True, exist_ok=True)
    status = {
        "night": night.isoformat(),
        "outcome": outcome,
        "recorded_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(f"window.CRM_NIGHT_STATUS = {json.dumps(status)};\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
