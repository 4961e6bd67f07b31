"""The metric dictionary (docs/spec/metrics.md) in pandas.

Pipeline: ``prepare`` (staging: as-of filter, deduplication, normalisation, currency
conversion, identity) -> ``customer_state`` / ``rfm_scores`` (one row per customer as of
a date) -> ``compute_kpis`` (one row per month, segment and KPI, the shape of
``marts.fct_kpi_monthly``).

Every choice the metric dictionary leaves open is a field of ``ReferenceConfig`` or is
named in docs/reference.md, aligned with the warehouse's documented choices
(docs/warehouse.md).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd

from pipelines.lib.pseudonym import load_key, pseudonym
from reference.identity import (
    account_record_id,
    identity_links,
    normalise_email,
    normalise_gender,
    normalise_phone,
    order_record_id,
    resolve_identities,
    social_record_id,
    ticket_record_id,
)

PROFILE_FIELDS = ("name", "gender", "birth_date", "phone", "email", "city")

#: metrics.md, RF map (first match wins): (segment, r_min, r_max, f_min, f_max)
RFM_SEGMENT_MAP: tuple[tuple[str, int, int, int, int], ...] = (
    ("Champions", 5, 5, 4, 5),
    ("Loyal Customers", 3, 4, 4, 5),
    ("Can't Lose Them", 1, 2, 5, 5),
    ("At Risk", 1, 2, 3, 4),
    ("Hibernating", 1, 2, 1, 2),
    ("Need Attention", 3, 3, 3, 3),
    ("About to Sleep", 3, 3, 1, 2),
    ("Potential Loyalists", 4, 5, 2, 3),
    ("Promising", 4, 4, 1, 1),
    ("New Customers", 5, 5, 1, 1),
)

#: metrics.md: priority -> (first response target minutes, resolution target minutes)
SLA_TARGETS: dict[str, tuple[int, int]] = {
    "P1": (15, 4 * 60),
    "P2": (60, 24 * 60),
    "P3": (240, 72 * 60),
    "P4": (1440, 168 * 60),
}

COUNT_KPIS = (
    "purchasing_customers",
    "new_customers",
    "active_customers",
    "orders",
    "vip_customers",
    "tickets",
    "social_engaged_customers",
)


def read_currency_rates(path: str | Path) -> dict[str, float]:
    """``currency,rate_to_cny`` rows of the dbt seed (data, not logic)."""
    with open(path, encoding="utf-8") as fh:
        return {row["currency"]: float(row["rate_to_cny"]) for row in csv.DictReader(fh)}


@dataclass(frozen=True)
class ReferenceConfig:
    """Settings and thresholds; defaults are those of metrics.md / dbt_project.yml."""

    as_of: date
    business_tz: str = "Asia/Shanghai"
    reporting_currency: str = "CNY"
    currency_rates: dict[str, float] = field(default_factory=lambda: {"CNY": 1.0})
    supernode_threshold: int = 20
    #: "warehouse": more than the threshold of accounts / social accounts in total, or of
    #: records of any kind first seen in one month (documented choice); "contract": more
    #: than the threshold of records in total (the landing contract read literally)
    supernode_rule: str = "warehouse"
    #: profile KPIs: "member_profiles" = customers with a member-profile version updated
    #: by end(M) (docs/warehouse.md); "known_customers" = every resolved customer first
    #: seen by end(M), completeness 0 without a profile
    profile_population: str = "member_profiles"
    #: contact data (order buyer name / phone / e-mail, ticket phone / e-mail, social
    #: phone) fills golden-record fields no member profile has; the warehouse: it does not
    profile_contact_data: bool = False
    #: the member system: the system of a ticket's customer_ref when its mapping names none
    ticket_ref_system: str = "crm"
    vip_revenue_365d: float = 50_000.0
    revenue_window_days: int = 364
    lifecycle_new_days: int = 89
    lifecycle_active_days: int = 179
    lifecycle_dormant_days: int = 364
    rfm_buckets: int = 5
    high_value_percent_rank: float = 0.8
    high_potential_engagement_90d: int = 3
    high_potential_expected_purchases_90d: float = 1.0
    engagement_window_days: int = 89
    demand_conversion_days: int = 30
    message_reply_hours: int = 24
    campaign_response_days: int = 7
    winback_conversion_days: int = 30
    csat_satisfied_score: int = 4
    default_ticket_priority: str = "P3"
    sla_targets: dict[str, tuple[int, int]] = field(default_factory=lambda: dict(SLA_TARGETS))


# --------------------------------------------------------------------------------------
# Staging
# --------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """Staged frames as of D, each row with its identity ``record_id`` and resolved
    ``customer_key`` (NaN/None: the record identifies nobody)."""

    config: ReferenceConfig
    profiles: pd.DataFrame  # one row per profile version
    order_lines: pd.DataFrame
    orders: pd.DataFrame  # one row per order (cancelled included, flagged)
    events: pd.DataFrame  # service events
    tickets: pd.DataFrame  # one row per ticket
    social: pd.DataFrame
    records: pd.DataFrame  # record_id, first_seen_date, customer_key, customer_record_id
    customers: pd.Index  # every resolved customer_key (0..n-1)
    customer_names: pd.Index  # customer_key -> smallest record id of the component
    cache: dict = field(default_factory=dict)


def to_business(ts: pd.Series, tz: str) -> pd.Series:
    """UTC naive timestamps -> business-timezone naive timestamps."""
    ts = pd.to_datetime(ts).astype("datetime64[us]")
    return ts.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)


def _as_of_filter(df: pd.DataFrame, ts_col: str, cfg: ReferenceConfig) -> pd.DataFrame:
    """Rows delivered on or before D whose event is dated on or before D (business tz);
    adds ``<event>_local`` (business-time timestamp) and ``<event>_date``."""
    df = df.copy()
    df[ts_col] = pd.to_datetime(df[ts_col]).astype("datetime64[us]")
    local = to_business(df[ts_col], cfg.business_tz)
    df[ts_col.replace("_at", "_local")] = local
    df[ts_col.replace("_at", "_date")] = local.dt.normalize()
    delivered = pd.to_datetime(df["_delivery_date"])
    d = pd.Timestamp(cfg.as_of)
    keep = (delivered <= d) & (local.dt.normalize() <= d)
    return df.loc[keep].reset_index(drop=True)


def _latest_delivery(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """One row per key, the latest delivery winning (delivery date, file, line)."""
    df = df.sort_values(["_delivery_date", "_source_file", "_source_line"], kind="stable")
    k = df[key].astype(object).where(df[key].notna(), "\x00NULL").astype(str)
    return df.loc[~k.duplicated(keep="last")].reset_index(drop=True)


def _lower(s: pd.Series) -> pd.Series:
    return s.map(lambda v: v.strip().lower() if isinstance(v, str) else v).astype(object)


PRIORITY_WORDS = {"urgent": "P1", "high": "P2", "normal": "P3", "medium": "P3", "low": "P4",
                  "1": "P1", "2": "P2", "3": "P3", "4": "P4"}  # fmt: skip


def normalise_priority(v: object) -> object:
    """P1-P4; also 1-4 and urgent / high / normal|medium / low. Anything else -> NULL."""
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return None
    t = str(v).strip()
    return PRIORITY_WORDS.get(t.lower(), t.upper() if t.upper() in SLA_TARGETS else None)


def _dec(v: float, places: int) -> Decimal:
    return Decimal(repr(float(v))).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def line_net_amount(
    lines: pd.DataFrame, rates: pd.Series, reporting_rate: float = 1.0
) -> pd.Series:
    """Net revenue of each line in the reporting currency, in exact decimal arithmetic:
    (quantity x unit_price - discount - refunded) x rate, rounded to the cent (half away
    from zero), as money is stored (decimal(18,2))."""
    cent = Decimal("0.01")
    out = []
    for q, price, disc, ref, rate in zip(
        lines["quantity"], lines["unit_price"], lines["discount_amount"],
        lines["refunded_amount"], rates, strict=True,
    ):  # fmt: skip
        net = _dec(q, 4) * _dec(price, 2) - _dec(disc, 2) - _dec(ref, 2)
        factor = _dec(rate, 6) / _dec(reporting_rate, 6)
        out.append(float((net * factor).quantize(cent, rounding=ROUND_HALF_UP)))
    return pd.Series(out, index=lines.index, dtype=float)


def prepare(raw: dict[str, pd.DataFrame], cfg: ReferenceConfig) -> Prepared:
    """Staging + identity resolution over the canonical frames of ``read_landing``."""
    from reference.landing import CANONICAL

    cust = _as_of_filter(raw["customers"], "updated_at", cfg)
    cust = _latest_delivery(cust, ["source_system", "customer_ref", "updated_at"])
    cust["phone_e164"] = cust["phone"].map(normalise_phone).astype(object)
    cust["email_norm"] = cust["email"].map(normalise_email).astype(object)
    cust["gender_norm"] = cust["gender"].map(normalise_gender).astype(object)

    lines = _as_of_filter(raw["orders"], "ordered_at", cfg)
    lines = _latest_delivery(lines, ["source_system", "order_id", "line_no"])
    for c in ("status", "channel", "category"):
        lines[c] = _lower(lines[c])
    lines["order_key"] = (
        lines["source_system"].astype(str) + ":" + lines["order_id"].astype(str)
    ).astype(object)
    lines["buyer_phone_e164"] = lines["buyer_phone"].map(normalise_phone).astype(object)
    lines["buyer_email_norm"] = lines["buyer_email"].map(normalise_email).astype(object)
    rates = lines["currency"].map(lambda c: cfg.currency_rates.get(str(c).upper()))
    if rates.isna().any():
        unknown = sorted(lines.loc[rates.isna(), "currency"].astype(str).unique())
        raise ValueError(f"no rate for currency {unknown} in the currency_rates seed")
    for c in ("quantity", "unit_price", "discount_amount", "refunded_amount"):
        lines[c] = lines[c].astype(float)
    lines["net_amount"] = line_net_amount(lines, rates, cfg.currency_rates[cfg.reporting_currency])
    # money is summed in integer cents: exact, so equal amounts tie in the RFM ranks
    lines["net_cents"] = np.rint(lines["net_amount"].to_numpy(dtype=float) * 100).astype(np.int64)

    events = _as_of_filter(raw["service_events"], "event_at", cfg)
    canon = [c for c in CANONICAL["service_events"] if c != "event_id"]
    events = _latest_delivery(events, canon)
    for c in ("event_type", "channel", "category"):
        events[c] = _lower(events[c])
    events["priority"] = events["priority"].map(normalise_priority).astype(object)
    events["phone_e164"] = events["phone"].map(normalise_phone).astype(object)
    events["email_norm"] = events["email"].map(normalise_email).astype(object)

    social = _as_of_filter(raw["social_interactions"], "occurred_at", cfg)
    social = _latest_delivery(social, ["platform", "interaction_id"])
    for c in ("platform", "direction", "interaction_type"):
        social[c] = _lower(social[c])
    social["phone_e164"] = social["phone"].map(normalise_phone).astype(object)

    # identity ---------------------------------------------------------------------------
    def ids(frame: pd.DataFrame, fn) -> pd.Series:
        if frame.empty:
            return pd.Series([], index=frame.index, dtype=object)
        return fn(frame).astype(object)

    cust["record_id"] = ids(
        cust, lambda f: account_record_id(f["source_system"], f["customer_ref"])
    )
    lines["record_id"] = ids(lines, order_record_id)
    events["record_id"] = ids(events, ticket_record_id)
    social["record_id"] = ids(social, social_record_id)
    seen = pd.concat(
        [
            cust[["record_id", "updated_date"]].rename(columns={"updated_date": "d"}),
            lines[["record_id", "ordered_date"]].rename(columns={"ordered_date": "d"}),
            events[["record_id", "event_date"]].rename(columns={"event_date": "d"}),
            social[["record_id", "occurred_date"]].rename(columns={"occurred_date": "d"}),
        ]
    )
    records = seen.groupby("record_id")["d"].min().rename("first_seen_date").reset_index()
    links = identity_links(cust, lines, events, social, cfg.ticket_ref_system)
    first_seen = records.set_index("record_id")["first_seen_date"]
    resolved = resolve_identities(
        links,
        cfg.supernode_threshold,
        records["record_id"],
        first_seen if cfg.supernode_rule == "warehouse" else None,
    )
    # customer_key: an integer per customer (fast joins); customer_record_id: the
    # component's smallest record id, the stable name of the customer
    codes, names = pd.factorize(resolved["customer_key"], sort=True)
    resolved = resolved.assign(
        customer_record_id=resolved["customer_key"], customer_key=pd.array(codes, dtype="Int64")
    )
    records = records.merge(resolved, on="record_id", how="left")
    to_customer = resolved.set_index("record_id")["customer_key"]
    for frame in (cust, lines, events, social):
        frame["customer_key"] = frame["record_id"].map(to_customer).astype("Int64")

    return Prepared(
        config=cfg,
        profiles=cust,
        order_lines=lines,
        orders=_orders(lines),
        events=events,
        tickets=_tickets(events, cfg),
        social=social,
        records=records,
        customers=pd.Index(np.arange(len(names)), dtype="int64"),
        customer_names=pd.Index(names),
    )


def _orders(lines: pd.DataFrame) -> pd.DataFrame:
    """One row per ``source_system:order_id``: earliest line timestamp; cancelled when
    every line is cancelled; net revenue summed over the lines that are not cancelled;
    channel: the smallest of its lines'."""
    if lines.empty:
        return pd.DataFrame(
            {
                "order_key": pd.Series(dtype=object),
                "customer_key": pd.Series(dtype=object),
                "ordered_at": pd.Series(dtype="datetime64[us]"),
                "order_date": pd.Series(dtype="datetime64[us]"),
                "is_cancelled": pd.Series(dtype=bool),
                "channel": pd.Series(dtype=object),
                "net_cents": pd.Series(dtype="int64"),
                "net_revenue": pd.Series(dtype=float),
            }
        )
    cancel = lines["status"].eq("cancelled")
    lines = lines.assign(_cancel=cancel, _net=lines["net_cents"].where(~cancel, 0))
    g = lines.groupby("order_key", sort=False)
    orders = pd.DataFrame(
        {
            "customer_key": g["customer_key"].first(),
            "ordered_at": g["ordered_at"].min(),
            "order_date": g["ordered_date"].min(),
            "is_cancelled": g["_cancel"].all(),
            # the smallest channel of the order's lines (fct_orders: min(channel))
            "channel": g["channel"].min(),
            "net_cents": g["_net"].sum(),
        }
    ).reset_index()
    orders["net_revenue"] = orders["net_cents"] / 100
    return orders


