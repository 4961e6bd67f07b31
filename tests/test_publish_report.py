"""The KPI review: formatting by hand (fast), the pages rendered from a small fixture warehouse
(files, sidecar, changes, banner, errors) and the review of a real pipeline build checked in
headless Chromium at 1400 and 800 px in both languages (xdist group "e2e")."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path

import duckdb
import pytest
from support.browser import ensure_chromium, measure
from support.fixture_marts import AS_OF, EXPECTED_STATUS, build_fixture_warehouse

from pipelines.publish import columns, svg
from pipelines.publish.release import record_night
from pipelines.publish.report import build_html, render_kpi_review, render_review
from pipelines.publish.review_data import ReportError
from pipelines.publish.review_format import (
    business_time,
    format_change,
    format_value,
    forward_text,
    parse_period,
    progress_words,
    status_rule,
)
from pipelines.publish.review_history import (
    STATUS_FILE,
    previous_review,
    report_file,
    status_changes,
)
from pipelines.publish.serving import publish

# --------------------------------------------------------------------------------------------
# Formatting, by hand


def test_progress_past_the_scale_is_words():
    # T07 of issue 30: progress -5.16 -> words, not -516 %; 2.86 -> words, not 286 %
    assert progress_words(-5.16) == "moving away from the target"
    assert progress_words(2.86) == "above target"
    assert progress_words(1.0) == "target reached"
    assert progress_words(0.625) == "62% of the way"  # 0.625 -> 62 % (round half even)
    assert progress_words(0.0) == "0% of the way"
    assert progress_words(None) == "no progress to measure"
    assert progress_words(-0.2, "zh") == "正在偏离目标"
    assert progress_words(1.4, "zh") == "已超过目标"
    assert progress_words(0.5, "zh") == "已完成 50%"


def test_month_over_month_and_year_over_year_changes():
    # rates: percentage points, 0.412 - 0.400 = +1.2 pp
    assert format_change("pct", 0.412, 0.400) == "+1.2 pp"
    assert format_change("pct", 0.104, 0.107, "zh") == "-0.3 个百分点"
    # money and counts: relative, 455,000 / 456,500 - 1 = -0.329 % -> -0.3 %
    assert format_change("money", 455_000.0, 456_500.0) == "-0.3%"
    assert format_change("count", 700.0, 625.0) == "+12.0%"  # 75 / 625
    # scores: the difference, 4.53 - 4.45 = +0.08
    assert format_change("score", 4.53, 4.45) == "+0.08"
    # nothing to compare
    assert format_change("count", 700.0, None) is None
    assert format_change("count", 700.0, 0.0) is None


def test_forward_look_text():
    # T02: current 0.66, target 0.90, 6 months from 2025-06 to 2025-12:
    # required = 0.66 + (0.90 - 0.66) / 6 = 0.70
    kwargs = {"kind": "pct", "target": 0.90, "due": date(2025, 12, 31), "as_of": AS_OF}
    assert (
        forward_text(status="off_track", required=0.70, **kwargs)
        == "70.0% per month from here to reach 90.0% by 2025-12"
    )
    assert (
        forward_text(status="off_track", required=0.70, language="zh", **kwargs)
        == "此后每月需达到 70.0%，才能在 2025-12 前达到 90.0%"
    )
    assert forward_text(status="achieved", required=None, **kwargs) == "target reached"
    past = kwargs | {"due": date(2025, 6, 30)}
    assert forward_text(status="missed", required=None, **past) == "due date passed"


def test_status_rule_in_words():
    # at risk: progress 0.5 < elapsed 0.638, 0.5 >= 0.7 * 0.638 = 0.447 -> 45 %
    assert status_rule("at_risk", 0.5, 0.638) == (
        "At risk: progress 50% is below the time elapsed (64%) but at least 70 % of it (45%)."
    )
    assert status_rule("off_track", 0.2, 0.536, language="zh") == (
        "进度落后：完成进度 20% 低于时间进度的 70%（38%）。"  # 0.7 * 0.536 = 0.375 -> 38 %
    )
    assert status_rule("small_base", None, 0.4) == "Not graded: the base is below 30."
    assert status_rule("no_data", None, 0.4, "no_current") == "No status: no complete month yet."


def test_values_and_periods():
    assert format_value("churn_rate", 0.104, unit="ratio") == "10.4%"
    assert format_value("csat_avg", 4.53, unit="score") == "4.53"
    assert format_value("net_revenue", 455000.0, unit="currency") == "455,000"
    assert format_value("first_response_minutes_p50", 12.4, unit="minutes") == "12 min"
    assert format_value("first_response_minutes_p50", 12.4, unit="minutes", language="zh") == (
        "12 分钟"
    )
    assert format_value("orders", None) == "–"
    assert parse_period("2026-06") == date(2026, 6, 1)
    assert parse_period("2025-Q1") == date(2025, 1, 1)
    assert parse_period("2024-H2") == date(2024, 7, 1)
    assert parse_period("last summer") is None


def test_generation_time_in_business_time():
    # 2026-10-31 22:05 UTC is 2026-11-01 06:05 in Shanghai (UTC+8, no daylight saving)
    moment = datetime(2026, 10, 31, 22, 5, tzinfo=UTC)
    assert business_time(moment, "Asia/Shanghai") == "2026-11-01 06:05 UTC+08:00"
    assert business_time(moment, "Europe/Berlin") == "2026-10-31 23:05 UTC+01:00"


def test_status_changes_and_previous_review(tmp_path):
    assert status_changes(
        {"T01": "on_track", "T02": "at_risk", "T03": "achieved"},
        {"T01": "on_track", "T02": "off_track"},
    ) == [("T02", "off_track", "at_risk"), ("T03", None, "achieved")]
    for day, status in (("2025-07-13", "off_track"), ("2025-07-14", "at_risk")):
        (tmp_path / day).mkdir()
        (tmp_path / day / STATUS_FILE).write_text(
            json.dumps({"as_of": day, "targets": {"T01": {"status": status}}})
        )
    (tmp_path / "2025-07-15").mkdir()  # the night itself never compares with itself
    (tmp_path / "2025-07-15" / STATUS_FILE).write_text('{"targets": {"T01": {"status": "x"}}}')
    assert previous_review(tmp_path, AS_OF) == (date(2025, 7, 14), {"T01": "at_risk"})
    (tmp_path / "2025-07-14" / STATUS_FILE).write_text("not json")  # unreadable: the one before
    assert previous_review(tmp_path, AS_OF) == (date(2025, 7, 13), {"T01": "off_track"})
    assert previous_review(tmp_path / "none", AS_OF) is None


# --------------------------------------------------------------------------------------------
# Pages from the fixture warehouse


class Targets(HTMLParser):
    """target id -> status of the summary rows and of the target articles."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, str] = {}
        self.articles: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "tr" and "target-row" in (a.get("class") or ""):
            self.rows[a["data-target-id"]] = a["data-status"]
        if tag == "article" and "target" in (a.get("class") or "").split():
            self.articles[a["data-target-id"]] = a["data-status"]


