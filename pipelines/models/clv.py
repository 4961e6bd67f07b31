"""Churn and lifetime value: BG/NBD (purchases and dropout) and Gamma-Gamma (spend).

Our own maximum-likelihood implementation on numpy/scipy; docs/clv.md explains the model,
the conventions of the metric dictionary ("Churn and lifetime value model") and why we do
not use lifetimes or pymc-marketing.

Time is in weeks (days / 7). For each customer, with ``D`` the as-of date:

- ``frequency``: repeat purchase *days* (distinct order dates up to D, minus one);
- ``recency``: weeks from the first to the last order date;
- ``T``: weeks from the first order date to D;
- ``monetary_value``: mean net revenue per repeat purchase day (the first day excluded,
  0 for customers without repeat purchases) -- the Gamma-Gamma convention.

This is also exactly the data preparation of Fader, Hardie & Lee for CDNOW (several
transactions of one customer on one day count as one purchase, whose value is their sum);
the test suite checks it against their published summary.

The likelihoods are evaluated on *compressed* data: identical (frequency, recency, T) rows
become one row with a weight, so a nightly fit on millions of customers costs about as much
as a fit on their distinct histories. Special functions are evaluated once per distinct
frequency.

Nothing here raises on bad data: fits return a result whose ``converged`` is False with a
readable reason in ``warnings``. Scoring never leaves the customers without scores: when a
fit fails, :func:`score_summary` scores with the last accepted run's parameters, else with
:func:`empirical_scores`, and says so (a :class:`ModelWarning`, ``fit_status`` and the
methods in run_info); :func:`usable` tells whether a run's own fits were accepted.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

DAYS_PER_WEEK = 7.0
HORIZON_90D_WEEKS = 90 / DAYS_PER_WEEK
HORIZON_365D_WEEKS = 365 / DAYS_PER_WEEK
MIN_CUSTOMERS = 50
"""Below this many customers the model is not fitted (too little data for 4 parameters)."""
MIN_REPEAT_CUSTOMERS = 10
"""Below this many repeat buyers neither dropout nor spend can be estimated."""
MAXITER = 500
LOG_PARAM_BOUND = 15.0
"""Parameters are searched on log scale in [-15, 15], i.e. between 3e-7 and 3.3e6."""
SERIES_MAX_TERMS = 5000
A_NEAR_ONE = 1e-6
"""Within this distance of a = 1 expected purchases are interpolated (removable singularity)."""
RIDGE_MIN = 1e4
"""a and b above which a fit stopped on the ridge a, b -> inf may be accepted at the limit."""
RIDGE_GAIN = 1e-6
"""Largest mean log-likelihood per customer still to gain along that ridge."""
HIATUS_DAYS = 180
"""The empirical fallback's active window: an order in [D - 179, D] (metrics.md, active_as_of)."""
GRADIENT_TOLERANCE = 1e-5
"""Largest |d(mean log-likelihood)/d(log parameter)| accepted as a maximum."""

SCORE_COLUMNS = ["customer_id", "p_alive", "expected_purchases_90d", "clv_365d"]
BUCKETS = ["0", "1", "2", "3", "4", "5", "6", "7+"]

FloatArray = NDArray[np.float64]


class ModelWarning(UserWarning):
    """Issued by :func:`score_customers` when a run is not usable; the message lists the
    reasons (also kept in ``run_info["warnings"]``)."""


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD: purchase rate ~ Gamma(r, alpha) (alpha in weeks), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float


@dataclass
class FitResult:
    """The outcome of a fit. ``params`` is None when nothing was fitted."""

    params: BgNbdParams | GammaGammaParams | None
    log_likelihood: float
    converged: bool
    n_customers: int
    n_rows: int
    iterations: int
    fit_seconds: float
    warnings: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------------------
# Summary from transactions
# --------------------------------------------------------------------------------------


def _day_numbers(values: pd.Series, column: str) -> NDArray[np.int64]:
    """Days since 1970-01-01 for a column of dates (NaT -> int64 min, filtered by caller)."""
    stamps = pd.to_datetime(values)
    if getattr(stamps.dt, "tz", None) is not None:
        raise ValueError(
            f"column {column!r} is timezone-aware; pass business-timezone dates "
            "(e.g. order_date), not timestamps"
        )
    return stamps.to_numpy().astype("datetime64[D]").astype(np.int64)


def _as_of_day(as_of: Any) -> int:
    return int(np.datetime64(pd.Timestamp(as_of).date(), "D").astype(np.int64))


