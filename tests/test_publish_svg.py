"""The review's inline SVG charts: clean ticks with honest labels, gaps for missing values,
muted months without enough history, the bullet chart's clamping, escaping, responsiveness."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET

import pytest

from pipelines.publish import svg

NS = ""  # inline SVG in HTML carries no xmlns (the page links to nothing)
MONTHS = ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"]


def parse(markup: str) -> ET.Element:
    root = ET.fromstring(str(markup))  # raises on anything that is not well-formed XML
    assert root.tag == f"{NS}svg"
    return root


def find(root: ET.Element, tag: str, cls: str | None = None) -> list[ET.Element]:
    found = root.iter(f"{NS}{tag}")
    return [el for el in found if cls is None or cls in (el.get("class") or "").split()]


def path_points(d: str) -> list[list[tuple[float, float]]]:
    """The subpaths of an SVG path made of M/L commands: lists of (x, y)."""
    subpaths: list[list[tuple[float, float]]] = []
    for cmd, x, y in re.findall(r"([ML])\s*(-?[\d.]+),(-?[\d.]+)", d):
        if cmd == "M":
            subpaths.append([])
        subpaths[-1].append((float(x), float(y)))
    return subpaths


# ---------------------------------------------------------------------------------------------
# Ticks


@pytest.mark.parametrize(
    ("low", "high", "expected"),
    [
        # raw step 0.235 / 4 = 0.059; 0.05 needs floor(1.5)=1 .. ceil(6.2)=7 -> 7 ticks > 5;
        # 0.1: 0 .. ceil(3.1)=4 -> 0, 0.1, 0.2, 0.3, 0.4
        (0.075, 0.31, [0.0, 0.1, 0.2, 0.3, 0.4]),
        # CSAT: 0.05 -> 82 .. 86 -> 4.10 .. 4.30 (5 ticks)
        (4.1, 4.3, [4.1, 4.15, 4.2, 4.25, 4.3]),
        # 0.1 -> 11 ticks; 0.2 -> 6; 0.25 -> 0 .. 4 -> 5 ticks
        (0.0, 1.0, [0.0, 0.25, 0.5, 0.75, 1.0]),
        # 20,000 -> 0 .. ceil(4.94)=5 -> 6 ticks; 25,000 -> 0 .. ceil(3.95)=4 -> 5 ticks
        (12_345, 98_765, [0.0, 25_000.0, 50_000.0, 75_000.0, 100_000.0]),
        # 0.02 -> 2 .. 8 -> 7 ticks; 0.025 -> 2 .. 6 -> 0.05 .. 0.15 (a 7.5 % gridline)
        (0.05, 0.15, [0.05, 0.075, 0.1, 0.125, 0.15]),
        # constant 4.2: +- 0.1 (a tenth of its order of magnitude 1) -> the CSAT case
        (4.2, 4.2, [4.1, 4.15, 4.2, 4.25, 4.3]),
        # constant 0 -> [0, 1]
        (0.0, 0.0, [0.0, 0.25, 0.5, 0.75, 1.0]),
        # kept from the first version: 0.02 -> 15 .. 19; 0.2 -> 20 .. ceil(22.75)=23
        (0.31, 0.37, [0.30, 0.32, 0.34, 0.36, 0.38]),
        (4.1, 4.55, [4.0, 4.2, 4.4, 4.6]),
        # negatives: 0.1 -> -3 .. 2 -> 6 ticks; 0.2 -> floor(-1.5)=-2 .. 1 -> 4 ticks
        (-0.3, 0.2, [-0.4, -0.2, 0.0, 0.2]),
    ],
)
def test_nice_ticks_are_clean_steps_covering_the_range(low, high, expected):
    ticks = svg.nice_ticks(low, high)
    assert ticks == pytest.approx(expected, abs=1e-12)
    assert ticks[0] <= low and ticks[-1] >= high and len(ticks) <= 5
    steps = {round(b - a, 9) for a, b in zip(ticks, ticks[1:], strict=False)}
    assert len(steps) == 1
    (step,) = steps
    mantissa = step / 10 ** math.floor(math.log10(step))
    assert round(mantissa, 9) in (1, 2, 2.5, 5)


def test_include_zero_starts_the_axis_at_zero():
    # 0.075 .. 0.31 already reaches 0; 0.31 .. 0.37 with zero: 0.1 -> 0 .. 4 -> 5 ticks
    assert svg.nice_ticks(0.31, 0.37, include_zero=True) == [0.0, 0.1, 0.2, 0.3, 0.4]


@pytest.mark.parametrize(
    ("step", "decimals"), [(0.025, 3), (0.05, 2), (0.1, 1), (2.5, 1), (25, 0), (2000, 0)]
)
def test_tick_decimals(step, decimals):
    assert svg.tick_decimals(step) == decimals


@pytest.mark.parametrize(
    ("low", "high", "fmt", "expected"),
    [
        (4.1, 4.3, svg.plain_ticks, ["4.10", "4.15", "4.20", "4.25", "4.30"]),
        (0.05, 0.15, svg.percent_ticks, ["5.0%", "7.5%", "10.0%", "12.5%", "15.0%"]),
        (0.075, 0.31, svg.percent_ticks, ["0%", "10%", "20%", "30%", "40%"]),
        (0.0, 1.0, svg.percent_ticks, ["0%", "25%", "50%", "75%", "100%"]),
        (12_345, 98_765, svg.plain_ticks, ["0", "25,000", "50,000", "75,000", "100,000"]),
        (0.31, 0.37, svg.percent_ticks, ["30%", "32%", "34%", "36%", "38%"]),
    ],
)
def test_tick_labels_are_unique_and_equal_their_values(low, high, fmt, expected):
    ticks = svg.nice_ticks(low, high)
    labels = svg.tick_labels(ticks, fmt)
    assert labels == expected
    assert len(set(labels)) == len(labels)
    scale = 100 if fmt is svg.percent_ticks else 1
    for value, text in zip(ticks, labels, strict=True):  # the label read back is the value
        assert float(text.rstrip("%").replace(",", "")) / scale == pytest.approx(value, abs=1e-12)


def test_tick_labels_ask_for_more_decimals_when_a_formatter_drops_them():
    # a formatter that shows one decimal fewer than asked: 4.15 and 4.2 would both read 4.2
    def short(v: float, d: int) -> str:
        return f"{v:.{max(0, d - 1)}f}"

    labels = svg.tick_labels([4.1, 4.15, 4.2, 4.25, 4.3], short)
    assert labels == ["4.10", "4.15", "4.20", "4.25", "4.30"]


# ---------------------------------------------------------------------------------------------
# Line chart


def tick_texts(root: ET.Element) -> list[tuple[float, str]]:
    return [(float(el.get("data-value")), el.text or "") for el in find(root, "text", "tick")]


def test_line_chart_labels_a_7_5_percent_gridline_7_5_percent():
    values = [0.05, 0.09, 0.12, 0.15, 0.11, 0.08]
    root = parse(svg.line_chart(MONTHS, [svg.Series("r", values)], tick_format=svg.percent_ticks))
    assert (0.075, "7.5%") in tick_texts(root)
    assert [t for _, t in tick_texts(root)] == ["5.0%", "7.5%", "10.0%", "12.5%", "15.0%"]


def test_line_chart_csat_ticks_do_not_repeat():
    values = [4.12, 4.3, 4.21, 4.18, 4.25, 4.1]
    root = parse(svg.line_chart(MONTHS, [svg.Series("csat", values)], tick_format=svg.plain_ticks))
    assert [t for _, t in tick_texts(root)] == ["4.10", "4.15", "4.20", "4.25", "4.30"]
    # above 0, so the axis says it does not start at zero
    assert find(root, "path", "axis-break")


def test_line_chart_keeps_y_format_for_old_callers():
    root = parse(svg.line_chart(MONTHS[:2], [svg.Series("n", [1.0, 3.0])], y_format=str))
    # 1 .. 3: 0.5 -> 2 .. 6 -> 1.0, 1.5, .., 3.0 written by y_format
    assert [t for _, t in tick_texts(root)] == ["1.0", "1.5", "2.0", "2.5", "3.0"]


def test_include_zero_has_no_break_mark():
    chart = svg.line_chart(
        MONTHS[:2], [svg.Series("r", [0.3, 0.35])], include_zero=True, tick_format=svg.percent_ticks
    )
    root = parse(chart)
    assert tick_texts(root)[0] == (0.0, "0%")
    assert not find(root, "path", "axis-break")


def point_xs(root: ET.Element) -> dict[int, float]:
    return {int(c.get("data-index")): float(c.get("cx")) for c in find(root, "circle", "point")}


def test_none_is_a_gap_not_a_zero():
    values = [0.2, 0.25, None, 0.3, 0.28, float("nan")]
    root = parse(svg.line_chart(MONTHS, [svg.Series("r", values)]))
    xs = point_xs(root)
    assert sorted(xs) == [0, 1, 3, 4]  # no point for None nor NaN
    (path,) = find(root, "path", "series-line")
    subpaths = path_points(path.get("d"))
    # two pieces: 0-1 and 3-4; no segment crosses the gap at index 2
    assert [[x for x, _ in sp] for sp in subpaths] == [[xs[0], xs[1]], [xs[3], xs[4]]]
    # and nothing drew a 0: the axis starts at 0.2 (0.05 -> 4 .. 6)
    assert tick_texts(root)[0][0] == pytest.approx(0.2)


def test_muted_points_are_not_values_but_keep_their_label():
    # churn before 180 days of history: 0.0 in the data, not a real 0 %
    values = [0.0, 0.0, 0.12, 0.11, 0.13, 0.1]
    series = svg.Series("churn", values, muted_points=frozenset({0, 1}))
    root = parse(svg.line_chart(MONTHS, [series], muted_text="<not enough history>"))
    assert sorted(point_xs(root)) == [2, 3, 4, 5]
    assert tick_texts(root)[0][0] == pytest.approx(0.1)  # the muted zeros left the y range
    assert [el.text for el in find(root, "text", "x-label")] == MONTHS
    shaded = find(root, "rect", "muted")
    assert [int(r.get("data-index")) for r in shaded] == [0, 1]
    assert shaded[0].find(f"{NS}title").text == "2026-05: <not enough history>"
    (path,) = find(root, "path", "series-line")
    assert len(path_points(path.get("d"))[0]) == 4  # one polyline through indexes 2..5


def test_x_labels_thin_out_from_the_latest_month():
    months = [f"{y}-{m:02d}" for y in (2025, 2026) for m in range(1, 13)][:22]
    chart = svg.line_chart(months, [svg.Series("r", [0.1] * 22)], lines=[svg.Line(0.2, "T")])
    shown = [el.text for el in find(parse(chart), "text", "x-label")]
    # "2026-10" is 7 x 0.56 x 11 = 43.1 px (+ 8 apart: 51.1); right margin 16 + width("T 0.2")
    # (5 x 0.56 x 11 = 30.8) = 46.8; plot 640 - 64 - 46.8 = 529.2 px holds 10 labels: every
    # ceil(22 / 10) = 3rd month counted back from index 21 (2026-10): 21, 18, .., 0
    assert shown == months[0::3] and shown[-1] == "2026-10"


def test_open_points_are_hollow_with_a_dashed_segment():
    series = svg.Series("r", [0.2, 0.25, 0.3, 0.1], open_points=frozenset({3}))
    root = parse(svg.line_chart(MONTHS[:4], [series]))
    hollow = find(root, "circle", "open")
    assert [int(c.get("data-index")) for c in hollow] == [3]
    assert hollow[0].get("fill") == "#ffffff"
    solid, dashed = find(root, "path", "series-line")
    assert "provisional" in dashed.get("class") and "provisional" not in solid.get("class")
    xs = point_xs(root)
    assert [[x for x, _ in sp] for sp in path_points(solid.get("d"))] == [[xs[0], xs[1], xs[2]]]
    assert [[x for x, _ in sp] for sp in path_points(dashed.get("d"))] == [[xs[2], xs[3]]]


@pytest.mark.parametrize(
    "values", [[None] * 6, [0.0, 0.0, None, None, None, None]], ids=["all None", "all muted"]
)
def test_no_drawable_value_gives_the_empty_text(values):
    series = svg.Series("r", values, muted_points=frozenset({0, 1}))
    root = parse(svg.line_chart(MONTHS, [series], empty_text="Nothing yet"))
    assert [el.text for el in find(root, "text")] == ["Nothing yet"]


def test_single_point_and_constant_series():
    root = parse(svg.line_chart(["2026-10"], [svg.Series("csat", [4.2])]))
    (x,) = point_xs(root).values()
    # centred in the plot: left 64; right = half the label "2026-10" (7 x 0.56 x 11 / 2) + 4
    # = 25.56; x = 64 + (640 - 64 - 25.56) / 2 = 339.22
    assert x == pytest.approx(339.2, abs=0.05)
    root = parse(
        svg.line_chart(MONTHS, [svg.Series("csat", [4.2] * 6)], tick_format=svg.plain_ticks)
    )
    assert [t for _, t in tick_texts(root)] == ["4.10", "4.15", "4.20", "4.25", "4.30"]


# ---------------------------------------------------------------------------------------------
# Bullet chart


def inside(root: ET.Element) -> None:
    """Every x coordinate drawn lies within the viewBox."""
    _, _, width, _ = (float(v) for v in root.get("viewBox").split())
    for el in root.iter():
        for attr in ("x", "x1", "x2", "cx"):
            if el.get(attr) is not None:
                assert 0 <= float(el.get(attr)) <= width, (el.tag, attr, el.get(attr))
        if el.get("width") is not None and el.tag != f"{NS}svg":
            assert float(el.get("x")) + float(el.get("width")) <= width
        if el.tag == f"{NS}path":
            for x in re.findall(r"[ML](-?[\d.]+),", el.get("d")):
                assert 0 <= float(x) <= width


def test_bullet_within_the_scale():
    # width 320, 10 px each side: scale 300 px; 40 % -> 120 px; 60 % elapsed -> x = 10 + 180
    root = parse(svg.bullet_chart(0.4, 0.6, status_color="#1a7f37", label="T01"))
    (bar,) = find(root, "rect", "progress")
    assert float(bar.get("width")) == pytest.approx(120.0)
    (mark,) = find(root, "line", "elapsed")
    assert float(mark.get("x1")) == pytest.approx(190.0)
    assert not find(root, "path", "beyond")
    inside(root)


def test_bullet_clamps_286_percent_with_an_arrow_right():
    chart = svg.bullet_chart(
        2.86, 0.5, status_color="#1a7f37", label="T02", progress_text="Above target"
    )
    root = parse(chart)
    (bar,) = find(root, "rect", "progress")
    assert float(bar.get("width")) == pytest.approx(300.0)  # the whole scale, not 858 px
    assert find(root, "path", "beyond-high") and not find(root, "path", "beyond-low")
    assert find(root, "text", "progress-text")[0].text == "Above target"
    inside(root)


def test_bullet_clamps_minus_516_percent_with_an_arrow_left():
    chart = svg.bullet_chart(
        -5.16, 1.4, status_color="#cf222e", label="T07", progress_text="Moving away"
    )
    root = parse(chart)
    (bar,) = find(root, "rect", "progress")
    assert float(bar.get("width")) == 0.0
    assert find(root, "path", "beyond-low") and not find(root, "path", "beyond-high")
    (mark,) = find(root, "line", "elapsed")
    assert float(mark.get("x1")) == pytest.approx(310.0)  # 140 % elapsed sits at 100 %
    assert root.get("aria-label") == "T07"
    assert "Moving away" in root.find(f"{NS}desc").text
    inside(root)


def test_bullet_without_progress_draws_no_bar():
    root = parse(svg.bullet_chart(None, 0.3, status_color="#57606a", label="T03"))
    assert not find(root, "rect", "progress") and find(root, "line", "elapsed")


# ---------------------------------------------------------------------------------------------
# Column chart (weekly)

WEEKS = [f"W{w}" for w in range(37, 45)]  # short labels: all shown


def test_column_chart_keeps_order_writes_values_and_leaves_none_empty():
    values = [120.0, 95.0, None, 130.0, 0.0, 110.0, 100.0, 40.0]
    chart = svg.column_chart(list(zip(WEEKS, values, strict=True)), open_points=frozenset({7}))
    root = parse(chart)
    assert [el.text for el in find(root, "text", "x-label")] == WEEKS
    assert [el.text for el in find(root, "text", "value")] == [
        "120", "95", "–", "130", "0", "110", "100", "40",
    ]  # fmt: skip
    bars = {int(r.get("data-index")): r for r in find(root, "rect", "bar")}
    assert sorted(bars) == [0, 1, 3, 4, 5, 6, 7]  # no bar for the missing week
    # height 160, top 18, bottom 22: 120 px for 0 .. 130; 120 -> 120 / 130 * 120 = 110.8 px
    assert float(bars[0].get("height")) == pytest.approx(110.8, abs=0.05)
    assert "open" in bars[7].get("class") and bars[7].get("fill") == "#ffffff"
    inside(root)


def test_column_chart_thins_long_week_labels_from_the_latest():
    weeks = [f"2026-W{w}" for w in range(37, 45)]
    root = parse(svg.column_chart([(w, 1.0) for w in weeks]))
    # slot (360 - 8) / 8 = 44 px; "2026-W37" 8 x 0.56 x 10 + 6 = 50.8 px -> every 2nd week,
    # counted back from the latest
    assert [el.text for el in find(root, "text", "x-label")] == weeks[1::2]


# ---------------------------------------------------------------------------------------------
# Every chart: escaped, well-formed, responsive

NASTY = '<b>"R&D" 客户</b>'


def every_chart() -> list[str]:
    series = [svg.Series(NASTY, [1.0, None, 3.0]), svg.Series("b", [2.0, 2.5, None])]
    return [
        svg.line_chart(["a", NASTY, "c"], series, lines=[svg.Line(2.2, NASTY)], label=NASTY),
        svg.bar_chart([(NASTY, 3.0), ("b", 1.0)], label=NASTY, description=NASTY),
        svg.grouped_bar_chart(["a", NASTY, "c"], series, label=NASTY),
        svg.column_chart([(NASTY, 1.0), ("w", None)], label=NASTY),
        svg.bullet_chart(0.5, 0.5, status_color="#000", label=NASTY, progress_text=NASTY),
        svg.line_chart([], [], label=NASTY, empty_text=NASTY),
    ]


@pytest.mark.parametrize("n", range(6))
def test_charts_escape_text_and_are_well_formed(n):
    chart = every_chart()[n]
    assert "<b>" not in chart and "&lt;b&gt;" in chart
    root = parse(chart)
    assert root.get("aria-label") == NASTY and root.find(f"{NS}title").text == NASTY


@pytest.mark.parametrize("n", range(6))
def test_charts_are_responsive(n):
    root = parse(every_chart()[n])
    assert root.get("width") == "100%" and root.get("height") is None
    assert len(root.get("viewBox").split()) == 4
