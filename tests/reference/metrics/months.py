"""The months of the KPI table and the shape of a KPI value: ``month_ends``, ``Month``,
``Kpis`` (value, numerator, denominator per KPI) and the small helpers that fill it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import pandas as pd


def month_ends(first: date, as_of: date) -> list[tuple[date, date, date, bool]]:
    """(month start, start(M) = previous month's last day, end(M), is_complete) for each
    calendar month from ``first``'s month to ``as_of``'s month."""
    out = []
    m = date(first.year, first.month, 1)
    while m <= as_of:
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        end = min(last, as_of)
        out.append((m, m - timedelta(days=1), end, last <= as_of))
        m = nxt
    return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


Kpis = dict[str, tuple[float | None, float | None, float | None]]


def _count(n: int) -> tuple[float, float, None]:
    """Counts: value and numerator are the count; no denominator."""
    return (float(n), float(n), None)


def _quantile(values: pd.Series, q: float) -> float | None:
    """DuckDB quantile_cont = linear interpolation between closest ranks = pandas'
    ``quantile(interpolation="linear")``."""
    values = values.dropna()
    return None if values.empty else float(values.quantile(q, interpolation="linear"))


@dataclass
class Month:
    month: pd.Timestamp  # first day of M
    start: pd.Timestamp  # start(M): last day of the previous month
    end: pd.Timestamp  # end(M): last day of M, or D
    is_complete: bool