def summarise_transactions(
    df: pd.DataFrame,
    customer_col: str,
    date_col: str,
    as_of: Any,
    monetary_col: str | None = None,
) -> pd.DataFrame:
    """One row per customer with frequency, recency, T (weeks) and monetary_value.

    Only orders dated on or before ``as_of`` count; rows without a customer or a date are
    ignored. Several orders on one day are one purchase (their values summed). The index is
    the customer id (named ``customer_col``); ``monetary_value`` is present when
    ``monetary_col`` is given and is the mean value of the repeat purchase days (0 without
    repeat purchases), as in Fader, Hardie & Lee's Gamma-Gamma model.
    """
    as_of_day = _as_of_day(as_of)
    keep = df[customer_col].notna().to_numpy() & df[date_col].notna().to_numpy()
    frame = pd.DataFrame(
        {
            "customer": df[customer_col].to_numpy()[keep],
            "day": _day_numbers(df[date_col][keep], date_col),
        }
    )
    if monetary_col is not None:
        frame["value"] = pd.to_numeric(df[monetary_col][keep]).to_numpy(dtype=np.float64)
    frame = frame[frame["day"] <= as_of_day]

    by_day = frame.groupby(["customer", "day"], sort=True)
    days = (
        by_day["value"].sum().reset_index()
        if monetary_col is not None
        else by_day.size().rename("n").reset_index()
    )
    per_customer = days.groupby("customer", sort=True)
    first_day = per_customer["day"].transform("min").to_numpy()
    out = pd.DataFrame(
        {
            "frequency": per_customer.size() - 1,
            "recency": (per_customer["day"].max() - per_customer["day"].min()) / DAYS_PER_WEEK,
            "T": (as_of_day - per_customer["day"].min()) / DAYS_PER_WEEK,
        }
    )
    out["frequency"] = out["frequency"].astype(np.int64)
    if monetary_col is not None:
        repeat_value = days["value"].where(days["day"].to_numpy() != first_day, 0.0)
        repeat_sum = repeat_value.groupby(days["customer"], sort=True).sum()
        freq = out["frequency"].to_numpy()
        out["monetary_value"] = np.where(freq > 0, repeat_sum.to_numpy() / np.maximum(freq, 1), 0.0)
    out.index.name = customer_col
    return out


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def compress_rows(*columns: ArrayLike) -> tuple[list[FloatArray], FloatArray, NDArray[np.intp]]:
    """Distinct rows of ``columns`` with their counts and each input row's distinct index."""
    frame = pd.DataFrame({f"c{i}": np.asarray(col) for i, col in enumerate(columns)})
    inverse = frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()
    counts = np.bincount(inverse).astype(np.float64)
    representative = np.empty(counts.size, dtype=np.intp)
    representative[inverse] = np.arange(inverse.size)
    distinct = [np.asarray(col, dtype=np.float64)[representative] for col in columns]
    return distinct, counts, inverse


def _as_float(values: ArrayLike) -> FloatArray:
    return np.atleast_1d(np.asarray(values, dtype=np.float64))


def _check_bgnbd_inputs(x: FloatArray, tx: FloatArray, T: FloatArray) -> list[str]:
    problems = []
    n_bad = int((~np.isfinite(x) | ~np.isfinite(tx) | ~np.isfinite(T)).sum())
    if n_bad:
        problems.append(f"{n_bad} customers have NaN or infinite frequency/recency/T")
        return problems
    if (x < 0).any() or (x != np.round(x)).any():
        problems.append("frequency must be a whole number >= 0")
    if (tx < 0).any() or (tx > T + 1e-9).any():
        problems.append("recency must lie in [0, T]")
    if ((x == 0) & (tx != 0)).any():
        problems.append("customers with frequency 0 must have recency 0")
    return problems


def _not_fitted(problems: list[str], n_customers: int, started: float) -> FitResult:
    return FitResult(
        params=None,
        log_likelihood=float("nan"),
        converged=False,
        n_customers=n_customers,
        n_rows=0,
        iterations=0,
        fit_seconds=time.perf_counter() - started,
        warnings=problems,
    )


def _minimise(
    objective: Any, n_params: int, maxiter: int
) -> tuple[FloatArray, float, bool, int, list[str]]:
    """L-BFGS-B on log-parameters from 1; converged means a small gradient inside the bounds."""
    bounds = [(-LOG_PARAM_BOUND, LOG_PARAM_BOUND)] * n_params
    with np.errstate(all="ignore"):
        res = optimize.minimize(
            objective,
            np.zeros(n_params),
            jac=True,
            method="L-BFGS-B",
            bounds=bounds,
            options={"maxiter": maxiter, "ftol": 1e-15, "gtol": 1e-10},
        )
        value, grad = objective(res.x)
    problems = []
    if not np.isfinite(value) or not np.all(np.isfinite(grad)):
        problems.append("the log-likelihood is not finite at the optimiser's end point")
    elif np.max(np.abs(grad)) > GRADIENT_TOLERANCE:
        reason = "iteration limit reached" if res.nit >= maxiter else str(res.message)
        problems.append(
            f"optimiser did not converge after {res.nit} iterations ({reason}); "
            f"largest gradient {np.max(np.abs(grad)):.2g}"
        )
    at_bound = np.abs(res.x) >= LOG_PARAM_BOUND - 1e-6
    if at_bound.any():
        problems.append("a parameter reached its search bound (the data do not identify the model)")
    return res.x, float(value), not problems, int(res.nit), problems


# --------------------------------------------------------------------------------------
# BG/NBD
# --------------------------------------------------------------------------------------


class _BgNbdData:
    """Compressed (x, t_x, T, weight) with the distinct frequencies indexed once."""

    def __init__(self, x: FloatArray, tx: FloatArray, T: FloatArray, w: FloatArray) -> None:
        self.x, self.tx, self.T, self.w = x, tx, T, w
        self.ux, self.xi = np.unique(x, return_inverse=True)
        self.wx = np.bincount(self.xi, weights=w, minlength=self.ux.size)
        self.total = float(w.sum())
        self.repeat = self.x > 0
        self.ix = self.ux.astype(np.intp)
        self.j = np.arange(max(int(self.ux.max(initial=0)), 1), dtype=np.float64)


def _prefix_sums(terms: FloatArray) -> FloatArray:
    """[0, t0, t0 + t1, ...]: entry k is the sum of the first k terms."""
    return np.concatenate(([0.0], np.cumsum(terms)))


