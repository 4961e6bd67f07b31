"""The request that the next publication write every table whole (no copy of the current
release): a marker file in the serving folder. The publication (pipelines/publish) reads and
clears it; an erasure, a re-delivery purge, a key rotation and a restore write it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

#: Present in the serving folder: the next publication writes every table whole.
WHOLE_MARKER = ".publish-whole"


def request_whole_publication(serving_dir: Path, reason: str) -> None:
    """Make the next publication write every table whole (no copy of the current release):
    after an erasure, so that the new files hold no deleted rows of the person."""
    serving_dir = Path(serving_dir)
    serving_dir.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%S.%fZ} {uuid.uuid4().hex[:8]}"
    (serving_dir / WHOLE_MARKER).write_text(f"{reason}\n{stamp}\n", encoding="utf-8")


def read_whole_request(serving_dir: Path) -> str | None:
    """The content of the whole-publication request (None: none)."""
    try:
        return (serving_dir / WHOLE_MARKER).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
