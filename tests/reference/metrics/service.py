"""The service and social KPIs of a month: SLAs, resolution, first contact resolution,
reply rates, conversions and win-back."""

from __future__ import annotations

import numpy as np
import pandas as pd

from reference.metrics.business_hours import business_sla_kpis
from reference.metrics.customers import _days, valid_orders
from reference.metrics.months import Kpis, Month, _count, _quantile, _ratio
from reference.metrics.staging import Prepared, to_business


def service_kpis(p: Prepared, m: Month) -> Kpis:
    cfg = p.config
    t = p.tickets
    t = t[(t["created_date"] >= m.month) & (t["created_date"] <= m.end)]
    out: Kpis = {"tickets": _count(len(t))}
    fr = (t["first_reply_at"] - t["created_at"]).dt.total_seconds() / 60.0
    answered = int(fr.notna().sum())
    out["first_response_minutes_p50"] = (_quantile(fr, 0.5), None, answered)
    out["first_response_minutes_p90"] = (_quantile(fr, 0.9), None, answered)
    end_of_d = pd.Timestamp(cfg.as_of) + _days(1)  # business time
    created_local = to_business(t["created_at"], cfg.business_tz)
    # first-response clock: stopped by the first agent reply, or by the resolution when
    # the ticket was resolved before any agent reply
    reply = t["first_reply_at"]
    res_first = t["first_resolved_at"].notna() & (reply.isna() | (t["first_resolved_at"] < reply))
    fr_stop = reply.where(~res_first, t["first_resolved_at"])
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
        late = elapsed.notna() & (elapsed > target)
        running_past = elapsed.isna() & (
            created_local + pd.to_timedelta(target, unit="m") < end_of_d
        )
        num, den = int(met.sum()), int((met | late | running_past).sum())
        out[kpi] = (_ratio(num, den), num, den)
    # the business-hours rates: pending tickets left out (replaced with the same values
    # by with_maturity)
    for kpi, (value, num, den, _) in business_sla_kpis(p, m.month, m.end).items():
        out[kpi] = (value, num, den)
    reo = int(t["has_reopen"].sum())
    out["reopen_rate"] = (_ratio(reo, len(t)), reo, len(t))

    ev = p.events
    cs = ev[ev["event_type"].eq("csat") & ev["csat_score"].notna()]
    cs = cs[(cs["event_date"] >= m.month) & (cs["event_date"] <= m.end)]
    scores = cs["csat_score"].astype(float)
    out["csat_avg"] = (_ratio(float(scores.sum()), len(scores)), float(scores.sum()), len(scores))
    sat = int((scores >= cfg.csat_satisfied_score).sum())
    out["csat_satisfied_rate"] = (_ratio(sat, len(scores)), sat, len(scores))

    inq = t[t["category"].eq("inquiry") & t["customer_key"].notna()]  # resolved requesters
    co = valid_orders(p)
    co = co[co["customer_key"].notna()]
    conv = _followed_by_order(
        inq[["customer_key", "created_at"]].rename(columns={"created_at": "t"}),
        co,
        pd.Timedelta(days=cfg.demand_conversion_days),
    )
    n_conv = int(conv.sum())
    out["demand_conversion_rate"] = (_ratio(n_conv, len(inq)), n_conv, len(inq))
    return out


