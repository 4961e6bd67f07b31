"""What the two CLV models' fits share (pipelines/models/bgnbd.py, gamma_gamma.py): the
result of a fit, the compression of identical rows into weights, and the optimiser (L-BFGS-B
on log-parameters with the convergence checks)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from scipy import optimize

if TYPE_CHECKING:
    from pipelines.models.bgnbd import BgNbdParams
    from pipelines.models.gamma_gamma import GammaGammaParams

MIN_CUSTOMERS = 50
"""Below this many customers the model is not fitted (too little data for 4 parameters)."""
MIN_REPEAT_CUSTOMERS = 10
"""Below this many repeat buyers neither dropout nor spend can be estimated."""
MAXITER = 500
LOG_PARAM_BOUND = 15.0
"""Parameters are searched on log scale in [-15, 15], i.e. between 3e-7 and 3.3e6."""
GRADIENT_TOLERANCE = 1e-5
"""Largest |d(mean log-likelihood)/d(log parameter)| accepted as a maximum."""

FloatArray = NDArray[np.float64]


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


def compress_rows(*columns: ArrayLike) -> tuple[list[FloatArray], FloatArray, NDArray[np.intp]]:
    """Distinct rows of ``columns`` with their counts and each input row's distinct index."""
    frame = pd.DataFrame({f"c{i}": np.asarray(col) for i, col in enumerate(columns)})
    inverse = frame.groupby(list(frame.columns), sort=False, dropna=False).ngroup().to_numpy()
    counts = np.bincount(inverse).astype(np.float64)
    representative = np.empty(counts.size, dtype=np.intp)
    representative[inverse] = np.arange(inverse.size)
    distinct = [np.asarray(col, dtype=np.float64)[representative] for col in columns]
    return distinct, counts, inverse


def as_float(values: ArrayLike) -> FloatArray:
    return np.atleast_1d(np.asarray(values, dtype=np.float64))


def not_fitted(problems: list[str], n_customers: int, started: float) -> FitResult:
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


def minimise(
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
