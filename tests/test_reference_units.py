"""Hand-computed cases for the pandas reference's metrics (tests/reference/metrics):
customer state, RFM, the KPIs and their segments, maturity, the value x potential quadrant,
on hand-made canonical frames."""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from reference.landing import (
    CANONICAL,
)
from reference.metrics import (
    QUADRANTS,
    ReferenceConfig,
    compute_kpis,
    customer_quadrants,
    customer_state,
    expected_purchases_by_key,
    month_ends,
    prepare,
    rf_segment,
    rfm_scores,
    warehouse_customer_ids,
    with_maturity,
)
from support.pseudonyms import expected_customer_id

D = date(2026, 10, 31)


def _frame(entity: str, rows: list[dict]) -> pd.DataFrame:
    cols = list(CANONICAL[entity])
    out = pd.DataFrame([{c: r.get(c) for c in cols} for r in rows], columns=cols, dtype=object)
    for c in cols:
        if CANONICAL[entity][c][0] == "timestamp":
            out[c] = pd.to_datetime(out[c])
    out["_delivery_date"] = [r.get("_delivery_date", date(2026, 1, 1)) for r in rows]
    out["_source_file"] = "f"
    out["_source_line"] = range(2, len(rows) + 2)
    out["_source_name"] = entity
    return out


def _order(oid, ref, day: str, price=100.0, status="paid", qty=1, **kw):
    # 12:00 UTC = 20:00 Shanghai, same business date
    return {"order_id": oid, "line_no": 1, "ordered_at": f"{day} 12:00:00", "status": status,
            "source_system": "crm", "customer_ref": ref, "quantity": qty, "unit_price": price,
            "discount_amount": 0.0, "refunded_amount": 0.0, "currency": "CNY", **kw}  # fmt: skip


def _profile(ref, **kw):
    base = {"source_system": "crm", "customer_ref": ref, "updated_at": "2025-01-01 00:00:00"}
    return {**base, **kw}


def _prepared(orders, profiles=(), events=(), social=(), as_of=D, **cfg):
    raw = {
        "customers": _frame("customers", list(profiles)),
        "orders": _frame("orders", list(orders)),
        "service_events": _frame("service_events", list(events)),
        "social_interactions": _frame("social_interactions", list(social)),
    }
    config = ReferenceConfig(as_of=as_of, currency_rates={"CNY": 1.0, "USD": 7.1}, **cfg)
    return prepare(raw, config)


def _by_ref(p, series: pd.Series) -> dict:
    """Re-key a per-customer series by the customer_ref behind each customer."""
    refs = pd.concat(
        [
            p.order_lines[["customer_key", "customer_ref"]],
            p.profiles[["customer_key", "customer_ref"]],
        ]
    ).dropna()
    ref_of = refs.groupby("customer_key")["customer_ref"].first()
    return {ref_of[k]: v for k, v in series.items()}


def test_customer_state_lifecycle_boundaries_and_vip():
    # D = 2026-10-31: D-89 = 08-03, D-179 = 05-05, D-364 = 2025-11-01
    orders = [
        _order("o1", "new", "2026-08-03"),  # first order exactly D-89: new
        _order("o2", "act", "2026-01-10"),
        _order("o3", "act", "2026-05-05"),  # last exactly D-179: active
        _order("o4", "dor", "2026-05-04"),  # D-180: dormant
        _order("o5", "dor2", "2025-11-01"),  # exactly D-364: dormant
        _order("o6", "chu", "2025-10-31"),  # D-365: churned
        _order("o7", "vip", "2026-10-01", price=50_000.0),
        _order("o8", "vip2", "2026-10-01", price=30_000.0, status="cancelled"),
        _order("o9", "usd", "2026-10-01", price=10.0, currency="USD", refunded_amount=1.0),
    ]
    p = _prepared(orders, [_profile("pro", phone="13800138000")])
    st = customer_state(p)
    by_ref = _by_ref(p, st["lifecycle_stage"])
    assert by_ref == {"new": "new", "act": "active", "dor": "dormant", "dor2": "dormant",
                      "chu": "churned", "vip": "new", "vip2": "prospect", "usd": "new",
                      "pro": "prospect"}  # fmt: skip
    vip = _by_ref(p, st["is_vip"])
    assert vip["vip"] and not vip["vip2"] and not vip["act"]
    rev = _by_ref(p, st["net_revenue_365d"])
    assert rev["usd"] == pytest.approx((10.0 - 1.0) * 7.1)
    assert rev["chu"] == 0.0 and rev["dor2"] == 100.0
    assert _by_ref(p, st["recency_days"])["act"] == 179


