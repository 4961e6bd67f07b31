"""Orders (`shop_orders`, CSV with a BOM, one row per order line, mixed date formats).

The purchase process is BG/NBD-like: while "alive", a customer buys at her own rate
(gamma distributed across customers) times the day's seasonality; after each purchase she
drops out with her own probability (beta distributed). Order values are gamma around a
customer mean that is itself inverse-gamma across customers (gamma-gamma). Win-back pushes
and converted inquiries add scheduled orders (and revive dropped-out customers).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.generate import vocab
from pipelines.generate.calendar import is_promo_day
from pipelines.generate.landing import Landing
from pipelines.generate.population import MINI, OFFLINE, ONLINE, TMALL, Population
from pipelines.generate.presets import Rates
from pipelines.generate.textgen import (
    Clock,
    PersonText,
    choose,
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

CHANNEL_CODES = ["WEB", "MP", "TMALL", "POS"]
ORDER_PREFIX = ["W", "MP", "TM", "POS"]
SOURCE_SYSTEM = ["crm", "mall", "tmall", "crm"]
#: front-desk phones of the two flagship stores, typed on walk-in orders
FRONTDESK_PHONES = ["19916880001", "19916880002"]
ONLINE_HOURS = np.array([0.8, 0.4, 0.2, 0.1, 0.1, 0.2, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0,
                         3.5, 3.0, 2.5, 2.5, 3.0, 3.0, 3.5, 4.5, 5.5, 6.0, 5.0, 3.0])  # fmt: skip
COLUMNS = [
    "order_no", "line_no", "order_time", "status", "channel", "member_id", "buyer_nick",
    "buyer_name", "buyer_phone", "buyer_email", "sku", "item_name", "category", "qty",
    "unit_price", "discount", "refund_amt", "currency",
]  # fmt: skip
ZERO_DATE = "0000-00-00 00:00:00"
#: Share of the order lines after the first whose previous line holds a product of
#: vocab.AFFINITIES that hold its partner instead (docs/generator.md, "Products bought
#: together").
AFFINITY_RATE = 0.5


def money(cents: np.ndarray) -> pa.Array:
    cents = np.asarray(cents, dtype=np.int64)
    return join(digits(cents // 100), ".", digits(cents % 100, 2))


class Catalog:
    def __init__(self) -> None:
        rows = [(cat, name, price) for cat, items in vocab.CATALOG for name, price in items]
        rows.sort(key=lambda r: r[2])
        self.category = lut([r[0] for r in rows])
        self.name = lut([r[1] for r in rows])
        self.price = np.array([r[2] for r in rows])
        self.sku = lut([f"SKU{10001 + i * 7:05d}" for i in range(len(rows))])
        index = {r[1]: i for i, r in enumerate(rows)}
        #: each product's partner in vocab.AFFINITIES (-1: none)
        self.partner = np.full(len(rows), -1)
        for a, b in vocab.AFFINITIES:
            self.partner[index[a]], self.partner[index[b]] = index[b], index[a]

    def pair_up(
        self, prod: np.ndarray, line_no: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Products of an order's lines (in line order), some lines after the first replaced
        by the partner of the previous line's product (vocab.AFFINITIES)."""
        prev = np.concatenate([[-1], prod[:-1]])
        partner = np.where(line_no > 1, self.partner[np.maximum(prev, 0)], -1)
        paired = (partner >= 0) & (rng.random(len(prod)) < AFFINITY_RATE)
        return np.where(paired, partner, prod)