def _tickets(events: pd.DataFrame, cfg: ReferenceConfig) -> pd.DataFrame:
    """One row per ticket: created time (the `created` event, else the first event),
    attributes (first non-NULL in event order), first reply / resolution, reopens."""
    cols = ["ticket_id", "customer_key", "created_at", "created_date", "priority", "category",
            "first_reply_at", "first_resolved_at", "has_reopen"]  # fmt: skip
    if events.empty:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        for c in ("created_at", "created_date", "first_reply_at", "first_resolved_at"):
            empty[c] = pd.Series(dtype="datetime64[us]")
        empty["has_reopen"] = pd.Series(dtype=bool)
        return empty
    ev = events.sort_values(["event_at", "_delivery_date", "_source_file", "_source_line"])
    g = ev.groupby("ticket_id")
    tickets = g[["priority", "category", "customer_key"]].first()  # first non-null
    created = ev[ev["event_type"].eq("created")].groupby("ticket_id")["event_at"].min()
    tickets["created_at"] = created.reindex(tickets.index).fillna(g["event_at"].min())
    tickets["priority"] = tickets["priority"].fillna(cfg.default_ticket_priority)
    for kind, name in (("agent_reply", "first_reply_at"), ("resolved", "first_resolved_at")):
        sub = ev[ev["event_type"].eq(kind)]
        tickets[name] = sub.groupby("ticket_id")["event_at"].min().reindex(tickets.index)
    reopened = ev[ev["event_type"].eq("reopened")]["ticket_id"].unique()
    tickets["has_reopen"] = tickets.index.isin(reopened)
    tickets["created_date"] = to_business(tickets["created_at"], cfg.business_tz).dt.normalize()
    return tickets.reset_index(names="ticket_id")[cols]


