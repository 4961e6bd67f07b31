"""Service operations (docs/warehouse.md "Agents and assignment", "Service operations
KPIs"): each ticket's agent, team and clocks, the agent/team day table (the shape of
``marts.fct_agent_daily``), the service KPIs per ticket channel, category and priority,
NPS, the complaint KPIs, one-touch resolution and time to first assignment."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from reference.metrics.business_hours import business_clocks
from reference.metrics.customers import _days, valid_orders
from reference.metrics.maturity import _end_of_d, _sla_clocks, mature_service_kpis
from reference.metrics.months import Kpis, Month, _quantile, _ratio
from reference.metrics.service import service_kpis
from reference.metrics.staging import Prepared, to_business

#: The KPIs of int_kpi_service_operations_monthly.
OPERATIONS_KPIS = (
    "nps",
    "complaint_rate_per_1000_orders",
    "complaint_resolution_minutes_p50",
    "repeat_complaint_rate",
    "one_touch_resolution_rate",
    "first_assignment_minutes_p50",
)
#: The service KPIs published per ticket channel, category and priority.
SERVICE_KPIS = (
    "tickets",
    "first_response_minutes_p50",
    "first_response_minutes_p90",
    "first_response_sla_rate",
    "resolution_sla_rate",
    "reopen_rate",
    "demand_conversion_rate",
    "csat_avg",
    "csat_satisfied_rate",
)
SEGMENT_TYPES = ("channel", "category", "priority")
REPEAT_COMPLAINT_DAYS = 30


def read_agent_teams(path: Path) -> dict[str, str]:
    """The seed agent_teams: agent id -> team."""
    frame = pd.read_csv(path, dtype=str)
    return dict(zip(frame["agent_id"], frame["team"], strict=True))


def ticket_operations(p: Prepared, teams: dict[str, str]) -> pd.DataFrame:
    """One row per ticket of ``p.tickets`` with channel (first known in event order),
    agent (resolver of the first resolution, else last assigned, else last replier), team,
    first assignment minutes, agents, reassignments, one touch, both clock statuses as of
    the end of D (met / breached / pending), the latest CSAT score and reopens."""
    cfg = p.config
    key = "ops_tickets"
    if key in p.cache:
        return p.cache[key]
    ev = p.events.sort_values(["event_at", "_delivery_date", "_source_file", "_source_line"])
    t = p.tickets.set_index("ticket_id").copy()
    t["channel"] = ev.groupby("ticket_id")["channel"].first().reindex(t.index)

    def last_agent(kind: str, first: bool = False) -> pd.Series:
        sub = ev[ev["event_type"].eq(kind) & ev["agent_id"].notna()]
        g = sub.groupby("ticket_id")["agent_id"]
        return (g.first() if first else g.last()).reindex(t.index)

    t["agent"] = (
        last_agent("resolved", first=True)
        .fillna(last_agent("assigned"))
        .fillna(last_agent("agent_reply"))
    )
    t["team"] = t["agent"].map(teams).fillna("unassigned")
    assigned = ev[ev["event_type"].eq("assigned")]
    first_assigned = assigned.groupby("ticket_id")["event_at"].min().reindex(t.index)
    t["first_assignment_minutes"] = (first_assigned - t["created_at"]).dt.total_seconds() / 60
    worked = ev[ev["event_type"].isin(["assigned", "agent_reply", "resolved"])]
    t["agent_count"] = worked.groupby("ticket_id")["agent_id"].nunique().reindex(t.index)
    t["agent_count"] = t["agent_count"].fillna(0).astype(int)
    reassigned = {}
    for ticket, agents in assigned[assigned["agent_id"].notna()].groupby("ticket_id")["agent_id"]:
        seq = list(agents)
        reassigned[ticket] = sum(a != b for a, b in zip(seq, seq[1:], strict=False))
    t["reassignment_count"] = pd.Series(reassigned).reindex(t.index).fillna(0).astype(int)
    replies = ev[ev["event_type"].eq("agent_reply")].groupby("ticket_id").size()
    t["agent_replies"] = replies.reindex(t.index).fillna(0).astype(int)
    t["is_one_touch"] = t["first_resolved_at"].notna() & t["agent_replies"].eq(1) & ~t["has_reopen"]
    csat = ev[ev["event_type"].eq("csat") & ev["csat_score"].notna()]
    t["csat_score"] = csat.groupby("ticket_id")["csat_score"].last().reindex(t.index)
    # clocks as fct_service_tickets: stopped -> met / breached; running -> breached once
    # past target at the end of D, else pending
    created_local = to_business(t["created_at"], cfg.business_tz)
    reply = t["first_reply_at"]
    res_first = t["first_resolved_at"].notna() & (reply.isna() | (t["first_resolved_at"] < reply))
    for name, stop, idx in (
        ("first_response_status", reply.where(~res_first, t["first_resolved_at"]), 0),
        ("resolution_status", t["first_resolved_at"], 1),
    ):
        target = pd.Series(
            [cfg.sla_targets[pr][idx] for pr in t["priority"]], index=t.index, dtype=float
        )
        elapsed = (stop - t["created_at"]).dt.total_seconds() / 60
        past = created_local + pd.to_timedelta(target, unit="m") < _end_of_d(cfg)
        t[name] = np.where(
            elapsed.notna(),
            np.where(elapsed <= target, "met", "breached"),
            np.where(past, "breached", "pending"),
        )
    out = t.reset_index(names="ticket_id")
    p.cache[key] = out
    return out


def agent_daily(p: Prepared, teams: dict[str, str]) -> pd.DataFrame:
    """fct_agent_daily: per creation date x agent (level agent, clear agent id in
    ``agent``) and per creation date x team (level team)."""
    t = ticket_operations(p, teams)
    clocks = business_clocks(p)  # the business-hours clocks, recomputed per minute
    t = t.assign(
        first_response_business=t["ticket_id"].map(clocks["first_response_business_sla_status"]),
        resolution_business=t["ticket_id"].map(clocks["resolution_business_sla_status"]),
    )
    levels = [
        t[t["agent"].notna()].assign(level="agent", who=t["agent"]),
        t.assign(level="team", who=t["team"]),
    ]
    rows = []
    for frame in levels:
        for (day, level, who), g in frame.groupby(["created_date", "level", "who"]):
            fr_met = int(g["first_response_status"].eq("met").sum())
            fr_dec = int(g["first_response_status"].isin(["met", "breached"]).sum())
            res_met = int(g["resolution_status"].eq("met").sum())
            res_dec = int(g["resolution_status"].isin(["met", "breached"]).sum())
            frb_met = int(g["first_response_business"].eq("met").sum())
            frb_dec = int(g["first_response_business"].isin(["met", "breached"]).sum())
            resb_met = int(g["resolution_business"].eq("met").sum())
            resb_dec = int(g["resolution_business"].isin(["met", "breached"]).sum())
            scores = g["csat_score"].dropna().astype(float)
            reopened = int(g["has_reopen"].sum())
            resolved = int(g["first_resolved_at"].notna().sum())
            one_touch = int(g["is_one_touch"].sum())
            rows.append({
                "activity_date": day.date(), "level": level,
                "agent": who if level == "agent" else None,
                "team": g["team"].iloc[0] if level == "team" else None,
                "tickets_handled": len(g), "tickets_resolved": resolved,
                "first_response_met": fr_met, "first_response_decided": fr_dec,
                "first_response_sla_rate": _ratio(fr_met, fr_dec),
                "resolution_met": res_met, "resolution_decided": res_dec,
                "resolution_sla_rate": _ratio(res_met, res_dec),
                "first_response_business_met": frb_met,
                "first_response_business_decided": frb_dec,
                "first_response_business_sla_rate": _ratio(frb_met, frb_dec),
                "resolution_business_met": resb_met,
                "resolution_business_decided": resb_dec,
                "resolution_business_sla_rate": _ratio(resb_met, resb_dec),
                "csat_surveys": len(scores),
                "csat_avg": _ratio(float(scores.sum()), len(scores)),
                "reopened_tickets": reopened, "reopen_rate": _ratio(reopened, len(g)),
                "one_touch_tickets": one_touch,
                "one_touch_resolution_rate": _ratio(one_touch, resolved),
            })  # fmt: skip
    return pd.DataFrame(rows)


def _segment(p: Prepared, tickets: pd.DataFrame) -> Prepared:
    """``p`` restricted to ``tickets`` (their events only)."""
    ids = set(tickets["ticket_id"])
    return dataclasses.replace(
        p,
        tickets=p.tickets[p.tickets["ticket_id"].isin(ids)],
        events=p.events[p.events["ticket_id"].isin(ids)],
        cache={},
    )


def _segments(p: Prepared, teams: dict[str, str]) -> list[tuple[str, str, pd.DataFrame]]:
    """(segment_type, segment, tickets) for all and each ticket channel, category and
    SLA priority (tickets without a channel or category are in no row of that type)."""
    t = ticket_operations(p, teams)
    out = [("all", "all", t)]
    for segment_type in SEGMENT_TYPES:
        for value, g in t.groupby(segment_type):
            out.append((segment_type, str(value), g))
    return out


def segment_service_kpis(p: Prepared, m: Month, teams: dict[str, str]) -> pd.DataFrame:
    """The service KPIs of int_kpi_service_monthly per ticket channel, category and
    priority (with maturity, as the warehouse: pending events left out), and the
    operations KPIs for every segment: rows segment_type, segment, kpi, value,
    numerator, denominator, pending."""
    rows = []
    first_ticket = p.tickets["created_date"].min()
    for segment_type, segment, tickets in _segments(p, teams):
        if segment_type != "all":
            ps = _segment(p, tickets)
            kpis = {k: (*v, None) for k, v in service_kpis(ps, m).items()}
            kpis |= mature_service_kpis(ps, m)
            created = ps.tickets[
                (ps.tickets["created_date"] >= m.month) & (ps.tickets["created_date"] <= m.end)
            ]
            ev = ps.events
            surveys = ev[
                ev["event_type"].eq("csat")
                & ev["csat_score"].notna()
                & (ev["event_date"] >= m.month)
                & (ev["event_date"] <= m.end)
            ]
            for kpi in SERVICE_KPIS:
                if kpi.startswith("csat") and surveys.empty:
                    continue
                if not kpi.startswith("csat") and created.empty:
                    continue
                inquiry_only = kpi == "demand_conversion_rate" and segment_type == "category"
                if inquiry_only and segment != "inquiry":
                    continue
                value, num, den, pending = kpis[kpi]
                rows.append((segment_type, segment, kpi, value, num, den, pending))
        if not pd.isna(first_ticket) and first_ticket.replace(day=1) <= m.month:
            for kpi, values in operations_kpis(p, m, tickets, segment_type).items():
                rows.append((segment_type, segment, kpi, *values))
    return pd.DataFrame(
        rows,
        columns=["segment_type", "segment", "kpi", "value", "numerator", "denominator", "pending"],
    )


def operations_kpis(
    p: Prepared, m: Month, tickets: pd.DataFrame, segment_type: str = "all"
) -> dict[str, tuple]:
    """NPS, the complaint KPIs, one-touch resolution and first assignment of the month
    over ``tickets`` (ticket_operations rows): kpi -> (value, numerator, denominator,
    pending)."""
    out: dict[str, tuple] = {}
    # NPS: each ticket's latest answer, in the month it was given
    ev = p.events[p.events["nps_score"].notna() & p.events["ticket_id"].isin(tickets["ticket_id"])]
    ev = ev.sort_values(["event_at", "nps_score"], ascending=[True, False])
    latest = ev.groupby("ticket_id").tail(1)
    latest = latest[(latest["event_date"] >= m.month) & (latest["event_date"] <= m.end)]
    if len(latest):
        score = latest["nps_score"].astype(int)
        net = int((score >= 9).sum()) - int((score <= 6).sum())
        out["nps"] = (100.0 * net / len(latest), net, len(latest), None)
    t = tickets[(tickets["created_date"] >= m.month) & (tickets["created_date"] <= m.end)]
    complaints = t[t["category"].eq("complaint")]
    if segment_type == "all":
        orders = valid_orders(p)
        n_orders = int(((orders["order_date"] >= m.month) & (orders["order_date"] <= m.end)).sum())
        if n_orders:
            out["complaint_rate_per_1000_orders"] = (
                1000.0 * len(complaints) / n_orders,
                len(complaints),
                n_orders,
                None,
            )
    if len(t) == 0:
        return out
    if segment_type != "category" and len(complaints):
        met_pending = _sla_clocks(p, complaints)["resolution_sla_rate"][1]
        minutes = (complaints["first_resolved_at"] - complaints["created_at"]).dt.total_seconds()
        decided = (minutes / 60)[~met_pending].dropna()
        out["complaint_resolution_minutes_p50"] = (
            _quantile(decided, 0.5),
            None,
            len(decided),
            int(met_pending.sum()),
        )
        all_complaints = p.tickets[
            p.tickets["category"].eq("complaint") & p.tickets["customer_key"].notna()
        ]
        known = complaints[complaints["customer_key"].notna()]
        repeat = 0
        window = _days(REPEAT_COMPLAINT_DAYS)
        for row in known.itertuples(index=False):
            same = all_complaints[
                all_complaints["customer_key"].eq(row.customer_key)
                & all_complaints["ticket_id"].ne(row.ticket_id)
            ]
            earlier = same[
                (
                    (same["created_at"] < row.created_at)
                    | ((same["created_at"] == row.created_at) & (same["ticket_id"] < row.ticket_id))
                )
                & (same["created_at"] >= row.created_at - window)
            ]
            repeat += len(earlier) > 0
        out["repeat_complaint_rate"] = (_ratio(repeat, len(known)), repeat, len(known), None)
    resolved = int(t["first_resolved_at"].notna().sum())
    one_touch = int(t["is_one_touch"].sum())
    out["one_touch_resolution_rate"] = (_ratio(one_touch, resolved), one_touch, resolved, None)
    assigned = t["first_assignment_minutes"].dropna()
    out["first_assignment_minutes_p50"] = (_quantile(assigned, 0.5), None, len(assigned), None)
    return out


__all__ = [
    "OPERATIONS_KPIS",
    "SERVICE_KPIS",
    "Kpis",
    "agent_daily",
    "operations_kpis",
    "read_agent_teams",
    "segment_service_kpis",
    "ticket_operations",
]
