"""Staging: ``prepare`` takes the landing frames to one frame per entity as of D (as-of
filter, deduplication, normalisation, currency conversion, identity)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal

import numpy as np
import pandas as pd

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
from reference.metrics.config import SLA_TARGETS, ReferenceConfig


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