def test_rfm_scores_ties_share_the_lowest_rank():
    state = pd.DataFrame(
        {
            "orders_lifetime": [1, 1, 1, 1, 1, 0],
            "recency_days": [10, 10, 50, 200, 300, None],
            "orders_365d": [5, 1, 1, 1, 0, 0],
            "net_revenue_365d": [500.0, 100.0, 100.0, 50.0, 0.0, 0.0],
        },
        index=list("abcdef"),
    )
    out = rfm_scores(state)
    # n = 5. recency desc: 300(1) 200(2) 50(3) 10,10(4) -> 1+floor(5*(rank-1)/5) = rank
    assert out["r_score"].to_dict() == {"a": 4, "b": 4, "c": 3, "d": 2, "e": 1}
    # orders_365d asc: 0(1) 1,1,1(2) 5(5)
    assert out["f_score"].to_dict() == {"a": 5, "b": 2, "c": 2, "d": 2, "e": 1}
    # revenue asc: 0(1) 50(2) 100,100(3) 500(5)
    assert out["m_score"].to_dict() == {"a": 5, "b": 3, "c": 3, "d": 2, "e": 1}
    assert out["rfm_segment"].to_dict() == {
        "a": "Loyal Customers", "b": "Potential Loyalists", "c": "About to Sleep",
        "d": "Hibernating", "e": "Hibernating",
    }  # fmt: skip
    assert "f" not in out.index


def test_rf_segment_map_first_match():
    assert rf_segment(5, 5) == "Champions"
    assert rf_segment(1, 5) == "Can't Lose Them"
    assert rf_segment(3, 3) == "Need Attention"
    assert rf_segment(4, 1) == "Promising"
    assert rf_segment(5, 1) == "New Customers"
    assert rf_segment(5, 2) == "Potential Loyalists"


def test_month_ends():
    assert month_ends(date(2026, 9, 15), date(2026, 10, 20)) == [
        (date(2026, 9, 1), date(2026, 8, 31), date(2026, 9, 30), True),
        (date(2026, 10, 1), date(2026, 9, 30), date(2026, 10, 20), False),
    ]


def _kpis(p, month="2026-10-01", segment="all"):
    k = compute_kpis(p, first_month=date(2026, 9, 1))
    k = k[(k["month"] == date.fromisoformat(month)) & (k["segment"] == segment)]
    return {r.kpi: (r.value, r.numerator, r.denominator) for r in k.itertuples()}


def test_order_kpis_by_hand():
    orders = [
        # customer a: active at start (09-30), orders again in October -> repurchaser
        _order("a1", "a", "2026-09-10", price=100.0),
        _order("a2", "a", "2026-10-05", price=300.0),
        # customer b: active at start (order 2026-04-04 = 09-30 minus 179), not at end
        _order("b1", "b", "2026-04-04"),
        # customer c: dormant at start (last order 2026-04-03 = start-180), reactivated
        _order("c1", "c", "2026-04-03"),
        _order("c2", "c", "2026-10-20", price=50.0),
        # customer d: first order in October, and a cancelled one (not an order)
        _order("d1", "d", "2026-10-31", price=150.0),
        _order("d2", "d", "2026-10-30", price=999.0, status="cancelled"),
        # an anonymous sale: revenue and orders, no customer
        _order("x1", None, "2026-10-02", price=20.0),
    ]
    k = _kpis(_prepared(orders))
    assert k["purchasing_customers"][0] == 3  # a, c, d
    assert k["new_customers"][0] == 1  # d
    assert k["orders"][0] == 4  # a2, c2, d1, x1
    assert k["net_revenue"][0] == pytest.approx(520.0)
    assert k["aov"][0] == pytest.approx(130.0)
    # cohort: a, b, c had ordered by 09-30 (d's first order is in October); a, c order
    assert k["repurchase_rate"][1:] == (2, 3)
    assert k["repurchase_rate"][0] == pytest.approx(2 / 3)
    # buyers a, c, d; a and c have 2 orders to date
    assert k["returning_customer_rate"][1:] == (2, 3)
    # active at 09-30: a (09-10), b (04-04); at 10-31: a, c, d (b's last 04-04 < 05-05)
    assert k["active_customers"][0] == 3
    assert k["churn_rate"][1:] == (1, 2)
    assert k["dormant_reactivation_rate"][1:] == (1, 1)
    assert k["vip_customers"][0] == 0
    assert "vip_repurchase_rate" not in k