# --------------------------------------------------------------------------------------
# Customer state
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# KPIs
# --------------------------------------------------------------------------------------


def month_ends(first: date, as_of: date) -> list[tuple[date, date, date, bool]]:
    """(month start, start(M) = previous month's last day, end(M), is_complete) for each
    calendar month from ``first``'s month to ``as_of``'s month."""
    out = []
    m = date(first.year, first.month, 1)
    while m <= as_of:
        nxt = date(m.year + (m.month == 12), m.month % 12 + 1, 1)
        last = nxt - timedelta(days=1)
        end = min(last, as_of)
        out.append((m, m - timedelta(days=1), end, last <= as_of))
        m = nxt
    return out


def _ratio(num: float, den: float) -> float | None:
    return None if den == 0 else num / den


Kpis = dict[str, tuple[float | None, float | None, float | None]]

#: The customer-order family published per segment (docs/warehouse.md, kpi_segments).
ORDER_FAMILY = (
    "purchasing_customers",
    "new_customers",
    "active_customers",
    "orders",
    "net_revenue",
    "aov",
    "repurchase_rate",
    "returning_customer_rate",
)
#: Point-in-time KPIs: a segment's row takes the segment as of end(M) (metrics.md,
#: "Segments"); every other KPI is a flow KPI (segment as of start(M)).
POINT_IN_TIME_KPIS = ("active_customers", "vip_customers")
#: The KPIs of a channel segment (the order's channel).
CHANNEL_KPIS = ("purchasing_customers", "orders", "net_revenue", "aov")
LIFECYCLE_STAGES = ("prospect", "new", "active", "dormant", "churned")
#: metrics.md, value x potential; a KPI segment for the month of D only (the CLV model
#: behind "high potential" is scored as of D only)
QUADRANTS = (
    "high_value_high_potential",
    "high_value_low_potential",
    "low_value_high_potential",
    "low_value_low_potential",
)
#: the RF segments (seed rfm_segment_map), a KPI segment as of start(M)
RFM_SEGMENTS = tuple(name for name, *_ in RFM_SEGMENT_MAP)
#: Every segment known in advance; a channel segment is named by the channel of the
#: orders (``channels(p)``), 'unknown' for an order without one.
SEGMENTS = ("all", "vip", *LIFECYCLE_STAGES, *QUADRANTS, *RFM_SEGMENTS)