def _bgnbd_terms(log_params: FloatArray, d: _BgNbdData) -> tuple[float, FloatArray]:
    """Total log-likelihood and its gradient with respect to the log-parameters.

    ln L = ln G(r+x) - ln G(r) + r ln(alpha) - ln B(a,b)
           + logsumexp(ln B(a, b+x) - (r+x) ln(alpha+T),
                       [x>0] ln B(a+1, b+x-1) - (r+x) ln(alpha+t_x))      (FHL 2005, eq. 6)

    evaluated without differences of large numbers, so that it stays exact when the
    parameters are huge (a, b ~ 1e6: an almost homogeneous dropout probability; r, alpha
    ~ 1e6: an almost homogeneous purchase rate):

    - ln G(r+x) - ln G(r) = sum_{j<x} ln(r+j);
    - ln B(a, b+x) - ln B(a,b) = sum_{j<x} ln(1 - a/(a+b+j)), and
      ln B(a+1, b+x-1) - ln B(a,b) = ln(a/(a+b+x-1)) + sum_{j<x-1} ln(1 - a/(a+b+j));
    - r ln(alpha) - (r+x) ln(alpha+T) = -r ln(1 + T/alpha) - x ln(alpha+T).

    The sums over j are prefix sums up to the largest frequency, evaluated once per call.
    """
    r, alpha, a, b = np.exp(log_params)
    ux, xi, ix, j = d.ux, d.xi, d.ix, d.j
    has_repeat_x = ux > 0
    ix1 = np.maximum(ix - 1, 0)  # x - 1, safe where x = 0
    abj = a + b + j

    log_rising_r = _prefix_sums(np.log(r + j))[ix]  # ln G(r+x) - ln G(r)
    # ln B(a, b+k) - ln B(a, b) at k: terms ln((b+j)/(a+b+j)), each in its exact form
    with np.errstate(divide="ignore"):
        keep = np.where(a < b + j, np.log1p(-a / abj), np.log(b + j) - np.log(abj))
    log_keep = _prefix_sums(keep)
    beta1_x = log_keep[ix]
    beta2_x = np.where(
        has_repeat_x, np.log(a) - np.log(np.where(has_repeat_x, a + b + ux - 1, 1.0)), -np.inf
    ) + np.where(has_repeat_x, log_keep[ix1], 0.0)

    log_aT = np.log(alpha + d.T)
    log_atx = np.log(alpha + d.tx)
    u1 = beta1_x[xi] - r * np.log1p(d.T / alpha) - d.x * log_aT
    u2 = beta2_x[xi] - r * np.log1p(d.tx / alpha) - d.x * log_atx
    mix = np.logaddexp(u1, u2)
    loglik = float(d.wx @ log_rising_r + d.w @ mix)

    pi2 = np.exp(u2 - mix)  # posterior weight of "dropped out after the last purchase"
    pi1 = 1.0 - pi2
    wpi1 = d.w * pi1
    wpi2 = d.w * pi2
    s1 = np.bincount(xi, weights=wpi1, minlength=ux.size)
    s2 = np.bincount(xi, weights=wpi2, minlength=ux.size)

    # derivatives of the prefix sums: d/da and d/db of ln B(a, b+k) - ln B(a, b)
    inv_abj = _prefix_sums(1.0 / abj)
    shrink = _prefix_sums(a / ((b + j) * abj))
    last = np.where(has_repeat_x, 1.0 / (a + b + ux - 1), 0.0)
    g_r = d.wx @ _prefix_sums(1.0 / (r + j))[ix] - (
        wpi1 @ np.log1p(d.T / alpha) + wpi2 @ np.log1p(d.tx / alpha)
    )
    g_alpha = wpi1 @ (r * d.T / (alpha * (alpha + d.T)) - d.x / (alpha + d.T)) + wpi2 @ (
        r * d.tx / (alpha * (alpha + d.tx)) - d.x / (alpha + d.tx)
    )
    g_a = s1 @ -inv_abj[ix] + s2 @ np.where(has_repeat_x, 1.0 / a - last - inv_abj[ix1], 0.0)
    g_b = s1 @ shrink[ix] + s2 @ np.where(has_repeat_x, -last + shrink[ix1], 0.0)
    grad = np.array([g_r * r, g_alpha * alpha, g_a * a, g_b * b])
    return loglik, grad


def bgnbd_log_likelihood(
    params: BgNbdParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
) -> float:
    """Total BG/NBD log-likelihood of the data under ``params``."""
    x, tx, TT = _as_float(frequency), _as_float(recency), _as_float(T)
    w = np.ones_like(x) if weights is None else _as_float(weights)
    log_params = np.log([params.r, params.alpha, params.a, params.b])
    with np.errstate(all="ignore"):
        return _bgnbd_terms(log_params, _BgNbdData(x, tx, TT, w))[0]


def fit_bgnbd(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    min_customers: int = MIN_CUSTOMERS,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    maxiter: int = MAXITER,
) -> FitResult:
    """Maximum-likelihood BG/NBD fit (time unit: that of recency and T, weeks here).

    Identical rows are compressed into weights before fitting. Never raises on bad data:
    too few customers or repeat buyers, invalid or non-finite input, or an optimiser that
    does not converge give ``converged=False`` and a reason in ``warnings``.
    """
    started = time.perf_counter()
    x, tx, TT = _as_float(frequency), _as_float(recency), _as_float(T)
    w = np.ones_like(x) if weights is None else _as_float(weights)
    n_customers = int(round(w.sum())) if np.isfinite(w).all() else 0

    def failed(problems: list[str]) -> FitResult:
        return _not_fitted(problems, n_customers, started)

    if not (x.shape == tx.shape == TT.shape == w.shape):
        return failed(["frequency, recency, T and weights differ in length"])
    problems = _check_bgnbd_inputs(x, tx, TT)
    if not np.isfinite(w).all() or (w < 0).any():
        problems.append("weights must be finite and >= 0")
    if problems:
        return failed(problems)
    n_repeat = int(round(w[x > 0].sum()))
    if n_customers < min_customers:
        return failed([f"only {n_customers} customers (need {min_customers}); model not fitted"])
    if n_repeat < min_repeat_customers:
        return failed(
            [
                f"only {n_repeat} repeat buyers (need {min_repeat_customers}); "
                "dropout cannot be estimated, model not fitted"
            ]
        )

    (ux, utx, uT), counts, inverse = compress_rows(x, tx, TT)
    uw = np.bincount(inverse, weights=w) if weights is not None else counts
    data = _BgNbdData(ux, utx, uT, uw)

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        loglik, grad = _bgnbd_terms(log_params, data)
        return -loglik / data.total, -grad / data.total

    log_params, value, converged, nit, problems = _minimise(objective, 4, maxiter)
    r, alpha, a, b = (float(v) for v in np.exp(log_params))
    if not converged and _at_homogeneous_dropout_limit(objective, log_params):
        converged = True
        problems = [
            f"dropout probability almost the same for every customer (a = {a:.3g}, "
            f"b = {b:.3g}, a/(a+b) = {a / (a + b):.4g}): the fit is at the model's limit "
            "a, b -> inf and is accepted"
        ]
    return FitResult(
        params=BgNbdParams(r, alpha, a, b),
        log_likelihood=-value * data.total,
        converged=converged,
        n_customers=n_customers,
        n_rows=ux.size,
        iterations=nit,
        fit_seconds=time.perf_counter() - started,
        warnings=problems,
    )