def test_segments_as_of_start_for_flow_kpis_by_hand():
    """October (start 09-30, end 10-31), VIP threshold 50,000 in 365 days. v: 30,000 on
    03-10 and 20,000 on 10-10 (web): VIP at 10-31 (50,000 in [2025-11-01, 10-31]) but not
    at 09-30 (30,000 in [2025-10-01, 09-30]). t: 60,000 on 09-01 (VIP at 09-30) and 1,000
    on 10-12 (pos). u: 55,000 on 08-01 (VIP at 09-30), no October order. n: first order
    10-20 (500, web). An anonymous 500 (web)."""
    orders = [
        _order("v1", "v", "2026-03-10", price=30_000.0, channel="web"),
        _order("v2", "v", "2026-10-10", price=20_000.0, channel="web"),
        _order("t1", "t", "2026-09-01", price=60_000.0, channel="pos"),
        _order("t2", "t", "2026-10-12", price=1_000.0, channel="pos"),
        _order("u1", "u", "2026-08-01", price=55_000.0, channel="web"),
        _order("n1", "n", "2026-10-20", price=500.0, channel="web"),
        _order("x1", None, "2026-10-21", price=500.0, channel="web"),
    ]
    p = _prepared(orders)
    # segment all: cohort v, t, u (orders by 09-30), v and t order; buyers v, t, n, of
    # whom v and t have 2 orders to date; VIPs at 10-31: v, t, u
    k = _kpis(p)
    assert k["repurchase_rate"][1:] == (2, 3)
    assert k["returning_customer_rate"][1:] == (2, 3)
    assert k["vip_customers"][:2] == (3, 3)
    # vip, flow KPIs: the VIPs at 09-30, t and u (not v, VIP by the purchase measured)
    vip = _kpis(p, segment="vip")
    assert vip["purchasing_customers"][0] == 1  # t
    assert vip["net_revenue"][0] == 1_000
    assert vip["repurchase_rate"][1:] == (1, 2)
    assert vip["returning_customer_rate"][1:] == (1, 1)
    # vip, active_customers: the VIPs at 10-31, v, t, u, all active at 10-31
    assert vip["active_customers"][0] == 3
    # RF segments at 09-30 among v, t, u (n = 3): recency 204, 29, 60 days -> r 1 (v,
    # rank 1), 2 (u, rank 2: 1 + floor(5 / 3)), 4 (t, rank 3: 1 + floor(10 / 3)); one order
    # each in [2025-10-01, 09-30] -> f 1 (tie). v (1, 1), u (2, 1) Hibernating; t (4, 1)
    # Promising
    hib = _kpis(p, segment="Hibernating")
    assert hib["purchasing_customers"][0] == 1  # v
    assert hib["net_revenue"][0] == 20_000
    assert hib["repurchase_rate"][1:] == (1, 2)
    assert hib["churn_rate"][1:] == (0, 1)  # u active at 09-30 and 10-31; v not at 09-30
    assert hib["dormant_reactivation_rate"][1:] == (1, 1)  # v
    assert "new_customers" not in hib and "active_customers" not in hib
    prom = _kpis(p, segment="Promising")
    assert prom["repurchase_rate"][1:] == (1, 1)  # t
    # channels: web v2, n1, x1 (21,000, 2 customers); pos t2
    web = {kpi: tuple(None if pd.isna(x) else x for x in v) for kpi, v in
           _kpis(p, segment="web").items()}  # fmt: skip
    assert web == {
        "purchasing_customers": (2, 2, None),
        "orders": (3, 3, None),
        "net_revenue": (21_000, 21_000, None),
        "aov": (7_000, 21_000, 3),
    }
    assert _kpis(p, segment="pos")["orders"][0] == 1
    # September (start 08-31): u is VIP at 08-31 (55,000 on 08-01) and does not order; t
    # becomes VIP by its 09-01 order: not in the flow rows, in active_customers (the VIPs
    # at 09-30: u, t)
    sep_vip = _kpis(p, month="2026-09-01", segment="vip")
    assert sep_vip["purchasing_customers"][0] == 0  # u (VIP at 08-31) does not order
    assert sep_vip["repurchase_rate"][1:] == (0, 1)
    assert sep_vip["active_customers"][0] == 2  # u, t (VIP at 09-30)


def _ev(tid, kind, at, **kw):
    return {"ticket_id": tid, "event_id": f"{tid}-{kind}-{at}", "event_at": at,
            "event_type": kind, **kw}  # fmt: skip