def _count(n: int) -> tuple[float, float, None]:
    """Counts: value and numerator are the count; no denominator."""
    return (float(n), float(n), None)


def _active(last: pd.Series, d: pd.Timestamp, days: int) -> pd.Index:
    return last.index[(last >= d - _days(days)) & (last <= d)]


def _last_order_dates(orders: pd.DataFrame, d: pd.Timestamp) -> pd.Series:
    o = orders[orders["order_date"] <= d]
    return o.groupby("customer_key")["order_date"].max()


def _quantile(values: pd.Series, q: float) -> float | None:
    """DuckDB quantile_cont = linear interpolation between closest ranks = pandas'
    ``quantile(interpolation="linear")``."""
    values = values.dropna()
    return None if values.empty else float(values.quantile(q, interpolation="linear"))


@dataclass
class Month:
    month: pd.Timestamp  # first day of M
    start: pd.Timestamp  # start(M): last day of the previous month
    end: pd.Timestamp  # end(M): last day of M, or D
    is_complete: bool


def order_kpis(
    p: Prepared, m: Month, members: pd.Index | None, orders_of_all: bool = False
) -> Kpis:
    """The customer-order family for the customers in ``members`` (None: every resolved
    customer). ``orders_of_all``: orders / net_revenue / aov count every order, also
    those of no resolved customer (segment ``all``). repurchase_rate is the cohort rate:
    of the members with an order on or before start(M), the share who order in M;
    returning_customer_rate: of the members buying in M, the share with two or more
    orders to date at end(M)."""
    cfg = p.config
    co = resolved_orders(p)
    if members is not None:
        co = co[co["customer_key"].isin(members)]
    in_m = co[(co["order_date"] >= m.month) & (co["order_date"] <= m.end)]
    buyers = pd.Index(in_m["customer_key"].unique())
    first = co.groupby("customer_key")["order_date"].min()
    out: Kpis = {}
    out["purchasing_customers"] = _count(len(buyers))
    out["new_customers"] = _count(int(((first >= m.month) & (first <= m.end)).sum()))
    active_end = _active(_last_order_dates(co, m.end), m.end, cfg.lifecycle_active_days)
    out["active_customers"] = _count(len(active_end))
    src = valid_orders(p) if orders_of_all else co
    month_orders = src[(src["order_date"] >= m.month) & (src["order_date"] <= m.end)]
    rev, n = int(month_orders["net_cents"].sum()) / 100, len(month_orders)
    out["net_revenue"] = (rev, rev, None)
    out["orders"] = _count(n)
    out["aov"] = (_ratio(rev, n), rev, float(n))
    cohort = pd.Index(first.index[first <= m.start])
    back = len(cohort.intersection(buyers))
    out["repurchase_rate"] = (_ratio(back, len(cohort)), back, len(cohort))
    lifetime = co[co["order_date"] <= m.end].groupby("customer_key").size()
    ret = int((lifetime.reindex(buyers).fillna(0) >= 2).sum())
    out["returning_customer_rate"] = (_ratio(ret, len(buyers)), ret, len(buyers))
    return out


