"""Publishing: the marts for BI (serving/) and the KPI review for managers (reports/).

- `publish(warehouse_db, serving_dir)` -> `PublishResult` (pipelines/publish/serving.py)
- `render_review(db, reports_dir, as_of)` -> one `ReportResult` per language
  (pipelines/publish/report.py); `render_kpi_review(db, reports_dir, as_of, language)` and
  `render_report(...)` (-> Path) for one language
- `open_serving(serving_dir)`: the read-only connection analysts use

See docs/publishing.md.
"""

from pipelines.publish.pii import PiiColumnError
from pipelines.publish.report import (
    ReportError,
    ReportResult,
    render_kpi_review,
    render_report,
    render_review,
)
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
    "render_review",
]