def targets_of(html: str) -> Targets:
    parser = Targets()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def warehouse(tmp_path_factory: pytest.TempPathFactory):
    return build_fixture_warehouse(tmp_path_factory.mktemp("wh") / "warehouse.duckdb")


@pytest.fixture(scope="module")
def chromium() -> str:
    binary, seconds = ensure_chromium()  # installs Debian's chromium if missing; never skips
    if seconds:
        print(f"chromium installed in {seconds:.0f} s")
    return binary


def test_both_languages_written_dated_and_as_latest(warehouse, tmp_path):
    results = render_review(warehouse.path, tmp_path, AS_OF)
    assert [r.language for r in results] == ["en", "zh"]
    for r in results:
        assert r.path == tmp_path / "2025-07-15" / f"kpi_review.{r.language}.html"
        assert r.latest_path.read_bytes() == r.path.read_bytes()
        assert {t: n for t, n in r.status_counts.items() if n} == {
            s: 1 for s in EXPECTED_STATUS.values()
        }
        assert targets_of(r.path.read_text(encoding="utf-8")).rows == EXPECTED_STATUS
    en = results[0].path.read_text(encoding="utf-8")
    zh = results[1].path.read_text(encoding="utf-8")
    assert '<html lang="en">' in en and '<html lang="zh-CN">' in zh
    sidecar = json.loads((tmp_path / "2025-07-15" / STATUS_FILE).read_text())
    assert {tid: v["status"] for tid, v in sidecar["targets"].items()} == EXPECTED_STATUS
    assert (tmp_path / "latest" / STATUS_FILE).exists()


