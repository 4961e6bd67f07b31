"""BG/NBD (Fader, Hardie & Lee 2005): repeat purchases and dropout. The log-likelihood and
its gradient on compressed data, the maximum-likelihood fit, P(alive) and the expected
purchases in a horizon (docs/clv.md; the scoring is pipelines/models/clv.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike
from scipy import special

from pipelines.models.fitting import (
    GRADIENT_TOLERANCE,
    MAXITER,
    MIN_CUSTOMERS,
    MIN_REPEAT_CUSTOMERS,
    FitResult,
    FloatArray,
    as_float,
    compress_rows,
    minimise,
    not_fitted,
)

SERIES_MAX_TERMS = 5000
A_NEAR_ONE = 1e-6
"""Within this distance of a = 1 expected purchases are interpolated (removable singularity)."""
RIDGE_MIN = 1e4
"""a and b above which a fit stopped on the ridge a, b -> inf may be accepted at the limit."""
RIDGE_GAIN = 1e-6
"""Largest mean log-likelihood per customer still to gain along that ridge."""


@dataclass(frozen=True)
class BgNbdParams:
    """BG/NBD: purchase rate ~ Gamma(r, alpha) (alpha in weeks), dropout p ~ Beta(a, b)."""

    r: float
    alpha: float
    a: float
    b: float


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
    x, tx, TT = as_float(frequency), as_float(recency), as_float(T)
    w = np.ones_like(x) if weights is None else as_float(weights)
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
    x, tx, TT = as_float(frequency), as_float(recency), as_float(T)
    w = np.ones_like(x) if weights is None else as_float(weights)
    n_customers = int(round(w.sum())) if np.isfinite(w).all() else 0

    def failed(problems: list[str]) -> FitResult:
        return not_fitted(problems, n_customers, started)

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

    log_params, value, converged, nit, problems = minimise(objective, 4, maxiter)
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
    x, tx, TT = as_float(frequency), as_float(recency), as_float(T)
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
    x, tx, TT = np.broadcast_arrays(as_float(frequency), as_float(recency), as_float(T))
    r, alpha, a, b = params.r, params.alpha, params.a, params.b
    if abs(a - 1.0) < A_NEAR_ONE:
        unconditional = 0.5 * (
            _unconditional_purchases(r, alpha, 1.0 - A_NEAR_ONE, b, t, x, TT)
            + _unconditional_purchases(r, alpha, 1.0 + A_NEAR_ONE, b, t, x, TT)
        )
    else:
        unconditional = _unconditional_purchases(r, alpha, a, b, t, x, TT)
    return unconditional * special.expit(-_log_dropout_odds(params, x, tx, TT))
