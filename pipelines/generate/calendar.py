"""Seasonality: Double 11, 618, Double 12, Spring Festival and weekends."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

#: Chinese New Year's day (Spring Festival) by year.
SPRING_FESTIVAL: dict[int, date] = {
    2019: date(2019, 2, 5), 2020: date(2020, 1, 25), 2021: date(2021, 2, 12),
    2022: date(2022, 2, 1), 2023: date(2023, 1, 22), 2024: date(2024, 2, 10),
    2025: date(2025, 1, 29), 2026: date(2026, 2, 17), 2027: date(2027, 2, 6),
    2028: date(2028, 1, 26), 2029: date(2029, 2, 13), 2030: date(2030, 2, 3),
}  # fmt: skip


def order_season(day: date) -> float:
    """Multiplier of the purchase rate on `day` (1.0 = an ordinary weekday)."""
    m = 1.15 if day.weekday() >= 5 else 1.0
    md = (day.month, day.day)
    if md == (11, 11):
        m *= 6.0
    elif (11, 1) <= md <= (11, 10):
        m *= 1.4
    elif md == (11, 12):
        m *= 1.6
    elif (10, 20) <= md <= (10, 31):
        m *= 0.85  # customers wait for the Double 11 pre-sale
    elif md == (6, 18):
        m *= 4.0
    elif (6, 1) <= md <= (6, 17):
        m *= 1.3
    elif md == (12, 12):
        m *= 2.0
    sf = SPRING_FESTIVAL.get(day.year)
    if sf is not None:
        offset = (day - sf).days
        if -10 <= offset <= -1:
            m *= 0.6  # couriers stop before the holiday
        elif 0 <= offset <= 6:
            m *= 0.35
        elif 7 <= offset <= 14:
            m *= 0.7
    return m


def is_promo_day(day: date) -> bool:
    """Days with platform-wide discounts (Double 11 and 618 windows, Double 12)."""
    md = (day.month, day.day)
    return (11, 1) <= md <= (11, 12) or (6, 1) <= md <= (6, 18) or md == (12, 12)


def is_promo_push_day(day: date) -> bool:
    """Campaign push days before the big sales."""
    return (day.month, day.day) in {(6, 10), (11, 1), (12, 8)}


def season_array(t0: date, n_days: int) -> np.ndarray:
    return np.array([order_season(t0 + timedelta(k)) for k in range(n_days)])


def social_season_array(t0: date, n_days: int) -> np.ndarray:
    """Social activity follows sales peaks, damped."""
    return 1.0 + 0.35 * (season_array(t0, n_days) - 1.0)
