"""The review's statuses kept beside each night's pages (`kpi_review.json`) and what
changed since the previous review."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

REPORT_STEM = "kpi_review"
#: The review's statuses per target, next to each night's pages (read by the next night).
STATUS_FILE = f"{REPORT_STEM}.json"


def report_file(language: str) -> str:
    """`kpi_review.<language>.html`."""
    return f"{REPORT_STEM}.{language}.html"


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
