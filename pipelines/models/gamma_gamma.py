"""Gamma-Gamma (Fader, Hardie & Lee 2005b, "RFM and CLV"): spend per purchase. The
log-likelihood and its gradient, the maximum-likelihood fit on the repeat buyers, and the
expected spend per purchase (docs/clv.md; the scoring is pipelines/models/clv.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import special

from pipelines.models.fitting import (
    MAXITER,
    MIN_REPEAT_CUSTOMERS,
    FitResult,
    FloatArray,
    as_float,
    compress_rows,
    minimise,
    not_fitted,
)


@dataclass(frozen=True)
class GammaGammaParams:
    """Gamma-Gamma: spend per purchase ~ Gamma(p, nu), nu ~ Gamma(q, gamma)."""

    p: float
    q: float
    gamma: float


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
    x, m = as_float(frequency), as_float(monetary_value)
    w = np.ones_like(x) if weights is None else as_float(weights)
    problems: list[str] = []
    if not (x.shape == m.shape == w.shape):
        problems.append("frequency, monetary_value and weights differ in length")
    elif not (np.isfinite(x).all() and np.isfinite(m).all() and np.isfinite(w).all()):
        n_bad = int((~np.isfinite(x) | ~np.isfinite(m) | ~np.isfinite(w)).sum())
        problems.append(f"{n_bad} customers have NaN or infinite frequency/monetary_value")
    if problems:
        return not_fitted(problems, 0, started)

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
        return not_fitted([*notes, reason], n_used, started)

    (ux_rows, um), counts, inverse = compress_rows(x[use], m[use])
    uw = np.bincount(inverse, weights=w[use]) if weights is not None else counts
    ux, xi = np.unique(ux_rows, return_inverse=True)
    total = float(uw.sum())

    def objective(log_params: FloatArray) -> tuple[float, FloatArray]:
        loglik, grad = _gamma_gamma_terms(log_params, ux, xi, um, uw)
        return -loglik / total, -grad / total

    log_params, value, converged, nit, problems = minimise(objective, 3, maxiter)
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
    x = as_float(frequency)
    m = np.clip(as_float(monetary_value), 0.0, None)
    m = np.where(x > 0, m, 0.0)
    p, q, gamma = params.p, params.q, params.gamma
    return p * (gamma + x * m) / (p * x + q - 1)