def test_changes_since_the_previous_review(warehouse, tmp_path):
    (tmp_path / "2025-07-14").mkdir()
    before = dict(EXPECTED_STATUS, T02="at_risk")
    del before["T05"]
    (tmp_path / "2025-07-14" / STATUS_FILE).write_text(
        json.dumps({"targets": {t: {"status": s} for t, s in before.items()}})
    )
    html, _ = build_html(warehouse.path, AS_OF, "en", history_dir=tmp_path)
    items = re.findall(
        r'<li data-target-id="(T\d+)" data-status="(\w+)"><strong>T\d+</strong>: ([^<]+)</li>', html
    )
    assert items == [
        ("T02", "off_track", "At risk → Off track"),
        ("T05", "achieved", "new target → Achieved"),
    ]
    assert "Compared with the review of 2025-07-14." in html


def test_page_references_only_the_night_status_script(warehouse):
    html, _ = build_html(warehouse.path, AS_OF, "en")
    assert re.search(r"https?:", html) is None
    assert re.findall(r'(?:src|href)="([^"#][^"]*)"', html) == [
        "../night_status.js",
        "../data_docs/index.html",
    ]
    for tag in ("<link", "<img", "<iframe", "@import", "url("):
        assert tag not in html.lower()
    assert "@media print" in html


def test_text_is_escaped(warehouse):
    html, _ = build_html(warehouse.path, AS_OF, "en")
    assert "First-response SLA to 95% &lt;all channels&gt;" in html
    assert "<all channels>" not in html


def test_quality_summary_in_words(warehouse):
    html, _ = build_html(warehouse.path, AS_OF, "en")
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))
    # latest run (2025-07-15): 5 blocking checks pass; of 4 target checks one misses:
    # profile_completeness_mean 0.66 against 0.90 -> 24.0 pp
    assert "All 5 blocking checks passed" in text
    assert "1 of 4 data-quality targets are missed" in text
    assert "profile_completeness_mean on dim_customers : 66.0% against a target of 90.0% " in text
    assert "(24.0 pp short)" in text
    assert 'href="../data_docs/index.html"' in html
    html_zh, _ = build_html(warehouse.path, AS_OF, "zh")
    assert "（差 24.0 个百分点）" in html_zh


def test_small_base_segments_are_greyed(warehouse):
    html, _ = build_html(warehouse.path, AS_OF, "en")
    # lifecycle `dormant`: repurchase base 22 < 30 (fixture)
    table = re.search(r'data-segment-type="lifecycle_stage".*?</table>', html, re.S)[0]
    dormant = re.search(r'<tr data-segment="dormant">.*?</tr>', table, re.S)[0]
    assert 'class="num small-base"' in dormant
    active = re.search(r'<tr data-segment="active">.*?</tr>', table, re.S)[0]
    assert "small-base" not in active


def test_weekly_section_has_the_last_eight_weeks(warehouse):
    html, _ = build_html(warehouse.path, AS_OF, "en")
    # the fixture has ten weeks up to 2025-W29 (Monday 2025-07-14, running)
    weeks = re.findall(r'<tr data-week="([0-9W-]+)">', html)
    assert weeks == [f"2025-W{n}" for n in range(22, 30)]


def test_optional_tables_missing(tmp_path):
    info = build_fixture_warehouse(
        tmp_path / "warehouse.duckdb", n_customers=30, with_quality=False, with_clv=False
    )
    html, counts = build_html(info.path, AS_OF, "en")
    assert html.count("Not available in this warehouse.") == 2
    assert sum(counts.values()) == 5


def test_report_from_serving_db(warehouse, tmp_path):
    result = publish(warehouse.path, tmp_path / "serving", formats=("duckdb",))
    path = render_kpi_review(result.serving_db, tmp_path / "reports", AS_OF, "zh").path
    assert path.name == report_file("zh")
    assert targets_of(path.read_text(encoding="utf-8")).rows == EXPECTED_STATUS


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


def test_svg_escapes_labels():
    chart = svg.bar_chart([("<b>&", 3.0)], label='a "quoted" <label>')
    assert "<b>" not in chart and "&lt;b&gt;&amp;" in chart
    assert 'aria-label="a &quot;quoted&quot; &lt;label&gt;"' in chart


def test_banner_after_a_failed_night(chromium, warehouse, tmp_path):
    """The page of 2025-07-15 shown after the night of 07-16 failed says so; after a
    published night it says a newer review exists; on its own night it says nothing."""
    (result,) = render_review(warehouse.path, tmp_path, AS_OF, languages=("en",))

    def banner() -> str:
        text = measure(result.path, 1400)["text"]
        return next((line for line in text.splitlines() if "night" in line or "newer" in line), "")

    assert banner() == ""  # no night_status.js yet
    record_night(tmp_path, AS_OF, "published")
    assert banner() == ""
    record_night(tmp_path, date(2025, 7, 16), "failed")
    assert banner() == (
        "The last night (2025-07-16) failed: this page still shows the data as of 2025-07-15. "
        "Its numbers are not the latest deliveries."
    )
    record_night(tmp_path, date(2025, 7, 17), "published")
    assert banner() == "A newer review exists (data as of 2025-07-17): see latest/."


