"""The business-hours SLA clocks, recomputed independently of the warehouse's SQL
(docs/warehouse.md "SLA clocks"; metrics.md: working hours per weekday, mainland China's
public holidays and make-up working days, paused while the ticket waits on the customer).

The warehouse cuts each ticket's running intervals by one working window per day and
numbers the pieces; here a single per-minute array covers the whole period: minute i of
local time is working or not (the `holidays` library's `is_working_day`, day by day, and
the hours below), `cum[i]` counts the working minutes before minute i, and the working
time between two instants is a difference of that cumulative curve (fractions of a
minute inside a working minute count pro rata). The instant a target runs out is found by
inverting the curve (searchsorted). Waiting periods: from the first agent reply since the
customer last wrote to the customer's next reply, found by walking each ticket's events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import holidays
import numpy as np
import pandas as pd

from reference.metrics.staging import Prepared, to_business

#: seed business_hours: ISO weekday -> (opening, closing) minute of the local day
HOURS: dict[int, tuple[int, int]] = {d: (9 * 60, 18 * 60) for d in range(1, 6)}
#: var makeup_workday_iso_weekday: a weekend day worked in exchange has Monday's hours
MAKEUP_WEEKDAY = 1
#: dbt var business_clock_horizon_days: enough working days after the data for any target
HORIZON_DAYS = 120


@dataclass
class WorkingCurve:
    origin: pd.Timestamp  # local midnight of minute 0
    is_work: np.ndarray  # uint8 per minute
    cum: np.ndarray  # working minutes before minute i (len + 1)

    @classmethod
    def build(cls, first: date, last: date) -> WorkingCurve:
        cn = holidays.China(years=range(first.year, last.year + 2))
        n_days = (last - first).days + 1
        is_work = np.zeros(n_days * 1440, np.uint8)
        for k in range(n_days):
            day = first + timedelta(days=k)
            if not cn.is_working_day(day):
                continue
            weekday = day.isoweekday()
            hours = HOURS.get(MAKEUP_WEEKDAY if weekday >= 6 else weekday)
            if hours:
                is_work[k * 1440 + hours[0] : k * 1440 + hours[1]] = 1
        cum = np.concatenate([[0], np.cumsum(is_work, dtype=np.int64)])
        return cls(pd.Timestamp(first), is_work, cum)

    def at(self, local: pd.Series | np.ndarray) -> np.ndarray:
        """Working minutes from the origin to each local instant."""
        pos = (pd.to_datetime(pd.Series(local)) - self.origin).dt.total_seconds().to_numpy() / 60
        i = np.floor(pos).astype(np.int64)
        return self.cum[i] + self.is_work[i] * (pos - i)

    def instant(self, level: float) -> pd.Timestamp:
        """The first instant from which the curve exceeds ``level``."""
        j = int(np.searchsorted(self.cum, level, side="right")) - 1  # cum[j] <= level < cum[j+1]
        return self.origin + pd.Timedelta(minutes=j + (level - self.cum[j]))


def waiting_periods(events: pd.DataFrame) -> dict[str, list[tuple[pd.Timestamp, pd.Timestamp]]]:
    """Per ticket, its waiting periods (UTC): from the first agent reply since the customer
    last wrote to the customer's next reply (same instant: the agent's reply first)."""
    ev = events[events["event_type"].isin(["agent_reply", "customer_reply"])]
    ev = ev.assign(_customer=ev["event_type"].eq("customer_reply"))
    ev = ev.sort_values(["ticket_id", "event_at", "_customer"])
    out: dict[str, list] = {}
    for ticket, group in ev.groupby("ticket_id", sort=False):
        since = None
        for at, customer in zip(group["event_at"], group["_customer"], strict=True):
            if not customer and since is None:
                since = at
            elif customer and since is not None:
                if since < at:
                    out.setdefault(ticket, []).append((since, at))
                since = None
    return out


def business_clocks(p: Prepared) -> pd.DataFrame:
    """Per ticket (ticket_id index): first_response_business_minutes,
    resolution_business_minutes, first_response_business_sla_status,
    resolution_business_sla_status, first_response_business_due_at,
    resolution_business_due_at, first_response_business_breach_at,
    resolution_business_breach_at, waiting_minutes (UTC instants, as the warehouse)."""
    if "business_clocks" in p.cache:
        return p.cache["business_clocks"]
    cfg = p.config
    tz = cfg.business_tz
    t = p.tickets.set_index("ticket_id")
    end_local = pd.Timestamp(cfg.as_of) + pd.Timedelta(days=1)
    end_utc = end_local.tz_localize(tz).tz_convert("UTC").tz_localize(None)
    first = (to_business(t["created_at"], tz).min() - pd.Timedelta(days=1)).date()
    last = max(to_business(p.events["event_at"], tz).max(), end_local).date()
    curve = WorkingCurve.build(first, last + timedelta(days=HORIZON_DAYS))
    periods = waiting_periods(p.events)

    def w(utc) -> float:
        return float(curve.at(to_business(pd.Series([utc]), tz))[0])

    def to_utc(local: pd.Timestamp) -> pd.Timestamp:
        return local.tz_localize(tz).tz_convert("UTC").tz_localize(None)

    rows = []
    for ticket, row in t.iterrows():
        created = row["created_at"]
        reply, resolved = row["first_reply_at"], row["first_resolved_at"]
        mine = [(max(a, created), b) for a, b in periods.get(ticket, []) if b > created]
        w_created = w(created)
        paused = [(w(a), w(b)) for a, b in mine]

        def used(instant, w_created=w_created, paused=paused) -> float:
            wi = w(instant)
            return wi - w_created - sum(min(wi, b) - min(wi, a) for a, b in paused)

        def due(target: float, w_created=w_created, paused=paused) -> pd.Timestamp:
            skipped = 0.0
            for a, b in paused:
                if a - w_created - skipped > target:
                    break
                skipped += b - a
            return to_utc(curve.instant(w_created + skipped + target))

        fr_target, res_target = cfg.sla_targets.get(row["priority"], (np.nan, np.nan))
        fr_stop = resolved if pd.notna(resolved) and (pd.isna(reply) or resolved < reply) else reply
        open_now = used(end_utc)
        statuses = []
        for stop, target in ((fr_stop, fr_target), (resolved, res_target)):
            if pd.notna(stop):
                statuses.append("met" if used(stop) <= target else "breached")
            else:
                statuses.append("breached" if open_now > target else "pending")
        fr_due, res_due = due(fr_target), due(res_target)
        clock_end = resolved if pd.notna(resolved) else end_utc
        waiting = sum(
            (min(b, clock_end) - a).total_seconds() / 60 for a, b in mine if a < clock_end
        )
        rows.append(
            {
                "ticket_id": ticket,
                "first_response_business_minutes": used(reply) if pd.notna(reply) else np.nan,
                "resolution_business_minutes": used(resolved) if pd.notna(resolved) else np.nan,
                "first_response_business_sla_status": statuses[0],
                "resolution_business_sla_status": statuses[1],
                "first_response_business_due_at": fr_due,
                "resolution_business_due_at": res_due,
                "first_response_business_breach_at": fr_due if statuses[0] != "met" else pd.NaT,
                "resolution_business_breach_at": res_due if statuses[1] != "met" else pd.NaT,
                "waiting_minutes": waiting,
                "created_date": row["created_date"],
            }
        )
    out = pd.DataFrame(rows).set_index("ticket_id")
    out["is_first_response_open"] = out["first_response_business_due_at"] >= end_utc
    out["is_resolution_open"] = out["resolution_business_due_at"] >= end_utc
    p.cache["business_clocks"] = out
    return out


#: maturity_days of the two KPIs (seed kpi_definitions)
BUSINESS_MATURITY_DAYS = {
    "first_response_business_sla_rate": 14,
    "resolution_business_sla_rate": 35,
}


def business_sla_kpis(p: Prepared, month_start: pd.Timestamp, month_end: pd.Timestamp) -> dict:
    """first_response_business_sla_rate and resolution_business_sla_rate of the tickets
    created in [month_start, month_end]: (value, numerator, denominator, pending). A ticket
    whose target's working minutes are not used up at the end of D is pending while the
    month is not complete (last day + maturity_days > D), and left out once it is."""
    clocks = business_clocks(p)
    c = clocks[(clocks["created_date"] >= month_start) & (clocks["created_date"] <= month_end)]
    last_day = (pd.Timestamp(month_start) + pd.offsets.MonthEnd(0)).date()
    out = {}
    for kpi, status, running in (
        ("first_response_business_sla_rate", "first_response_business_sla_status",
         "is_first_response_open"),
        ("resolution_business_sla_rate", "resolution_business_sla_status", "is_resolution_open"),
    ):  # fmt: skip
        complete = last_day + timedelta(days=BUSINESS_MATURITY_DAYS[kpi]) <= p.config.as_of
        decided = ~c[running]
        num = int((c[status].eq("met") & decided).sum())
        den = int(decided.sum())
        pending = 0 if complete else int(c[running].sum())
        out[kpi] = (num / den if den else None, num, den, pending)
    return out