def _at_homogeneous_dropout_limit(objective: Any, log_params: FloatArray) -> bool:
    """True when the optimiser stopped on the ridge a, b -> inf at a fixed a/(a+b): every
    customer drops out with the same probability, the likelihood still rises along the
    ridge, so the optimiser runs into its bound or stops short of the gradient tolerance.

    The fit is then at the model's limit and its predictions are those of the limit (to
    O(1/(a+b))): accepted when a and b are both >= RIDGE_MIN, the gradient is within
    tolerance in r, alpha and the ratio a/b, and going 1000 times further along the ridge
    gains at most RIDGE_GAIN in mean log-likelihood per customer.
    """
    a, b = np.exp(log_params[2:])
    if min(a, b) < RIDGE_MIN:
        return False
    with np.errstate(all="ignore"):
        value, grad = objective(log_params)
        far_value, _ = objective(log_params + np.array([0.0, 0.0, 1.0, 1.0]) * np.log(1e3))
    g_r, g_alpha, g_a, g_b = grad
    steady = max(abs(g_r), abs(g_alpha), abs(g_a - g_b)) <= GRADIENT_TOLERANCE
    return bool(steady and np.isfinite(far_value) and value - far_value <= RIDGE_GAIN)


def _log_dropout_odds(
    params: BgNbdParams, x: FloatArray, tx: FloatArray, T: FloatArray
) -> FloatArray:
    """ln of P(dropped out) / P(alive); -inf for customers without repeat purchases."""
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    with np.errstate(divide="ignore", invalid="ignore"):
        odds = (
            np.log(a)
            - np.log(np.where(x > 0, b + x - 1, 1.0))
            + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
        )
    return np.where(x > 0, odds, -np.inf)