def test_service_kpis_by_hand():
    # times in UTC; Shanghai = UTC+8. All tickets created on 2026-10-10 local.
    events = [
        _ev("T1", "created", "2026-10-10 01:00:00", priority="P1", category="inquiry",
            customer_ref="a"),
        _ev("T1", "agent_reply", "2026-10-10 01:10:00"),  # 10 min <= 15: met
        _ev("T1", "resolved", "2026-10-10 06:00:00"),  # 5 h > 4 h: breach
        _ev("T2", "created", "2026-10-10 01:00:00", priority="P2", category="complaint"),
        _ev("T2", "agent_reply", "2026-10-10 02:30:00"),  # 90 min > 60: breach
        _ev("T2", "resolved", "2026-10-10 03:00:00"),  # 2 h <= 24 h: met
        _ev("T2", "reopened", "2026-10-11 03:00:00"),
        _ev("T3", "created", "2026-10-10 01:00:00", priority="P4", category="inquiry"),
        # T3 never answered nor resolved: both targets long past at D -> breaches
        _ev("T2", "csat", "2026-10-12 03:00:00", csat_score=5),
        _ev("T1", "csat", "2026-10-12 03:00:00", csat_score=3),
    ]  # fmt: skip
    orders = [_order("a1", "a", "2026-10-20")]  # within 30 days of T1 -> converted
    k = _kpis(_prepared(orders, events=events))
    assert k["tickets"][0] == 3
    assert k["first_response_minutes_p50"][0] == pytest.approx(50.0)  # of 10 and 90
    assert k["first_response_minutes_p90"][0] == pytest.approx(10 + 0.9 * 80)
    assert k["first_response_sla_rate"][1:] == (1, 3)
    assert k["resolution_sla_rate"][1:] == (1, 3)
    assert k["reopen_rate"][1:] == (1, 3)
    assert k["csat_avg"][0] == pytest.approx(4.0)
    assert k["csat_satisfied_rate"][1:] == (1, 2)
    # only inquiries of resolved requesters count: T1 (customer a), not T3 (anonymous)
    assert k["demand_conversion_rate"][1:] == (1, 1)


def test_pending_events_are_every_event_whose_window_is_still_open():
    # D = 10-31: the end of D is 11-01 00:00 Shanghai = 10-31 16:00 UTC. An event is
    # decided only once its window closed, whatever happened inside it so far.
    events = [
        # T1 (P2, 10-01 02:00): converted (order 10-05), its 30 days closed 10-31 02:00;
        # answered in 10 min (met), never resolved: breach (24 h long past)
        _ev("T1", "created", "2026-10-01 02:00:00", priority="P2", category="inquiry",
            customer_ref="a"),
        _ev("T1", "agent_reply", "2026-10-01 02:10:00"),
        # T2 (P2, 10-20): already converted (order 10-25) but its 30 days are open to
        # 11-19: pending; answered in 10 min and resolved in 3 h: both met, targets over
        _ev("T2", "created", "2026-10-20 02:00:00", priority="P2", category="inquiry",
            customer_ref="b"),
        _ev("T2", "agent_reply", "2026-10-20 02:10:00"),
        _ev("T2", "resolved", "2026-10-20 05:00:00"),
        # T3 (P2, 10-01 03:00): no order, window closed 10-31 03:00: decided not
        # converted; unanswered, unresolved: both breached
        _ev("T3", "created", "2026-10-01 03:00:00", priority="P2", category="inquiry",
            customer_ref="c"),
        # T4 (P4, 10-31 10:00): answered in 30 min (met) but its 24 h target runs to
        # 11-01 10:00: pending, and its 30 min are left out of the percentiles; its
        # 168 h resolution target is open too: pending
        _ev("T4", "created", "2026-10-31 10:00:00", priority="P4", category="complaint"),
        _ev("T4", "agent_reply", "2026-10-31 10:30:00"),
    ]  # fmt: skip
    orders = [_order("a1", "a", "2026-10-05"), _order("b1", "b", "2026-10-25")]
    p = _prepared(orders, events=events)
    k = with_maturity(compute_kpis(p, first_month=date(2026, 9, 1)), p)
    k = k[(k["month"] == date(2026, 10, 1)) & (k["segment"] == "all")]
    got = {r.kpi: (r.value, r.numerator, r.denominator, r.pending) for r in k.itertuples()}
    # demand conversion: T1 converted of T1, T3 decided; T2 pending
    assert got["demand_conversion_rate"] == (0.5, 1, 2, 1)
    # first response: T1, T2 met, T3 breached; T4 pending
    assert got["first_response_sla_rate"][1:] == (2, 3, 1)
    # resolution: T2 met, T1 and T3 breached; T4 pending
    assert got["resolution_sla_rate"][1:] == (1, 3, 1)
    # percentiles over T1 10 and T2 10 (T4's 30 pending): 10 and 10
    assert got["first_response_minutes_p50"][0] == pytest.approx(10.0)
    assert got["first_response_minutes_p90"][0] == pytest.approx(10.0)
    assert got["first_response_minutes_p90"][2:] == (2, 1)


def _si(iid, acct, at, direction, kind, **kw):
    return {"interaction_id": iid, "occurred_at": at, "platform": "wechat", "account_id": acct,
            "direction": direction, "interaction_type": kind, **kw}  # fmt: skip


