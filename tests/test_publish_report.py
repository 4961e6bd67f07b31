"""The KPI review: rendered from fixture marts in en and zh, checked in headless Chromium."""

from __future__ import annotations

import re
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from support.browser import dump_dom, ensure_chromium, screenshot
from support.fixture_marts import AS_OF, EXPECTED_STATUS, build_fixture_warehouse

from pipelines.publish import columns, svg
from pipelines.publish.report import (
    ReportError,
    build_html,
    format_value,
    render_kpi_review,
    render_report,
)
from pipelines.publish.serving import publish

ARTIFACTS = Path(__file__).parent / "artifacts"
STATUS_LABELS = {
    "en": {
        "achieved": "Achieved",
        "on_track": "On track",
        "at_risk": "At risk",
        "off_track": "Off track",
        "missed": "Missed",
    },
    "zh": {
        "achieved": "已达成",
        "on_track": "进度正常",
        "at_risk": "有风险",
        "off_track": "进度落后",
        "missed": "未达成",
    },
}


class ReviewDom(HTMLParser):
    """Collects what the tests read from the rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.headings: list[str] = []
        self.lang = ""
        self._row: str | None = None
        self._in_status = False
        self._in_heading = False
        self._heading = ""
        self.trend_panels: dict[str, dict[str, int]] = {}
        self._panel: str | None = None
        self.svg_titles: list[str] = []
        self._in_title = False
        self._depth_svg = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "html":
            self.lang = a.get("lang", "")
        if tag == "tr" and "target-row" in (a.get("class") or ""):
            self._row = a["data-target-id"]
            self.rows[self._row] = {"status": a["data-status"], "label": "", "class": a["class"]}
        if tag == "span" and a.get("class") == "status" and self._row:
            self._in_status = True
        if tag in ("h1", "h2", "h3"):
            self._in_heading, self._heading = True, ""
        if tag == "div" and "trend" in (a.get("class") or "").split():
            self._panel = a["data-target-id"]
            self.trend_panels[self._panel] = {"circles": 0, "open": 0, "ref_lines": 0}
        if self._panel and tag == "circle":
            self.trend_panels[self._panel]["circles"] += 1
            if a.get("fill") == "#ffffff":
                self.trend_panels[self._panel]["open"] += 1
        if self._panel and tag == "line" and a.get("class") == "ref-line":
            self.trend_panels[self._panel]["ref_lines"] += 1
        if tag == "svg":
            self._depth_svg += 1
        if tag == "title" and self._depth_svg:
            self._in_title = True
            self.svg_titles.append("")

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "span":
            self._in_status = False
        if tag in ("h1", "h2", "h3"):
            self._in_heading = False
            self.headings.append(" ".join(self._heading.split()))
        if tag == "svg":
            self._depth_svg -= 1
            if self._panel:
                self._panel = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._in_status and self._row:
            self.rows[self._row]["label"] += data.strip()
        if self._in_heading:
            self._heading += data
        if self._in_title and self.svg_titles:
            self.svg_titles[-1] += data


def parse(html: str) -> ReviewDom:
    dom = ReviewDom()
    dom.feed(html)
    return dom


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory):
    return build_fixture_warehouse(tmp_path_factory.mktemp("wh") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def chromium() -> str:
    binary, seconds = ensure_chromium()  # installs Debian's chromium if missing; never skips
    if seconds:
        print(f"chromium installed in {seconds:.0f} s")
    return binary


@pytest.fixture(scope="module", params=["en", "zh"])
def rendered(request, warehouse, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"reports_{request.param}")
    result = render_kpi_review(warehouse.path, out, AS_OF, request.param)
    return request.param, result


def test_report_is_written_dated_and_as_latest(rendered):
    language, result = rendered
    assert result.path.parts[-2:] == ("2025-07-15", "kpi_review.html")
    assert result.latest_path.parts[-2:] == ("latest", "kpi_review.html")
    assert result.path.read_bytes() == result.latest_path.read_bytes()
    assert result.status_counts == {
        "achieved": 1,
        "on_track": 1,
        "at_risk": 1,
        "off_track": 1,
        "missed": 1,
    }
    assert result.metadata()["targets"] == 5 and result.language == language


def test_report_is_self_contained(rendered):
    _, result = rendered
    html = result.path.read_text(encoding="utf-8")
    assert re.search(r"https?:|//", html) is None, re.search(r".{40}(https?:|//).{40}", html)
    for tag in ("<script", "<link", "<img", "<iframe", "@import", "url("):
        assert tag not in html.lower()
    assert html.count("<svg") >= 5 + 3 + 2 + 2 + 1  # trends, mix, service, profile, clv


def test_text_is_escaped(rendered):
    _, result = rendered
    html = result.path.read_text(encoding="utf-8")
    assert "First-response SLA to 95% &lt;all channels&gt;" in html
    assert "<all channels>" not in html


@pytest.mark.parametrize("language", ["en", "zh"])
def test_report_in_headless_chromium(chromium, warehouse, tmp_path, language):
    result = render_kpi_review(warehouse.path, tmp_path / "reports", AS_OF, language)
    dom = parse(dump_dom(result.path))

    # the RAG table: one row per SMART target, with its status and colour class
    assert {tid: row["status"] for tid, row in dom.rows.items()} == EXPECTED_STATUS
    labels = STATUS_LABELS[language]
    assert {tid: row["label"] for tid, row in dom.rows.items()} == {
        tid: labels[status] for tid, status in EXPECTED_STATUS.items()
    }
    assert "rag-green" in dom.rows["T05"]["class"] and "rag-amber" in dom.rows["T03"]["class"]
    assert "rag-red" in dom.rows["T02"]["class"] and "rag-red" in dom.rows["T04"]["class"]

    # one trend chart per target: 13 months (2024-07 .. 2025-07), July open (incomplete),
    # a target and a baseline line
    assert set(dom.trend_panels) == set(EXPECTED_STATUS)
    for panel in dom.trend_panels.values():
        assert panel == {"circles": 13, "open": 1, "ref_lines": 2}

    # segment mix: every tenth fixture customer is a prospect (24 of 240)
    prospect = "潜在客户" if language == "zh" else "prospect"
    assert f"{prospect}: 24" in dom.svg_titles

    if language == "zh":
        assert dom.lang == "zh-CN"
        for heading in (
            "KPI 复盘",
            "SMART 目标",
            "各目标趋势",
            "客户结构",
            "数据质量闸门",
            "客户生命周期价值：留出期校验",
            "指标说明",
        ):
            assert heading in dom.headings
    else:
        assert dom.lang == "en"
        for heading in (
            "KPI review",
            "SMART targets",
            "Trend per target",
            "Customer mix",
            "Quality gate",
            "Customer lifetime value: holdout check",
            "Metric definitions",
        ):
            assert heading in dom.headings

    png = screenshot(result.path, ARTIFACTS / f"kpi_review_{language}.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 50_000


def test_chinese_content_and_explanations(warehouse, tmp_path):
    html, _ = build_html(warehouse.path, AS_OF, "zh")
    assert "会员资料完整度从60%提升到90%" in html  # a target description (data)
    assert "VIP客户的复购率。" in html  # kpi_definitions.description_zh
    assert "Repurchase rate among VIP customers." not in html
    html_en, _ = build_html(warehouse.path, AS_OF, "en")
    assert "Repurchase rate among VIP customers." in html_en


def test_quality_gate_and_clv_sections(warehouse):
    html, _ = build_html(warehouse.path, AS_OF, "en")
    dom_text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    # latest run (run-2025-07-15): 5 blocking checks pass; 4 target checks, 1 fails
    assert "run-2025-07-15" in html and "run-2025-07-14" not in html
    assert "blocking 5 0" in dom_text and "target 3 1" in dom_text
    assert "All blocking checks passed" in dom_text
    assert html.count('class="check" data-success="false"') == 1
    # the CLV holdout table: 8 buckets in numeric order
    buckets = re.findall(r"<tr><td>([0-9+]+)</td>", html)
    assert buckets == ["0", "1", "2", "3", "4", "5", "6", "7+"]


def test_optional_tables_missing(tmp_path):
    info = build_fixture_warehouse(
        tmp_path / "warehouse.duckdb", n_customers=30, with_quality=False, with_clv=False
    )
    html, counts = build_html(info.path, AS_OF, "en")
    assert html.count("Not available in this warehouse.") == 2
    assert sum(counts.values()) == 5


def test_report_from_serving_db(warehouse, tmp_path):
    result = publish(warehouse.path, tmp_path / "serving", formats=("duckdb",))
    path = render_report(result.serving_db, tmp_path / "reports", AS_OF, "en")
    dom = parse(path.read_text(encoding="utf-8"))
    assert {tid: row["status"] for tid, row in dom.rows.items()} == EXPECTED_STATUS


def test_a_renamed_column_names_the_mapping_to_fix(warehouse, monkeypatch):
    mapping = dict(columns.COLUMNS["rpt_kpi_review"], status="rag_status")
    monkeypatch.setitem(columns.COLUMNS, "rpt_kpi_review", mapping)
    with pytest.raises(ReportError, match=r"pipelines/publish/columns.py"):
        build_html(warehouse.path, AS_OF, "en")


def test_missing_mart_is_a_clear_error(tmp_path):
    path = tmp_path / "empty.duckdb"
    duckdb.connect(str(path)).close()
    with pytest.raises(ReportError, match="missing table.*rpt_kpi_review"):
        build_html(path, date(2025, 7, 15), "en")


def test_as_of_other_than_the_review_is_flagged(warehouse):
    html, _ = build_html(warehouse.path, date(2025, 7, 16), "en")
    assert "The review table is as of 2025-07-15, not 2025-07-16." in html


def test_unknown_language(warehouse):
    with pytest.raises(ReportError, match="language 'fr'"):
        build_html(warehouse.path, AS_OF, "fr")


def test_nice_ticks_and_formats():
    # raw step (0.37 - 0.31) / 4 = 0.015 -> 0.02; floor(0.31 / 0.02) * 0.02 = 0.30
    assert svg.nice_ticks(0.31, 0.37) == [0.30, 0.32, 0.34, 0.36, 0.38]
    # raw step 0.45 / 4 = 0.1125 -> 0.2; floor(4.1 / 0.2) * 0.2 = 4.0; 4.6 >= 4.55
    assert svg.nice_ticks(4.1, 4.55) == [4.0, 4.2, 4.4, 4.6]
    assert format_value("churn_rate", 0.104) == "10.4%"
    assert format_value("profile_completeness", 0.9) == "90.0%"
    assert format_value("csat_avg", 4.53) == "4.53"
    assert format_value("net_revenue", 455000.0) == "455,000"
    assert format_value("orders", None) == "–"


def test_svg_escapes_labels():
    chart = svg.bar_chart([("<b>&", 3.0)], label='a "quoted" <label>')
    assert "<b>" not in chart and "&lt;b&gt;&amp;" in chart
    assert 'aria-label="a &quot;quoted&quot; &lt;label&gt;"' in chart


def test_ensure_system_packages_script_is_idempotent(chromium):
    import subprocess

    from support.browser import ENSURE_SCRIPT

    proc = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Chromium" in proc.stdout