class Orders:
    source = "shop_orders"

    def __init__(
        self, pop: Population, text: PersonText, clock: Clock, landing: Landing, rates: Rates,
        seed: int, season: np.ndarray,
    ) -> None:  # fmt: skip
        self.pop, self.text, self.clock, self.landing = pop, text, clock, landing
        self.rates, self.seed, self.season = rates, seed, season
        self.catalog = Catalog()
        self.forced: dict[int, list[np.ndarray]] = defaultdict(list)
        self.ticket_triggers: dict[int, list[np.ndarray]] = defaultdict(list)
        self.history_tables: list[pa.Table] = []
        self.currencies = list(rates.currencies)
        self.frontdesk = lut(FRONTDESK_PHONES)

    def schedule(self, days: np.ndarray, persons: np.ndarray) -> None:
        """Extra orders (converted inquiries, campaign responses) on given days."""
        for d in np.unique(days):
            self.forced[int(d)].append(persons[days == d])

    # --- purchase process -------------------------------------------------------------
    def _buyers(self, k: int, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        pop = self.pop
        n_reg = pop.registered_prefix(k)
        total = float(pop.cum_lam[n_reg - 1]) if n_reg else 0.0
        n = rng.poisson(self.season[k] * total)
        cand = pop.order_by_reg[np.searchsorted(pop.cum_lam, rng.random(n) * total, side="right")]
        buyers = cand[pop.alive[cand]]
        forced = self.forced.pop(k, [])
        forced = np.concatenate(forced) if forced else np.empty(0, np.int64)
        pop.alive[forced] = True
        buyers = np.concatenate([buyers, forced]).astype(np.int64)
        drop = rng.random(len(buyers)) < pop.p_drop[buyers]
        pop.alive[buyers[drop]] = False
        pop.last_order_day[buyers] = k
        first = buyers[pop.first_order_day[buyers] < 0]
        pop.first_order_day[first] = k
        return buyers, len(forced)

    def day(self, k: int) -> None:
        pop, rates, text, cat = self.pop, self.rates, self.text, self.catalog
        rng = rng_for(self.seed, "orders", k)
        hist = pop.timeline.history
        day = self.clock.date(k)
        buyers, n_forced = self._buyers(k, rng)
        n = len(buyers)
        if n == 0:
            return
        u = rng.random((n, 12))

        # channel
        ch = np.where(u[:, 0] < rates.channel_stickiness, pop.pref_channel[buyers],
                      rng.choice(4, n, p=[0.35, 0.25, 0.25, 0.15]))  # fmt: skip
        ch = np.where((ch == MINI) & (pop.mall_reg_day[buyers] > k), ONLINE, ch)
        if (day.month, day.day) == (11, 11):
            ch = np.where(u[:, 1] < 0.3, TMALL, ch)
        non_cny = u[:, 2] < rates.non_cny_rate
        ch = np.where(non_cny, ONLINE, ch).astype(np.int64)

        # time of day
        w = ONLINE_HOURS.copy()
        if (day.month, day.day) == (11, 11):
            w[0] *= 15.0
            w[1] *= 4.0
        hour = np.where(ch == OFFLINE, rng.integers(10, 22, n), rng.choice(24, n, p=w / w.sum()))
        t = k * 86400 + hour * 3600 + rng.integers(0, 3600, n)
        order_sort = np.argsort(t, kind="stable")
        buyers, ch, t, u, non_cny = (a[order_sort] for a in (buyers, ch, t, u, non_cny))

        # value, lines, products
        promo = is_promo_day(day)
        z = rng.gamma(rates.spend_p, pop.mean_spend[buyers] / rates.spend_p) * (
            1.2 if promo else 1.0
        )
        n_lines = 1 + np.minimum(rng.poisson(rates.extra_lines_mean, n), 5)
        oi = np.repeat(np.arange(n), n_lines)
        first = np.concatenate([[0], np.cumsum(n_lines)[:-1]])
        line_no = np.arange(len(oi)) - first[oi] + 1
        m = len(oi)
        v = z[oi] / n_lines[oi] * rng.lognormal(0.0, 0.35, m)
        qty = 1 + (rng.random(m) < 0.2) + (rng.random(m) < 0.05)
        prod = np.searchsorted(cat.price, v / qty) + rng.integers(-2, 2, m)
        prod = np.clip(prod, 0, len(cat.price) - 1)
        # products bought together: their own random stream, so the other draws stay put
        prod = cat.pair_up(prod, line_no, rng_for(self.seed, "product_affinity", k))
        price_c = np.round(cat.price[prod] * 100).astype(np.int64)

        # discount
        if promo:
            rate = np.where(
                u[:, 3] < 0.85, np.array([0.10, 0.15, 0.20])[rng.integers(0, 3, n)], 0.0
            )
        else:
            rate = np.where(u[:, 3] < 0.20, np.array([0.05, 0.10])[rng.integers(0, 2, n)], 0.0)
        gross_c = price_c * qty
        disc_c = np.round(gross_c * rate[oi]).astype(np.int64)

        # status, refunds
        r = u[:, 4]
        cancelled = r < rates.cancel_rate
        refunded = ~cancelled & (r < rates.cancel_rate + rates.refund_rate)
        partial = ~cancelled & ~refunded & (u[:, 5] < rates.partial_refund_rate)
        # history orders are all settled; recent ones may still be paid or shipped
        normal = np.searchsorted([0.75, 0.92], u[:, 6]) * (k >= hist)
        status_i = np.where(cancelled, 3, np.where(refunded, 4, normal))
        status = take(lut(["DONE", "SHIPPED", "PAID", "CANCEL", "REFUND"]), status_i)
        refund_c = np.where(refunded[oi] | (partial[oi] & (line_no == 1)), gross_c - disc_c, 0)

        # currency
        cur_i = rng.choice(len(self.currencies), n, p=list(rates.currencies.values()))
        fx = np.array([rates.fx_to_cny[c] for c in self.currencies])[cur_i]
        conv = np.where(non_cny, fx, 1.0)[oi]
        price_c = np.where(non_cny[oi], np.round(price_c / conv), price_c).astype(np.int64)
        disc_c = np.where(non_cny[oi], np.round(disc_c / conv), disc_c).astype(np.int64)
        refund_c = np.where(non_cny[oi], np.round(refund_c / conv), refund_c).astype(np.int64)
        currency = where(
            non_cny, take(lut(self.currencies), cur_i), where(u[:, 7] < 0.1, "CNY", None)
        )

        # identifiers on the order
        crm_no = np.where((pop.dup_day[buyers] <= k) & (u[:, 8] < 0.5), pop.dup_no[buyers],
                          pop.crm_no[buyers])  # fmt: skip
        crm_ref = join("M", digits(crm_no, 8))
        mall_ref = join("WM", digits(pop.mall_no[buyers], 9))
        in_crm = pop.in_crm[buyers]
        walkin = (ch == OFFLINE) & (~in_crm | (u[:, 9] < rates.walkin_share))
        fd = walkin & (u[:, 10] < rates.frontdesk_share)
        own = walkin & ~fd & (u[:, 10] < rates.frontdesk_share + rates.walkin_own_phone_share)
        anon = walkin & ~fd & ~own
        member = np.where(ch == MINI, True, np.where(ch == TMALL, False, in_crm & ~walkin))
        member_id = null_where(~member, where(ch == MINI, mall_ref, crm_ref))
        nick = null_where(ch != TMALL, text.tmall_nick(buyers))
        q = u[:, 11]
        has_phone = np.select(
            [ch == TMALL, ch == MINI, (ch == ONLINE) & in_crm, ch == ONLINE, own, fd],
            [q < rates.tmall_phone_share, q < 0.5, q < 0.5, q < 1.0 - rates.guest_no_contact,
             True, True], default=(q < 0.3) & ~anon,
        )  # fmt: skip
        style = np.where(ch == TMALL, 0, rng.choice(6, n, p=[0.5, 0.2, 0.1, 0.1, 0.05, 0.05]))
        phone = phone_formats(text.phone(buyers), style)
        store = rng.integers(0, 2, n)
        fd_phone = phone_formats(take(self.frontdesk, store), rng.choice(3, n))
        phone = null_where(~has_phone, where(fd, fd_phone, phone))
        has_email = (ch == ONLINE) & np.where(in_crm, q > 0.8, q < 0.6)
        email = null_where(~has_email, messy_emails(text.email(buyers), rng.random(n)))
        has_name = ~anon & ~fd & (rng.random(n) < np.where(ch == OFFLINE, 0.3, 0.65))
        name = null_where(~has_name, text.name(buyers))

        # order ids, timestamps (format by channel), delivery day
        prefix = take(lut(ORDER_PREFIX), ch)
        order_no = join(prefix, day.strftime("%Y%m%d"), digits(np.arange(n), 7))
        fmt = np.array([0, 0, 2, 1])[ch]
        order_time = choose(fmt, [self.clock.format(t, "dash"), self.clock.format(t, "slash_hm"),
                                  self.clock.format(t, "compact")])  # fmt: skip
        bad_time = rng.random(n) < rates.unparseable_timestamp
        order_time = where(bad_time, ZERO_DATE, order_time)
        late = rng.random(n) < rates.late_orders
        deliver = np.where(late, k + rng.integers(1, 6, n), k)

        # after-sales tickets triggered by orders
        trig = rng.random(n) < rates.tickets_per_order
        tdays = k + rng.integers(0, 15, n)
        for d in np.unique(tdays[trig & (tdays >= hist)]):
            self.ticket_triggers[int(d)].append(buyers[trig & (tdays == d)])

        # late corrections (own random stream: the rest of the data does not move)
        crng = rng_for(self.seed, "order_corrections", k)
        corr_kind = crng.choice(3, n, p=[0.5, 0.2, 0.3])  # refund, cancel, complete
        corr_day = np.maximum(k + crng.integers(2, 61, n), deliver + 1)
        corrected = (
            (crng.random(n) < rates.late_corrections)
            & ~cancelled & ~refunded & ~bad_time
            & ((corr_kind < 2) | (status_i == 1) | (status_i == 2))
            & (corr_day > hist)
        )  # fmt: skip

        oi_t = pa.array(oi)
        table = pa.table({
            "order_no": order_no.take(oi_t),
            "line_no": digits(line_no),
            "order_time": order_time.take(oi_t),
            "status": status.take(oi_t),
            "channel": take(lut(CHANNEL_CODES), ch[oi]),
            "member_id": member_id.take(oi_t),
            "buyer_nick": nick.take(oi_t),
            "buyer_name": name.take(oi_t),
            "buyer_phone": phone.take(oi_t),
            "buyer_email": email.take(oi_t),
            "sku": take(cat.sku, prod),
            "item_name": take(cat.name, prod),
            "category": take(cat.category, prod),
            "qty": digits(qty),
            "unit_price": money(price_c),
            "discount": money(disc_c),
            "refund_amt": money(refund_c),
            "currency": currency.take(oi_t),
        })  # fmt: skip

        if corrected.any():
            lines = corrected[oi]
            kind = corr_kind[oi][lines]
            full_refund = (price_c * qty - disc_c)[lines]
            fixed = table.filter(pa.array(lines))
            fixed = fixed.set_column(
                fixed.column_names.index("status"), "status",
                take(lut(["REFUND", "CANCEL", "DONE"]), kind),
            )  # fmt: skip
            refund_amt = fixed["refund_amt"].combine_chunks()
            refund_amt = pc.if_else(pa.array(kind == 0), money(full_refund), refund_amt)
            fixed = fixed.set_column(
                fixed.column_names.index("refund_amt"), "refund_amt", refund_amt
            )
            self.landing.add(self.source, corr_day[oi][lines], fixed)
            done = corrected & (corr_day <= self.landing.last_day)
            for j, name_ in enumerate(["refunds", "cancellations", "completions"]):
                n_done = (done & (corr_kind == j)).sum()
                self.landing.count(self.source, f"late_corrected_{name_}", n_done)
            lag = (corr_day - k)[done]
            if len(lag):
                self.landing.count(self.source, "late_corrections_over_7_days", (lag > 7).sum())

        # identity: orders carrying an identifier; front-desk walk-ins belong to nobody
        carries = ~anon
        ss = take(lut(SOURCE_SYSTEM), ch)
        keys = pc.binary_join_element_wise(ss, order_no, ":")
        person = np.where(fd, -1, buyers)
        rows = first
        idsel = np.flatnonzero(carries)

        # bookkeeping (only what is delivered)
        delivered = np.maximum(deliver, hist) <= self.landing.last_day
        lines_delivered = delivered[oi]
        c = self.landing.count
        c(self.source, "orders", delivered.sum())
        c(self.source, "order_lines", lines_delivered.sum())
        c(self.source, "cancelled_orders", (cancelled & delivered).sum())
        c(self.source, "refunded_orders", (refunded & delivered).sum())
        c(self.source, "partially_refunded_orders", (partial & delivered).sum())
        for j, code in enumerate(self.currencies):
            c(self.source, f"orders_{code}", (non_cny & (cur_i == j) & delivered).sum())
        c(self.source, "frontdesk_phone_orders", (fd & delivered).sum())
        c(self.source, "anonymous_orders", (anon & delivered).sum())
        # orders of a known person that carry nothing to link them (a name at most)
        no_contact = (ch == ONLINE) & ~in_crm & ~has_phone & ~has_email
        c(self.source, "orders_without_contact", (no_contact & delivered).sum())
        c(self.source, "tmall_orders_without_phone", ((ch == TMALL) & ~has_phone & delivered).sum())
        c(self.source, "late_orders", (late & delivered & (k >= hist)).sum())
        c(self.source, "unparseable_order_time_lines", (bad_time[oi] & lines_delivered).sum())
        for j, name_ in enumerate(["dash", "slash_hm", "compact"]):
            c(
                self.source,
                f"order_time_{name_}_lines",
                ((fmt[oi] == j) & ~bad_time[oi] & lines_delivered).sum(),
            )
        c(self.source, "scheduled_orders", n_forced)

        if k < hist:
            self.history_tables.append(table)
            self.landing.identity.add("orders", keys.take(pa.array(idsel)), person[idsel])
            nxt = self.clock.date(k + 1)
            if nxt.month != day.month or k + 1 == hist:
                name = f"orders_history_{day.strftime('%Y%m')}.csv"
                self.landing.write_file(
                    self.source, hist, name, pa.concat_tables(self.history_tables)
                )
                self.history_tables = []
        else:
            self.landing.add(
                self.source, deliver[oi], table,
                ("orders", keys.take(pa.array(idsel)), person[idsel], rows[idsel]),
            )  # fmt: skip