def test_social_kpis_by_hand():
    social = [
        _si("m1", "oa", "2026-10-05 00:00:00", "inbound", "message"),
        _si("r1", "oa", "2026-10-05 23:00:00", "outbound", "message"),  # 23 h: answered
        _si("m2", "ob", "2026-10-05 00:00:00", "inbound", "message"),
        _si("r2", "ob", "2026-10-06 01:00:00", "outbound", "message"),  # 25 h: not
        _si("p1", "oa", "2026-10-10 00:00:00", "outbound", "campaign_push"),
        _si("c1", "oa", "2026-10-12 00:00:00", "inbound", "click"),  # response within 7 d
        _si("p2", "ob", "2026-10-10 00:00:00", "outbound", "campaign_push"),
    ]
    k = _kpis(_prepared([], social=social))
    assert k["message_reply_rate"][1:] == (1, 2)
    assert k["campaign_response_rate"][1:] == (1, 2)
    assert k["social_engaged_customers"][0] == 2


def test_winback_conversion_by_hand():
    # w: last order 2026-03-01; push 2026-10-10 -> dormant (180..364 days before), orders
    # 10 days later. v: dormant, pushed, no order. u: active, pushed (not in denominator).
    orders = [
        _order("w1", "w", "2026-03-01"),
        _order("w2", "w", "2026-10-20"),
        _order("v1", "v", "2026-03-01"),
        _order("u1", "u", "2026-09-01"),
    ]
    profiles = [_profile(r, unionid=f"U{r}") for r in ("w", "v", "u")]
    social = [
        {**_si(f"p{r}", f"o{r}", "2026-10-10 04:00:00", "outbound", "campaign_push"),
         "unionid": f"U{r}"}
        for r in ("w", "v", "u")
    ]  # fmt: skip
    k = _kpis(_prepared(orders, profiles, social=social))
    assert k["winback_conversion_rate"][1:] == (1, 2)


def test_profile_kpis_by_hand():
    profiles = [
        _profile("p1", name="A", gender="F", birth_date=date(1990, 1, 1), phone="13800138000",
                 email="a@b.cn", city="SH"),
        # p2: same phone as p1 -> merged into p1's customer
        _profile("p2", phone="+86 138 0013 8000", updated_at="2026-09-15 00:00:00"),
        _profile("p3", name="C", updated_at="2026-09-01 00:00:00"),
        # a later version of p3 after the September month end adds the city
        _profile("p3", name="C", city="BJ", updated_at="2026-10-02 00:00:00"),
    ]  # fmt: skip
    p = _prepared([], profiles)
    sep = _kpis(p, "2026-09-01")
    oct_ = _kpis(p, "2026-10-01")
    # September: customers {p1+p2: 6/6}, {p3: 1/6}
    assert sep["profile_completeness"][0] == pytest.approx((1 + 1 / 6) / 2)
    assert sep["full_profile_rate"][1:] == (1, 2)
    assert sep["duplicate_record_rate"][1:] == (1, 3)
    assert oct_["profile_completeness"][0] == pytest.approx((1 + 2 / 6) / 2)


def test_profile_kpis_read_literally_with_contact_data_and_every_known_customer():
    # the non-default reading: every resolved customer known by end(M), contact data fills
    opts = {"profile_population": "known_customers", "profile_contact_data": True}
    # a Tmall buyer with no member profile: phone and name come from the order
    orders = [_order("t1", "nick", "2026-10-05", buyer_name="Li", buyer_phone="13900139000")]
    orders[0]["source_system"] = "tmall"
    # a social-only fan: known, nothing filled
    social = [_si("f1", "ofan", "2026-10-06 00:00:00", "inbound", "follow")]
    p = _prepared(orders, social=social, **opts)
    k = _kpis(p)
    assert k["profile_completeness"][1:] == (pytest.approx(2 / 6), 2)
    assert k["full_profile_rate"][1:] == (0, 2)
    sep = _kpis(p, "2026-09-01")
    assert sep["profile_completeness"][2] == 0  # nobody known yet: NULL
    assert pd.isna(sep["profile_completeness"][0])
    # the warehouse's choice (default): neither customer has a member profile
    k = _kpis(_prepared(orders, social=social))
    assert k["profile_completeness"][2] == 0 and pd.isna(k["profile_completeness"][0])


def test_line_net_revenue_is_converted_then_rounded_to_the_cent():
    # 2 x 328.57 HKD x 0.91 = 597.9974 -> 598.00; 1 x 29.58 USD x 7.1 = 210.018 -> 210.02
    orders = [
        _order("h1", "a", "2026-10-05", price=328.57, qty=2, currency="HKD"),
        _order("u1", "a", "2026-10-05", price=29.58, currency="USD"),
    ]
    raw_rates = {"CNY": 1.0, "USD": 7.1, "HKD": 0.91}
    raw = {
        "customers": _frame("customers", []),
        "orders": _frame("orders", orders),
        "service_events": _frame("service_events", []),
        "social_interactions": _frame("social_interactions", []),
    }
    p = prepare(raw, ReferenceConfig(as_of=D, currency_rates=raw_rates))
    assert sorted(p.order_lines["net_amount"]) == [210.02, 598.0]


