"""Persons and their latent behaviour: memberships, social accounts, purchase process,
spend level, preferred channel and profile completeness.

Index `i` in [0, n_customers) is a customer (a person who is, or may become, a buyer);
[n_customers, n_persons) are social-only fans. Days are integers: day 0 is the first day of
the history that precedes the delivered period, day `history` the first delivered day.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.generate.presets import Rates
from pipelines.generate.textgen import rng_for

NEVER = np.int32(2**30)

# channels
ONLINE, MINI, TMALL, OFFLINE = 0, 1, 2, 3
CHANNELS = ["online_store", "mini_program", "tmall", "offline_store"]
# platform bits
WECHAT, WEIBO, DOUYIN, XHS, MP = 1, 2, 4, 8, 16
PLATFORMS = ["wechat", "weibo", "douyin", "xiaohongshu", "mini_program"]
# profile fields (bit order)
FIELDS = ["name", "gender", "birth_date", "phone", "email", "city"]


@dataclass
class Timeline:
    history: int  # simulated days before the first delivered day
    days: int  # delivered days

    @property
    def total(self) -> int:
        return self.history + self.days


def _fill_bits(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """Profile bitmask per row; `probs` has shape (n, 6)."""
    hit = rng.random(probs.shape) < probs
    return (hit * (1 << np.arange(6))).sum(axis=1).astype(np.uint8)


class Population:
    def __init__(
        self, n_customers: int, timeline: Timeline, season: np.ndarray, rates: Rates, seed: int
    ) -> None:
        rng = rng_for(seed, "population")
        n_fans = int(round(n_customers * rates.fans_ratio))
        n = n_customers + n_fans
        self.n, self.n_customers, self.n_fans = n, n_customers, n_fans
        self.timeline = timeline
        is_cust = np.arange(n) < n_customers
        self.is_customer = is_cust
        k_total, hist = timeline.total, timeline.history

        # registration (customers) / first follow (fans); soft seasonality
        w = 1.0 + 0.5 * (season[:k_total] - 1.0)
        w = w / w.sum()
        pre = rng.random(n) < rates.preexisting_share
        reg = np.where(pre, -rng.integers(1, 1500, n), rng.choice(k_total, size=n, p=w))
        self.reg_day = reg.astype(np.int32)

        # memberships
        u = rng.random((n, 8))
        crm = is_cust & (u[:, 0] < rates.crm_share)
        mall = is_cust & (u[:, 1] < rates.mall_share)
        self.in_crm, self.in_mall = crm, mall
        mall_offset = np.where(crm, rng.integers(0, 180, n), 0)
        self.mall_reg_day = np.where(mall, reg + mall_offset, NEVER).astype(np.int32)
        self.crm_reg_day = np.where(crm, reg, NEVER).astype(np.int32)

        # social platforms
        fan = ~is_cust
        wechat = mall | (is_cust & (u[:, 2] < rates.wechat_share)) | (fan & (u[:, 2] < 0.6))
        weibo = u[:, 3] < np.where(is_cust, rates.weibo_share, 0.30)
        douyin = u[:, 4] < np.where(is_cust, rates.douyin_share, 0.40)
        xhs = u[:, 5] < np.where(is_cust, rates.xiaohongshu_share, 0.25)
        wechat |= fan & ~(weibo | douyin | xhs)
        self.platforms = (
            wechat * WECHAT + weibo * WEIBO + douyin * DOUYIN + xhs * XHS + mall * MP
        ).astype(np.uint8)
        follow = np.where(is_cust, reg + rng.integers(0, 90, n), reg)
        self.follow_day = np.where(self.platforms > 0, follow, NEVER).astype(np.int32)
        eng_mean = rates.interactions_per_year / 365.0
        self.eng = np.where(self.platforms > 0, rng.gamma(0.6, eng_mean / 0.6, n), 0.0)

        # duplicate CRM registrations: 0 same phone (other format), 1 same e-mail, 2 nothing shared
        dup = crm & (u[:, 6] < rates.duplicate_registration)
        dup_day = reg + rng.integers(30, 400, n)
        self.dup_day = np.where(dup & (dup_day < k_total), dup_day, NEVER).astype(np.int32)
        self.dup_style = rng.choice(3, size=n, p=list(rates.duplicate_styles)).astype(np.int8)

        # purchase process: rate (per day) and dropout after each purchase
        buyer = is_cust & (u[:, 7] >= rates.prospect_share)
        lam = rng.gamma(rates.purchase_shape, 1.0 / rates.purchase_shape, n)
        lam *= rates.purchases_per_year / 365.0
        vip = buyer & (rng.random(n) < rates.vip_share)
        lam = np.where(
            vip, lam.clip(min=rates.purchases_per_year / 365.0) * rates.vip_rate_factor, lam
        )
        self.lam = np.where(buyer, lam, 0.0)
        self.p_drop = np.where(
            vip, rates.vip_dropout, rng.beta(rates.dropout_a, rates.dropout_b, n)
        ).astype(np.float32)
        spend = rates.mean_order_value * (rates.spend_q - 1.0) / rng.gamma(rates.spend_q, 1.0, n)
        self.mean_spend = np.where(vip, spend * rates.vip_spend_factor, spend).astype(np.float32)
        self.is_vip_segment = vip
        self.alive = ~pre | (rng.random(n) < rates.preexisting_alive)
        self.last_order_day = np.full(n, -(10**6), dtype=np.int32)
        self.first_order_day = np.full(n, -(10**6), dtype=np.int32)

        # preferred channel
        pc_mall = rng.choice(4, size=n, p=[0.25, 0.45, 0.15, 0.15])
        pc_crm = rng.choice(4, size=n, p=[0.40, 0.0, 0.35, 0.25])
        pc_guest = rng.choice(4, size=n, p=[0.30, 0.0, 0.55, 0.15])
        self.pref_channel = np.where(mall, pc_mall, np.where(crm, pc_crm, pc_guest)).astype(np.int8)

        # profile completeness: bits present now; new registrations fill more as time goes on
        progress = np.clip((reg - hist) / max(timeline.days, 1), 0.0, 1.0)[:, None]
        base = np.array(rates.crm_fill)[None, :]
        probs = base + (rates.crm_fill_target - base) * rates.crm_fill_drift * progress
        self.crm_bits = np.where(crm, _fill_bits(rng, probs), 0).astype(np.uint8)
        self.dup_bits = _fill_bits(rng, probs)
        mall_probs = np.broadcast_to(np.array(rates.mall_fill)[None, :], (n, 6))
        self.mall_bits = np.where(mall, _fill_bits(rng, mall_probs), 0).astype(np.uint8)

        # member numbers in registration order
        self.crm_no = _numbering(crm, self.crm_reg_day, 10_000_001)
        self.dup_no = _numbering(self.dup_day < NEVER, self.dup_day, 90_000_001)
        self.mall_no = _numbering(mall, self.mall_reg_day, 100_000_001)

        # sorted views for "who is registered by day k" prefix queries
        self.order_by_reg = np.argsort(self.reg_day, kind="stable")
        self.reg_sorted = self.reg_day[self.order_by_reg]
        self.cum_lam = np.cumsum(self.lam[self.order_by_reg])
        self.order_by_follow = np.argsort(self.follow_day, kind="stable")
        self.follow_sorted = self.follow_day[self.order_by_follow]
        self.cum_eng = np.cumsum(self.eng[self.order_by_follow])

    def registered_prefix(self, k: int) -> int:
        """Number of persons (in registration order) registered on or before day k."""
        return int(np.searchsorted(self.reg_sorted, k, side="right"))

    def following_prefix(self, k: int) -> int:
        return int(np.searchsorted(self.follow_sorted, k, side="right"))


def _numbering(mask: np.ndarray, day: np.ndarray, first: int) -> np.ndarray:
    """Consecutive numbers for `mask` persons in order of `day` (0 elsewhere)."""
    idx = np.flatnonzero(mask)
    order = idx[np.argsort(day[idx], kind="stable")]
    no = np.zeros(len(mask), dtype=np.int64)
    no[order] = first + np.arange(len(order))
    return no
