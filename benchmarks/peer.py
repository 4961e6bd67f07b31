"""The pandas peer: the floor's outputs (benchmarks/floor.sql) written the way
many teams write them first — read the raw tables into DataFrames, then pandas
groupby / merge, scipy for the connected components, a loop over the months.

    python -m benchmarks.peer --db BENCH.duckdb --as-of D [--out DIR] [--json OUT]

reads the raw tables and seeds of BENCH.duckdb (the copy `floor.prepare_db` makes) and
writes customer_records, customers and kpi_monthly as Parquet to DIR. Same definitions as
the floor and the dbt project (docs/warehouse.md); the benchmark and
tests/test_bench_floor.py check that the three agree.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from datetime import date
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from benchmarks.floor import business_timezone

SUPERNODE_THRESHOLD = 20
REVENUE_WINDOW_DAYS = 364
VIP_CENTS = 50_000 * 100
NEW_DAYS, ACTIVE_DAYS, DORMANT_DAYS = 89, 179, 364
RFM_BUCKETS = 5
REPORTING_CURRENCY = "CNY"
TICKET_REF_SYSTEM = "crm"
LINEAGE = ["_delivery_date", "_loaded_at", "_source_file", "_source_line"]

COLUMNS = {
    "customers": ["source_system", "customer_ref", "phone", "email", "unionid", "updated_at"],
    "orders": [
        "order_id", "line_no", "source_system", "customer_ref", "status", "buyer_phone",
        "buyer_email", "quantity", "unit_price", "discount_amount", "refunded_amount",
        "currency", "ordered_at", "_source_name",
    ],
    "service_events": [
        "ticket_id", "event_type", "customer_ref", "phone", "email", "social_account_id",
        "event_at",
    ],
    "social_interactions": [
        "interaction_id", "platform", "account_id", "unionid", "phone", "occurred_at",
    ],
}  # fmt: skip


def read_raw(con: duckdb.DuckDBPyConnection, schema: str = "raw") -> dict[str, pd.DataFrame]:
    """The raw tables (the columns the outputs need, with lineage) as DataFrames."""
    return {
        table: con.sql(f"select {', '.join(columns + LINEAGE)} from {schema}.{table}").df()
        for table, columns in COLUMNS.items()
    }


# Staging -------------------------------------------------------------------------------

#: What DuckDB's trim() removes: the Unicode space separators (category Zs), not tabs.
SPACES = " \u00a0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u202f\u205f\u3000"


def clean(s: pd.Series) -> pd.Series:
    """Trimmed text (as SQL trim), NULL when blank."""
    out = s.astype("string").str.strip(SPACES)
    return out.mask(out == "")


def code(s: pd.Series) -> pd.Series:
    return clean(s).str.lower()


# as RE2 (DuckDB's regular expressions): \s is [\t\n\f\r ], [0-9] ASCII digits
_SEPARATORS = re.compile(r"[\t\n\f\r \-.()/]")
_INTERNATIONAL = re.compile(r"(?:\+|00)([0-9]+)")
_CN_NATIONAL = re.compile(r"1[3-9][0-9]{9}|10[0-9]{8}|2[0-9]{9}|[3-9][0-9]{9,10}")
_CN_LANDLINE = re.compile(r"10[0-9]{8}|2[0-9]{9}|[3-9][0-9]{9,10}")
_CN_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_EMAIL = re.compile(r"[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}")


def e164(value: str) -> str | None:
    """A phone number in E.164, CN default (the dbt macro normalize_phone)."""
    c = _SEPARATORS.sub("", value.strip(SPACES))
    international = _INTERNATIONAL.fullmatch(c)
    if international:
        digits = international.group(1)
        if digits.startswith("86"):
            return "+" + digits if _CN_NATIONAL.fullmatch(digits[2:]) else None
        return "+" + digits if re.fullmatch(r"[1-9][0-9]{7,14}", digits) else None
    if c.startswith("86") and _CN_MOBILE.fullmatch(c[2:]):
        return "+" + c
    if c.startswith("0") and _CN_LANDLINE.fullmatch(c[1:]):
        return "+86" + c[1:]
    if _CN_MOBILE.fullmatch(c):
        return "+86" + c
    return None


def email(value: str) -> str | None:
    text = value.strip(SPACES).lower()
    return text if _EMAIL.fullmatch(text) else None


def normalised(s: pd.Series, fn) -> pd.Series:
    """`fn` applied once per distinct value."""
    values = s.dropna().unique()
    return s.map(dict(zip(values, map(fn, values), strict=True))).astype(object)


def business_date(ts: pd.Series, tz: str) -> pd.Series:
    local = ts.dt.tz_localize("UTC").dt.tz_convert(tz).dt.tz_localize(None)
    return local.dt.normalize()


def as_of(df: pd.DataFrame, ts: str, d: pd.Timestamp, tz: str) -> pd.DataFrame:
    """Rows delivered by D whose event is dated by D; adds `<ts>_date` (business date)."""
    df = df.assign(**{ts.replace("_at", "_date"): business_date(df[ts], tz)})
    keep = (pd.to_datetime(df["_delivery_date"]) <= d) & (df[ts.replace("_at", "_date")] <= d)
    return df.loc[keep]


def latest(df: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """One row per key: the latest delivery (date, load time, file, line)."""
    return df.sort_values(LINEAGE, kind="stable").drop_duplicates(key, keep="last")


def half_away(numerator: pd.Series, divisor: int) -> pd.Series:
    """Integer division rounded half away from zero (decimal casts and round())."""
    sign = np.sign(numerator)
    return sign * ((numerator.abs() + divisor // 2) // divisor)


def scaled(values: pd.Series, scale: int) -> pd.Series:
    """A decimal column (read as float) as an integer number of 10^-scale units."""
    return pd.Series(
        np.rint(values.fillna(0).to_numpy(dtype=float) * 10**scale), index=values.index
    ).astype("int64")


# The outputs ---------------------------------------------------------------------------


def compute(
    raw: dict[str, pd.DataFrame],
    rates: pd.DataFrame,
    rfm_map: pd.DataFrame,
    d: date,
    tz: str | None = None,
) -> dict[str, pd.DataFrame]:
    """customer_records, customers and kpi_monthly as of `d` (see floor.sql)."""
    tz = tz or business_timezone()
    D = pd.Timestamp(d)

    # staging -----------------------------------------------------------------------
    cust = raw["customers"].assign(
        customer_key=lambda f: clean(f["source_system"]) + ":" + clean(f["customer_ref"])
    )
    cust = latest(as_of(cust, "updated_at", D, tz), ["customer_key", "updated_at"])
    cust = cust.assign(
        phone=normalised(cust["phone"], e164),
        email=normalised(cust["email"], email),
        unionid=clean(cust["unionid"]),
    )

    lines = raw["orders"]
    system = clean(lines["source_system"]).fillna(lines["_source_name"])
    lines = lines.assign(
        order_id=system + ":" + clean(lines["order_id"]),
        source_system=system,
        line_no=lines["line_no"].fillna(1),
        customer_ref=clean(lines["customer_ref"]),
    )
    lines = latest(as_of(lines, "ordered_at", D, tz), ["order_id", "line_no"])
    lines = lines.assign(
        is_cancelled=code(lines["status"]).eq("cancelled"),
        buyer_phone=normalised(lines["buyer_phone"], e164),
        buyer_email=normalised(lines["buyer_email"], email),
        currency=clean(lines["currency"]).str.upper().fillna(REPORTING_CURRENCY),
    )
    # net revenue per line in exact integer arithmetic: decimal(18,2) of
    # quantity x price - discount - refunded, times the rate (decimal(18,6)), to the cent
    rate = rates.set_index("currency")["rate_to_cny"]
    fx = lines["currency"].map(rate / rate[REPORTING_CURRENCY])
    if fx.isna().any():
        raise ValueError(f"no rate for {sorted(lines.loc[fx.isna(), 'currency'].unique())}")
    net6 = (
        scaled(lines["quantity"], 4) * scaled(lines["unit_price"], 2)
        - (scaled(lines["discount_amount"], 2) + scaled(lines["refunded_amount"], 2)) * 10_000
    )
    net2 = half_away(net6, 10_000)
    lines["net_cents"] = half_away(net2 * scaled(fx, 6), 1_000_000)
    lines["valid_cents"] = lines["net_cents"].where(~lines["is_cancelled"], 0)

    g = lines.groupby("order_id", sort=False)
    orders = pd.DataFrame(
        {
            "source_system": g["source_system"].min(),
            "customer_ref": g["customer_ref"].min(),
            "ordered_at": g["ordered_at"].min(),
            "order_date": g["ordered_date"].min(),
            "is_cancelled": g["is_cancelled"].all(),
            "net_cents": g["valid_cents"].sum(),
        }
    ).reset_index()
    orders["record_id"] = (
        "account:" + orders["source_system"] + ":" + orders["customer_ref"]
    ).fillna("order:" + orders["order_id"])

    events = raw["service_events"].assign(
        ticket_id=lambda f: clean(f["ticket_id"]),
        event_type=lambda f: code(f["event_type"]),
    )
    events = as_of(events, "event_at", D, tz)
    events = events.assign(
        customer_ref=clean(events["customer_ref"]),
        phone=normalised(events["phone"], e164),
        email=normalised(events["email"], email),
        social_account_id=clean(events["social_account_id"]),
    )

    social = raw["social_interactions"].assign(
        interaction_id=lambda f: code(f["platform"]) + ":" + clean(f["interaction_id"]),
        social_account_key=lambda f: code(f["platform"]) + ":" + clean(f["account_id"]),
    )
    social = latest(as_of(social, "occurred_at", D, tz), ["interaction_id"])
    social = social.assign(
        account_id=clean(social["account_id"]),
        unionid=clean(social["unionid"]),
        phone=normalised(social["phone"], e164),
    )

    # identity ----------------------------------------------------------------------
    cust["record_id"] = "account:" + cust["customer_key"]
    events["record_id"] = "ticket:" + events["ticket_id"]
    social["record_id"] = "social:" + social["social_account_key"]
    lines = lines.merge(orders[["order_id", "record_id"]], on="order_id")

    seen = pd.concat(
        [
            cust[["record_id", "updated_at"]].set_axis(["record_id", "seen_at"], axis=1),
            orders[["record_id", "ordered_at"]].set_axis(["record_id", "seen_at"], axis=1),
            events[["record_id", "event_at"]].set_axis(["record_id", "seen_at"], axis=1),
            social[["record_id", "occurred_at"]].set_axis(["record_id", "seen_at"], axis=1),
        ]
    )
    records = seen.groupby("record_id")["seen_at"].min().reset_index()
    records["first_seen_month"] = business_date(records["seen_at"], tz).dt.to_period("M")
    records["is_long_lived"] = records["record_id"].str.startswith(("account:", "social:"))

    def ids(frame: pd.DataFrame, kind: str, value: pd.Series) -> pd.DataFrame:
        return pd.DataFrame({"record_id": frame["record_id"], "kind": kind, "value": value})

    social_ref = events["social_account_id"].str.replace(
        r"^(wechat|weibo|douyin|xiaohongshu|mini_program):", "", regex=True
    )
    identifiers = pd.concat(
        [
            ids(cust, "account", cust["customer_key"]),
            ids(cust, "phone", cust["phone"]),
            ids(cust, "email", cust["email"]),
            ids(cust, "unionid", cust["unionid"]),
            ids(lines, "account", lines["source_system"] + ":" + lines["customer_ref"]),
            ids(lines, "phone", lines["buyer_phone"]),
            ids(lines, "email", lines["buyer_email"]),
            ids(events, "account", TICKET_REF_SYSTEM + ":" + events["customer_ref"]),
            ids(events, "phone", events["phone"]),
            ids(events, "email", events["email"]),
            ids(events, "social", social_ref),
            ids(social, "social", social["account_id"]),
            ids(social, "unionid", social["unionid"]),
            ids(social, "phone", social["phone"]),
        ]
    )
    identifiers = identifiers.dropna(subset=["value"]).drop_duplicates()
    identifiers = identifiers.merge(
        records[["record_id", "is_long_lived", "first_seen_month"]], on="record_id"
    )
    # super-node guard: more than 20 long-lived holders, or 20 holders first seen in a month
    shared = identifiers[identifiers["kind"].isin(["phone", "email", "unionid"])]
    per_month = shared.groupby(["kind", "value", "first_seen_month"]).agg(
        n=("record_id", "size"), n_long=("is_long_lived", "sum")
    )
    per_value = per_month.groupby(level=["kind", "value"]).agg(
        n_long=("n_long", "sum"), n_max=("n", "max")
    )
    guarded = per_value[
        (per_value["n_long"] > SUPERNODE_THRESHOLD) | (per_value["n_max"] > SUPERNODE_THRESHOLD)
    ].index
    usable = identifiers.set_index(["kind", "value"])
    usable = usable[~usable.index.isin(guarded)].reset_index()

    usable["anchor"] = usable.groupby(["kind", "value"])["record_id"].transform("min")
    edges = usable.loc[usable["record_id"] != usable["anchor"], ["record_id", "anchor"]]
    nodes = pd.Index(
        pd.concat(
            [records.loc[records["is_long_lived"], "record_id"], usable["record_id"]]
        ).unique()
    )
    a = nodes.get_indexer(edges["record_id"])
    b = nodes.get_indexer(edges["anchor"])
    graph = coo_matrix((np.ones(len(a), dtype=np.int8), (a, b)), shape=(len(nodes), len(nodes)))
    _, labels = connected_components(graph, directed=False)
    customer_records = pd.DataFrame({"record_id": nodes, "label": labels})
    customer_records["component_record_id"] = customer_records.groupby("label")[
        "record_id"
    ].transform("min")
    names = customer_records["component_record_id"].unique()
    md5 = {n: hashlib.md5(n.encode()).hexdigest() for n in names}
    customer_records["customer_id"] = customer_records["component_record_id"].map(md5)
    customer_records = customer_records.drop(columns="label")

    # customer state and RFM --------------------------------------------------------
    valid = orders[~orders["is_cancelled"]]
    customer_orders = valid.merge(customer_records[["record_id", "customer_id"]], on="record_id")
    window_start = D - pd.Timedelta(days=REVENUE_WINDOW_DAYS)
    in_window = customer_orders["order_date"] >= window_start
    g = customer_orders.groupby("customer_id")
    summary = pd.DataFrame(
        {
            "first_order_date": g["order_date"].min(),
            "last_order_date": g["order_date"].max(),
            "orders_lifetime": g.size(),
            "orders_365d": customer_orders[in_window].groupby("customer_id").size(),
            "cents_365d": customer_orders[in_window].groupby("customer_id")["net_cents"].sum(),
            "cents_lifetime": g["net_cents"].sum(),
        }
    )
    summary[["orders_365d", "cents_365d"]] = (
        summary[["orders_365d", "cents_365d"]].fillna(0).astype("int64")
    )
    n = len(summary)

    def score(rank: pd.Series) -> pd.Series:
        return (1 + np.floor(RFM_BUCKETS * (rank - 1) / n)).astype("int64")

    summary["r_score"] = score(summary["last_order_date"].rank(method="min"))
    summary["f_score"] = score(summary["orders_365d"].rank(method="min"))
    summary["m_score"] = score(summary["cents_365d"].rank(method="min"))
    summary["rfm_segment"] = None
    for row in rfm_map.sort_values("priority", ascending=False).itertuples():
        match = summary["r_score"].between(row.r_min, row.r_max) & summary["f_score"].between(
            row.f_min, row.f_max
        )
        summary.loc[match, "rfm_segment"] = row.segment

    customers = pd.DataFrame(index=pd.Index(names, name="customer_id").map(md5)).join(summary)
    customers["orders_lifetime"] = customers["orders_lifetime"].fillna(0).astype("int64")
    customers["orders_365d"] = customers["orders_365d"].fillna(0).astype("int64")
    customers["net_revenue_365d"] = customers["cents_365d"].fillna(0) / 100
    customers["net_revenue_lifetime"] = customers["cents_lifetime"].fillna(0) / 100
    customers["recency_days"] = (D - customers["last_order_date"]).dt.days.astype("Int64")
    customers["is_vip"] = customers["cents_365d"].fillna(0) >= VIP_CENTS
    first, last = customers["first_order_date"], customers["last_order_date"]
    customers["lifecycle_stage"] = np.select(
        [
            first.isna(),
            first >= D - pd.Timedelta(days=NEW_DAYS),
            last >= D - pd.Timedelta(days=ACTIVE_DAYS),
            last >= D - pd.Timedelta(days=DORMANT_DAYS),
        ],
        ["prospect", "new", "active", "dormant"],
        default="churned",
    )
    for column in ("r_score", "f_score", "m_score"):
        customers[column] = customers[column].astype("Int64")
    customers = customers.drop(columns=["cents_365d", "cents_lifetime"]).reset_index()

    # monthly KPIs, segment 'all' ---------------------------------------------------
    created = events[events["event_type"].eq("created")].groupby("ticket_id")["event_at"].min()
    created = created.reindex(events["ticket_id"].dropna().unique()).fillna(
        events.groupby("ticket_id")["event_at"].min()
    )
    first_date = min(
        orders["order_date"].min(),
        business_date(created, tz).min() if len(created) else D,
        social["occurred_date"].min() if len(social) else D,
        D,
    )
    all_orders = valid.groupby(valid["order_date"].dt.to_period("M")).agg(
        orders=("order_id", "size"), cents=("net_cents", "sum")
    )
    first_orders = customer_orders.groupby("customer_id")["order_date"].min()
    rows = []
    for period in pd.period_range(first_date.to_period("M"), D.to_period("M"), freq="M"):
        month = period.to_timestamp()
        start = month - pd.Timedelta(days=1)
        end = min(period.to_timestamp(how="end").normalize(), D)
        upto_end = customer_orders[customer_orders["order_date"] <= end]
        if upto_end.empty:
            continue
        state = upto_end.groupby("customer_id").agg(
            n_end=("order_date", "size"), last_end=("order_date", "max")
        )
        before = customer_orders[customer_orders["order_date"] <= start]
        state = state.join(
            before.groupby("customer_id").agg(
                n_start=("order_date", "size"), last_start=("order_date", "max")
            )
        )
        window = upto_end[upto_end["order_date"] >= end - pd.Timedelta(days=REVENUE_WINDOW_DAYS)]
        state["cents_window"] = window.groupby("customer_id")["net_cents"].sum()
        state["n_start"] = state["n_start"].fillna(0)
        purchasing = state["n_end"] - state["n_start"] > 0
        first = first_orders.reindex(state.index)
        new = (first >= month) & (first <= end)
        active_end = state["last_end"] >= end - pd.Timedelta(days=ACTIVE_DAYS)
        active_start = state["last_start"] >= start - pd.Timedelta(days=ACTIVE_DAYS)
        dormant_start = (
            state["last_start"] >= start - pd.Timedelta(days=DORMANT_DAYS)
        ) & ~active_start
        vip = state["cents_window"].fillna(0) >= VIP_CENTS
        returning = purchasing & (state["n_end"] >= 2)
        ordered_by_start = state["n_start"] > 0
        totals = all_orders.reindex([period]).fillna(0).iloc[0]
        orders_n, revenue = float(totals["orders"]), float(totals["cents"]) / 100
        kpis = {
            "purchasing_customers": (purchasing.sum(), None),
            "new_customers": (new.sum(), None),
            "active_customers": (active_end.sum(), None),
            "orders": (orders_n, None),
            "net_revenue": (revenue, None),
            "aov": (revenue, orders_n),
            "repurchase_rate": ((ordered_by_start & purchasing).sum(), ordered_by_start.sum()),
            "returning_customer_rate": (returning.sum(), purchasing.sum()),
            "churn_rate": ((active_start & ~active_end).sum(), active_start.sum()),
            "dormant_reactivation_rate": ((dormant_start & purchasing).sum(), dormant_start.sum()),
            "vip_customers": (vip.sum(), None),
        }
        for kpi, (num, den) in kpis.items():
            num = float(num)
            if den is None:
                rows.append((month, kpi, num, num, None))
            else:
                den = float(den)
                rows.append((month, kpi, num / den if den else None, num, den))
    kpi_monthly = pd.DataFrame(rows, columns=["month", "kpi", "value", "numerator", "denominator"])
    return {
        "customer_records": customer_records,
        "customers": customers,
        "kpi_monthly": kpi_monthly,
    }


def read_seeds(con: duckdb.DuckDBPyConnection) -> tuple[pd.DataFrame, pd.DataFrame]:
    rates = con.sql(
        "select currency, cast(rate_to_cny as double) as rate_to_cny from seeds.currency_rates"
    ).df()
    rfm_map = con.sql("select * from seeds.rfm_segment_map").df()
    return rates, rfm_map


def run_peer(
    con: duckdb.DuckDBPyConnection, d: date, schema: str = "raw"
) -> tuple[dict[str, pd.DataFrame], dict]:
    """Read the raw tables of `con` and compute the outputs; (outputs, timings)."""
    started = time.monotonic()
    raw = read_raw(con, schema)
    rates, rfm_map = read_seeds(con)
    read_seconds = time.monotonic() - started
    outputs = compute(raw, rates, rfm_map, d)
    seconds = time.monotonic() - started
    return outputs, {
        "seconds": seconds,
        "read_seconds": read_seconds,
        "compute_seconds": seconds - read_seconds,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, required=True, help="DuckDB file with raw and seeds")
    parser.add_argument("--as-of", required=True, type=date.fromisoformat)
    parser.add_argument("--out", type=Path, default=None, help="folder for the Parquet outputs")
    parser.add_argument("--json", type=Path, default=None)
    ns = parser.parse_args(argv)
    with duckdb.connect(str(ns.db), read_only=True) as con:
        outputs, result = run_peer(con, ns.as_of)
    result["rows"] = {name: len(frame) for name, frame in outputs.items()}
    if ns.out:
        ns.out.mkdir(parents=True, exist_ok=True)
        for name, frame in outputs.items():
            frame.to_parquet(ns.out / f"{name}.parquet", index=False)
    text = json.dumps(result, indent=2)
    if ns.json:
        ns.json.write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
