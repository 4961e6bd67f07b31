"""Every page the product renders escapes data: script payloads delivered in source fields are
opened in headless Chromium and must show as text, never run.

The payloads set `document.title` when they run; the page's own title is known, so a changed
title is an executed payload. They are also looked for as text in the DOM Chromium built.
"""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from support.browser import dump_dom, ensure_chromium
from support.fixture_marts import AS_OF as REVIEW_AS_OF
from support.fixture_marts import build_fixture_warehouse
from test_quality import AS_OF, build_warehouse, sql

from pipelines.publish.report import render_kpi_review
from pipelines.quality.runner import run_suite

SCRIPT = "<script>document.title='XSS-script'</script>"
ONERROR = "<img src=x onerror=\"document.title='XSS-onerror'\">"
SVG_ONLOAD = "<svg onload=\"document.title='XSS-svg'\"></svg>"
PAYLOADS = (SCRIPT, ONERROR, SVG_ONLOAD)


@pytest.fixture(scope="module")
def chromium() -> str:
    binary, _ = ensure_chromium()  # installs Debian's chromium if missing; never skips
    return binary


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class _Dom(HTMLParser):
    """The title, the text shown, event-handler attributes and script bodies of a DOM."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.text: list[str] = []
        self.handlers: list[tuple[str, str, str | None]] = []
        self.scripts: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open.append(tag)
        self.handlers += [(tag, name, value) for name, value in attrs if name.startswith("on")]

    def handle_endtag(self, tag: str) -> None:
        if tag in self._open:
            del self._open[len(self._open) - 1 - self._open[::-1].index(tag) :]

    def handle_data(self, data: str) -> None:
        current = self._open[-1] if self._open else ""
        if current == "title" and "svg" not in self._open:
            self.title += data
        elif current == "script":
            self.scripts.append(data)
        elif current != "style":
            self.text.append(data)


def assert_nothing_ran(page: Path, expected_title: str, shown: tuple[str, ...]) -> _Dom:
    dom = _Dom()
    dom.feed(dump_dom(page))
    assert "XSS" not in dom.title, f"a payload ran in {page}: title {dom.title!r}"
    assert dom.title.strip() == expected_title
    # no element or script the payloads would have created
    assert not [h for h in dom.handlers if "XSS" in (h[2] or "")], dom.handlers
    assert not [s for s in dom.scripts if "XSS" in s]
    text = "".join(dom.text)
    for payload in shown:
        assert payload in text, f"{payload!r} is not shown as text in {page}"
    return dom


def test_gx_data_docs_escape_failure_samples(chromium, tmp_path: Path) -> None:
    warehouse = build_warehouse(tmp_path / "warehouse.duckdb")
    # a status outside the accepted set: GX lists the unexpected values on the page
    for order_id, payload in zip(("o1", "o2", "o3"), PAYLOADS, strict=True):
        sql(
            warehouse,
            f"update raw.orders set status = {_quote(payload)} where order_id = '{order_id}'",
        )
    # a delivered file name in an unexpected_rows_expectation's rows (timestamp in the future)
    sql(
        warehouse,
        f"update raw.orders set ordered_at = '2024-03-31 16:30', _source_file = {_quote(SCRIPT)} "
        "where order_id = 'o5'",
    )
    docs = tmp_path / "reports" / "data_docs"
    result = run_suite(warehouse, "raw_orders", AS_OF, "run-xss", docs_dir=docs)
    outcome = result.outcome("status_accepted_values")
    assert not outcome.success and sorted(outcome.sample) == sorted(PAYLOADS)
    assert not result.outcome("ordered_at_not_in_future").success

    pages = sorted((docs / "validations").rglob("*.html"))
    assert len(pages) == 1
    assert_nothing_ran(pages[0], "Data documentation compiled by Great Expectations", PAYLOADS)
    # GX's own markup is still markup (the failure icon), not escaped text
    page = pages[0].read_text(encoding="utf-8")
    assert '<i class="fas fa-times text-danger"' in page and "&lt;i class=" not in page
    assert_nothing_ran(docs / "index.html", "Data Docs created by Great Expectations", ())
    assert_nothing_ran(
        docs / "expectations" / "raw_orders.html",
        "Data documentation compiled by Great Expectations",
        (),
    )


def test_kpi_review_escapes_data(chromium, tmp_path: Path) -> None:
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=40)
    con = duckdb.connect(str(info.path))
    try:
        target = con.execute("select min(target_id) from marts.rpt_kpi_review").fetchone()[0]
        con.execute(
            f"update marts.rpt_kpi_review set description = {_quote(SCRIPT)} "
            f"where target_id = {_quote(target)}"
        )
        # a segment name (chart labels and SVG titles) and a failed check's name
        con.execute(
            f"update marts.dim_customers set rfm_segment = {_quote(ONERROR)} "
            "where customer_id in (select min(customer_id) from marts.dim_customers)"
        )
        con.execute(
            f"update quality.dq_results set expectation = {_quote(SVG_ONLOAD)} "
            "where expectation = 'profile_completeness_mean'"
        )
    finally:
        con.close()
    result = render_kpi_review(info.path, tmp_path / "reports", REVIEW_AS_OF, "en")
    assert_nothing_ran(result.path, "KPI review · 2025-07-15", PAYLOADS)
