"""Publishing: the marts for BI (serving/) and the KPI review for managers (reports/).

- `publish(warehouse_db, serving_dir)` -> `PublishResult` (pipelines/publish/serving.py)
- `render_report(db, reports_dir, as_of, language)` -> Path (pipelines/publish/report.py);
  `render_kpi_review(...)` -> `ReportResult` for the same with metadata
- `open_serving(serving_dir)`: the read-only connection analysts use

See docs/publishing.md.
"""

from pipelines.publish.pii import PiiColumnError
from pipelines.publish.report import ReportError, ReportResult, render_kpi_review, render_report
from pipelines.publish.serving import (
    PublishError,
    PublishResult,
    open_serving,
    publish,
    read_manifest,
)

__all__ = [
    "PiiColumnError",
    "PublishError",
    "PublishResult",
    "ReportError",
    "ReportResult",
    "open_serving",
    "publish",
    "read_manifest",
    "render_kpi_review",
    "render_report",
]