def channels(p: Prepared) -> tuple[str, ...]:
    """The channel segments: every channel of a valid order ('unknown' without one)."""
    return tuple(sorted(valid_orders(p)["channel"].fillna("unknown").unique()))


def channel_kpis(p: Prepared, m: Month, channel: str) -> Kpis:
    """orders / net_revenue / aov of every valid order of the channel in M (also those of
    no resolved customer) and purchasing_customers = resolved customers with such an
    order; nothing when the channel has no order in M."""
    vo = valid_orders(p)
    vo = vo[vo["channel"].fillna("unknown").eq(channel)]
    in_m = vo[(vo["order_date"] >= m.month) & (vo["order_date"] <= m.end)]
    if in_m.empty:
        return {}
    rev, n = int(in_m["net_cents"].sum()) / 100, len(in_m)
    return {
        "purchasing_customers": _count(in_m["customer_key"].dropna().nunique()),
        "orders": _count(n),
        "net_revenue": (rev, rev, None),
        "aov": (_ratio(rev, n), rev, float(n)),
    }


def churn_kpis(p: Prepared, m: Month, members: pd.Index | None) -> Kpis:
    cfg = p.config
    co = resolved_orders(p)
    if members is not None:
        co = co[co["customer_key"].isin(members)]
    last_start = _last_order_dates(co, m.start)
    last_end = _last_order_dates(co, m.end)
    active_start = _active(last_start, m.start, cfg.lifecycle_active_days)
    active_end = _active(last_end, m.end, cfg.lifecycle_active_days)
    churned = len(active_start.difference(active_end))
    return {"churn_rate": (_ratio(churned, len(active_start)), churned, len(active_start))}


