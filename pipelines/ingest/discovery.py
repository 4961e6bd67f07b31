"""Where deliveries are: delivery-date folders, the files of a partition, paths that are
not read at all (links, paths leaving the delivery folder), and the mapping's timezone.
"""

from __future__ import annotations

import re
from datetime import date, datetime
from pathlib import Path

from pipelines.ingest.mapping import SourceMapping

DATE_DIR_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _as_date(value: date | str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _resolve_timezone(mapping: SourceMapping, business_timezone: str | None) -> SourceMapping:
    """The mapping with its timezone resolved: its own, else ``business_timezone``, else the
    project's setting (CRM_TIMEZONE, default Asia/Shanghai)."""
    if mapping.timezone:
        return mapping
    if business_timezone is None:
        from pipelines.lib.settings import get_settings

        business_timezone = get_settings().timezone
    return mapping.with_timezone(business_timezone)


def discover_partitions(landing_dir: str | Path, mapping: SourceMapping) -> list[date]:
    """Delivery dates present for a mapping: folders ``<landing>/<name>/YYYY-MM-DD``."""
    root = Path(landing_dir) / mapping.name
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.is_dir() and DATE_DIR_RE.match(p.name):
            try:
                found.append(date.fromisoformat(p.name))
            except ValueError:
                continue
    return sorted(found)


def partition_files(
    landing_dir: str | Path, mapping: SourceMapping, delivery_date: date | str
) -> list[Path]:
    """The files of one partition matching the mapping's glob, sorted by name.

    A symbolic link is listed (it is never followed: the loader quarantines it as a file),
    as is a file reached through a linked folder outside the delivery folder.
    """
    folder = Path(landing_dir) / mapping.name / _as_date(delivery_date).isoformat()
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.glob(mapping.files)
        if (p.is_symlink() or p.is_file()) and not p.name.startswith((".", "_"))
    )


def _not_plain(path: Path, landing: Path) -> str | None:
    """Why a delivered path is not read at all (a symbolic link, or a path that leads out of
    the delivery folder), else None."""
    if path.is_symlink():
        return "a symbolic link (links are not followed)"
    source, day = path.relative_to(landing).parts[:2]
    folder = (landing / source / day).resolve()
    if not path.resolve().is_relative_to(folder):
        return "the path leads outside the delivery folder"
    if not path.is_file():
        return "not a regular file"
    return None


def _relative(path: Path, landing: Path) -> str:
    try:  # the path as delivered: a symbolic link is not resolved
        return (path.parent.resolve() / path.name).relative_to(landing.resolve()).as_posix()
    except ValueError:
        return path.as_posix()
