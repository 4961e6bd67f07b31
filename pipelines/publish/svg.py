"""Small inline-SVG charts for the self-contained KPI review (no JavaScript, no external files).

Every chart returns `markupsafe.Markup` (safe to insert into an autoescaped template); all text
that goes into the SVG is escaped here, and every chart carries role="img", an aria-label and a
<title> (plus a <desc> when `description` is given). Charts are responsive: a viewBox and
width="100%" with no fixed height, so they shrink to the column they sit in (the small ones,
bullet_chart and column_chart, also stop growing at their `width` in px, so their text does not
balloon in a wide column). No visible text is produced here: every word comes from the caller
(translated there); the default `empty_text` "No data." is the only English, meant to be
replaced.

Public API
----------
Series(name, values, color=PALETTE[0], open_points=frozenset(), muted_points=frozenset())
    values: one float or None per x label; None (or NaN) is a gap: no point, the line broken.
    open_points: indexes of provisional values (incomplete period): hollow point, dashed segment.
    muted_points: indexes without enough history: not drawn as values (no point, no segment,
    not in the y range); the x label stays and the column is shaded, titled `muted_text`.
Line(value, label, color="#cf222e", dashed=True)        a horizontal reference line.
TickFormat = Callable[[float, int], str]                 tick_format(value, decimals) -> label;
    `decimals` is what the tick step needs in the data's own unit (0.025 -> 3, 0.05 -> 2).
percent_ticks, plain_ticks                               ready TickFormats ("7.5%", "4.15").
number_ticks(*, scale=1.0, suffix="", thousands=True) -> TickFormat
tick_decimals(step) -> int
nice_ticks(low, high, count=5, *, include_zero=False) -> list[float]
tick_labels(ticks, tick_format) -> list[str]             unique labels, equal to the values shown.
text_width(text, font_size=12) -> float

line_chart(x_labels, series, *, lines=(), y_format=..., line_format=None, tick_format=None,
           include_zero=False, label="", description="", width=640, height=240,
           empty_text="No data.", muted_text="") -> Markup
    Lines over ordered x labels (months). Tick labels: tick_format(value, decimals) when given,
    else y_format(value) (kept for old callers; it may round two ticks to one label).
    y_format also writes the point tooltips; line_format (default y_format) the reference lines.
bar_chart(items, *, label="", value_format=..., color=PALETTE[0], width=420, bar_height=20,
          label_width=None, empty_text="No data.", description="") -> Markup
    Horizontal bars from 0, one per (category, value), in the order given, value at the end.
grouped_bar_chart(categories, series, *, label="", y_format=..., tick_format=None,
                  width=640, height=240, empty_text="No data.", description="") -> Markup
column_chart(items, *, label="", value_format=..., color=PALETTE[0], open_points=frozenset(),
             width=360, height=160, empty_text="No data.", missing_text="–",
             description="") -> Markup
    Vertical bars from 0 for an ordered series (the last 8 ISO weeks): (x label, value or None)
    in the order given, each value written above its bar; None leaves the slot empty with
    `missing_text`; open_points (the running week) are drawn hollow and dashed.
bullet_chart(progress, time_elapsed, *, status_color, label, width=320, progress_text="",
             elapsed_text="", description="") -> Markup
    Progress toward a target against the share of its time elapsed, both fractions of the
    0-100 % scale (1.0 = 100 %). A bar for progress (None: no bar), a vertical mark for time
    elapsed. Values past the scale are clamped to its end and marked with an arrow there
    (right: beyond 100 %, left: below 0 %), never drawn off the canvas; the words for them
    ("above target", "moving away") are the caller's `progress_text`.
heat_map(row_labels, column_labels, values, *, label="", value_format=..., low_color=...,
         high_color=PALETTE[0], scale_max=None, cell_width=34, cell_height=20,
         empty_text="No data.", missing_text="", description="") -> Markup
    A grid of cells coloured by value (rows x columns; None = an empty cell), each value
    written in its cell: the retention triangle of the review.

The y-range rule (no axis that lies): ticks are multiples of a clean step (1, 2, 2.5, 5 x 10^k,
see nice_ticks) and the axis runs from the largest multiple at or below the smallest value
(reference lines included; muted and missing values left out) to the smallest at or above the
largest. A line chart may so start above 0 (a CSAT between 4.1 and 4.3 drawn on 0..5 would hide
every move); it then says so: its lowest gridline is labelled with its value and a break mark
sits on the y axis at the bottom. Pass include_zero=True to start at 0 (rates whose size
matters more than their moves). Bars (bar_chart, grouped_bar_chart, column_chart) always start
at 0, since a bar's length is its value.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup

PALETTE = ("#1f6feb", "#bf8700", "#8250df", "#1a7f37", "#cf222e", "#57606a")
AXIS = "#8c959f"
GRID = "#eaeef2"
MUTED = "#f6f8fa"
TEXT = "#24292f"
FONT = 'font-family="inherit"'

TickFormat = Callable[[float, int], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = PALETTE[0]
    open_points: frozenset[int] = frozenset()  # provisional (incomplete period): hollow, dashed
    muted_points: frozenset[int] = frozenset()  # not enough history: not drawn as values


@dataclass(frozen=True)
class Line:
    """A horizontal reference line (a target, a baseline)."""

    value: float
    label: str
    color: str = "#cf222e"
    dashed: bool = True


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def text_width(text: str, font_size: float = 12) -> float:
    """Rough rendered width of `text` in px (no font metrics available server-side)."""
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    return (wide * 1.0 + (len(text) - wide) * 0.56) * font_size


def tick_decimals(step: float) -> int:
    """Decimals that show every multiple of `step` exactly (0.025 -> 3, 0.05 -> 2, 2000 -> 0)."""
    if not math.isfinite(step) or step <= 0:
        return 0
    for decimals in range(13):
        if abs(round(step, decimals) - step) <= abs(step) * 1e-9:
            return decimals
    return 12


def nice_ticks(
    low: float, high: float, count: int = 5, *, include_zero: bool = False
) -> list[float]:
    """At most `count` ticks at a clean step (1, 2, 2.5 or 5 x 10^k) covering [low, high].

    The "nice numbers" rule (Heckbert, Graphics Gems, 1990; matplotlib's MaxNLocator with
    steps [1, 2, 2.5, 5, 10], written here because matplotlib is not a dependency and altair
    leaves ticks to Vega in the browser): the smallest clean step whose multiples from floor(low / step)
    to ceil(high / step) make at most `count` ticks. The axis therefore starts at the largest
    multiple of the step at or below the minimum (0 when `include_zero` and the data are
    positive) and ends at the smallest multiple at or above the maximum. A constant value v
    gets the range v +- one tenth of its order of magnitude (0 gets [0, 1]).
    """
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    low, high = min(low, high), max(low, high)
    if include_zero:
        low, high = min(low, 0.0), max(high, 0.0)
    if high == low:
        if low == 0:
            low, high = 0.0, 1.0
        else:
            pad = 10 ** math.floor(math.log10(abs(low))) / 10
            low, high = low - pad, high + pad
    count = max(2, count)
    magnitude = 10 ** math.floor(math.log10((high - low) / (count - 1)) - 1)
    for _ in range(4):
        for mantissa in (1, 2, 2.5, 5):
            step = mantissa * magnitude
            first = math.floor(low / step + 1e-9)
            last = math.ceil(high / step - 1e-9)
            if last - first + 1 <= count:
                decimals = tick_decimals(step)
                return [round(k * step, decimals) + 0.0 for k in range(first, last + 1)]
        magnitude *= 10
    return [low, high]  # not reached: a step of 100x the raw step always fits


def tick_labels(ticks: Sequence[float], tick_format: TickFormat) -> list[str]:
    """Labels for `ticks`: tick_format(value, decimals) with the decimals the step needs.

    Should a formatter drop precision anyway (two labels equal), more decimals are asked for.
    """
    step = min((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=1.0)
    decimals = tick_decimals(step)
    labels = [tick_format(v, decimals) for v in ticks]
    while len(set(labels)) < len(labels) and decimals < 12:
        decimals += 1
        labels = [tick_format(v, decimals) for v in ticks]
    return labels


def number_ticks(*, scale: float = 1.0, suffix: str = "", thousands: bool = True) -> TickFormat:
    """A tick formatter: value x scale with the decimals the step needs (minus log10(scale))."""
    shift = round(math.log10(scale)) if scale > 0 else 0
    sep = "," if thousands else ""

    def fmt(value: float, decimals: int) -> str:
        shown = max(0, decimals - shift)
        return f"{value * scale:{sep}.{shown}f}{suffix}"

    return fmt


#: Fractions shown as percentages: step 0.025 -> "7.5%", step 0.05 -> "5%".
percent_ticks: TickFormat = number_ticks(scale=100, suffix="%")
#: Plain numbers: step 0.05 -> "4.15", step 2000 -> "12,000".
plain_ticks: TickFormat = number_ticks()


def _svg_open(
    width: float, height: float, label: str, description: str = "", *, grow: bool = True
) -> list[str]:
    """The opening tag: as wide as its container; `grow=False` caps it at `width` px."""
    cap = "" if grow else f' style="max-width:{width:g}px"'
    out = [
        f'<svg viewBox="0 0 {width:g} {height:g}" '
        f'width="100%"{cap} preserveAspectRatio="xMinYMin meet" role="img" '
        f'aria-label="{_e(label)}" class="chart" {FONT}>',
        f"<title>{_e(label)}</title>",
    ]
    if description:
        out.append(f"<desc>{_e(description)}</desc>")
    return out


def _empty(out: list[str], width: float, height: float, text: str) -> Markup:
    out.append(
        f'<text x="{width / 2:g}" y="{height / 2:g}" text-anchor="middle" fill="{AXIS}" '
        f'font-size="13">{_e(text)}</text></svg>'
    )
    return Markup("".join(out))


def _gridlines(
    out: list[str],
    ticks: Sequence[float],
    labels: Sequence[str],
    y_at: Callable[[float], float],
    left: float,
    plot_w: float,
) -> None:
    for tick, text in zip(ticks, labels, strict=True):
        y = y_at(tick)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{GRID}" class="grid" data-value="{tick!r}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{AXIS}" class="tick" data-value="{tick!r}">{_e(text)}</text>'
        )


def _axis_labels(
    ticks: Sequence[float], tick_format: TickFormat | None, y_format: Callable[[float], str]
) -> list[str]:
    if tick_format is not None:
        return tick_labels(ticks, tick_format)
    return [y_format(v) for v in ticks]


def _legend_rows(names: Sequence[str], x0: float, x_max: float) -> list[list[tuple[float, int]]]:
    """Legend entries wrapped to the chart width: rows of (x, index into names)."""
    rows: list[list[tuple[float, int]]] = [[]]
    x = x0
    for i, name in enumerate(names):
        w = 30 + text_width(name, 11)
        if rows[-1] and x + w > x_max:
            rows.append([])
            x = x0
        rows[-1].append((x, i))
        x += w
    return rows


@dataclass(frozen=True)
class _Plot:
    """The plot area of a line chart and its scales: x by index, y by value."""

    left: float
    top: float
    width: float
    height: float
    n: int
    y_min: float
    y_max: float

    def x_at(self, i: int) -> float:
        return self.left + (self.width * i / (self.n - 1) if self.n > 1 else self.width / 2)

    def y_at(self, v: float) -> float:
        return self.top + self.height - (v - self.y_min) / (self.y_max - self.y_min) * self.height

    @property
    def bottom(self) -> float:
        return self.top + self.height


def _drawn(s: Series, i: int) -> bool:
    return i < len(s.values) and i not in s.muted_points and _finite(s.values[i])


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    lines: Sequence[Line] = (),
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    line_format: Callable[[float], str] | None = None,
    tick_format: TickFormat | None = None,
    include_zero: bool = False,
    label: str = "",
    description: str = "",
    width: int = 640,
    height: int = 240,
    empty_text: str = "No data.",
    muted_text: str = "",
) -> Markup:
    """Lines over ordered x labels (months), with optional horizontal reference lines."""
    line_format = line_format or y_format
    line_texts = [f"{line.label} {line_format(line.value)}" for line in lines]
    left, top, bottom = 64, 16, 36
    right = 16 + min(width * 0.3, max((text_width(t, 11) for t in line_texts), default=0))
    right = max(right, text_width(x_labels[-1], 11) / 2 + 4) if x_labels else right
    plot_w = width - left - right
    legend = _legend_rows([s.name for s in series], left, width - 8) if len(series) > 1 else []
    height += 18 * len(legend)
    bottom += 18 * len(legend)

    values = [s.values[i] for s in series for i in range(len(x_labels)) if _drawn(s, i)]
    out = _svg_open(width, height, label, description)
    if not values or not x_labels:
        return _empty(out, width, height, empty_text)
    all_values = [float(v) for v in values if v is not None] + [
        line.value for line in lines if _finite(line.value)
    ]
    ticks = nice_ticks(min(all_values), max(all_values), include_zero=include_zero)
    plot = _Plot(left, top, plot_w, height - top - bottom, len(x_labels), ticks[0], ticks[-1])
    _muted_columns(out, plot, x_labels, series, muted_text)
    _gridlines(out, ticks, _axis_labels(ticks, tick_format, y_format), plot.y_at, left, plot_w)
    _x_axis(out, plot, x_labels)
    _reference_lines(out, plot, lines, line_texts)
    for s in series:
        _series_line(out, plot, s, x_labels, y_format)
    _legend(out, legend, series, height)
    out.append("</svg>")
    return Markup("".join(out))


def _muted_columns(
    out: list[str], plot: _Plot, x_labels: Sequence[str], series: Sequence[Series], text: str
) -> None:
    """Shade the columns without enough history, behind everything: a column is shaded when
    no series has enough history there (else its gap says it)."""
    slot = plot.width / plot.n
    for i in range(plot.n):
        if not all(i in s.muted_points for s in series):
            continue
        x0 = max(plot.left, plot.x_at(i) - slot / 2)
        x1 = min(plot.left + plot.width, plot.x_at(i) + slot / 2)
        title = f"<title>{_e(x_labels[i])}: {_e(text)}</title>" if text else ""
        out.append(
            f'<rect x="{x0:.1f}" y="{plot.top}" width="{max(x1 - x0, 1):.1f}" '
            f'height="{plot.height}" fill="{MUTED}" class="muted" data-index="{i}">{title}</rect>'
        )


def _x_axis(out: list[str], plot: _Plot, x_labels: Sequence[str]) -> None:
    """The x labels (as many as fit, counted from the latest, which is always labelled), the
    axis, and a break mark on the y axis when it does not start at zero."""
    n, left = plot.n, plot.left
    label_w = max(text_width(name, 11) for name in x_labels) + 8
    every = max(1, math.ceil(n / max(1, int(plot.width // label_w))))
    for i, name in enumerate(x_labels):
        if (n - 1 - i) % every == 0:
            out.append(
                f'<text x="{plot.x_at(i):.1f}" y="{plot.bottom + 18}" text-anchor="middle" '
                f'font-size="11" fill="{AXIS}" class="x-label">{_e(name)}</text>'
            )
    out.append(
        f'<line x1="{left}" x2="{left + plot.width:.1f}" y1="{plot.bottom}" y2="{plot.bottom}" '
        f'stroke="{AXIS}"/>'
    )
    if plot.y_min != 0:
        y = plot.bottom
        out.append(
            f'<path d="M{left - 5},{y - 2} l6,-5 M{left - 5},{y + 3} l6,-5" stroke="{AXIS}" '
            f'stroke-width="1.2" fill="none" class="axis-break"/>'
        )


def _reference_lines(
    out: list[str], plot: _Plot, lines: Sequence[Line], texts: Sequence[str]
) -> None:
    """Horizontal reference lines, each labelled at the right (labels kept apart)."""
    label_y: list[float] = []
    for line, text in zip(lines, texts, strict=True):
        if not _finite(line.value):
            continue
        y = plot.y_at(line.value)
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        text_y = y + 4
        while any(abs(text_y - other) < 13 for other in label_y):
            text_y += 13
        label_y.append(text_y)
        right = plot.left + plot.width
        out.append(
            f'<line x1="{plot.left}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{line.color}" stroke-width="1.5"{dash} class="ref-line"/>'
            f'<text x="{right + 6:.1f}" y="{text_y:.1f}" font-size="11" '
            f'fill="{line.color}">{_e(text)}</text>'
        )


def _segments(
    points: dict[int, tuple[float, float]], open_points: frozenset[int], n: int
) -> tuple[list[str], list[str]]:
    """The solid and the dashed (touching an open point) path commands of one series: a
    segment joins two neighbouring drawn points only."""
    solid: list[str] = []
    dashed: list[str] = []
    solid_end: int | None = None  # index where the last solid subpath ends
    for i in range(n - 1):
        if i not in points or i + 1 not in points:
            continue
        (x0, y0), (x1, y1) = points[i], points[i + 1]
        if i in open_points or i + 1 in open_points:
            dashed.append(f"M{x0:.1f},{y0:.1f} L{x1:.1f},{y1:.1f}")
            continue
        if solid_end == i:
            solid.append(f"L{x1:.1f},{y1:.1f}")
        else:
            solid.append(f"M{x0:.1f},{y0:.1f} L{x1:.1f},{y1:.1f}")
        solid_end = i + 1
    return solid, dashed


def _series_line(
    out: list[str],
    plot: _Plot,
    s: Series,
    x_labels: Sequence[str],
    y_format: Callable[[float], str],
) -> None:
    """One series: its solid line, its dashed (provisional) segments, its points."""
    points = {
        i: (plot.x_at(i), plot.y_at(float(s.values[i])))  # type: ignore[arg-type]
        for i in range(plot.n)
        if _drawn(s, i)
    }
    solid, dashed = _segments(points, s.open_points, plot.n)
    if solid:
        out.append(
            f'<path d="{" ".join(solid)}" fill="none" stroke="{s.color}" '
            f'stroke-width="2" class="series-line"/>'
        )
    if dashed:
        out.append(
            f'<path d="{" ".join(dashed)}" fill="none" stroke="{s.color}" '
            f'stroke-width="2" stroke-dasharray="4 3" class="series-line provisional"/>'
        )
    for i, (x, y) in points.items():
        is_open = i in s.open_points
        fill = "#ffffff" if is_open else s.color
        out.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{s.color}" '
            f'stroke-width="1.5" class="point{" open" if is_open else ""}" data-index="{i}">'
            f"<title>{_e(x_labels[i])}: {_e(y_format(float(s.values[i])))}</title></circle>"  # type: ignore[arg-type]
        )


def _legend(
    out: list[str], legend: list[list[tuple[float, int]]], series: Sequence[Series], height: int
) -> None:
    """The legend under the x axis, wrapped to the width (rows from `_legend_rows`)."""
    for r, row in enumerate(legend):
        y = height - 14 - 18 * (len(legend) - 1 - r)
        for x, k in row:
            s = series[k]
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="10" height="10" fill="{s.color}"/>'
                f'<text x="{x + 14:.1f}" y="{y + 9}" font-size="11" fill="{TEXT}">'
                f"{_e(s.name)}</text>"
            )


def bar_chart(
    items: Sequence[tuple[str, float]],
    *,
    label: str = "",
    value_format: Callable[[float], str] = lambda v: f"{v:,.0f}",
    color: str = PALETTE[0],
    width: int = 420,
    bar_height: int = 20,
    label_width: int | None = None,
    empty_text: str = "No data.",
    description: str = "",
) -> Markup:
    """Horizontal bars from 0, one per (category, value), in the order given."""
    if label_width is None:  # wide enough for the longest label (CJK glyphs are ~2x wider)
        longest = max((text_width(name) for name, _ in items), default=40)
        label_width = int(min(max(60, longest + 12), width * 0.6))
    value_width = max((text_width(value_format(v), 11) for _, v in items if _finite(v)), default=0)
    gap = 6
    height = max(40, len(items) * (bar_height + gap) + gap)
    out = _svg_open(width, height, label, description)
    if not items:
        return _empty(out, width, height, empty_text)
    top_value = max((v for _, v in items if _finite(v)), default=0) or 1
    plot_w = max(20.0, width - label_width - value_width - 10)
    for n, (name, value) in enumerate(items):
        y = gap + n * (bar_height + gap)
        shown = value_format(value) if _finite(value) else "–"
        w = max(1.0, plot_w * value / top_value) if _finite(value) and value > 0 else 0
        out.append(
            f'<text x="{label_width - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'font-size="12" fill="{TEXT}">{_e(name)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{bar_height}" rx="2" '
            f'fill="{color}"><title>{_e(name)}: {_e(shown)}</title></rect>'
            f'<text x="{label_width + w + 4:.1f}" y="{y + bar_height * 0.7:.1f}" font-size="11" '
            f'fill="{TEXT}">{_e(shown)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def grouped_bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    label: str = "",
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    tick_format: TickFormat | None = None,
    width: int = 640,
    height: int = 240,
    empty_text: str = "No data.",
    description: str = "",
) -> Markup:
    """Vertical bars from 0: one group per category, one bar per series."""
    right = 16 + min(width * 0.3, max((text_width(s.name, 11) + 14 for s in series), default=0))
    left, top, bottom = 56, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [float(v) for s in series for v in s.values if v is not None and _finite(v)]
    out = _svg_open(width, height, label, description)
    if not values or not categories:
        return _empty(out, width, height, empty_text)
    ticks = nice_ticks(min(values), max(values), include_zero=True)
    y_min, y_max = ticks[0], ticks[-1]

    def y_at(v: float) -> float:
        return top + plot_h - (v - y_min) / (y_max - y_min) * plot_h

    _gridlines(out, ticks, _axis_labels(ticks, tick_format, y_format), y_at, left, plot_w)
    group_w = plot_w / len(categories)
    bar_w = group_w * 0.8 / max(1, len(series))
    for c, name in enumerate(categories):
        x0 = left + c * group_w + group_w * 0.1
        for n, s in enumerate(series):
            v = s.values[c] if c < len(s.values) else None
            if v is None or not _finite(v):
                continue
            y = min(y_at(v), y_at(0.0))
            h = abs(y_at(v) - y_at(0.0))
            out.append(
                f'<rect x="{x0 + n * bar_w:.1f}" y="{y:.1f}" width="{bar_w * 0.92:.1f}" '
                f'height="{max(h, 0.5):.1f}" fill="{s.color}"><title>{_e(name)} · '
                f"{_e(s.name)}: {_e(y_format(v))}</title></rect>"
            )
        out.append(
            f'<text x="{left + c * group_w + group_w / 2:.1f}" y="{top + plot_h + 18}" '
            f'text-anchor="middle" font-size="11" fill="{AXIS}">{_e(name)}</text>'
        )
    for n, s in enumerate(series):
        x, y = left + plot_w + 10, top + 8 + n * 16
        out.append(
            f'<rect x="{x:.1f}" y="{y}" width="10" height="10" fill="{s.color}"/>'
            f'<text x="{x + 14:.1f}" y="{y + 9}" font-size="11" fill="{TEXT}">{_e(s.name)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def column_chart(
    items: Sequence[tuple[str, float | None]],
    *,
    label: str = "",
    value_format: Callable[[float], str] = lambda v: f"{v:,.0f}",
    color: str = PALETTE[0],
    open_points: frozenset[int] = frozenset(),
    width: int = 360,
    height: int = 160,
    empty_text: str = "No data.",
    missing_text: str = "–",
    description: str = "",
) -> Markup:
    """Vertical bars from 0 for an ordered series (weeks), each value written above its bar."""
    left, right, top, bottom = 4, 4, 18, 22
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [float(v) for _, v in items if v is not None and _finite(v)]
    out = _svg_open(width, height, label, description, grow=False)
    if not values:
        return _empty(out, width, height, empty_text)
    low, high = min(0.0, min(values)), max(0.0, max(values))
    span = (high - low) or 1.0

    def y_at(v: float) -> float:
        return top + plot_h - (v - low) / span * plot_h

    slot = plot_w / len(items)
    zero = y_at(0.0)
    label_w = max(text_width(name, 10) for name, _ in items) + 6
    every = max(1, math.ceil(label_w / slot))  # x labels thinned out, the latest always kept
    for i, (name, value) in enumerate(items):
        cx = left + slot * (i + 0.5)
        bar_w = slot * 0.7
        if value is None or not _finite(value):
            shown = missing_text
            text_y = zero - 4
        else:
            shown = value_format(value)
            y = min(y_at(value), zero)
            h = max(abs(y_at(value) - zero), 0.5)
            style = (
                f'fill="#ffffff" stroke="{color}" stroke-width="1.5" stroke-dasharray="3 2"'
                if i in open_points
                else f'fill="{color}"'
            )
            out.append(
                f'<rect x="{cx - bar_w / 2:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                f'height="{h:.1f}" {style} class="bar{" open" if i in open_points else ""}" '
                f'data-index="{i}"><title>{_e(name)}: {_e(shown)}</title></rect>'
            )
            text_y = y - 4 if value >= 0 else y + h + 11
        out.append(
            f'<text x="{cx:.1f}" y="{text_y:.1f}" text-anchor="middle" font-size="10" '
            f'fill="{TEXT}" class="value">{_e(shown)}</text>'
        )
        if (len(items) - 1 - i) % every == 0:
            out.append(
                f'<text x="{cx:.1f}" y="{height - 6}" text-anchor="middle" font-size="10" '
                f'fill="{AXIS}" class="x-label">{_e(name)}</text>'
            )
    out.append(
        f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{zero:.1f}" y2="{zero:.1f}" '
        f'stroke="{AXIS}"/>'
    )
    out.append("</svg>")
    return Markup("".join(out))


def bullet_chart(
    progress: float | None,
    time_elapsed: float | None,
    *,
    status_color: str,
    label: str,
    width: int = 320,
    progress_text: str = "",
    elapsed_text: str = "",
    description: str = "",
) -> Markup:
    """Progress toward a target (bar) against the share of its time elapsed (mark), 0-100 %.

    Both are fractions (1.0 = 100 %). A value past either end is drawn at that end with an
    arrow pointing out of the scale; the words for it are the caller's `progress_text`.
    """
    pad = 10  # room for the arrows at both ends
    track_y, track_h = 4, 14
    height = track_y + track_h + 6 + (16 if progress_text or elapsed_text else 0)
    scale_w = width - 2 * pad
    desc = " · ".join(t for t in (description, progress_text, elapsed_text) if t)
    out = _svg_open(width, height, label, desc, grow=False)

    def x_at(fraction: float) -> float:
        return pad + scale_w * min(1.0, max(0.0, fraction))

    out.append(
        f'<rect x="{pad}" y="{track_y}" width="{scale_w}" height="{track_h}" fill="{GRID}" '
        f'class="track"/>'
    )
    for quarter in (0.25, 0.5, 0.75):
        x = x_at(quarter)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{track_y}" y2="{track_y + track_h}" '
            f'stroke="#ffffff" stroke-width="1"/>'
        )
    mid = track_y + track_h / 2
    if progress is not None and _finite(progress):
        w = x_at(progress) - pad
        out.append(
            f'<rect x="{pad}" y="{track_y + 3}" width="{w:.1f}" height="{track_h - 6}" '
            f'fill="{status_color}" class="progress" data-value="{progress!r}"/>'
        )
        if progress > 1:
            x = pad + scale_w + 1
            out.append(
                f'<path d="M{x:.1f},{mid - 6:.1f} L{x + 8:.1f},{mid:.1f} L{x:.1f},{mid + 6:.1f} Z" '
                f'fill="{status_color}" class="beyond beyond-high"/>'
            )
        elif progress < 0:
            x = pad - 1
            out.append(
                f'<path d="M{x:.1f},{mid - 6:.1f} L{x - 8:.1f},{mid:.1f} L{x:.1f},{mid + 6:.1f} Z" '
                f'fill="{status_color}" class="beyond beyond-low"/>'
            )
    if time_elapsed is not None and _finite(time_elapsed):
        x = x_at(time_elapsed)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{track_y - 3}" y2="{track_y + track_h + 3}" '
            f'stroke="{TEXT}" stroke-width="2" class="elapsed" data-value="{time_elapsed!r}"/>'
        )
    text_y = track_y + track_h + 17
    if progress_text:
        out.append(
            f'<text x="{pad}" y="{text_y}" font-size="11" fill="{TEXT}" class="progress-text">'
            f"{_e(progress_text)}</text>"
        )
    if elapsed_text:
        out.append(
            f'<text x="{pad + scale_w}" y="{text_y}" font-size="11" fill="{AXIS}" '
            f'text-anchor="end" class="elapsed-text">{_e(elapsed_text)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def _blend(low: str, high: str, fraction: float) -> str:
    """The colour `fraction` (0..1) of the way from `low` to `high` (#rrggbb)."""
    f = min(max(fraction, 0.0), 1.0)
    a = [int(low[i : i + 2], 16) for i in (1, 3, 5)]
    b = [int(high[i : i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * f):02x}" for x, y in zip(a, b, strict=True))


def heat_map(
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    values: Sequence[Sequence[float | None]],
    *,
    label: str = "",
    value_format: Callable[[float], str] = lambda v: f"{v:.0%}",
    low_color: str = "#f6f8fa",
    high_color: str = PALETTE[0],
    scale_max: float | None = None,
    cell_width: int = 34,
    cell_height: int = 20,
    empty_text: str = "No data.",
    missing_text: str = "",
    description: str = "",
) -> Markup:
    """A grid of cells (rows x columns), each coloured by its value from `low_color` (0) to
    `high_color` (`scale_max`, default the largest value shown) and written in it; None is
    an empty cell (no value yet), titled `missing_text`. The retention triangle: cohorts as
    rows, months since the first order as columns, the share ordering as the value."""
    shown = [v for row in values for v in row if v is not None and _finite(v)]
    label_w = max((text_width(r, 11) for r in row_labels), default=0) + 8
    top = 18
    width = label_w + cell_width * max(len(column_labels), 1) + 4
    height = top + cell_height * max(len(row_labels), 1) + 4
    out = _svg_open(width, height, label, description)
    if not shown:
        return _empty(out, width, height, empty_text)
    high = scale_max if scale_max is not None else max(shown)
    high = high if high > 0 else 1.0
    for j, name in enumerate(column_labels):
        out.append(
            f'<text x="{label_w + cell_width * (j + 0.5):.1f}" y="{top - 5}" '
            f'text-anchor="middle" font-size="10" fill="{AXIS}" class="x-label">{_e(name)}</text>'
        )
    for i, (name, row) in enumerate(zip(row_labels, values, strict=True)):
        y = top + cell_height * i
        out.append(
            f'<text x="{label_w - 6:.1f}" y="{y + cell_height * 0.68:.1f}" text-anchor="end" '
            f'font-size="11" fill="{TEXT}" class="y-label">{_e(name)}</text>'
        )
        for j, value in enumerate(row):
            x = label_w + cell_width * j
            if value is None or not _finite(value):
                if missing_text:
                    out.append(
                        f'<rect x="{x:.1f}" y="{y}" width="{cell_width}" height="{cell_height}" '
                        f'fill="#ffffff" class="cell missing"><title>{_e(name)} · '
                        f"{_e(column_labels[j])}: {_e(missing_text)}</title></rect>"
                    )
                continue
            fraction = value / high
            text = value_format(value)
            ink = "#ffffff" if fraction > 0.55 else TEXT
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="{cell_width - 1}" height="{cell_height - 1}" '
                f'fill="{_blend(low_color, high_color, fraction)}" class="cell" '
                f'data-row="{i}" data-column="{j}"><title>{_e(name)} · {_e(column_labels[j])}: '
                f"{_e(text)}</title></rect>"
            )
            out.append(
                f'<text x="{x + cell_width / 2:.1f}" y="{y + cell_height * 0.68:.1f}" '
                f'text-anchor="middle" font-size="9" fill="{ink}" class="value">{_e(text)}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))