def reactivation_kpis(p: Prepared, m: Month, members: pd.Index | None) -> Kpis:
    cfg = p.config
    co = resolved_orders(p)
    if members is not None:
        co = co[co["customer_key"].isin(members)]
    last_start = _last_order_dates(co, m.start)
    dormant = last_start.index[
        (last_start >= m.start - _days(cfg.lifecycle_dormant_days))
        & (last_start <= m.start - _days(cfg.lifecycle_active_days + 1))
    ]
    in_m = co[(co["order_date"] >= m.month) & (co["order_date"] <= m.end)]
    react = len(dormant.intersection(pd.Index(in_m["customer_key"].unique())))
    return {"dormant_reactivation_rate": (_ratio(react, len(dormant)), react, len(dormant))}


def resolved_orders(p: Prepared) -> pd.DataFrame:
    """Valid orders of resolved customers."""
    if "resolved_orders" not in p.cache:
        vo = valid_orders(p)
        p.cache["resolved_orders"] = vo[vo["customer_key"].notna()]
    return p.cache["resolved_orders"]


def vip_at(p: Prepared, d: pd.Timestamp) -> pd.Index:
    """Customers with is_vip as of d."""

    def compute() -> pd.Index:
        co = resolved_orders(p)
        lo = d - _days(p.config.revenue_window_days)
        win = co[(co["order_date"] <= d) & (co["order_date"] >= lo)]
        rev = win.groupby("customer_key")["net_cents"].sum() / 100
        return rev.index[rev >= p.config.vip_revenue_365d]

    return _cached(p, ("vip_at", d), compute)


def stage_at(p: Prepared, d: pd.Timestamp) -> pd.Series:
    """Lifecycle stage as of d of every resolved customer."""

    def compute() -> pd.Series:
        state = pd.DataFrame(index=pd.Index(p.customers, name="customer_key"))
        summary = order_summary(resolved_orders(p), d, p.config)
        state = state.join(summary[["first_order_date", "last_order_date"]])
        return lifecycle_stage(state, d, p.config)

    return _cached(p, ("stage_at", d), compute)


def rf_segment_at(p: Prepared, d: pd.Timestamp) -> pd.Series:
    """The RF segment as of d of every customer with an order on or before d: scores
    ranked among those customers (metrics.md, "RFM"; recency and orders_365d as of d)."""

    def compute() -> pd.Series:
        state = order_summary(resolved_orders(p), d, p.config)
        state["recency_days"] = (pd.Timestamp(d) - state["last_order_date"]).dt.days
        return rfm_scores(state, p.config.rfm_buckets)["rfm_segment"]

    return _cached(p, ("rf_segment_at", d), compute)


def profile_kpis(p: Prepared, m: Month, dates: pd.DataFrame) -> Kpis:
    completeness = profile_completeness_at(p, m.end, dates)
    known = len(completeness)
    total = float(completeness.sum())
    full = int((completeness >= 1.0 - 1e-12).sum())
    prof = p.profiles[p.profiles["customer_key"].notna()]
    first = prof.groupby("record_id").agg(d=("updated_date", "min"), c=("customer_key", "first"))
    first = first[first["d"] <= m.end]
    n_recs = len(first)
    merged = n_recs - first["c"].nunique()
    return {
        "profile_completeness": (_ratio(total, known), total, known),
        "full_profile_rate": (_ratio(full, known), full, known),
        "duplicate_record_rate": (_ratio(merged, n_recs), merged, n_recs),
    }


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


def segment_members(
    p: Prepared,
    m: Month,
    segment: str,
    quadrants: pd.Series | None = None,
    as_of: str = "start",
) -> pd.Index | None:
    """Customers of a segment in month M (None for ``all``), among the customers whose
    first order is on or before end(M) (the customer-months of the warehouse start at the
    first order). ``as_of``: "start" (flow KPIs) or "end" (point-in-time KPIs):
    ``vip`` = is_vip as of start(M) / end(M); a lifecycle stage = the stage as of
    start(M) / end(M); an RF segment = the segment as of start(M) (flow KPIs only); a
    quadrant = the quadrant as of D (``quadrants``, default ``customer_quadrants(p)``
    without CLV scores) for both, in the month of D only (empty before)."""
    if segment == "all":
        return None
    if as_of not in ("start", "end"):
        raise ValueError(f"as_of must be 'start' or 'end', not {as_of!r}")
    d = m.start if as_of == "start" else m.end
    if segment == "vip":
        return vip_at(p, d)
    first = _cached(
        p,
        ("first_order",),
        lambda: resolved_orders(p).groupby("customer_key")["order_date"].min(),
    )
    buyers = first.index[first <= m.end]
    if segment in LIFECYCLE_STAGES:
        stages = stage_at(p, d).reindex(buyers)
        return stages.index[stages == segment]
    if segment in RFM_SEGMENTS:
        if as_of == "end":
            return pd.Index([], dtype="int64")
        segments = rf_segment_at(p, m.start)
        return segments.index[segments == segment]
    if segment in QUADRANTS:
        as_of_d = pd.Timestamp(p.config.as_of)
        if m.month != as_of_d.replace(day=1):
            return pd.Index([], dtype="int64")
        quadrants = customer_quadrants(p) if quadrants is None else quadrants
        of_buyers = quadrants.reindex(buyers)
        return of_buyers.index[of_buyers == segment]
    raise ValueError(f"unknown segment {segment!r}; known: {SEGMENTS} and the channels")


