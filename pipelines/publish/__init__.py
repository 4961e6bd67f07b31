"""Publishing: the marts for BI (serving/) and the KPI review for managers (reports/).

- `publish(warehouse_db, serving_dir)` -> `PublishResult` (pipelines/publish/serving.py)
- `render_review(db, reports_dir, as_of)` -> one `ReportResult` per language
  (pipelines/publish/report.py); `render_kpi_review(db, reports_dir, as_of, language)` and
  `render_report(...)` (-> Path) for one language
- `open_serving(serving_dir)`: the read-only connection analysts use
  (pipelines/publish/releases.py)

See docs/publishing.md.
"""

from pipelines.publish.layout import PublishError
from pipelines.publish.pii import PiiColumnError
from pipelines.publish.releases import open_serving, read_manifest
from pipelines.publish.report import (
    ReportResult,
    render_kpi_review,
    render_report,
    render_review,
)
from pipelines.publish.review_data import ReportError
from pipelines.publish.serving import PublishResult, publish

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
    "render_review",
]
