"""Benchmark of the nightly CLV fit on a synthetic customer base (not a test).

    python -m benchmarks.clv --customers 2000000

Simulates a BG/NBD + Gamma-Gamma customer base: first orders spread over ``--years`` years
before the as-of date (a growing business: more recent cohorts are larger), purchases at
day resolution, then times each stage of :func:`pipelines.models.clv.score_customers`
(summary, BG/NBD fit, Gamma-Gamma fit, scoring) and reports the peak resident memory and
the peak memory allocated by the fits and the scoring themselves (tracemalloc).
Run it in a fresh process: peak RSS is that of the whole process, data generation included.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc

import numpy as np
import pandas as pd

from pipelines.models import clv

AS_OF = pd.Timestamp("2025-06-30")


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def simulate_orders(
    n_customers: int,
    years: float,
    rng: np.random.Generator,
    r: float = 0.6,
    alpha: float = 8.0,
    a: float = 0.7,
    b: float = 3.0,
) -> pd.DataFrame:
    """Orders (customer_id, order_date, net_revenue) from a BG/NBD + Gamma-Gamma base."""
    horizon_days = int(years * 365)
    # growing acquisition: density of first-order age rises towards the as-of date
    age_days = np.floor(horizon_days * (1 - np.sqrt(rng.random(n_customers)))).astype(np.int64)
    rate = rng.gamma(r, 1 / alpha, n_customers) / 7  # purchases per day
    dropout = rng.beta(a, b, n_customers)
    mean_spend = 1 / rng.gamma(3.5, 1 / 150.0, n_customers)  # nu ~ Gamma(q, gamma)

    customer_chunks = [np.arange(n_customers)]
    day_chunks = [-age_days]
    clock = np.zeros(n_customers)
    active = np.arange(n_customers)
    first = True
    while active.size:
        # BG/NBD: after each *repeat* purchase the customer drops out with probability p
        if not first:
            active = active[rng.random(active.size) >= dropout[active]]
        first = False
        clock[active] += rng.exponential(1.0, active.size) / rate[active]
        active = active[clock[active] < age_days[active] + 1]
        customer_chunks.append(active)
        day_chunks.append(np.floor(clock[active]).astype(np.int64) - age_days[active])
    customers = np.concatenate(customer_chunks)
    days = np.concatenate(day_chunks)
    spend = rng.gamma(4.0, 1.0, customers.size) * mean_spend[customers] / 4.0
    return pd.DataFrame(
        {
            "customer_id": customers,
            "order_date": AS_OF + pd.to_timedelta(days, unit="D"),
            "net_revenue": np.round(spend, 2),
        }
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2_000_000)
    parser.add_argument("--years", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    def report(stage: str, seconds: float, extra: str = "") -> None:
        print(
            f"{stage:<22} {seconds:7.2f} s   peak RSS {peak_rss_mb():7.0f} MB  {extra}", flush=True
        )

    started = time.perf_counter()
    orders = simulate_orders(args.customers, args.years, rng)
    report("simulate orders", time.perf_counter() - started, f"{len(orders):,} orders")

    started = time.perf_counter()
    summary = clv.summarise_transactions(orders, "customer_id", "order_date", AS_OF, "net_revenue")
    del orders
    report("summarise", time.perf_counter() - started, f"{len(summary):,} customers")
    x = summary["frequency"].to_numpy(np.float64)
    tx, T = summary["recency"].to_numpy(), summary["T"].to_numpy()
    m = summary["monetary_value"].to_numpy()

    tracemalloc.start()  # numpy reports its buffers: the fits' own working memory
    bg = clv.fit_bgnbd(x, tx, T)
    report(
        "fit BG/NBD",
        bg.fit_seconds,
        f"{bg.n_rows:,} distinct rows, {bg.iterations} iterations, "
        f"converged={bg.converged}, {bg.params}",
    )
    gg = clv.fit_gamma_gamma(x, m)
    report(
        "fit Gamma-Gamma",
        gg.fit_seconds,
        f"{gg.n_rows:,} distinct rows, {gg.iterations} iterations, "
        f"converged={gg.converged}, {gg.params}",
    )
    if not (bg.converged and gg.converged):
        print("fit did not converge:", bg.warnings, gg.warnings, file=sys.stderr)
        return 1
    assert isinstance(bg.params, clv.BgNbdParams)
    assert isinstance(gg.params, clv.GammaGammaParams)

    started = time.perf_counter()
    (ux, utx, uT), _, inverse = clv.compress_rows(x, tx, T)
    alive = clv.p_alive(bg.params, ux, utx, uT)[inverse]
    purchases = clv.expected_purchases(bg.params, clv.HORIZON_365D_WEEKS, ux, utx, uT)[inverse]
    value = purchases * clv.expected_avg_spend(gg.params, x, m)
    report(
        "score",
        time.perf_counter() - started,
        f"mean p_alive {alive.mean():.3f}, mean clv_365d {value.mean():.1f}",
    )
    fit_peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    print(
        f"fit total (BG/NBD + Gamma-Gamma): {bg.fit_seconds + gg.fit_seconds:.2f} s; "
        f"memory allocated by fit + score at peak {fit_peak_mb:.0f} MB; "
        f"process peak RSS {peak_rss_mb():.0f} MB"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
