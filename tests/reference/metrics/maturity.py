"""Maturity and pending events (metrics.md "Maturity"): the KPIs whose outcome window is
still open at D, decided on the events whose outcome is known."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd

from reference.metrics.business_hours import business_sla_kpis
from reference.metrics.config import ReferenceConfig
from reference.metrics.customers import _days
from reference.metrics.months import Month, _quantile, _ratio
from reference.metrics.orders import resolved_orders
from reference.metrics.service import _followed_by, _followed_by_order
from reference.metrics.staging import Prepared, to_business

#: maturity_days per KPI (seed kpi_definitions, metrics.md "Maturity"); 0 for the others
MATURITY_DAYS: dict[str, int] = {
    "demand_conversion_rate": 30,
    "winback_conversion_rate": 30,
    "campaign_response_rate": 7,
    "resolution_sla_rate": 7,
    "first_response_sla_rate": 1,
    "first_response_business_sla_rate": 14,
    "resolution_business_sla_rate": 35,
    "first_response_minutes_p50": 1,
    "first_response_minutes_p90": 1,
    "message_reply_rate": 1,
    "complaint_resolution_minutes_p50": 7,
}

#: (value, numerator, denominator, pending)
MatureKpis = dict[str, tuple[float | None, float | None, float | None, float]]


def _end_of_d(cfg: ReferenceConfig) -> pd.Timestamp:
    """The end of D in business time (the next local midnight)."""
    return pd.Timestamp(cfg.as_of) + _days(1)


def _window_open(at_utc: pd.Series, window: pd.Timedelta, cfg: ReferenceConfig) -> pd.Series:
    """The outcome window [at, at + window] of each event is not over at the end of D."""
    return to_business(at_utc, cfg.business_tz) + window > _end_of_d(cfg)


def _decided_rate(outcome: pd.Series, is_open: pd.Series) -> tuple[float | None, int, int, int]:
    """An event whose window is still open is pending, whatever its outcome so far; one
    whose window has closed is decided: (value, numerator, denominator, pending)."""
    outcome, is_open = outcome.astype(bool), is_open.astype(bool)
    num = int((outcome & ~is_open).sum())
    den = int((~is_open).sum())
    pending = int(is_open.sum())
    return (_ratio(num, den), num, den, pending)


def _answered_rows(msgs: pd.DataFrame, replies: pd.DataFrame, window: pd.Timedelta) -> pd.Series:
    """Per inbound message: answered by an outbound message to the same account within
    ``window``."""
    if msgs.empty:
        return pd.Series(False, index=msgs.index)
    a = msgs[["platform", "account_id", "occurred_at"]].reset_index(names="_row")
    b = replies[["platform", "account_id", "occurred_at"]].rename(columns={"occurred_at": "u"})
    j = a.merge(b, on=["platform", "account_id"])
    ok = (j["u"] > j["occurred_at"]) & (j["u"] <= j["occurred_at"] + window)
    return pd.Series(msgs.index.isin(pd.Index(j.loc[ok, "_row"].unique())), index=msgs.index)


def _sla_clocks(p: Prepared, t: pd.DataFrame) -> dict[str, tuple[pd.Series, pd.Series]]:
    """Per SLA KPI, (met, pending) per ticket of ``t`` as of the end of D: a clock stopped
    within target is met; a ticket whose target has not run out at the end of D is
    pending, met or not."""
    cfg = p.config
    created_local = to_business(t["created_at"], cfg.business_tz)
    reply = t["first_reply_at"]
    res_first = t["first_resolved_at"].notna() & (reply.isna() | (t["first_resolved_at"] < reply))
    fr_stop = reply.where(~res_first, t["first_resolved_at"])
    out = {}
    for kpi, stop, idx in (
        ("first_response_sla_rate", fr_stop, 0),
        ("resolution_sla_rate", t["first_resolved_at"], 1),
    ):
        target = pd.Series(
            [cfg.sla_targets.get(pr, (np.nan, np.nan))[idx] for pr in t["priority"]],
            index=t.index,
            dtype=float,
        )
        elapsed = (stop - t["created_at"]).dt.total_seconds() / 60.0
        met = elapsed.notna() & (elapsed <= target)
        target_open = ~(created_local + pd.to_timedelta(target, unit="m") < _end_of_d(cfg))
        out[kpi] = (met, target_open)
    return out


def mature_service_kpis(p: Prepared, m: Month) -> MatureKpis:
    """The service KPIs with maturity for month M (segment all), pending events (window
    still open at the end of D, whatever their outcome so far) left out: first-response
    and resolution SLA rates (target not run out), the first-response percentiles (over
    answered tickets whose first-response target has run out; pending: the first-response
    pending tickets) and demand_conversion_rate (inquiries of resolved customers whose 30
    days are not over)."""
    cfg = p.config
    t = p.tickets
    t = t[(t["created_date"] >= m.month) & (t["created_date"] <= m.end)]
    out: MatureKpis = {}
    clocks = _sla_clocks(p, t)
    for kpi, (met, pending) in clocks.items():
        num, den = int((met & ~pending).sum()), int((~pending).sum())
        out[kpi] = (_ratio(num, den), num, den, int(pending.sum()))
    fr_open = clocks["first_response_sla_rate"][1]
    fr = ((t["first_reply_at"] - t["created_at"]).dt.total_seconds() / 60.0)[~fr_open]
    fr_pending = int(fr_open.sum())
    answered = int(fr.notna().sum())
    out |= business_sla_kpis(p, m.month, m.end)
    out["first_response_minutes_p50"] = (_quantile(fr, 0.5), None, answered, fr_pending)
    out["first_response_minutes_p90"] = (_quantile(fr, 0.9), None, answered, fr_pending)
    complaints = t["category"].eq("complaint")
    if complaints.any():
        res_open = clocks["resolution_sla_rate"][1]
        res = ((t["first_resolved_at"] - t["created_at"]).dt.total_seconds() / 60.0)[
            complaints & ~res_open
        ].dropna()
        out["complaint_resolution_minutes_p50"] = (
            _quantile(res, 0.5),
            None,
            len(res),
            int((complaints & res_open).sum()),
        )
    inq = t[t["category"].eq("inquiry") & t["customer_key"].notna()]
    co = resolved_orders(p)
    window = pd.Timedelta(days=cfg.demand_conversion_days)
    conv = _followed_by_order(
        inq[["customer_key", "created_at"]].rename(columns={"created_at": "t"}), co, window
    )
    out["demand_conversion_rate"] = _decided_rate(
        conv, _window_open(inq["created_at"], window, cfg)
    )
    return out


def mature_social_kpis(p: Prepared, m: Month) -> MatureKpis:
    """message_reply_rate, campaign_response_rate and winback_conversion_rate for month M
    with pending events left out (metrics.md "Maturity")."""
    cfg = p.config
    so = p.social
    so_m = so[(so["occurred_date"] >= m.month) & (so["occurred_date"] <= m.end)]
    out: MatureKpis = {}
    msgs = so_m[so_m["direction"].eq("inbound") & so_m["interaction_type"].eq("message")]
    replies = so[so["direction"].eq("outbound") & so["interaction_type"].eq("message")]
    window = pd.Timedelta(hours=cfg.message_reply_hours)
    out["message_reply_rate"] = _decided_rate(
        _answered_rows(msgs, replies, window), _window_open(msgs["occurred_at"], window, cfg)
    )
    pushes = so_m[
        so_m["direction"].eq("outbound")
        & so_m["interaction_type"].eq("campaign_push")
        & so_m["customer_key"].notna()
    ]
    co = resolved_orders(p)
    window = pd.Timedelta(days=cfg.campaign_response_days)
    inbound = so[so["direction"].eq("inbound") & so["customer_key"].notna()]
    trig = pushes[["customer_key", "occurred_at"]].rename(columns={"occurred_at": "t"})
    responded = _followed_by(
        trig, inbound[["customer_key", "occurred_at"]].rename(columns={"occurred_at": "u"}), window
    ) | _followed_by_order(trig, co, window)
    out["campaign_response_rate"] = _decided_rate(
        responded, _window_open(pushes["occurred_at"], window, cfg)
    )
    out["winback_conversion_rate"] = _mature_winback(p, pushes, co)
    return out


def _mature_winback(
    p: Prepared, pushes: pd.DataFrame, orders: pd.DataFrame
) -> tuple[float | None, float | None, float | None, float]:
    """Customers dormant on the date of a push they received in M: converted when they
    order within 30 days after such a push; pending while one of those pushes still has
    its window open, converted or not."""
    cfg = p.config
    if pushes.empty:
        return (None, 0, 0, 0)
    pu = pushes[["customer_key", "occurred_at", "occurred_date"]].reset_index(names="_row")
    j = pu.merge(orders[["customer_key", "order_date"]], on="customer_key", how="left")
    last = j[j["order_date"] <= j["occurred_date"]].groupby("_row")["order_date"].max()
    pu = pu.merge(last.rename("last_before"), left_on="_row", right_index=True, how="left")
    d = pu["occurred_date"]
    dormant = (pu["last_before"] >= d - _days(cfg.lifecycle_dormant_days)) & (
        pu["last_before"] < d - _days(cfg.lifecycle_active_days)
    )
    pu = pu[dormant].reset_index(drop=True)
    if pu.empty:
        return (None, 0, 0, 0)
    window = pd.Timedelta(days=cfg.winback_conversion_days)
    pu["converted"] = _followed_by_order(
        pu[["customer_key", "occurred_at"]].rename(columns={"occurred_at": "t"}), orders, window
    ).to_numpy()
    pu["open"] = _window_open(pu["occurred_at"], window, cfg).to_numpy()
    per_customer = pu.groupby("customer_key")[["converted", "open"]].any()
    num, den, pending = _decided_rate(per_customer["converted"], per_customer["open"])[1:]
    return (_ratio(num, den), num, den, pending)


def with_maturity(
    frame: pd.DataFrame, p: Prepared, maturity_days: dict[str, int] | None = None
) -> pd.DataFrame:
    """A ``compute_kpis`` frame under metrics.md "Maturity": the KPIs with maturity
    (segment all) recomputed with their pending events left out, a ``pending`` column
    (NULL for KPIs without maturity) and ``is_complete`` per KPI: D >= end of M +
    maturity_days (the running month never)."""
    maturity_days = MATURITY_DAYS if maturity_days is None else maturity_days
    as_of = p.config.as_of
    out = frame.copy()
    out["pending"] = np.nan
    months = {m for m in out.loc[out["segment"].eq("all"), "month"]}
    replaced: dict[tuple, tuple] = {}
    for month in months:
        last = (pd.Timestamp(month) + pd.offsets.MonthEnd(0)).date()
        m = Month(pd.Timestamp(month), pd.Timestamp(month) - _days(1),
                  pd.Timestamp(min(last, as_of)), last <= as_of)  # fmt: skip
        kpis: MatureKpis = {}
        if ((out["month"] == month) & out["kpi"].eq("tickets") & out["segment"].eq("all")).any():
            kpis |= mature_service_kpis(p, m)
        if ((out["month"] == month) & out["kpi"].eq("message_reply_rate")).any():
            kpis |= mature_social_kpis(p, m)
        for kpi, values in kpis.items():
            replaced[(month, "all", kpi)] = values
    for i, row in out.iterrows():
        key = (row["month"], row["segment"], row["kpi"])
        if key in replaced:
            value, num, den, pending = replaced[key]
            out.at[i, "value"], out.at[i, "numerator"] = value, num
            out.at[i, "denominator"], out.at[i, "pending"] = den, pending
        days = maturity_days.get(row["kpi"], 0)
        last = (pd.Timestamp(row["month"]) + pd.offsets.MonthEnd(0)).date()
        out.at[i, "is_complete"] = last + timedelta(days=days) <= as_of
    for c in ("value", "numerator", "denominator", "pending"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype(float)
    return out
