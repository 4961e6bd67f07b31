"""Customer state as of a date: order summary, lifecycle stage, profile completeness,
RFM scores and segments, the value x potential quadrant."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd

from pipelines.lib.pseudonym import load_key, pseudonym
from reference.metrics.config import PROFILE_FIELDS, RFM_SEGMENT_MAP, ReferenceConfig
from reference.metrics.staging import Prepared


def _days(n: int) -> pd.Timedelta:
    return pd.Timedelta(days=n)


def valid_orders(p: Prepared) -> pd.DataFrame:
    """Orders that count (status not cancelled), every one, resolved or not."""
    if "valid_orders" not in p.cache:
        p.cache["valid_orders"] = p.orders[~p.orders["is_cancelled"]]
    return p.cache["valid_orders"]


def _cached(p: Prepared, key: tuple, fn):
    if key not in p.cache:
        p.cache[key] = fn()
    return p.cache[key]


def order_summary(orders: pd.DataFrame, d: date, cfg: ReferenceConfig) -> pd.DataFrame:
    """Per customer as of d (orders dated <= d): first/last order date, lifetime orders,
    365-day orders and net revenue. ``orders``: valid (non-cancelled) orders."""
    d = pd.Timestamp(d)
    o = orders[orders["customer_key"].notna() & (orders["order_date"] <= d)]
    g = o.groupby("customer_key")
    out = pd.DataFrame(
        {
            "first_order_date": g["order_date"].min(),
            "last_order_date": g["order_date"].max(),
            "orders_lifetime": g.size(),
        }
    )
    win = o[o["order_date"] >= d - _days(cfg.revenue_window_days)]
    gw = win.groupby("customer_key")
    out["orders_365d"] = gw.size()
    out["net_revenue_365d"] = gw["net_cents"].sum() / 100
    out["orders_365d"] = out["orders_365d"].fillna(0).astype(int)
    out["net_revenue_365d"] = out["net_revenue_365d"].fillna(0.0)
    return out


def lifecycle_stage(state: pd.DataFrame, d: date, cfg: ReferenceConfig) -> pd.Series:
    d = pd.Timestamp(d)
    first, last = state["first_order_date"], state["last_order_date"]
    stage = np.select(
        [
            first.isna(),
            first >= d - _days(cfg.lifecycle_new_days),
            last >= d - _days(cfg.lifecycle_active_days),
            last >= d - _days(cfg.lifecycle_dormant_days),
        ],
        ["prospect", "new", "active", "dormant"],
        default="churned",
    )
    return pd.Series(stage, index=state.index)


def profile_field_dates(p: Prepared) -> pd.DataFrame:
    """Per customer and profile field, the first business date a non-NULL value was known.

    Survivorship takes, per field, the latest non-NULL value among the customer's member
    profile versions (a field once known stays known); so a field is non-NULL on the
    golden record as of a date exactly when some value was known by then. With
    ``profile_contact_data`` contact data (order buyer name / phone / e-mail, ticket
    phone / e-mail, social phone) also fills fields."""
    parts = []
    prof = p.profiles[p.profiles["customer_key"].notna()]
    for fname, col in (("name", "name"), ("gender", "gender_norm"), ("birth_date", "birth_date"),
                       ("phone", "phone_e164"), ("email", "email_norm"), ("city", "city")):  # fmt: skip
        parts.append(_known(prof, col, "updated_date", fname))
    if p.config.profile_contact_data:
        parts += _contact_data(p)
    known = pd.concat(parts, ignore_index=True)
    dates = known.groupby(["customer_key", "field"])["d"].min().unstack("field")
    return dates.reindex(columns=list(PROFILE_FIELDS)).astype("datetime64[us]")


def _contact_data(p: Prepared) -> list[pd.DataFrame]:
    parts = []
    lines = p.order_lines[p.order_lines["customer_key"].notna()]
    parts += [
        _known(lines, "buyer_name", "ordered_date", "name"),
        _known(lines, "buyer_phone_e164", "ordered_date", "phone"),
        _known(lines, "buyer_email_norm", "ordered_date", "email"),
    ]
    ev = p.events[p.events["customer_key"].notna()]
    parts += [
        _known(ev, "phone_e164", "event_date", "phone"),
        _known(ev, "email_norm", "event_date", "email"),
    ]
    so = p.social[p.social["customer_key"].notna()]
    parts.append(_known(so, "phone_e164", "occurred_date", "phone"))
    return parts


def _known(frame: pd.DataFrame, col: str, date_col: str, fname: str) -> pd.DataFrame:
    values = frame[col]
    has = values.notna() & values.map(lambda v: not (isinstance(v, str) and v.strip() == ""))
    out = frame.loc[has, ["customer_key", date_col]].rename(columns={date_col: "d"})
    out["field"] = fname
    return out


def profile_completeness_at(p: Prepared, d: date, dates: pd.DataFrame | None = None) -> pd.Series:
    """profile_completeness as of d of the customers the profile KPIs count: those with a
    member-profile version updated by d (``profile_population="member_profiles"``), or
    every resolved customer first seen by d (``"known_customers"``, 0 without data)."""
    dates = profile_field_dates(p) if dates is None else dates
    day = pd.Timestamp(d)
    if p.config.profile_population == "member_profiles":
        rec = p.profiles[p.profiles["customer_key"].notna()]
        first_seen = rec.groupby("customer_key")["updated_date"].min()
    else:
        rec = p.records[p.records["customer_key"].notna()]
        first_seen = rec.groupby("customer_key")["first_seen_date"].min()
    known = first_seen.index[first_seen <= day]
    filled = (dates.reindex(known) <= day).sum(axis=1)
    return (filled / len(PROFILE_FIELDS)).rename("profile_completeness")


def customer_state(p: Prepared, d: date | None = None) -> pd.DataFrame:
    """One row per resolved customer as of d (default D): order summary, recency,
    is_vip, lifecycle_stage, profile_completeness, RFM scores and segment."""
    cfg = p.config
    d = d or cfg.as_of
    state = pd.DataFrame(index=pd.Index(p.customers, name="customer_key"))
    state = state.join(order_summary(valid_orders(p), d, cfg))
    state["orders_lifetime"] = state["orders_lifetime"].fillna(0).astype(int)
    state["orders_365d"] = state["orders_365d"].fillna(0).astype(int)
    state["net_revenue_365d"] = state["net_revenue_365d"].fillna(0.0)
    state["recency_days"] = (pd.Timestamp(d) - state["last_order_date"]).dt.days
    state["is_vip"] = state["net_revenue_365d"] >= cfg.vip_revenue_365d
    state["lifecycle_stage"] = lifecycle_stage(state, d, cfg)
    completeness = profile_completeness_at(p, d)
    state["profile_completeness"] = completeness.reindex(state.index).fillna(0.0)
    return state.join(rfm_scores(state, cfg.rfm_buckets))


def rfm_scores(state: pd.DataFrame, buckets: int = 5) -> pd.DataFrame:
    """r/f/m scores (SQL ``rank()`` = pandas ``rank(method='min')``) and the RF segment,
    for customers with at least one order ever."""
    scored = state[state["orders_lifetime"] > 0]
    n = len(scored)
    out = pd.DataFrame(index=scored.index)
    if n == 0:
        return out.assign(r_score=pd.Series(dtype="Int64"), f_score=pd.Series(dtype="Int64"),
                          m_score=pd.Series(dtype="Int64"), rfm_segment=pd.Series(dtype=object))  # fmt: skip

    def score(values: pd.Series, ascending: bool) -> pd.Series:
        rank = values.rank(method="min", ascending=ascending)
        return (1 + np.floor(buckets * (rank - 1) / n)).astype(int)

    out["r_score"] = score(scored["recency_days"], ascending=False)
    out["f_score"] = score(scored["orders_365d"], ascending=True)
    out["m_score"] = score(scored["net_revenue_365d"], ascending=True)
    out["rfm_segment"] = [
        rf_segment(r, f) for r, f in zip(out["r_score"], out["f_score"], strict=True)
    ]
    return out


def rf_segment(r: int, f: int) -> str | None:
    for name, r_min, r_max, f_min, f_max in RFM_SEGMENT_MAP:
        if r_min <= r <= r_max and f_min <= f <= f_max:
            return name
    return None


def value_potential_quadrant(
    state: pd.DataFrame,
    engagement_90d: pd.Series,
    expected_purchases_90d: pd.Series | None,
    cfg: ReferenceConfig,
) -> pd.Series:
    """metrics.md, value x potential. ``percent_rank`` = (rank - 1) / (n - 1), SQL rank."""
    pos = state["net_revenue_365d"] > 0
    n = int(pos.sum())
    pr = pd.Series(0.0, index=state.index)
    if n > 1:
        rank = state.loc[pos, "net_revenue_365d"].rank(method="min")
        pr.loc[pos] = (rank - 1) / (n - 1)
    high_value = pos & (pr >= cfg.high_value_percent_rank)
    eng = engagement_90d.reindex(state.index).fillna(0)
    high_pot = eng >= cfg.high_potential_engagement_90d
    if expected_purchases_90d is not None:
        exp = expected_purchases_90d.reindex(state.index).fillna(0)
        high_pot |= exp >= cfg.high_potential_expected_purchases_90d
    names = np.where(
        high_value,
        np.where(high_pot, "high_value_high_potential", "high_value_low_potential"),
        np.where(high_pot, "low_value_high_potential", "low_value_low_potential"),
    )
    return pd.Series(names, index=state.index)


def warehouse_customer_ids(p: Prepared, key: bytes | None = None) -> pd.Series:
    """customer_key -> the warehouse's customer_id (the keyed pseudonym of the component's
    smallest record id; `key`: the deployment's pseudonymisation key, default
    $CRM_PSEUDONYM_KEY / $CRM_PSEUDONYM_KEY_FILE), to join inputs keyed by the warehouse's
    ids (the CLV scores)."""
    if key is None:
        from pipelines.lib.settings import Settings

        deployment = Settings.from_env()  # the oracle runs beside a test's deployment
        key = load_key(deployment.pseudonym_key_file, key=deployment.pseudonym_key)
    ids = [pseudonym(str(name), key) for name in p.customer_names]
    return pd.Series(ids, index=pd.Index(p.customers, name="customer_key"), dtype=object)


def expected_purchases_by_key(p: Prepared, scores: pd.DataFrame | None) -> pd.Series | None:
    """The CLV model's ``expected_purchases_90d`` (a frame with the warehouse's
    ``customer_id``, e.g. clv.customer_scores) per customer_key; customers without a score
    are left out; None when there are no scores (the warehouse's empty placeholder)."""
    if scores is None or scores.empty:
        return None
    key_of = pd.Series(p.customers, index=warehouse_customer_ids(p).to_numpy())
    scored = scores.dropna(subset=["customer_id", "expected_purchases_90d"])
    scored = scored[scored["customer_id"].isin(key_of.index)]
    return pd.Series(
        scored["expected_purchases_90d"].astype(float).to_numpy(),
        index=pd.Index(key_of.loc[scored["customer_id"]].to_numpy(), name="customer_key"),
    )


def customer_quadrants(
    p: Prepared, expected_purchases_90d: pd.Series | None = None, d: date | None = None
) -> pd.Series:
    """The value x potential quadrant of every resolved customer as of d (default D):
    net revenue ranks and engagement computed here, ``expected_purchases_90d`` (per
    customer_key, see ``expected_purchases_by_key``) given; without it high potential is
    engagement alone."""
    cfg = p.config
    d = d or cfg.as_of
    state = pd.DataFrame(index=pd.Index(p.customers, name="customer_key"))
    state = state.join(order_summary(valid_orders(p), d, cfg)[["net_revenue_365d"]])
    state["net_revenue_365d"] = state["net_revenue_365d"].fillna(0.0)
    return value_potential_quadrant(state, engagement_90d(p, d), expected_purchases_90d, cfg)


def engagement_90d(p: Prepared, d: date | None = None) -> pd.Series:
    """Inbound social interactions plus `inquiry` tickets in [d-89, d] per customer."""
    cfg = p.config
    d = pd.Timestamp(d or cfg.as_of)
    lo = d - _days(cfg.engagement_window_days)
    s = p.social
    s = s[s["customer_key"].notna() & s["direction"].eq("inbound")]
    s = s[(s["occurred_date"] >= lo) & (s["occurred_date"] <= d)]
    t = p.tickets
    t = t[t["customer_key"].notna() & t["category"].eq("inquiry")]
    t = t[(t["created_date"] >= lo) & (t["created_date"] <= d)]
    return (
        s.groupby("customer_key").size().add(t.groupby("customer_key").size(), fill_value=0)
    ).astype(int)