def test_latest_delivery_wins_per_key():
    first = _order("o1", "a", "2026-10-05", price=100.0, _delivery_date=date(2026, 10, 5))
    again = _order("o1", "a", "2026-10-05", price=80.0, _delivery_date=date(2026, 10, 7))
    late = _order("o2", "a", "2026-10-05", price=10.0, _delivery_date=date(2026, 11, 1))
    p = _prepared([first, again, late])
    assert list(p.orders["net_revenue"]) == [80.0]  # o2 delivered after D: not read


def test_sla_clock_stopped_by_resolution_and_ticket_without_created_event():
    events = [
        # T1 (P2): resolved after 30 min without any agent reply: first response met
        _ev("T1", "created", "2026-10-10 01:00:00", priority="high"),
        _ev("T1", "resolved", "2026-10-10 01:30:00"),
        # T2: no `created` event delivered: created = its first event; P3 by default;
        # answered after 300 min > 240: breach
        _ev("T2", "assigned", "2026-10-10 01:00:00"),
        _ev("T2", "agent_reply", "2026-10-10 06:00:00"),
        # T3 (P4, created at the end of D): unanswered, target not yet past: pending
        _ev("T3", "created", "2026-10-31 15:00:00", priority="P4"),
    ]
    k = _kpis(_prepared([], events=events))
    assert k["tickets"][0] == 3
    assert k["first_response_sla_rate"][1:] == (1, 2)
    p50 = k["first_response_minutes_p50"]
    assert (p50[0], p50[2]) == (300.0, 1)  # T1 has no agent reply
    assert k["resolution_sla_rate"][1:] == (1, 2)  # T2 unresolved past 72 h: breach


def test_segments_publish_only_months_with_customers():
    orders = [
        _order("a1", "a", "2026-09-10", price=60_000.0),
        _order("a2", "a", "2026-10-05", price=100.0),
        _order("b1", "b", "2026-10-06", price=100.0),
    ]
    p = _prepared(orders)
    k = compute_kpis(p, first_month=date(2026, 9, 1))
    by = k.groupby(["month", "segment"])["kpi"].apply(set)
    sep, oct_ = date(2026, 9, 1), date(2026, 10, 1)
    # September: a's first order makes a VIP (as of 09-30) and new (as of 09-30): vip
    # and new publish active_customers only (as of end(M)); a's flow KPIs are in prospect
    # (stage at 08-31); orders without a channel are in channel unknown
    assert set(by.loc[sep].index) == {"all", "vip", "prospect", "new", "unknown"}
    assert by.loc[(sep, "vip")] == by.loc[(sep, "new")] == {"active_customers"}
    # October is the month of D: also the quadrants with customers (a the top revenue,
    # b the other; no engagement, no CLV scores), and a's RF segment at 09-30 (n = 1:
    # r = f = 1, Hibernating)
    assert set(by.loc[oct_].index) == {"all", "vip", "prospect", "new", "unknown",
                                       "Hibernating", "high_value_low_potential",
                                       "low_value_low_potential"}  # fmt: skip
    assert by.loc[(oct_, "new")] == {
        "purchasing_customers", "new_customers", "active_customers", "orders", "net_revenue",
        "aov", "repurchase_rate", "returning_customer_rate", "churn_rate",
    }  # fmt: skip
    assert by.loc[(oct_, "prospect")] == {
        "purchasing_customers", "new_customers", "orders", "net_revenue", "aov",
        "returning_customer_rate",
    }  # fmt: skip
    row = k[(k["month"] == oct_) & (k["segment"] == "vip") & (k["kpi"] == "net_revenue")]
    assert row["value"].item() == 100.0
    # no ticket, no interaction: no service / social rows
    assert "tickets" not in set(k["kpi"]) and "message_reply_rate" not in set(k["kpi"])


def test_profile_population_and_contact_data_options():
    orders = [_order("t1", "nick", "2026-10-05", buyer_phone="13900139000")]
    orders[0]["source_system"] = "tmall"
    profiles = [_profile("p1", name="A", updated_at="2026-10-01 00:00:00")]
    known = {"profile_population": "known_customers"}
    k = _kpis(_prepared(orders, profiles, **known, profile_contact_data=True))
    assert k["profile_completeness"][1:] == (pytest.approx(2 / 6), 2)  # both customers
    k = _kpis(_prepared(orders, profiles, **known))
    assert k["profile_completeness"][1:] == (pytest.approx(1 / 6), 2)  # no contact data
    k = _kpis(_prepared(orders, profiles))
    assert k["profile_completeness"][1:] == (pytest.approx(1 / 6), 1)  # the member only
    orders[0]["customer_ref"] = "p1"  # the member's own order carries her phone
    orders[0]["source_system"] = "crm"
    k = _kpis(_prepared(orders, profiles))
    assert k["profile_completeness"][:2] == (pytest.approx(1 / 6), pytest.approx(1 / 6))
    k = _kpis(_prepared(orders, profiles, profile_contact_data=True))
    assert k["profile_completeness"][0] == pytest.approx(2 / 6)


