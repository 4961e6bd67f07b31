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
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from pipelines.models.bgnbd import (
    BgNbdParams,
    bgnbd_log_likelihood,
    expected_purchases,
    fit_bgnbd,
    p_alive,
)
from pipelines.models.fitting import (
    MAXITER,
    MIN_CUSTOMERS,
    MIN_REPEAT_CUSTOMERS,
    FitResult,
    FloatArray,
    as_float,
    compress_rows,
)
from pipelines.models.gamma_gamma import GammaGammaParams, expected_avg_spend, fit_gamma_gamma

__all__ = [
    "BUCKETS",
    "DAYS_PER_WEEK",
    "HIATUS_DAYS",
    "HORIZON_365D_WEEKS",
    "HORIZON_90D_WEEKS",
    "MAXITER",
    "MIN_CUSTOMERS",
    "MIN_REPEAT_CUSTOMERS",
    "SCORE_COLUMNS",
    "BgNbdParams",
    "FitResult",
    "GammaGammaParams",
    "ModelWarning",
    "bgnbd_log_likelihood",
    "calibration_holdout",
    "clv",
    "compress_rows",
    "empirical_scores",
    "expected_avg_spend",
    "expected_purchases",
    "fit_bgnbd",
    "fit_gamma_gamma",
    "holdout_from_summary",
    "p_alive",
    "score_customers",
    "score_summary",
    "summarise_transactions",
    "usable",
]

DAYS_PER_WEEK = 7.0
HORIZON_90D_WEEKS = 90 / DAYS_PER_WEEK
HORIZON_365D_WEEKS = 365 / DAYS_PER_WEEK
HIATUS_DAYS = 180
"""The empirical fallback's active window: an order in [D - 179, D] (metrics.md, active_as_of)."""

SCORE_COLUMNS = ["customer_id", "p_alive", "expected_purchases_90d", "clv_365d"]
BUCKETS = ["0", "1", "2", "3", "4", "5", "6", "7+"]


class ModelWarning(UserWarning):
    """Issued by :func:`score_customers` when a run is not usable; the message lists the
    reasons (also kept in ``run_info["warnings"]``)."""


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
# Lifetime value
# --------------------------------------------------------------------------------------


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
    x, tx, TT = as_float(frequency), as_float(recency), as_float(T)
    m = np.clip(as_float(monetary_value), 0.0, None)
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
