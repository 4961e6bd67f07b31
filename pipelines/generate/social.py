"""Social interactions (`social_interactions`, Parquet, one file per platform and day).

Follows when a person starts following; inbound likes, comments, shares, messages,
mentions, clicks and coupon redemptions at a per-person rate (gamma across persons);
outbound replies to messages (some never, some after 24 h); WeChat campaign pushes: news
every 14 days, promotions before 618 / Double 11 / Double 12, and a monthly win-back push
to dormant customers (last order 180-364 days ago) with a random hold-out group, whose
lift in ordering within 30 days is built in; the hold-out, person by person, is in
`_truth/campaign_holdouts.parquet` (campaign_id, person_id): it is not delivered (the
landing contract has no interaction type for a customer left out).
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.generate import vocab
from pipelines.generate.calendar import is_promo_push_day
from pipelines.generate.landing import Landing
from pipelines.generate.orders import Orders
from pipelines.generate.population import PLATFORMS, WECHAT, Population
from pipelines.generate.presets import Rates
from pipelines.generate.textgen import (
    Clock,
    PersonText,
    digits,
    join,
    lut,
    null_where,
    rng_for,
    take,
    unit,
    where,
)

INBOUND_TYPES = ["like", "comment", "share", "message", "mention", "click", "coupon_redeem",
                 "unfollow"]  # fmt: skip
INBOUND_P = [0.36, 0.14, 0.08, 0.16, 0.04, 0.14, 0.02, 0.06]
PLATFORM_WEIGHT = np.array([3.0, 1.0, 2.0, 1.5, 1.0])
SOURCE_ACTION = {
    "follow": "subscribe", "unfollow": "unsubscribe", "like": "like", "comment": "comment",
    "share": "share", "message": "msg", "mention": "at", "click": "click",
    "coupon_redeem": "coupon_use", "campaign_push": "push",
}  # fmt: skip
TYPES = list(SOURCE_ACTION)
T = {name: i for i, name in enumerate(TYPES)}
CAMPAIGN_KINDS = ["NEWS", "PROMO", "WB", "NEW"]
WINBACK, SECOND_ORDER = 2, 3  # the segment-targeted kinds (with a random hold-out)


class Social:
    source = "social_interactions"

    def __init__(
        self, pop: Population, text: PersonText, clock: Clock, landing: Landing, rates: Rates,
        seed: int, orders: Orders, season: np.ndarray,
    ) -> None:  # fmt: skip
        self.pop, self.text, self.clock, self.landing = pop, text, clock, landing
        self.rates, self.seed, self.orders, self.season = rates, seed, orders, season
        self.seen = np.zeros(pop.n, dtype=np.uint8)
        self.linkable = np.zeros(pop.n, dtype=np.uint8)  # accounts with a phone or unionid
        self.bound_p = np.array(rates.social_phone_bound)
        self.end_t = np.int64(landing.last_day + 1) * 86400
        self.actions = lut([SOURCE_ACTION[t] for t in TYPES])
        self.comments = lut(vocab.COMMENTS)
        self.msg_in = lut(vocab.MESSAGES_IN)
        self.msg_out = lut(vocab.MESSAGES_OUT)
        self.campaign_text = lut([vocab.CAMPAIGN_TEXTS[c] for c in CAMPAIGN_KINDS])
        self.truth: dict[str, int] = defaultdict(int)
        # the win-back hold-out, person by person (`_truth/campaign_holdouts.parquet`)
        self.holdouts: list[tuple[str, np.ndarray]] = []

    def _platform_choice(self, person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        bits = self.pop.platforms[person]
        w = ((bits[:, None] >> np.arange(5)) & 1) * PLATFORM_WEIGHT[None, :]
        cum = np.cumsum(w, axis=1)
        u = rng.random(len(person)) * cum[:, -1]
        return (u[:, None] >= cum).sum(axis=1)

    def day(self, k: int) -> None:
        pop, rates = self.pop, self.rates
        rng = rng_for(self.seed, "social", k)
        day = self.clock.date(k)
        base = np.int64(k) * 86400
        P, PL, TY, TM, CP = [], [], [], [], []  # person, platform, type, time, campaign

        def emit(person, platform, typ, t, campaign=None) -> None:  # noqa: ANN001
            P.append(np.asarray(person, np.int64))
            PL.append(np.broadcast_to(np.asarray(platform, np.int64), len(person)))
            TY.append(np.broadcast_to(np.asarray(typ, np.int64), len(person)))
            TM.append(np.asarray(t, np.int64))
            CP.append(
                np.broadcast_to(np.asarray(-1 if campaign is None else campaign), len(person))
            )

        # follows of persons starting today (every platform except the mini-program)
        new = np.flatnonzero(pop.follow_day == k)
        for b in range(4):
            sel = new[(pop.platforms[new] >> b) & 1 == 1]
            emit(sel, b, T["follow"], base + rng.integers(0, 86400, len(sel)))

        # inbound activity, proportional to each follower's engagement rate
        nf = pop.following_prefix(k)
        total = float(pop.cum_eng[nf - 1]) if nf else 0.0
        n = rng.poisson(self.season[k] * total)
        who = pop.order_by_follow[np.searchsorted(pop.cum_eng, rng.random(n) * total, side="right")]
        plat = self._platform_choice(who, rng)
        typ = np.array([T[t] for t in INBOUND_TYPES])[
            rng.choice(len(INBOUND_TYPES), n, p=INBOUND_P)
        ]
        hours = np.array([1, 0.5, 0.3, 0.2, 0.2, 0.3, 0.6, 1, 1.5, 2, 2, 2, 2.5, 2, 2, 2, 2, 2,
                          2.5, 3, 4, 4.5, 4, 2.5])  # fmt: skip
        t_in = base + rng.choice(24, n, p=hours / hours.sum()) * 3600 + rng.integers(0, 3600, n)
        emit(who, plat, typ, t_in)
        # outbound replies to messages
        msg = typ == T["message"]
        replied = msg & (rng.random(n) < rates.message_reply_rate)
        delay = rng.lognormal(np.log(rates.reply_median_min * 60.0), rates.reply_sigma, n)
        emit(
            who[replied], plat[replied], T["message"], (t_in + delay.astype(np.int64))[replied], -2
        )
        self.truth["inbound_messages"] += int(msg.sum())
        self.truth["replies_within_24h"] += int((replied & (delay <= 86400)).sum())
        self.truth["replies_after_24h"] += int((replied & (delay > 86400)).sum())

        self._campaign_pushes(k, day, base, rng, emit)

        person = np.concatenate(P)
        plat = np.concatenate(PL)
        typ = np.concatenate(TY)
        t = np.concatenate(TM)
        camp = np.concatenate(CP)
        keep = t < self.end_t
        person, plat, typ, t, camp = person[keep], plat[keep], typ[keep], t[keep], camp[keep]
        order = np.argsort(t, kind="stable")
        person, plat, typ, t, camp = person[order], plat[order], typ[order], t[order], camp[order]
        m = len(person)
        if m == 0:
            return
        np.bitwise_or.at(self.seen, person, (1 << plat).astype(np.uint8))

        outbound = (typ == T["campaign_push"]) | (camp == -2)
        text = self.text
        ymd = day.strftime("%Y%m%d")
        cid = take(lut([f"CP{ymd}-{c}" for c in CAMPAIGN_KINDS]), np.maximum(camp, 0))
        # campaign ids of responses refer to the push day's campaign (all pushes are today)
        wechatish = (plat == 0) | (plat == 4)
        u = rng.random((m, 3))  # u[:, 1] no longer used; still drawn to keep the stream
        has_union = wechatish & ((plat == 4) | (u[:, 0] < rates.wechat_unionid_share))
        # an account bound to its owner's phone shows it on its rows; the more a person
        # buys, the likelier she has bound it: 1 - (1 - b)^(1 + purchases a year)
        per_year = pop.lam[person] * 365.0
        bound = 1.0 - (1.0 - self.bound_p[plat]) ** (1.0 + per_year)
        has_phone = unit(text.h(person * 5 + plat, 60)) < bound
        np.bitwise_or.at(
            self.linkable,
            person[has_union | has_phone],
            (1 << plat[has_union | has_phone]).astype(np.uint8),
        )
        content = np.select(
            [typ == T["comment"], (typ == T["message"]) & ~outbound, (typ == T["message"]) & outbound,
             typ == T["campaign_push"]], [1, 2, 3, 4], default=0,
        )  # fmt: skip
        pick = (u[:, 2] * 1000).astype(np.int64)
        text_col = where(content == 1, take(self.comments, pick % len(vocab.COMMENTS)), None)
        text_col = where(content == 2, take(self.msg_in, pick % len(vocab.MESSAGES_IN)), text_col)
        text_col = where(content == 3, take(self.msg_out, pick % len(vocab.MESSAGES_OUT)), text_col)
        text_col = where(content == 4, take(self.campaign_text, np.maximum(camp, 0)), text_col)
        table = pa.table({
            "msg_id": join("S", ymd, digits(np.arange(m), 8)),
            "event_time": self.clock.timestamps(t),
            "platform": take(lut(PLATFORMS), plat),
            "open_id": text.account(person, plat),
            "union_id": null_where(~has_union, text.unionid(person)),
            "mobile": null_where(~has_phone, text.phone(person)),
            "direction": where(outbound, "out", "in"),
            "action": take(self.actions, typ),
            "campaign": null_where(camp < 0, cid),
            "text": text_col,
        })  # fmt: skip
        late = rng.random(m) < rates.late_social
        deliver = t // 86400 + np.where(late, rng.integers(1, 4, m), 0)
        # very late interactions (own random stream: the rest of the data does not move)
        vrng = rng_for(self.seed, "very_late_social", k)
        very_late = vrng.random(m) < rates.very_late_social
        deliver = np.where(very_late, t // 86400 + vrng.integers(5, 61, m), deliver)
        late &= ~very_late
        self.landing.add(self.source, deliver, table)
        delivered = deliver <= self.landing.last_day
        self.landing.count(self.source, "interactions", delivered.sum())
        self.landing.count(self.source, "late_interactions", (late & delivered).sum())
        self.landing.count(self.source, "very_late_interactions", (very_late & delivered).sum())

    def _targets(
        self, kind: int, k: int, followers: np.ndarray, share: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, float, float, int]:
        """The persons campaign `kind` pushes on day `k`, with its click rate, the extra
        order rate of the pushed and the days within which those orders come (0.0: none,
        orders follow clicks). The segment-targeted kinds split their segment at random into
        pushed and held back, and record the hold-out (`_truth/campaign_holdouts.parquet`)."""
        pop, rates = self.pop, self.rates
        if kind < WINBACK:  # news, promotion: a random share of the followers
            return followers[rng.random(len(followers)) < share], rates.push_click_rate, 0.0, 8
        if kind == WINBACK:  # dormant: last order 180-364 days ago
            lo = pop.last_order_day[followers]
            segment = followers[(lo >= k - 364) & (lo <= k - 180)]
            holdout, click, order = (
                rates.winback_holdout,
                rates.winback_click_rate,
                rates.winback_order_rate,
            )
            name, segment_name = "winback", "winback_dormant"
        else:  # new customers: first order within the last 89 days (own random stream)
            fo = pop.first_order_day[followers]
            segment = followers[(fo >= k - 89) & (fo <= k - 1)]
            rng = rng_for(self.seed, "campaigns", k)
            holdout, click, order = (
                rates.second_order_holdout,
                rates.second_order_click_rate,
                rates.second_order_order_rate,
            )
            name, segment_name = "second_order", "second_order_new"
        hold = rng.random(len(segment)) < holdout
        self.truth[segment_name] += len(segment)
        self.truth[f"{name}_pushed"] += int((~hold).sum())
        self.truth[f"{name}_holdout"] += int(hold.sum())
        ymd = self.clock.date(k).strftime("%Y%m%d")
        self.holdouts.append((f"CP{ymd}-{CAMPAIGN_KINDS[kind]}", segment[hold]))
        return segment[~hold], click, order, 30

    def _campaign_pushes(self, k: int, day, base, rng: np.random.Generator, emit) -> None:  # noqa: ANN001
        """WeChat official-account pushes of day `k` and the customers' responses."""
        pop, rates = self.pop, self.rates
        h = k - pop.timeline.history
        kinds = []
        if h % 14 == 3:
            kinds.append((0, rates.news_push_share))
        if is_promo_push_day(day):
            kinds.append((1, rates.promo_push_share))
        if day.day == 1:
            kinds.append((WINBACK, 0.0))
        if day.day == rates.second_order_push_day:
            kinds.append((SECOND_ORDER, 0.0))
        followers = None
        for kind, share in kinds:
            if followers is None:
                followers = np.flatnonzero((pop.follow_day <= k) & ((pop.platforms & WECHAT) > 0))
            target, click_p, order_p, order_days = self._targets(kind, k, followers, share, rng)
            # the new-customer campaign draws on its own stream: the rest does not move
            crng = rng_for(self.seed, "campaigns", k, 1) if kind == SECOND_ORDER else rng
            t_push = base + 10 * 3600 + crng.integers(0, 7200, len(target))
            emit(target, 0, T["campaign_push"], t_push, kind)
            click = crng.random(len(target)) < click_p
            t_click = t_push + np.minimum(crng.lognormal(np.log(6 * 3600.0), 1.2, len(target)),
                                          7 * 86400 - 60).astype(np.int64)  # fmt: skip
            emit(target[click], 0, T["click"], t_click[click], kind)
            redeem = click & (crng.random(len(target)) < 0.3)
            t_red = np.minimum(
                t_click + crng.integers(600, 3 * 86400, len(target)), t_push + 7 * 86400 - 1
            )
            emit(target[redeem], 0, T["coupon_redeem"], t_red[redeem], kind)
            if kind >= WINBACK:
                buy = crng.random(len(target)) < order_p
            else:
                buy = click & (crng.random(len(target)) < rates.click_order_rate)
            self.orders.schedule(k + crng.integers(1, order_days, len(target))[buy], target[buy])
            self.truth[f"pushes_{CAMPAIGN_KINDS[kind]}"] += len(target)
            self.truth[f"scheduled_orders_{CAMPAIGN_KINDS[kind]}"] += int(buy.sum())

    def finish(self) -> None:
        """Identity truth of every social account that appeared; the win-back hold-out."""
        camp = [np.full(len(p), c, dtype=object) for c, p in self.holdouts]
        held = [p for _, p in self.holdouts]
        pq.write_table(
            pa.table({
                "campaign_id": pa.array(np.concatenate(camp) if camp else [], pa.string()),
                "person_id": pa.array(np.concatenate(held) if held else [], pa.int64()),
            }),
            self.landing.out / "_truth" / "campaign_holdouts.parquet",
        )  # fmt: skip
        for b, name in enumerate(PLATFORMS):
            person = np.flatnonzero((self.seen >> b) & 1 == 1)
            if len(person):
                acc = self.text.account(person, np.full(len(person), b))
                self.landing.identity.add("social_interactions", join(name, ":", acc), person)
            bare = ((self.seen & ~self.linkable) >> b) & 1 == 1
            self.truth[f"accounts_{name}"] += len(person)
            self.truth[f"accounts_without_phone_or_unionid_{name}"] += int(bare.sum())