def test_money_sums_are_exact_so_equal_revenues_tie_in_rfm():
    # 0.10 + 0.20 is 0.30000000000000004 in floating point; in cents it is 30 = 30
    orders = [
        _order("a1", "a", "2026-10-01", price=0.10),
        _order("a2", "a", "2026-10-02", price=0.20),
        _order("b1", "b", "2026-10-01", price=0.30),
        _order("c1", "c", "2026-10-01", price=1.00),
    ]
    p = _prepared(orders)
    st = customer_state(p)
    m = _by_ref(p, st["m_score"])
    rev = _by_ref(p, st["net_revenue_365d"])
    assert rev["a"] == rev["b"] == 0.3
    # n = 3: a and b share rank 1 -> score 1; c rank 3 -> 1 + floor(5 * 2 / 3) = 4
    assert (m["a"], m["b"], m["c"]) == (1, 1, 4)


def _inquiry(tid, ref, at):
    return _ev(tid, "created", at, priority="P3", category="inquiry", customer_ref=ref)


def _quadrant_case(as_of: date = D):
    """D = 2026-10-31. Net revenue in [D-364, D]: a 100, b 200, c 300, d 400 (300 in
    March + 100 in October), e = f 500, g 0 (refunded), h 0 (last order 2025-06-01);
    p has a profile and no order. Engagement: a 3 inquiries in [D-89, D] (08-03 counts,
    08-02 does not), b 2, g 3, p 4."""
    orders = [
        _order("a1", "a", "2026-10-05", price=100.0),
        _order("b1", "b", "2026-09-10", price=200.0),
        _order("c1", "c", "2026-06-01", price=300.0),
        _order("d1", "d", "2026-03-15", price=300.0),
        _order("d2", "d", "2026-10-20", price=100.0),
        _order("e1", "e", "2026-10-10", price=500.0),
        _order("f1", "f", "2026-08-01", price=500.0),
        _order("g1", "g", "2026-10-01", price=100.0, refunded_amount=100.0),
        _order("h1", "h", "2025-06-01", price=900.0),
    ]
    events = [
        _inquiry("Ta0", "a", "2026-08-02 01:00:00"),  # 09:00 Shanghai on D-90: outside
        _inquiry("Ta1", "a", "2026-08-03 01:00:00"),  # D-89: inside
        _inquiry("Ta2", "a", "2026-10-02 01:00:00"),
        _inquiry("Ta3", "a", "2026-10-03 01:00:00"),
        _inquiry("Tb1", "b", "2026-10-02 01:00:00"),
        _inquiry("Tb2", "b", "2026-10-03 01:00:00"),
        *[_inquiry(f"Tg{i}", "g", f"2026-10-0{i} 01:00:00") for i in (1, 2, 3)],
        *[_inquiry(f"Tp{i}", "p", f"2026-10-0{i} 01:00:00") for i in (1, 2, 3, 4)],
    ]
    p = _prepared(orders, [_profile("p", name="P")], events=events, as_of=as_of)
    # the CLV model's scores, keyed like the warehouse: the pseudonym of the smallest record id
    ids = {ref: expected_customer_id(f"account:crm:{ref}") for ref in "bce"}
    scores = pd.DataFrame(
        {
            "customer_id": [ids["b"], ids["c"], ids["e"], "not-a-resolved-customer"],
            "expected_purchases_90d": [0.99, 1.0, 1.5, 9.0],
        }
    )
    return p, scores


def test_quadrant_of_every_customer_by_hand():
    p, scores = _quadrant_case()
    assert dict(zip(p.customer_names, warehouse_customer_ids(p), strict=True))[
        "account:crm:b"
    ] == expected_customer_id("account:crm:b")
    with_clv = _by_ref(p, customer_quadrants(p, expected_purchases_by_key(p, scores)))
    # 6 customers with revenue > 0: percent_rank = (rank - 1) / 5 -> a 0, b 0.2, c 0.4,
    # d 0.6, e = f 0.8 (the tie shares rank 5): e and f are the top 20 %
    assert with_clv == {
        "a": "low_value_high_potential",  # engagement 3 (the boundary)
        "b": "low_value_low_potential",  # engagement 2, 0.99 expected purchases
        "c": "low_value_high_potential",  # 1.0 expected purchases (the boundary)
        "d": "low_value_low_potential",
        "e": "high_value_high_potential",  # 1.5 expected purchases
        "f": "high_value_low_potential",
        "g": "low_value_high_potential",  # revenue 0 is not ranked; engagement 3
        "h": "low_value_low_potential",
        "p": "low_value_high_potential",  # no order, engagement 4
    }
    # no CLV scores (the warehouse's empty placeholder): engagement alone
    alone = _by_ref(p, customer_quadrants(p, expected_purchases_by_key(p, scores.iloc[:0])))
    assert alone == with_clv | {"c": "low_value_low_potential", "e": "high_value_low_potential"}
    assert _by_ref(p, customer_quadrants(p)) == alone


