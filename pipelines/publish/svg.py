"""Small inline-SVG charts for the self-contained KPI review (no JavaScript, no external files).

Every function returns `markupsafe.Markup` (safe to insert into an autoescaped template); all
text that goes into the SVG is escaped here.
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
TEXT = "#24292f"
FONT = 'font-family="inherit"'


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str = PALETTE[0]
    open_points: frozenset[int] = frozenset()  # indexes drawn hollow (incomplete periods)


@dataclass(frozen=True)
class Line:
    """A horizontal reference line (a target, a baseline)."""

    value: float
    label: str
    color: str = "#cf222e"
    dashed: bool = True


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def text_width(text: str, font_size: float = 12) -> float:
    """Rough rendered width of `text` in px (no font metrics available server-side)."""
    wide = sum(1 for ch in text if ord(ch) > 0x2E80)
    return (wide * 1.0 + (len(text) - wide) * 0.56) * font_size


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not math.isfinite(low) or not math.isfinite(high):
        return [0.0, 1.0]
    if high == low:
        pad = abs(high) * 0.1 or 1.0
        low, high = low - pad, high + pad
    raw = (high - low) / max(1, count - 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = math.floor(low / step) * step
    ticks = []
    value = start
    while value <= high + step * 1e-9:
        ticks.append(round(value, 10))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 10))
    return ticks


def _svg_open(width: int, height: int, label: str) -> list[str]:
    return [
        f'<svg viewBox="0 0 {width} {height}" '
        f'width="100%" role="img" aria-label="{_e(label)}" class="chart" {FONT}>',
        f"<title>{_e(label)}</title>",
    ]


def line_chart(
    x_labels: Sequence[str],
    series: Sequence[Series],
    *,
    lines: Sequence[Line] = (),
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    line_format: Callable[[float], str] | None = None,
    label: str = "",
    width: int = 640,
    height: int = 240,
    empty_text: str = "No data.",
) -> Markup:
    """Lines over categorical x labels (months), with optional horizontal reference lines."""
    left, right, top, bottom = 64, 120, 16, 36
    if len(series) > 1:
        height += 20
        bottom += 20
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    out = _svg_open(width, height, label)
    if not values or not x_labels:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS}" '
            f'font-size="13">{_e(empty_text)}</text></svg>'
        )
        return Markup("".join(out))
    all_values = values + [line.value for line in lines]
    ticks = nice_ticks(min(all_values), max(all_values))
    y_min, y_max = ticks[0], ticks[-1]

    def x_at(i: int) -> float:
        return left + (plot_w * i / (len(x_labels) - 1) if len(x_labels) > 1 else plot_w / 2)

    def y_at(v: float) -> float:
        return top + plot_h - (v - y_min) / (y_max - y_min) * plot_h

    for tick in ticks:
        y = y_at(tick)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{AXIS}">{_e(y_format(tick))}</text>'
        )
    step = max(1, math.ceil(len(x_labels) / 8))
    for i, name in enumerate(x_labels):
        if i % step == 0 or i == len(x_labels) - 1:
            out.append(
                f'<text x="{x_at(i):.1f}" y="{top + plot_h + 18}" text-anchor="middle" '
                f'font-size="11" fill="{AXIS}">{_e(name)}</text>'
            )
    out.append(
        f'<line x1="{left}" x2="{left + plot_w}" y1="{top + plot_h}" y2="{top + plot_h}" '
        f'stroke="{AXIS}"/>'
    )
    label_y: list[float] = []
    for line in lines:
        y = y_at(line.value)
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        text_y = y + 4
        while any(abs(text_y - other) < 13 for other in label_y):
            text_y += 13
        label_y.append(text_y)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{line.color}" stroke-width="1.5"{dash} class="ref-line"/>'
            f'<text x="{left + plot_w + 6}" y="{text_y:.1f}" font-size="11" '
            f'fill="{line.color}">{_e(line.label)} {_e((line_format or y_format)(line.value))}</text>'
        )
    for s in series:
        points = [
            (x_at(i), y_at(v), i, v)
            for i, v in enumerate(s.values)
            if v is not None and math.isfinite(v)
        ]
        path = " ".join(
            f"{'M' if n == 0 else 'L'}{x:.1f},{y:.1f}" for n, (x, y, _, _) in enumerate(points)
        )
        out.append(f'<path d="{path}" fill="none" stroke="{s.color}" stroke-width="2"/>')
        for x, y, i, v in points:
            fill = "#ffffff" if i in s.open_points else s.color
            out.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{fill}" stroke="{s.color}" '
                f'stroke-width="1.5"><title>{_e(x_labels[i])}: {_e(y_format(v))}</title></circle>'
            )
    if len(series) > 1:  # legend under the x axis
        x = left
        for s in series:
            y = height - 14
            out.append(
                f'<rect x="{x:.1f}" y="{y}" width="10" height="10" fill="{s.color}"/>'
                f'<text x="{x + 14:.1f}" y="{y + 9}" font-size="11" fill="{TEXT}">{_e(s.name)}</text>'
            )
            x += 30 + text_width(s.name, 11)
    out.append("</svg>")
    return Markup("".join(out))


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
) -> Markup:
    """Horizontal bars, one per (category, value), in the order given."""
    if label_width is None:  # wide enough for the longest label (CJK glyphs are ~2x wider)
        longest = max((text_width(name) for name, _ in items), default=40)
        label_width = int(min(max(60, longest + 12), width * 0.6))
    gap = 6
    height = max(40, len(items) * (bar_height + gap) + gap)
    out = _svg_open(width, height, label)
    if not items:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS}" '
            f'font-size="13">{_e(empty_text)}</text></svg>'
        )
        return Markup("".join(out))
    top_value = max(v for _, v in items) or 1
    plot_w = width - label_width - 60
    for n, (name, value) in enumerate(items):
        y = gap + n * (bar_height + gap)
        w = max(1.0, plot_w * value / top_value) if value > 0 else 0
        out.append(
            f'<text x="{label_width - 6}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" '
            f'font-size="12" fill="{TEXT}">{_e(name)}</text>'
            f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{bar_height}" rx="2" '
            f'fill="{color}"><title>{_e(name)}: {_e(value_format(value))}</title></rect>'
            f'<text x="{label_width + w + 4:.1f}" y="{y + bar_height * 0.7:.1f}" font-size="11" '
            f'fill="{TEXT}">{_e(value_format(value))}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))


def grouped_bar_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    label: str = "",
    y_format: Callable[[float], str] = lambda v: f"{v:g}",
    width: int = 640,
    height: int = 240,
    empty_text: str = "No data.",
) -> Markup:
    """Vertical bars: one group per category, one bar per series."""
    left, right, top, bottom = 56, 110, 16, 36
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None]
    out = _svg_open(width, height, label)
    if not values or not categories:
        out.append(
            f'<text x="{width / 2}" y="{height / 2}" text-anchor="middle" fill="{AXIS}" '
            f'font-size="13">{_e(empty_text)}</text></svg>'
        )
        return Markup("".join(out))
    ticks = nice_ticks(min(0.0, min(values)), max(values))
    y_min, y_max = ticks[0], ticks[-1]

    def y_at(v: float) -> float:
        return top + plot_h - (v - y_min) / (y_max - y_min) * plot_h

    for tick in ticks:
        y = y_at(tick)
        out.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="11" '
            f'fill="{AXIS}">{_e(y_format(tick))}</text>'
        )
    group_w = plot_w / len(categories)
    bar_w = group_w * 0.8 / max(1, len(series))
    for c, name in enumerate(categories):
        x0 = left + c * group_w + group_w * 0.1
        for n, s in enumerate(series):
            v = s.values[c]
            if v is None:
                continue
            y = y_at(max(v, 0.0))
            h = abs(y_at(v) - y_at(0.0)) if y_min <= 0 else y_at(y_min) - y
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
            f'<rect x="{x}" y="{y}" width="10" height="10" fill="{s.color}"/>'
            f'<text x="{x + 14}" y="{y + 9}" font-size="11" fill="{TEXT}">{_e(s.name)}</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))
