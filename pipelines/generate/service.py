"""Help-desk tickets as event logs (`helpdesk_events`, tab-separated).

A ticket is created, assigned, answered (lognormal first-response time by priority),
discussed, resolved (lognormal resolution time), sometimes reopened and resolved again,
closed after 72 h and sometimes rated (CSAT falls when the first response was slow).
Some tickets are never answered, some never resolved. Pre-sales `inquiry` tickets convert
to orders within 30 days at a fixed rate.

Agents work in three shift teams (`SHIFTS`; the roster is the dbt seed agent_teams): a
ticket goes to an agent on shift at its assignment time, and some answered tickets are
reassigned before the first reply to another agent on shift, who then answers, resolves and
closes it.

Tickets arrive around the clock, on weekends and public holidays too; the team works
09:00-18:00 on the working days of mainland China's calendar (the `holidays` library, as
the warehouse's business-hours clock: make-up working days are worked). A share of the
P3-P4 tickets created out of hours wait for the next opening before anything happens to them
(their first-response time runs in working time); the others, and every P1-P2 ticket, are
picked up by the on-call agent at once. Customer replies to an agent make the ticket wait on the customer.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta

import numpy as np
import pyarrow as pa

from pipelines.generate.landing import Landing
from pipelines.generate.orders import Orders
from pipelines.generate.population import WECHAT, WEIBO, Population
from pipelines.generate.presets import Rates
from pipelines.generate.textgen import (
    Clock,
    PersonText,
    digits,
    join,
    lut,
    messy_emails,
    null_where,
    phone_formats,
    rng_for,
    take,
    where,
)
from pipelines.lib.business_calendar import business_days

COLUMNS = [
    "ticket_no", "event_no", "event_time", "event", "channel", "priority", "category",
    "member_no", "caller_phone", "email", "social_id", "agent", "csat", "nps",
]  # fmt: skip
EVENTS = ["CREATE", "ASSIGN", "REPLY_AGENT", "REPLY_CUSTOMER", "STATUS", "RESOLVE", "REOPEN",
          "CLOSE", "SURVEY"]  # fmt: skip
CREATE, ASSIGN, REPLY_AGENT, REPLY_CUSTOMER, STATUS, RESOLVE, REOPEN, CLOSE, SURVEY = range(9)
CHANNELS = ["PHONE", "EMAIL", "CHAT", "WECHAT", "WEIBO", "APP"]
PHONE, EMAIL, CHAT, WECHAT_CH, WEIBO_CH, APP = range(6)
PRIORITIES = ["urgent", "high", "normal", "low"]
CATEGORIES = ["presale", "complaint", "aftersale", "technical", "feedback"]
INQUIRY = 0
#: The shift teams, agent AG<a> in SHIFTS[(a - 1) % 3], each with its local hours [start, end)
#: (dbt_project/seeds/agent_teams.csv lists the roster: keep the two in step).
SHIFTS = (("early_shift", 8, 16), ("late_shift", 16, 24), ("night_shift", 0, 8))
MAX_AGENTS = 120
#: The team's working hours (local seconds of the day), those of the warehouse's seed
#: business_hours (dbt_project/seeds/business_hours.csv), and the share of out-of-hours
#: P3-P4 tickets left until the next opening (the rest are picked up by the on-call agent).
OPENS, CLOSES = 9 * 3600, 18 * 3600
DEFERRED_OUT_OF_HOURS = 0.3
BUSINESS_HOURS = np.array([0.2, 0.1, 0.05, 0.05, 0.05, 0.1, 0.3, 0.8, 2.0, 3.0, 3.2, 3.0,
                           2.5, 2.8, 3.0, 3.0, 2.8, 2.5, 2.2, 2.0, 1.8, 1.5, 0.9, 0.4])  # fmt: skip


class Service:
    source = "helpdesk_events"

    def __init__(
        self, pop: Population, text: PersonText, clock: Clock, landing: Landing, rates: Rates,
        seed: int, orders: Orders,
    ) -> None:  # fmt: skip
        self.pop, self.text, self.clock, self.landing = pop, text, clock, landing
        self.rates, self.seed, self.orders = rates, seed, orders
        # a multiple of the shift count, at most the roster of the seed agent_teams
        per_shift = max(4, pop.n_customers // (1500 * len(SHIFTS)))
        self.n_agents = min(MAX_AGENTS, per_shift * len(SHIFTS))
        self.end_t = np.int64(landing.last_day + 1) * 86400
        self.breach_counts: dict[str, int] = defaultdict(int)
        self.next_opening = self._openings()

    def _openings(self) -> np.ndarray:
        """Per day index d (0 .. last day + 60): the seconds of the first opening at or after
        the start of day d (its own 09:00 when d is a working day)."""
        first = self.clock.date(0)
        n = int(self.landing.last_day) + 61
        last = first + timedelta(n)
        working = {
            day.calendar_date
            for day in business_days(range(first.year, last.year + 1))
            if day.is_working_day
        }
        opening = np.zeros(n + 1, np.int64)
        upcoming = (n + 30) * 86400 + OPENS  # beyond the data: never reached
        for d in range(n, -1, -1):
            if first + timedelta(d) in working:
                upcoming = d * 86400 + OPENS
            opening[d] = upcoming
        return opening

    def opening_after(self, t: np.ndarray) -> np.ndarray:
        """The first working instant at or after each time `t` (seconds since day 0)."""
        d, sec = t // 86400, t % 86400
        d = np.minimum(d, len(self.next_opening) - 2)
        today = self.next_opening[d]
        in_hours = (today == d * 86400 + OPENS) & (sec < CLOSES)
        return np.where(
            in_hours, np.maximum(t, today), np.where(sec >= CLOSES, self.next_opening[d + 1], today)
        )

    def on_shift(self, t: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """A random agent (1..n_agents) of the shift team working at local time `t`."""
        hour = (np.asarray(t, np.int64) % 86400) // 3600
        shift = np.zeros(len(hour), np.int64)
        for index, (_, start, end) in enumerate(SHIFTS):
            shift = np.where((hour >= start) & (hour < end), index, shift)
        per_shift = self.n_agents // len(SHIFTS)
        return shift + 1 + len(SHIFTS) * rng.integers(0, per_shift, len(hour))

    def day(self, k: int) -> None:
        pop, rates, text = self.pop, self.rates, self.text
        rng = rng_for(self.seed, "service", k)
        trig = self.orders.ticket_triggers.pop(k, [])
        after = np.concatenate(trig) if trig else np.empty(0, np.int64)
        n_reg = pop.registered_prefix(k)
        n_inq = rng.poisson(rates.inquiries_per_person_year / 365.0 * n_reg)
        inq = pop.order_by_reg[rng.integers(0, max(n_reg, 1), n_inq)] if n_reg else after[:0]
        inq = inq[pop.is_customer[inq]]
        person = np.concatenate([inq, after]).astype(np.int64)
        n = len(person)
        if n == 0:
            return
        cat = np.concatenate([
            np.zeros(len(inq), np.int64),
            rng.choice([1, 2, 3, 4], len(after), p=[0.30, 0.45, 0.15, 0.10]),
        ])  # fmt: skip
        prio = rng.choice(4, n, p=list(rates.priority_shares))
        prio = np.where((cat == 1) & (rng.random(n) < 0.4), np.maximum(prio - 1, 0), prio)
        prio = np.where(cat == INQUIRY, np.maximum(prio, 2), prio)

        # channel and who is identified how
        plat = pop.platforms[person]
        ch = rng.choice(6, n, p=[0.30, 0.10, 0.25, 0.20, 0.05, 0.10])
        ch = np.where((ch == WECHAT_CH) & ((plat & WECHAT) == 0), CHAT, ch)
        ch = np.where((ch == WEIBO_CH) & ((plat & WEIBO) == 0), CHAT, ch)
        in_crm = pop.in_crm[person]
        member = in_crm & ((ch == CHAT) | (ch == APP) | (rng.random(n) < 0.3))
        has_phone = (ch == PHONE) | (~member & ((ch == CHAT) | (ch == APP)))
        has_email = ch == EMAIL
        social = (ch == WECHAT_CH) | (ch == WEIBO_CH)

        # timeline of each ticket (seconds since day 0)
        t0 = k * 86400 + rng.choice(24, n, p=BUSINESS_HOURS / BUSINESS_HOURS.sum()) * 3600
        t0 = t0 + rng.integers(0, 3600, n)
        # out of hours (evenings, weekends, holidays): some P3-P4 tickets wait for the next
        # opening (own random stream: the rest of the data does not move)
        hrng = rng_for(self.seed, "service_hours", k)
        opens = self.opening_after(t0)
        deferred = (opens > t0) & (prio >= 2) & (hrng.random(n) < DEFERRED_OUT_OF_HOURS)
        t_start = np.where(deferred, opens, t0)
        frt = rng.lognormal(np.log(np.array(rates.first_response_median_min)[prio]),
                            rates.first_response_sigma) * 60.0  # fmt: skip
        answered = rng.random(n) >= rates.never_answered
        t_assign = t_start + np.minimum(rng.lognormal(np.log(120.0), 0.8, n), frt * 0.8)
        t_reply = t_start + frt
        resolved = answered & (rng.random(n) >= rates.unresolved)
        res = rng.lognormal(
            np.log(np.array(rates.resolution_median_h)[prio]), rates.resolution_sigma
        )
        t_res = t_reply + res * 3600.0
        reopen = resolved & (rng.random(n) < rates.reopen_rate)
        t_reopen = t_res + rng.uniform(2, 120, n) * 3600
        t_reply2 = t_reopen + rng.lognormal(np.log(2 * 3600.0), 0.8, n)
        t_res2 = t_reply2 + rng.lognormal(np.log(10 * 3600.0), 0.8, n)
        t_final = np.where(reopen, t_res2, t_res)
        t_close = t_final + 72 * 3600
        surveyed = resolved & (rng.random(n) < rates.csat_response)
        t_csat = t_res + rng.lognormal(np.log(2 * 3600.0), 0.7, n)
        target = np.array(rates.first_response_target_min)[prio] * 60.0
        # the customer rates the wait they saw: a ticket left until the next opening waited
        # from its creation, not from the opening
        slow = np.log2(np.maximum((t_reply - t0) / target, 0.5))
        mean = 4.4 - 1.1 * np.maximum(slow, 0) - 0.15 * np.minimum(slow, 0) - 0.6 * reopen
        mean = mean - 0.5 * (cat == 1)
        csat = np.clip(np.round(mean + rng.normal(0, 0.7, n)), 1, 5).astype(np.int64)
        nps = np.clip(np.round(2 * csat - 1 + rng.normal(0, 1.5, n)), 0, 10).astype(np.int64)
        has_nps = rng.random(n) < rates.nps_share
        # customer follow-ups: on answered tickets before resolution; chasers on unanswered
        n_cr = np.where(answered, np.minimum(rng.poisson(0.8, n), 4),
                        (rng.random(n) < 0.4).astype(np.int64))  # fmt: skip
        status_ch = answered & (rng.random(n) < 0.5)
        t_status = t_reply + rng.random(n) * (t_res - t_reply)

        # events: (ticket index, type, time)
        ti, et, tt = [], [], []

        def ev(mask: np.ndarray, typ: int, when: np.ndarray) -> None:
            sel = np.flatnonzero(mask)
            ti.append(sel)
            et.append(np.full(len(sel), typ))
            tt.append(np.asarray(when)[sel])

        # agents on shift (own random stream: the rest of the data does not move)
        arng = rng_for(self.seed, "service_agents", k)
        agent1 = self.on_shift(t_assign, arng)
        reassigned = answered & (arng.random(n) < rates.reassignment_rate)
        # whole seconds, as the events are written (the reassigning event's own agent)
        t_reassign = np.floor(t_assign + arng.uniform(0.2, 0.9, n) * (t_reply - t_assign))
        agent2 = self.on_shift(t_reassign, arng)
        same = agent2 == agent1
        agent2 = np.where(same, (agent2 - 1 + len(SHIFTS)) % self.n_agents + 1, agent2)

        ones = np.ones(n, bool)
        ev(ones, CREATE, t0)
        ev(answered | (rng.random(n) < 0.7), ASSIGN, t_assign)
        ev(reassigned, ASSIGN, t_reassign)
        ev(answered, REPLY_AGENT, t_reply)
        rep = np.repeat(np.arange(n), n_cr)
        span = np.where(answered, t_res - t_reply, 48 * 3600.0)[rep]
        start = np.where(answered, t_reply, t0 + 3600.0)[rep]
        t_cr = start + rng.uniform(0.05, 0.6, len(rep)) * span
        ti.append(rep), et.append(np.full(len(rep), REPLY_CUSTOMER)), tt.append(t_cr)
        ans_rep = answered[rep]
        t_follow = t_cr + rng.uniform(0.1, 0.35, len(rep)) * span
        ti.append(rep[ans_rep]), et.append(np.full(ans_rep.sum(), REPLY_AGENT))
        tt.append(t_follow[ans_rep])
        ev(status_ch, STATUS, t_status)
        ev(resolved, RESOLVE, t_res)
        ev(reopen, REOPEN, t_reopen)
        ev(reopen, REPLY_AGENT, t_reply2)
        ev(reopen, RESOLVE, t_res2)
        ev(resolved, CLOSE, t_close)
        ev(surveyed, SURVEY, t_csat)
        ti, et = np.concatenate(ti), np.concatenate(et)
        tt = np.concatenate(tt).astype(np.int64)
        keep = tt < self.end_t
        ti, et, tt = ti[keep], et[keep], tt[keep]
        order = np.lexsort((et, tt, ti))
        ti, et, tt = ti[order], et[order], tt[order]
        m = len(ti)
        grp_start = np.flatnonzero(np.r_[True, ti[1:] != ti[:-1]])
        seq = np.arange(m) - np.repeat(grp_start, np.diff(np.r_[grp_start, m]))

        # rendering
        ymd = self.clock.date(k).strftime("%Y%m%d")
        ticket_no = join("TK", ymd, digits(np.arange(n), 6))
        tix = pa.array(ti)
        p = person
        phone = null_where(~has_phone, phone_formats(text.phone(p), rng.choice([0, 3, 5], n)))
        email = null_where(~has_email, messy_emails(text.email(p), rng.random(n)))
        social_id = null_where(
            ~social, where(ch == WECHAT_CH, text.openid_oa(p), text.weibo_uid(p))
        )
        rng.integers(1, self.n_agents + 1, n)  # the former agent draw: later draws stay put
        agent_no = np.where(reassigned[ti] & (tt >= t_reassign[ti]), agent2[ti], agent1[ti])
        agent = join("AG", digits(agent_no, 3))
        has_agent = np.isin(et, [ASSIGN, REPLY_AGENT, STATUS, RESOLVE, CLOSE])
        is_survey = et == SURVEY
        table = pa.table({
            "ticket_no": ticket_no.take(tix),
            "event_no": join(ticket_no.take(tix), "-", digits(seq + 1, 2)),
            "event_time": self.clock.format(tt, "dash"),
            "event": take(lut(EVENTS), et),
            "channel": take(lut(CHANNELS), ch[ti]),
            "priority": take(lut(PRIORITIES), prio[ti]),
            "category": take(lut(CATEGORIES), cat[ti]),
            "member_no": null_where(~member[ti], join("M", digits(pop.crm_no[p[ti]], 8))),
            "caller_phone": phone.take(tix),
            "email": email.take(tix),
            "social_id": social_id.take(tix),
            "agent": null_where(~has_agent, agent),
            "csat": null_where(~is_survey, digits(csat[ti])),
            "nps": null_where(~(is_survey & has_nps[ti]), digits(nps[ti])),
        })  # fmt: skip
        late = rng.random(m) < rates.late_service
        deliver = tt // 86400 + np.where(late, rng.integers(1, 5, m), 0)
        # very late events (own random stream: the rest of the data does not move)
        vrng = rng_for(self.seed, "very_late_service", k)
        very_late = vrng.random(m) < rates.very_late_service
        deliver = np.where(very_late, tt // 86400 + vrng.integers(5, 61, m), deliver)
        late &= ~very_late
        created_rows = np.flatnonzero(et == CREATE)
        self.landing.add(
            self.source, deliver, table,
            ("service_events", ticket_no, p, created_rows),
        )  # fmt: skip

        # inquiries converting into orders within 1-29 days
        conv = (cat == INQUIRY) & (rng.random(n) < rates.inquiry_conversion)
        self.orders.schedule(k + rng.integers(1, 30, n)[conv], p[conv])

        delivered = deliver <= self.landing.last_day
        c = self.landing.count
        c(self.source, "tickets", n)
        c(self.source, "inquiry_tickets", (cat == INQUIRY).sum())
        c(self.source, "inquiries_scheduled_to_convert", conv.sum())
        c(self.source, "events", delivered.sum())
        c(self.source, "late_events", (late & delivered).sum())
        c(self.source, "very_late_events", (very_late & delivered).sum())
        c(self.source, "never_answered_tickets", (~answered).sum())
        c(self.source, "reassigned_tickets", (reassigned & (t_reassign < self.end_t)).sum())
        c(self.source, "out_of_hours_tickets", (opens > t0).sum())
        c(self.source, "deferred_to_opening_tickets", deferred.sum())
        c(self.source, "waiting_on_customer_replies", answered[rep].sum())
        c(self.source, "reopened_tickets", (reopen & (t_reopen < self.end_t)).sum())
        c(self.source, "first_response_breaches", (answered & (frt > target)).sum())