def p_alive(
    params: BgNbdParams, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """P(customer still active at T | x, t_x, T) (FHL 2005, eq. 11; 1 without repeat purchases)."""
    x, tx, TT = _as_float(frequency), _as_float(recency), _as_float(T)
    return special.expit(-_log_dropout_odds(params, x, tx, TT))


def _hyp2f1(A: float, B: float, C: FloatArray, z: FloatArray) -> FloatArray:
    """Gauss 2F1(A, B; C; z) for 0 <= z < 1: scipy, and where scipy gives no finite value
    (e.g. the huge r of an almost homogeneous purchase rate) the series summed directly.
    Entries whose series does not settle stay NaN; the caller refuses them."""
    C, z = np.broadcast_arrays(np.asarray(C, dtype=np.float64), np.asarray(z, dtype=np.float64))
    out = np.array(special.hyp2f1(A, B, C, z), dtype=np.float64)
    todo = np.flatnonzero(~np.isfinite(out))
    if todo.size:
        cc, zz = C.ravel()[todo], z.ravel()[todo]
        term = np.ones_like(zz)
        total = np.ones_like(zz)
        settled = np.zeros(zz.size, dtype=bool)
        with np.errstate(all="ignore"):
            for n in range(SERIES_MAX_TERMS):
                term = term * (A + n) * (B + n) / ((cc + n) * (n + 1)) * zz
                total = total + term
                settled = np.abs(term) <= 1e-16 * np.abs(total)
                if settled.all():
                    break
        out.ravel()[todo] = np.where(settled & np.isfinite(total), total, np.nan)
    return out


def _unconditional_purchases(
    r: float, alpha: float, a: float, b: float, t: float, x: FloatArray, T: FloatArray
) -> FloatArray:
    """Expected purchases in (T, T + t] of a customer alive at T (FHL 2005, eq. 10 without
    its P(alive) factor): (a+b+x-1)/(a-1) (1 - Q), with

        Q = ((alpha+T)/(alpha+T+t))^(r+x) 2F1(r+x, b+x; a+b+x-1; z),   z = t/(alpha+T+t).

    Q is evaluated in log space from scipy's hyp2f1 in this original form, whose series
    has positive terms whenever a+b+x-1 > 0 and stays finite when a and b are huge (an
    almost homogeneous dropout probability, a, b ~ 1e5-1e6); 1 - Q is then -expm1(ln Q),
    exact even when Q is close to 1. Where that form gives no finite value (a+b+x-1 <= 0,
    i.e. x = 0 with a+b < 1; or overflow) Euler's transformation
    Q = (1-z)^(a-1) 2F1(a+b-1-r, a-1; a+b+x-1; z) is used, and where scipy fails on that
    too (r and alpha ~ 1e5-1e6: an almost homogeneous purchase rate) its series is summed
    directly. Entries that none of these evaluates stay NaN; the caller refuses them.
    """
    z = t / (alpha + T + t)
    c = a + b + x - 1
    with np.errstate(all="ignore"):
        hyp = np.asarray(special.hyp2f1(r + x, b + x, c, z), dtype=np.float64)
        log_q = (r + x) * np.log1p(-z) + np.log(hyp)
        direct = (c > 0) & (hyp > 0) & np.isfinite(log_q)
        bracket = -np.expm1(log_q)
        todo = ~direct
        if todo.any():
            zz, cc = z[todo], c[todo]
            euler = _hyp2f1(a + b - 1 - r, a - 1, cc, zz)
            power = (a - 1) * np.log1p(-zz)
            bracket[todo] = -np.expm1(power) - np.exp(power) * (euler - 1)
        return c / (a - 1) * bracket


def expected_purchases(
    params: BgNbdParams, t: float, frequency: ArrayLike, recency: ArrayLike, T: ArrayLike
) -> FloatArray:
    """Expected purchases in (T, T + t] given the history (FHL 2005, eq. 10): the expected
    purchases of a customer alive at T (see :func:`_unconditional_purchases`) times
    :func:`p_alive`.

    a = 1 is a removable singularity of the closed form ((a+b+x-1)/(a-1) times a bracket
    that vanishes at a = 1): within 1e-6 of it the value is the mean of those at 1 -/+ 1e-6
    (error O(1e-12), against a cancellation error of ~1e-10 there).
    """
    x, tx, TT = np.broadcast_arrays(_as_float(frequency), _as_float(recency), _as_float(T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) < A_NEAR_ONE:
        unconditional = 0.5 * (
            _unconditional_purchases(r, alpha, 1.0 - A_NEAR_ONE, b, t, x, TT)
            + _unconditional_purchases(r, alpha, 1.0 + A_NEAR_ONE, b, t, x, TT)
        )
    else:
        unconditional = _unconditional_purchases(r, alpha, a, b, t, x, TT)
    return unconditional * special.expit(-_log_dropout_odds(params, x, tx, TT))


# --------------------------------------------------------------------------------------
# Gamma-Gamma
# --------------------------------------------------------------------------------------


def _gamma_gamma_terms(
    log_params: FloatArray, ux: FloatArray, xi: NDArray[np.intp], m: FloatArray, w: FloatArray
) -> tuple[float, FloatArray]:
    """Total log-likelihood of the mean spends m of x repeat purchases, and its gradient
    with respect to the log-parameters (Fader, Hardie & Lee 2005b, "RFM and CLV"):

    ln f = ln G(px+q) - ln G(px) - ln G(q) + q ln(gamma) + (px-1) ln(m) + px ln(x)
           - (px+q) ln(gamma + x m)
    """
    p, q, gamma = np.exp(log_params)
    px = p * ux
    const_x = special.gammaln(px + q) - special.gammaln(px) - special.gammaln(q) + px * np.log(ux)
    x = ux[xi]
    log_m = np.log(m)
    log_gxm = np.log(gamma + x * m)
    pxq = p * x + q
    loglik = float(
        w @ const_x[xi] + q * np.log(gamma) * w.sum() + w @ ((p * x - 1) * log_m - pxq * log_gxm)
    )
    dpsi_x = special.digamma(px + q)
    g_p = w @ (x * ((dpsi_x - special.digamma(px) + np.log(ux))[xi] + log_m - log_gxm))
    g_q = w @ ((dpsi_x - special.digamma(q))[xi] - log_gxm) + np.log(gamma) * w.sum()
    g_gamma = q / gamma * w.sum() - w @ (pxq / (gamma + x * m))
    return loglik, np.array([g_p * p, g_q * q, g_gamma * gamma])


def fit_gamma_gamma(
    frequency: ArrayLike,
    monetary_value: ArrayLike,
    weights: ArrayLike | None = None,
    *,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    maxiter: int = MAXITER,
) -> FitResult:
    """Maximum-likelihood Gamma-Gamma fit on the repeat buyers with positive mean spend.

    Customers without repeat purchases carry no spend information and are left out, as
    are repeat buyers whose mean net revenue is <= 0 (refunds): the model needs positive
    spends (a warning counts them). ``n_customers`` is the number of customers used.
    """
    started = time.perf_counter()
    x, m = _as_float(frequency), _as_float(monetary_value)
    w = np.ones_like(x) if weights is None else _as_float(weights)
    problems: list[str] = []
    if not (x.shape == m.shape == w.shape):
        problems.append("frequency, monetary_value and weights differ in length")
    elif not (np.isfinite(x).all() and np.isfinite(m).all() and np.isfinite(w).all()):
        n_bad = int((~np.isfinite(x) | ~np.isfinite(m) | ~np.isfinite(w)).sum())
        problems.append(f"{n_bad} customers have NaN or infinite frequency/monetary_value")
    if problems:
        return _not_fitted(problems, 0, started)

    notes = []
    repeat = x > 0
    non_positive = repeat & (m <= 0)
    if non_positive.any():
        notes.append(
            f"{int(round(w[non_positive].sum()))} repeat buyers with mean spend <= 0 left out "
            "of the spend fit"
        )
    use = repeat & (m > 0) & (w > 0)
    n_used = int(round(w[use].sum()))
    if n_used < min_repeat_customers:
        reason = (
            f"only {n_used} repeat buyers with positive spend (need {min_repeat_customers}); "
            "spend model not fitted"
        )
        return _not_fitted([*notes, reason], n_used, started)

    (ux_rows, um), counts, inverse = compress_rows(x[use], m[use])
    uw = np.bincount(inverse, weights=w[use]) if weights is not None else counts
    ux, xi = np.unique(ux_rows, return_inverse=True)
    total = float(uw.sum())

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        loglik, grad = _gamma_gamma_terms(log_params, ux, xi, um, uw)
        return -loglik / total, -grad / total

    log_params, value, converged, nit, problems = _minimise(objective, 3, maxiter)
    p, q, gamma = (float(v) for v in np.exp(log_params))
    if converged and q <= 1:
        converged = False
        problems.append(f"q = {q:.3g} <= 1: the fitted spend distribution has no finite mean")
    return FitResult(
        params=GammaGammaParams(p, q, gamma),
        log_likelihood=-value * total,
        converged=converged,
        n_customers=n_used,
        n_rows=um.size,
        iterations=nit,
        fit_seconds=time.perf_counter() - started,
        warnings=[*notes, *problems],
    )


def expected_avg_spend(
    params: GammaGammaParams, frequency: ArrayLike, monetary_value: ArrayLike
) -> FloatArray:
    """E[spend per purchase | x, mean spend] = p (gamma + x m) / (p x + q - 1).

    Customers without repeat purchases get the population mean p gamma / (q - 1); a
    non-positive mean spend (refunds) is taken as 0, shrinking towards the population.
    """
    x = _as_float(frequency)
    m = np.clip(_as_float(monetary_value), 0.0, None)
    m = np.where(x > 0, m, 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    return p * (gamma + x * m) / (p * x + q - 1)


def clv(
    bgnbd: BgNbdParams,
    gamma_gamma: GammaGammaParams,
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    horizon_weeks: float = HORIZON_365D_WEEKS,
) -> FloatArray:
    """Expected net revenue over the next ``horizon_weeks``, undiscounted:
    expected purchases in the horizon x expected spend per purchase."""
    return expected_purchases(bgnbd, horizon_weeks, frequency, recency, T) * expected_avg_spend(
        gamma_gamma, frequency, monetary_value
    )


# --------------------------------------------------------------------------------------
# Nightly scoring
# --------------------------------------------------------------------------------------


def usable(run_info: Mapping[str, Any]) -> bool:
    """True when a run's own fits were accepted: both converged, finite positive parameters
    and finite predictions for every customer. Such a run's parameters are the fallback of
    later runs whose fit fails (:func:`score_summary`, ``previous``)."""
    if not run_info.get("converged", False):
        return False
    names = ("r", "alpha", "a", "b", "gg_p", "gg_q", "gg_gamma", "log_likelihood")
    values = [run_info.get(name) for name in names]
    return all(v is not None and np.isfinite(v) for v in values) and all(v > 0 for v in values[:-1])


def _empty_scores() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c == "customer_id" else np.float64) for c in SCORE_COLUMNS}
    )