def test_ensure_system_packages_script_is_idempotent(chromium):
    import subprocess

    from support.browser import ENSURE_SCRIPT

    proc = subprocess.run(["bash", str(ENSURE_SCRIPT)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Chromium" in proc.stdout


# --------------------------------------------------------------------------------------------
# The review of a real build (crm backfill of generated data, tests/conftest.py `crm_home`)

#: What may stay Latin in the Chinese review: codes and abbreviations managers use as such
#: (the text inside <code> elements is removed before; numbers, weeks and target ids too).
ALLOWED_LATIN = re.compile(
    r"(?<![A-Za-z])(KPI|SMART|SLA|CSAT|NPS|RFM|VIP|ISO|UTC|CRM|P90|P50)(?![A-Za-z])"
    r"|\b\d{4}-W\d{2}\b|(?<![A-Za-z])T\d+(?![A-Za-z])"
)


def _published_review(home: Path) -> list[dict]:
    """rpt_kpi_review as published, each row with `has_history`: whether its baseline and
    current months have enough history for the KPI (fct_kpi_monthly.has_enough_history)."""
    with duckdb.connect(str(home / "serving" / "serving.duckdb"), read_only=True) as con:
        cursor = con.execute("select * from rpt_kpi_review order by target_id")
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        history = {
            (kpi, segment_type, segment, month.strftime("%Y-%m")): enough
            for kpi, segment_type, segment, month, enough in con.execute(
                "select kpi, segment_type, segment, month, has_enough_history from fct_kpi_monthly"
            ).fetchall()
        }
    for row in rows:
        key = (row["kpi"], row["segment_type"], row["segment"])
        row["has_history"] = all(
            history.get((*key, period), False)
            for period in (row["baseline_period"], row["current_period"])
        )
    return rows


def expected_status(row: dict) -> str:
    """metrics.md, "SMART targets and the KPI review", applied to the published numbers: a
    small base is not graded; no status without a baseline, a current value, or months with
    enough history for the KPI; else progress against time elapsed."""
    if row["is_small_base"]:
        return "small_base"
    base, current, target = row["baseline_value"], row["current_value"], row["target_value"]
    if None in (base, current, target) or target == base or not row["has_history"]:
        return "no_data"
    progress = (current - base) / (target - base)
    elapsed = (row["as_of_date"] - row["start_date"]).days / (
        row["due_date"] - row["start_date"]
    ).days
    assert progress == pytest.approx(row["progress"], abs=1e-6), row["target_id"]
    if progress >= 1:
        return "achieved"
    if row["as_of_date"] > row["due_date"]:
        return "missed"
    if progress >= elapsed:
        return "on_track"
    if progress >= 0.7 * elapsed:
        return "at_risk"
    return "off_track"


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
def test_backfill_publishes_the_review_in_both_languages(crm_home: Path) -> None:
    from support.e2e import END

    reports = crm_home / "reports"
    for language in ("en", "zh"):
        dated = reports / END.isoformat() / report_file(language)
        latest = reports / "latest" / report_file(language)
        assert dated.read_bytes() == latest.read_bytes()
    assert (
        json.loads((reports / END.isoformat() / STATUS_FILE).read_text())["as_of"] == "2026-10-31"
    )
    status = (reports / "night_status.js").read_text()
    assert '"night": "2026-10-31"' in status and '"outcome": "published"' in status
    # the marketing sections hold the published marts' rows: the latest campaigns, the
    # retention heat map, the transition matrices
    with duckdb.connect(str(crm_home / "serving" / "serving.duckdb"), read_only=True) as con:
        campaigns = {
            r[0] for r in con.execute("select campaign_id from fct_campaign_performance").fetchall()
        }
        moves = con.execute("select count(*) from fct_segment_transitions").fetchone()[0]
    for language in ("en", "zh"):
        html = (reports / "latest" / report_file(language)).read_text(encoding="utf-8")
        section = {
            name: re.search(rf'<section id="{name}">(.*?)</section>', html, re.S)[1]
            for name in ("campaigns", "retention", "segment-movement")
        }
        shown = set(re.findall(r'<tr data-campaign="([^"]+)"', section["campaigns"]))
        assert shown and shown <= campaigns and len(shown) <= 12
        assert len(re.findall(r'class="cell"', section["retention"])) > 12
        assert moves and section["segment-movement"].count('<table class="transitions"') >= 2


@pytest.mark.slow
@pytest.mark.xdist_group("e2e")
@pytest.mark.parametrize("language", ["en", "zh"])
def test_review_of_a_real_build_in_chromium(crm_home: Path, chromium, language) -> None:
    page = crm_home / "reports" / "latest" / report_file(language)
    html = page.read_text(encoding="utf-8")
    published = _published_review(crm_home)
    assert published, "rpt_kpi_review is empty"

    # every target's status is the rule applied to the published numbers
    expected = {row["target_id"]: expected_status(row) for row in published}
    shown = targets_of(html)
    assert shown.rows == expected and shown.articles == expected

    # the numbers shown are the published ones: each target's current value, and the
    # headline's net revenue of the latest complete month
    with duckdb.connect(str(crm_home / "serving" / "serving.duckdb"), read_only=True) as con:
        units = dict(con.execute("select kpi, unit from kpi_definitions").fetchall())
        month, revenue = con.execute(
            "select month, value from fct_kpi_monthly where kpi = 'net_revenue' "
            "and segment_type = 'all' and is_complete order by month desc limit 1"
        ).fetchone()
    for row in published:
        article = re.search(
            rf'<article [^>]*data-target-id="{row["target_id"]}".*?</article>', html, re.S
        )[0]
        shown_current = re.search(r'<dd class="current">([^<]*?) <span', article)[1]
        assert shown_current == format_value(
            row["kpi"], row["current_value"], unit=units[row["kpi"]], language=language
        ), row["target_id"]
    card = re.search(
        r'<div class="card headline-card" data-kpi="net_revenue" data-month="([0-9-]+)">.*?<div class="n">([^<]*)</div>',
        html,
        re.S,
    )
    assert card[1] == month.strftime("%Y-%m") and card[2] == f"{revenue:,.0f}"

    # no empty definition: every target's and every glossary row's
    definitions = re.findall(
        r'<p class="explain definition"><strong>[^<]*</strong>([^<]*)</p>', html
    )
    assert len(definitions) == len(published)
    assert all(text.strip() for text in definitions)
    glossary = re.findall(r'<td class="definition">([^<]*)</td>', html)
    assert len(glossary) == len(units) and all(text.strip() for text in glossary)

    for width in (1400, 800):
        layout = measure(page, width)
        # no horizontal scroll: nothing wider than the window outside its own scroll box
        assert layout["scrollWidth"] <= layout["innerWidth"], (width, layout["tooWide"])
        assert layout["tooWide"] == [], width
        if language == "zh":
            latin = re.findall(r"[A-Za-z]{2,}", ALLOWED_LATIN.sub(" ", layout["text"]))
            assert not latin, sorted(set(latin))


def test_backlog_trend_sums_the_days_rows(tmp_path):
    """Two days of backlog rows (statuses and priorities summed per day by hand): 10-01
    3 + 2 = 5 open, 1 past target; 10-02 4 open, 0 + 2 = 2 past target."""
    info = build_fixture_warehouse(tmp_path / "warehouse.duckdb", n_customers=30)
    with duckdb.connect(str(info.path)) as con:
        con.execute("""
            create table marts.fct_ticket_backlog_daily as select * from (values
                (date '2025-07-01', 'new', 'P1', '0d', 3, 1),
                (date '2025-07-01', 'in_progress', 'P3', '1-2d', 2, 0),
                (date '2025-07-02', 'new', 'P1', '1-2d', 1, 0),
                (date '2025-07-02', 'reopened', 'P3', '3-6d', 3, 2),
                (date '2099-01-01', 'new', 'P1', '0d', 99, 99)
            ) as t(snapshot_date, status, priority, age_band, open_tickets,
                   resolution_breached_tickets)
        """)  # fmt: skip
    html, _ = build_html(info.path, AS_OF, "en")
    panel = re.search(r'<div class="panel" id="backlog">.*?</svg>', html, re.S)[0]
    assert "Open tickets at the end of each day" in panel
    assert "2025-07-01" in panel and "2025-07-02" in panel and "2099" not in panel
    # the points' tooltips carry the day's sums
    assert re.search(r"2025-07-01[^<]*: 5\b", panel) and re.search(r"2025-07-02[^<]*: 4\b", panel)
    assert re.search(r"2025-07-02[^<]*: 2\b", panel)
