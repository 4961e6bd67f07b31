"""A small synthetic order history for the CLV tests (tests/test_clv*.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def small_orders(n_customers: int, repeat: bool) -> pd.DataFrame:
    """`n_customers` first orders in 2024 (seed 7), a repeat order for every third if `repeat`."""
    rng = np.random.default_rng(7)
    first = pd.Timestamp("2024-01-01") + pd.to_timedelta(rng.integers(0, 200, n_customers), "D")
    orders = pd.DataFrame(
        {"customer_id": np.arange(n_customers), "order_date": first, "net_revenue": 10.0}
    )
    if repeat:
        again = orders.assign(order_date=orders["order_date"] + pd.Timedelta(days=9))
        orders = pd.concat([orders, again.iloc[::3]])
    return orders