def score_customers(
    transactions: pd.DataFrame,
    as_of: Any,
    *,
    customer_col: str = "customer_id",
    date_col: str = "order_date",
    monetary_col: str = "net_revenue",
    previous: Mapping[str, Any] | None = None,
    min_customers: int = MIN_CUSTOMERS,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    maxiter: int = MAXITER,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Fit BG/NBD and Gamma-Gamma on all orders up to ``as_of`` and score every customer.

    ``transactions``: one row per order (customer, business date, net revenue). Returns
    (scores, run_info). scores: customer_id, p_alive, expected_purchases_90d, clv_365d for
    every customer with an order up to ``as_of``, never NaN: when a fit fails (run_info
    ``fit_status`` "failed", a :class:`ModelWarning`) the scores come from the last
    accepted run's parameters (``previous``, see :func:`score_summary`) or else from
    :func:`empirical_scores`; ``purchase_method`` and ``spend_method`` say which ("fit",
    "previous_fit", "empirical"). run_info also holds the parameters of today's fits
    (r, alpha, a, b; gg_p, gg_q, gg_gamma), BG/NBD log_likelihood, gg_log_likelihood,
    n_customers, n_repeat, fit_seconds, converged (= fits accepted, :func:`usable`),
    params_as_of (the date of the previous parameters used, if any) and warnings.
    """
    started = time.perf_counter()
    notes: list[str] = []
    n_missing = int((transactions[customer_col].isna() | transactions[date_col].isna()).sum())
    if n_missing:
        notes.append(f"{n_missing} orders without customer or date ignored")
    values = pd.to_numeric(transactions[monetary_col])
    bad_value = ~np.isfinite(values.to_numpy(dtype=np.float64, na_value=np.nan))
    if bad_value.any():
        notes.append(f"{int(bad_value.sum())} orders with NaN/infinite {monetary_col} counted as 0")
        transactions = transactions.assign(**{monetary_col: values.where(~bad_value, 0.0)})

    summary = summarise_transactions(transactions, customer_col, date_col, as_of, monetary_col)
    return score_summary(
        summary,
        as_of,
        notes=notes,
        previous=previous,
        min_customers=min_customers,
        min_repeat_customers=min_repeat_customers,
        maxiter=maxiter,
        started=started,
    )


def empirical_scores(
    frequency: ArrayLike,
    recency: ArrayLike,
    T: ArrayLike,
    monetary_value: ArrayLike,
    hiatus_days: int = HIATUS_DAYS,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """The fallback without fitted parameters (docs/clv.md, "When the fit fails"):
    p_alive, expected purchases in 90 and 365 days, expected spend per purchase.

    - p_alive: 1 when the last purchase day is within ``hiatus_days`` of D (the active
      window of the metric dictionary: an order in [D - 179, D]), else 0 (the hiatus
      heuristic of Wuebben & von Wangenheim 2008);
    - expected purchases in t weeks: p_alive x t x the customer's historic rate of repeat
      purchase days, x / max(T, hiatus_days / 7) (a history shorter than the window counts
      as the whole window, so two purchases in two days do not project dozens);
    - spend per purchase: the customer's mean repeat spend (<= 0 taken as 0); customers
      without repeat purchases get the mean value of all repeat purchase days.
    """
    x, tx, TT = _as_float(frequency), _as_float(recency), _as_float(T)
    m = np.clip(_as_float(monetary_value), 0.0, None)
    days_since_last = np.round((TT - tx) * DAYS_PER_WEEK)
    alive = (days_since_last < hiatus_days).astype(np.float64)
    rate = x / np.maximum(TT, hiatus_days / DAYS_PER_WEEK)
    repeat = x > 0
    mean_spend = float(x[repeat] @ m[repeat] / x[repeat].sum()) if repeat.any() else 0.0
    spend = np.where(repeat, m, mean_spend)
    return (
        alive,
        alive * rate * HORIZON_90D_WEEKS,
        alive * rate * HORIZON_365D_WEEKS,
        spend,
    )


def _previous_params(
    previous: Mapping[str, Any] | None,
) -> tuple[BgNbdParams | None, GammaGammaParams | None]:
    if previous is None or not usable({**previous, "converged": True, "log_likelihood": 0.0}):
        return None, None
    return (
        BgNbdParams(*(float(previous[k]) for k in ("r", "alpha", "a", "b"))),
        GammaGammaParams(*(float(previous[k]) for k in ("gg_p", "gg_q", "gg_gamma"))),
    )


def _bgnbd_scores(
    params: BgNbdParams, x: FloatArray, tx: FloatArray, T: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """p_alive, expected purchases in 90 and 365 days, evaluated once per distinct row."""
    (ux, utx, uT), _, inverse = compress_rows(x, tx, T)
    alive = p_alive(params, ux, utx, uT)[inverse]
    in_90d = expected_purchases(params, HORIZON_90D_WEEKS, ux, utx, uT)[inverse]
    in_365d = expected_purchases(params, HORIZON_365D_WEEKS, ux, utx, uT)[inverse]
    return alive, in_90d, in_365d


def _n_not_finite(*columns: FloatArray) -> int:
    return int((~np.isfinite(np.column_stack(columns))).any(axis=1).sum())


def score_summary(
    summary: pd.DataFrame,
    as_of: Any,
    *,
    notes: list[str] | None = None,
    previous: Mapping[str, Any] | None = None,
    min_customers: int = MIN_CUSTOMERS,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
    maxiter: int = MAXITER,
    started: float | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """:func:`score_customers` from a per-customer summary already made, in the shape of
    :func:`summarise_transactions` (index: the customer id; frequency, recency, T,
    monetary_value). The warehouse asset computes that summary in DuckDB
    (pipelines/models/assets.py) instead of loading every order into pandas.

    ``previous``: the parameters of the last accepted run (keys r, alpha, a, b, gg_p,
    gg_q, gg_gamma, as_of), the first fallback when a fit fails."""
    started = time.perf_counter() if started is None else started
    notes = [] if notes is None else notes
    x = summary["frequency"].to_numpy(np.float64)
    tx = summary["recency"].to_numpy(np.float64)
    TT = summary["T"].to_numpy(np.float64)
    m = summary["monetary_value"].to_numpy(np.float64)

    bg = fit_bgnbd(
        x,
        tx,
        TT,
        min_customers=min_customers,
        min_repeat_customers=min_repeat_customers,
        maxiter=maxiter,
    )
    gg = fit_gamma_gamma(x, m, min_repeat_customers=min_repeat_customers, maxiter=maxiter)
    run_info: dict[str, Any] = {
        "as_of": pd.Timestamp(as_of).date(),
        "r": None,
        "alpha": None,
        "a": None,
        "b": None,
        "gg_p": None,
        "gg_q": None,
        "gg_gamma": None,
        "log_likelihood": None,
        "gg_log_likelihood": None,
        "n_customers": int(len(summary)),
        "n_repeat": int((x > 0).sum()),
        "fit_seconds": 0.0,
        "converged": False,
        "fit_status": "failed",
        "purchase_method": None,
        "spend_method": None,
        "params_as_of": None,
        "warnings": [*notes, *bg.warnings, *gg.warnings],
    }
    if isinstance(bg.params, BgNbdParams):
        run_info.update(
            r=bg.params.r,
            alpha=bg.params.alpha,
            a=bg.params.a,
            b=bg.params.b,
            log_likelihood=bg.log_likelihood,
        )
    if isinstance(gg.params, GammaGammaParams):
        run_info.update(
            gg_p=gg.params.p,
            gg_q=gg.params.q,
            gg_gamma=gg.params.gamma,
            gg_log_likelihood=gg.log_likelihood,
        )
    if len(summary) == 0:
        run_info["fit_seconds"] = time.perf_counter() - started
        warnings.warn(
            "CLV model: no customer with orders up to D, nothing scored: "
            + "; ".join(run_info["warnings"]),
            ModelWarning,
            stacklevel=2,
        )
        return _empty_scores(), run_info

    previous_bg, previous_gg = _previous_params(previous)
    previous_as_of = None if previous is None else previous.get("as_of")
    empirical = empirical_scores(x, tx, TT, m)

    # purchases and dropout: today's fit, else the last accepted run's, else the rule
    purchase: tuple[FloatArray, FloatArray, FloatArray] | None = None
    if bg.converged and isinstance(bg.params, BgNbdParams):
        purchase = _bgnbd_scores(bg.params, x, tx, TT)
        n_bad = _n_not_finite(*purchase)
        if n_bad:
            run_info["warnings"].append(f"{n_bad} customers got non-finite predictions")
            purchase = None
        else:
            run_info["purchase_method"] = "fit"
    if purchase is None and previous_bg is not None:
        purchase = _bgnbd_scores(previous_bg, x, tx, TT)
        if _n_not_finite(*purchase):
            purchase = None
        else:
            run_info["purchase_method"] = "previous_fit"
    if purchase is None:
        purchase = empirical[:3]
        run_info["purchase_method"] = "empirical"

    # spend per purchase: the same order
    if gg.converged and isinstance(gg.params, GammaGammaParams):
        spend = expected_avg_spend(gg.params, x, m)
        run_info["spend_method"] = "fit"
    elif previous_gg is not None:
        spend = expected_avg_spend(previous_gg, x, m)
        run_info["spend_method"] = "previous_fit"
    else:
        spend = empirical[3]
        run_info["spend_method"] = "empirical"

    accepted = run_info["purchase_method"] == "fit" and run_info["spend_method"] == "fit"
    run_info["converged"] = accepted
    run_info["fit_status"] = "ok" if accepted else "failed"
    if "previous_fit" in (run_info["purchase_method"], run_info["spend_method"]):
        run_info["params_as_of"] = previous_as_of

    alive, purchases_90d, purchases_365d = purchase
    scores = pd.DataFrame(
        {
            "customer_id": summary.index.to_numpy(),
            "p_alive": alive,
            "expected_purchases_90d": purchases_90d,
            "clv_365d": purchases_365d * spend,
        }
    )
    finite = np.isfinite(scores[SCORE_COLUMNS[1:]].to_numpy()).all(axis=1)
    if not finite.all():  # only from invalid input (NaN T, ...), which no fit accepts
        run_info["warnings"].append(
            f"{int((~finite).sum())} customers with invalid frequency/recency/T/monetary_value "
            "not scored"
        )
        scores = scores[finite].reset_index(drop=True)
    run_info["fit_seconds"] = time.perf_counter() - started
    if not accepted:
        reasons = "; ".join(run_info["warnings"]) or "unknown reason"
        fallback = (
            f"scored with purchases from {_METHOD_TEXT[run_info['purchase_method']]} and "
            f"spend from {_METHOD_TEXT[run_info['spend_method']]}"
        )
        if run_info["params_as_of"] is not None:
            fallback += f" (previous parameters as of {run_info['params_as_of']})"
        run_info["warnings"].append(f"CLV fit failed: {fallback}")
        warnings.warn(f"CLV fit failed ({reasons}); {fallback}", ModelWarning, stacklevel=2)
    return scores, run_info


_METHOD_TEXT = {
    "fit": "today's fit",
    "previous_fit": "the last accepted fit",
    "empirical": "the empirical rule",
}


# --------------------------------------------------------------------------------------
# Calibration / holdout check
# --------------------------------------------------------------------------------------


def calibration_holdout(
    transactions: pd.DataFrame,
    as_of: Any,
    holdout_days: int = 90,
    *,
    customer_col: str = "customer_id",
    date_col: str = "order_date",
    min_customers: int = MIN_CUSTOMERS,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
) -> pd.DataFrame:
    """Fit BG/NBD on orders up to ``as_of - holdout_days`` and compare, per calibration
    frequency bucket (0 … 6, 7+), the mean predicted and actual purchase days in the
    following ``holdout_days`` (up to ``as_of``).

    Returns bucket, customers, predicted_mean, actual_mean; the fit is in
    ``attrs["fit"]`` (a :class:`FitResult`). Empty when the fit is not usable.
    """
    calibration_end = pd.Timestamp(as_of).normalize() - pd.Timedelta(days=holdout_days)
    summary = summarise_transactions(transactions, customer_col, date_col, calibration_end)
    holdout = transactions[[customer_col, date_col]].dropna()
    days = _day_numbers(holdout[date_col], date_col)
    in_window = (days > _as_of_day(calibration_end)) & (days <= _as_of_day(as_of))
    window = pd.DataFrame(
        {"customer": holdout[customer_col].to_numpy()[in_window], "day": days[in_window]}
    )
    actual = window.drop_duplicates().groupby("customer").size()
    summary["actual"] = actual.reindex(summary.index, fill_value=0).to_numpy(np.int64)
    return holdout_from_summary(
        summary,
        holdout_days,
        min_customers=min_customers,
        min_repeat_customers=min_repeat_customers,
    )


def holdout_from_summary(
    summary: pd.DataFrame,
    holdout_days: int = 90,
    *,
    min_customers: int = MIN_CUSTOMERS,
    min_repeat_customers: int = MIN_REPEAT_CUSTOMERS,
) -> pd.DataFrame:
    """:func:`calibration_holdout` from a summary already made: one row per customer with
    an order up to the calibration end (frequency, recency, T as of that end) and
    ``actual``, their purchase days in the ``holdout_days`` after it."""
    x = summary["frequency"].to_numpy(np.float64)
    tx = summary["recency"].to_numpy(np.float64)
    TT = summary["T"].to_numpy(np.float64)
    fit = fit_bgnbd(
        x, tx, TT, min_customers=min_customers, min_repeat_customers=min_repeat_customers
    )
    columns = ["bucket", "customers", "predicted_mean", "actual_mean"]
    if not fit.converged or not isinstance(fit.params, BgNbdParams):
        out = pd.DataFrame(columns=columns)
        out.attrs["fit"] = fit
        return out

    actual = summary["actual"].to_numpy(np.float64)
    predicted = expected_purchases(fit.params, holdout_days / DAYS_PER_WEEK, x, tx, TT)
    if not np.isfinite(predicted).all():
        fit.converged = False
        fit.warnings.append(
            f"{int((~np.isfinite(predicted)).sum())} customers got non-finite predictions"
        )
        out = pd.DataFrame(columns=columns)
        out.attrs["fit"] = fit
        return out

    bucket = pd.Categorical.from_codes(np.minimum(x, 7).astype(int), categories=BUCKETS)
    out = (
        pd.DataFrame({"bucket": bucket, "predicted": predicted, "actual": actual})
        .groupby("bucket", observed=False)
        .agg(
            customers=("actual", "size"),
            predicted_mean=("predicted", "mean"),
            actual_mean=("actual", "mean"),
        )
        .reset_index()
    )
    out = out[out["customers"] > 0].reset_index(drop=True)
    out.attrs["fit"] = fit
    return out