def kpis_for_month(
    p: Prepared,
    m: Month,
    segment: str,
    dates: pd.DataFrame | None = None,
    quadrants: pd.Series | None = None,
) -> Kpis:
    """Every KPI the segment publishes for month M; a segment without customers in M
    publishes nothing; service and social KPIs start with the first month that has
    tickets / interactions. Flow KPIs take the segment as of start(M), point-in-time
    KPIs (active_customers) as of end(M) (metrics.md, "Segments"):

    - vip: the order family; active_customers of the VIPs as of end(M)
    - lifecycle stage: the order family (no repurchase_rate for prospect: nobody had
      ordered), churn_rate for new and active, dormant_reactivation_rate for dormant;
      active_customers of the stage as of end(M), new and active only
    - quadrant (month of D only): the order family, churn_rate, dormant_reactivation_rate
    - RF segment: the order family but new_customers and active_customers, churn_rate,
      dormant_reactivation_rate
    - a channel: CHANNEL_KPIS"""
    if segment == "all":
        out = order_kpis(p, m, None, orders_of_all=True)
        out |= churn_kpis(p, m, None) | reactivation_kpis(p, m, None)
        out["vip_customers"] = _count(len(vip_at(p, m.end)))
        dates = profile_field_dates(p) if dates is None else dates
        out |= profile_kpis(p, m, dates)
        first_ticket = p.tickets["created_date"].min()
        if not pd.isna(first_ticket) and first_ticket.replace(day=1) <= m.month:
            out |= service_kpis(p, m)
        first_social = p.social["occurred_date"].min()
        if not pd.isna(first_social) and first_social.replace(day=1) <= m.month:
            out |= social_kpis(p, m)
        return out
    if segment not in SEGMENTS and segment in channels(p):
        return channel_kpis(p, m, segment)
    members = segment_members(p, m, segment, quadrants)
    assert members is not None
    out: Kpis = {}
    if len(members):
        out = order_kpis(p, m, members)
        del out["active_customers"]
        if segment in RFM_SEGMENTS:
            del out["new_customers"]
        if segment == "prospect":
            del out["repurchase_rate"]
        if segment in ("new", "active") or segment in QUADRANTS or segment in RFM_SEGMENTS:
            out |= churn_kpis(p, m, members)
        if segment == "dormant" or segment in QUADRANTS or segment in RFM_SEGMENTS:
            out |= reactivation_kpis(p, m, members)
    if segment in ("vip", "new", "active") or segment in QUADRANTS:
        at_end = segment_members(p, m, segment, quadrants, as_of="end")
        assert at_end is not None
        if len(at_end):
            out["active_customers"] = order_kpis(p, m, at_end)["active_customers"]
    return out


def first_data_month(p: Prepared) -> date:
    dates = [p.orders["order_date"].min(), p.tickets["created_date"].min(),
             p.social["occurred_date"].min()]  # fmt: skip
    dates = [x for x in dates if x is not None and not pd.isna(x)]
    return min(dates).date() if dates else p.config.as_of