def social_kpis(p: Prepared, m: Month) -> Kpis:
    cfg = p.config
    so = p.social
    so_m = so[(so["occurred_date"] >= m.month) & (so["occurred_date"] <= m.end)]
    out: Kpis = {}
    msgs = so_m[so_m["direction"].eq("inbound") & so_m["interaction_type"].eq("message")]
    replies = so[so["direction"].eq("outbound") & so["interaction_type"].eq("message")]
    answered = _answered(msgs, replies, pd.Timedelta(hours=cfg.message_reply_hours))
    out["message_reply_rate"] = (_ratio(answered, len(msgs)), answered, len(msgs))

    pushes = so_m[
        so_m["direction"].eq("outbound")
        & so_m["interaction_type"].eq("campaign_push")
        & so_m["customer_key"].notna()
    ]
    co = valid_orders(p)
    co = co[co["customer_key"].notna()]
    window = pd.Timedelta(days=cfg.campaign_response_days)
    inbound = so[so["direction"].eq("inbound") & so["customer_key"].notna()]
    trig = pushes[["customer_key", "occurred_at"]].rename(columns={"occurred_at": "t"})
    by_interaction = _followed_by(
        trig, inbound[["customer_key", "occurred_at"]].rename(columns={"occurred_at": "u"}), window
    )
    by_order = _followed_by_order(trig, co, window)
    responded = int((by_interaction | by_order).sum())
    out["campaign_response_rate"] = (_ratio(responded, len(pushes)), responded, len(pushes))
    out["winback_conversion_rate"] = _winback(p, pushes, co)
    engaged = so_m[so_m["direction"].eq("inbound") & so_m["customer_key"].notna()]
    out["social_engaged_customers"] = _count(engaged["customer_key"].nunique())
    return out


def _followed_by(events: pd.DataFrame, later: pd.DataFrame, window: pd.Timedelta) -> pd.Series:
    """Per row of ``events`` (customer_key, t): is there a row of ``later`` (customer_key,
    u) of the same customer with t < u <= t + window."""
    if events.empty:
        return pd.Series(False, index=events.index)
    ev = events.reset_index(names="_row")
    j = ev.merge(later, on="customer_key", how="inner")
    ok = (j["u"] > j["t"]) & (j["u"] <= j["t"] + window)
    hit = pd.Index(j.loc[ok, "_row"].unique())
    return pd.Series(events.index.isin(hit), index=events.index)


def _followed_by_order(
    events: pd.DataFrame, orders: pd.DataFrame, window: pd.Timedelta
) -> pd.Series:
    return _followed_by(
        events, orders[["customer_key", "ordered_at"]].rename(columns={"ordered_at": "u"}), window
    )


def _answered(msgs: pd.DataFrame, replies: pd.DataFrame, window: pd.Timedelta) -> int:
    if msgs.empty:
        return 0
    a = msgs[["platform", "account_id", "occurred_at"]].reset_index(names="_row")
    b = replies[["platform", "account_id", "occurred_at"]].rename(columns={"occurred_at": "u"})
    j = a.merge(b, on=["platform", "account_id"])
    ok = (j["u"] > j["occurred_at"]) & (j["u"] <= j["occurred_at"] + window)
    return int(j.loc[ok, "_row"].nunique())


def _winback(
    p: Prepared, pushes: pd.DataFrame, orders: pd.DataFrame
) -> tuple[float | None, float | None, float | None]:
    """Customers dormant on the push date who received a push in M; converted when they
    order within ``winback_conversion_days`` after a push they were dormant for."""
    cfg = p.config
    if pushes.empty:
        return (None, 0, 0)
    pu = pushes[["customer_key", "occurred_at", "occurred_date"]].reset_index(names="_row")
    o = orders[["customer_key", "order_date"]]
    j = pu.merge(o, on="customer_key", how="left")
    before = j[j["order_date"] <= j["occurred_date"]]
    last = before.groupby("_row")["order_date"].max().rename("last_before")
    pu = pu.merge(last, left_on="_row", right_index=True, how="left")
    d = pu["occurred_date"]
    # lifecycle_stage 'dormant' with D = the push's business date
    dormant = (pu["last_before"] >= d - _days(cfg.lifecycle_dormant_days)) & (
        pu["last_before"] < d - _days(cfg.lifecycle_active_days)
    )
    pu = pu[dormant].reset_index(drop=True)
    if pu.empty:
        return (None, 0, 0)
    conv = _followed_by_order(
        pu[["customer_key", "occurred_at"]].rename(columns={"occurred_at": "t"}),
        orders,
        pd.Timedelta(days=cfg.winback_conversion_days),
    )
    den = pu["customer_key"].nunique()
    num = pu.loc[conv.to_numpy(), "customer_key"].nunique()
    return (_ratio(num, den), num, den)