def test_quadrant_kpis_in_the_month_of_d_only():
    p, scores = _quadrant_case()
    k = compute_kpis(p, first_month=date(2026, 9, 1), clv_scores=scores)
    quad = k[k["segment"].isin(QUADRANTS)]
    assert set(quad["month"]) == {date(2026, 10, 1)}  # no quadrant rows for September
    got = {(r.segment, r.kpi): (r.value, r.numerator, r.denominator) for r in quad.itertuples()}
    family = ("purchasing_customers", "new_customers", "active_customers", "orders",
              "net_revenue", "aov", "repurchase_rate", "returning_customer_rate", "churn_rate",
              "dormant_reactivation_rate")  # fmt: skip
    assert set(got) == {(q, kpi) for q in QUADRANTS for kpi in family}

    def row(q):
        return {kpi: tuple(None if pd.isna(x) else x for x in got[(q, kpi)]) for kpi in family}

    # e: first order 10-10 (500): no order by 09-30 (no repurchase base); nobody active
    # or dormant at 09-30
    assert row("high_value_high_potential") == {
        "purchasing_customers": (1, 1, None), "new_customers": (1, 1, None),
        "active_customers": (1, 1, None), "orders": (1, 1, None),
        "net_revenue": (500, 500, None), "aov": (500, 500, 1), "repurchase_rate": (None, 0, 0),
        "returning_customer_rate": (0, 0, 1),
        "churn_rate": (None, 0, 0), "dormant_reactivation_rate": (None, 0, 0),
    }  # fmt: skip
    # f: last order 08-01, active at 09-30 and at 10-31, no October order
    assert row("high_value_low_potential") == {
        "purchasing_customers": (0, 0, None), "new_customers": (0, 0, None),
        "active_customers": (1, 1, None), "orders": (0, 0, None),
        "net_revenue": (0, 0, None), "aov": (None, 0, 0), "repurchase_rate": (0, 0, 1),
        "returning_customer_rate": (None, 0, 0),
        "churn_rate": (0, 0, 1), "dormant_reactivation_rate": (None, 0, 0),
    }  # fmt: skip
    # a (first order 10-05, 100), g (first order 10-01, refunded: 0), c (06-01, active at
    # start and end, the repurchase base, no October order); p has no order: not in any
    # KPI segment
    assert row("low_value_high_potential") == {
        "purchasing_customers": (2, 2, None), "new_customers": (2, 2, None),
        "active_customers": (3, 3, None), "orders": (2, 2, None),
        "net_revenue": (100, 100, None), "aov": (50, 100, 2), "repurchase_rate": (0, 0, 1),
        "returning_customer_rate": (0, 0, 2),
        "churn_rate": (0, 0, 1), "dormant_reactivation_rate": (None, 0, 0),
    }  # fmt: skip
    # b (09-10: active at start and end), d (dormant at 09-30: last order 03-15; orders
    # 10-20, 2 to date: reactivated, repurchaser), h (churned at 09-30): repurchase base
    # b, d, h
    assert row("low_value_low_potential") == {
        "purchasing_customers": (1, 1, None), "new_customers": (0, 0, None),
        "active_customers": (2, 2, None), "orders": (1, 1, None),
        "net_revenue": (100, 100, None), "aov": (100, 100, 1),
        "repurchase_rate": (pytest.approx(1 / 3), 1, 3), "returning_customer_rate": (1, 1, 1),
        "churn_rate": (0, 0, 1), "dormant_reactivation_rate": (1, 1, 1),
    }  # fmt: skip
    # the segments sum up to the customers' part of segment all
    oct_all = k[(k["month"] == date(2026, 10, 1)) & (k["segment"] == "all")]
    assert oct_all.set_index("kpi").loc["purchasing_customers", "value"] == 4  # a, d, e, g


def test_quadrant_rows_follow_d():
    # D on a month end (09-30): the month ending at D has the quadrant rows, complete
    p, scores = _quadrant_case(date(2026, 9, 30))
    k = compute_kpis(p, first_month=date(2026, 8, 1), clv_scores=scores)
    quad = k[k["segment"].isin(QUADRANTS)]
    assert set(quad["month"]) == {date(2026, 9, 1)}
    assert set(quad["is_complete"]) == {True}