def compute_kpis(
    p: Prepared,
    segments: tuple[str, ...] | None = None,
    first_month: date | None = None,
    clv_scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The monthly KPI table: month, segment, kpi, value, numerator, denominator,
    is_complete (the shape of marts.fct_kpi_monthly). ``clv_scores``: the CLV model's
    scores as of D (``customer_id`` of the warehouse, ``expected_purchases_90d``; e.g.
    clv.customer_scores), the one input the quadrant segments take from outside; None or
    empty: high potential is engagement alone (the warehouse's empty placeholder).
    ``segments``: default every segment (SEGMENTS and the channels of the orders)."""
    cfg = p.config
    segments = (*SEGMENTS, *channels(p)) if segments is None else segments
    first_month = first_month or first_data_month(p)
    dates = profile_field_dates(p) if "all" in segments else None
    quadrants = None
    if any(segment in QUADRANTS for segment in segments):
        quadrants = customer_quadrants(p, expected_purchases_by_key(p, clv_scores))
    rows = []
    for month, start, end, complete in month_ends(first_month, cfg.as_of):
        m = Month(pd.Timestamp(month), pd.Timestamp(start), pd.Timestamp(end), complete)
        for segment in segments:
            kpis = kpis_for_month(p, m, segment, dates, quadrants)
            for kpi, (value, num, den) in kpis.items():
                rows.append((month, segment, kpi, value, num, den, complete))
    frame = pd.DataFrame(
        rows,
        columns=["month", "segment", "kpi", "value", "numerator", "denominator", "is_complete"],
    )
    for c in ("value", "numerator", "denominator"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


# --------------------------------------------------------------------------------------
# Maturity and pending events (metrics.md "Maturity")
# --------------------------------------------------------------------------------------

#: maturity_days per KPI (seed kpi_definitions, metrics.md "Maturity"); 0 for the others
MATURITY_DAYS: dict[str, int] = {
    "demand_conversion_rate": 30,
    "winback_conversion_rate": 30,
    "campaign_response_rate": 7,
    "resolution_sla_rate": 7,
    "first_response_sla_rate": 1,
    "first_response_minutes_p50": 1,
    "first_response_minutes_p90": 1,
    "message_reply_rate": 1,
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
    out["first_response_minutes_p50"] = (_quantile(fr, 0.5), None, answered, fr_pending)
    out["first_response_minutes_p90"] = (_quantile(fr, 0.9), None, answered, fr_pending)
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


# --------------------------------------------------------------------------------------
# Weekly KPIs (fct_kpi_weekly)
# --------------------------------------------------------------------------------------

WEEKLY_KPIS = (
    "orders",
    "net_revenue",
    "tickets",
    "first_response_sla_rate",
    "resolution_sla_rate",
    "csat_avg",
    "csat_satisfied_rate",
)


def compute_weekly_kpis(
    p: Prepared, first_date: date | None = None, maturity_days: dict[str, int] | None = None
) -> pd.DataFrame:
    """The weekly KPI table of segment all (the shape of marts.fct_kpi_weekly): week (the
    ISO Monday), week_label, kpi, value, numerator, denominator, pending, is_complete, for
    every ISO week from the week of ``first_date`` (default: the first data date) to the
    week of D; the monthly definitions on Monday-Sunday windows."""
    cfg = p.config
    maturity_days = MATURITY_DAYS if maturity_days is None else maturity_days
    first = pd.Timestamp(first_date or first_data_month_date(p))
    as_of = pd.Timestamp(cfg.as_of)
    week = first - _days(first.weekday())
    rows = []
    vo = valid_orders(p)
    ev = p.events
    cs = ev[ev["event_type"].eq("csat") & ev["csat_score"].notna()]
    while week <= as_of:
        end = min(week + _days(6), as_of)
        o = vo[(vo["order_date"] >= week) & (vo["order_date"] <= end)]
        rev = int(o["net_cents"].sum()) / 100
        t = p.tickets[(p.tickets["created_date"] >= week) & (p.tickets["created_date"] <= end)]
        kpis: dict[str, tuple] = {
            "orders": (float(len(o)), float(len(o)), None, None),
            "net_revenue": (rev, rev, None, None),
            "tickets": (float(len(t)), float(len(t)), None, None),
        }
        for kpi, (met, pending) in _sla_clocks(p, t).items():
            num, den = int((met & ~pending).sum()), int((~pending).sum())
            kpis[kpi] = (_ratio(num, den), num, den, int(pending.sum()))
        s = cs[(cs["event_date"] >= week) & (cs["event_date"] <= end)]["csat_score"].astype(float)
        sat = int((s >= cfg.csat_satisfied_score).sum())
        kpis["csat_avg"] = (_ratio(float(s.sum()), len(s)), float(s.sum()), len(s), None)
        kpis["csat_satisfied_rate"] = (_ratio(sat, len(s)), sat, len(s), None)
        iso = week.isocalendar()
        for kpi in WEEKLY_KPIS:
            value, num, den, pending = kpis[kpi]
            days = maturity_days.get(kpi, 0)
            complete = week + _days(6 + days) <= as_of
            rows.append((week.date(), f"{iso.year}-W{iso.week:02d}", kpi, value, num, den,
                         pending if days > 0 else None, complete))  # fmt: skip
        week += _days(7)
    frame = pd.DataFrame(
        rows,
        columns=["week", "week_label", "kpi", "value", "numerator", "denominator", "pending",
                 "is_complete"],
    )  # fmt: skip
    for c in ("value", "numerator", "denominator", "pending"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


def first_data_month_date(p: Prepared) -> date:
    """The first data date: the earliest order, ticket or interaction date (or D)."""
    dates = [p.orders["order_date"].min(), p.tickets["created_date"].min(),
             p.social["occurred_date"].min(), pd.Timestamp(p.config.as_of)]  # fmt: skip
    return min(x for x in dates if x is not None and not pd.isna(x)).date()
