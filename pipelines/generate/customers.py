"""Customer profiles: `crm_members` (GB18030 CSV, Chinese headers) and `mall_members`
(WeChat mini-program mall, JSON Lines). One row per profile version."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from pipelines.generate.landing import Landing
from pipelines.generate.population import WECHAT, Population
from pipelines.generate.presets import Rates
from pipelines.generate.textgen import (
    Clock,
    PersonText,
    digits,
    format_dates,
    full_width,
    join,
    messy_emails,
    mix64,
    null_where,
    phone_formats,
    rng_for,
    unit,
    where,
)

CRM_COLUMNS = [
    "会员编号", "姓名", "性别", "出生日期", "手机号码", "电子邮箱", "省份", "城市", "详细地址",
    "会员等级", "是否同意营销", "微信UnionID", "注册时间", "更新时间",
]  # fmt: skip
MALL_COLUMNS = [
    "member_id", "openid", "unionid", "nickname", "real_name", "gender", "mobile", "province",
    "city", "level", "created_at", "updated_at",
]  # fmt: skip
MALL_FIELDS_MASK = 0b101011  # name, gender, phone, city (no birth date, no e-mail)
FULL_EXPORT_ROWS = 250_000


def _bit(bits: np.ndarray, b: int) -> np.ndarray:
    return (bits >> b) & 1 == 1


class Profiles:
    def __init__(
        self, pop: Population, text: PersonText, clock: Clock, landing: Landing, rates: Rates,
        seed: int,
    ) -> None:  # fmt: skip
        self.pop, self.text, self.clock, self.landing = pop, text, clock, landing
        self.rates, self.seed = rates, seed
        hist = pop.timeline.history
        self.hist = hist
        self.reg_sec = (pop.reg_day.astype(np.int64) * 86400) + (
            text.h(np.arange(pop.n), 40) % np.uint64(86400)
        ).astype(np.int64)
        self.mall_sec = (pop.mall_reg_day.astype(np.int64) * 86400) + (
            text.h(np.arange(pop.n), 41) % np.uint64(86400)
        ).astype(np.int64)

    # --- rendering --------------------------------------------------------------------
    def crm_table(
        self, idx: np.ndarray, bits: np.ndarray, dup: np.ndarray, t_upd: np.ndarray,
        rng: np.random.Generator,
    ) -> pa.Table:  # fmt: skip
        pop, text, n = self.pop, self.text, len(idx)
        style = pop.dup_style[idx]
        no = np.where(dup, pop.dup_no[idx], pop.crm_no[idx])
        t_reg = np.where(dup, pop.dup_day[idx].astype(np.int64) * 86400 + 37_000, self.reg_sec[idx])
        female = text.is_female(idx, self.rates.female_share)
        u = rng.random((n, 6))
        gender = where(female, "女", "男")
        gender = where(_bit(bits, 1), gender, where(u[:, 0] < 0.5, "未知", None))
        birth = format_dates(text.birth_days(idx), np.searchsorted([0.7, 0.9], u[:, 1]))
        phone = where(dup & (style != 0), text.phone(idx, alt=True), text.phone(idx))
        phone = phone_formats(phone, np.searchsorted([0.4, 0.6, 0.7, 0.8, 0.9], u[:, 2]))
        email = messy_emails(text.email(idx), u[:, 3])
        # typed in full-width characters (a hash of the row, so the random streams stay)
        wide = unit(mix64(idx.astype(np.uint64) ^ t_upd.astype(np.uint64), 48))
        phone = full_width(phone, wide < self.rates.full_width)
        email = full_width(email, (wide * 7919) % 1 < self.rates.full_width)
        prov, city = text.city_of(idx)
        hl = unit(text.h(idx, 42))
        level_i = np.searchsorted([0.70, 0.90, 0.98], hl)
        level_i = np.where(pop.is_vip_segment[idx], 3, level_i)
        level = pa.array(np.array(["普通会员", "银卡会员", "金卡会员", "钻石会员"])[level_i])
        hc = unit(text.h(idx, 43))
        consent = where(hc < 0.6, "是", where(hc < 0.9, "否", None))
        bound = ~dup & ((pop.platforms[idx] & WECHAT) > 0)
        bound &= unit(text.h(idx, 44)) < self.rates.crm_wechat_bound
        cols = {
            "会员编号": join("M", digits(no, 8)),
            "姓名": null_where(~_bit(bits, 0), text.name(idx)),
            "性别": gender,
            "出生日期": null_where(~_bit(bits, 2), birth),
            "手机号码": null_where(~_bit(bits, 3), phone),
            "电子邮箱": null_where(~_bit(bits, 4), email),
            "省份": null_where(~_bit(bits, 5), prov),
            "城市": null_where(~_bit(bits, 5), city),
            "详细地址": null_where(~(_bit(bits, 5) & (u[:, 4] < 0.7)), text.address(idx)),
            "会员等级": level,
            "是否同意营销": consent,
            "微信UnionID": null_where(~bound, text.unionid(idx)),
            "注册时间": self.clock.format(t_reg, "dash"),
            "更新时间": self.clock.format(t_upd, "dash"),
        }
        return pa.table(cols)

    def mall_table(
        self, idx: np.ndarray, bits: np.ndarray, t_upd: np.ndarray, rng: np.random.Generator
    ) -> pa.Table:
        pop, text, n = self.pop, self.text, len(idx)
        u = rng.random((n, 2))
        female = text.is_female(idx, self.rates.female_share)
        gender = np.where(_bit(bits, 1), np.where(female, 2, 1), 0)
        prov, city = text.city_of(idx)
        mobile = phone_formats(text.phone(idx), np.searchsorted([0.25, 0.5], u[:, 0]) * 2 % 5)
        hl = unit(text.h(idx, 45))
        level = pa.array(np.array(["V1", "V2", "V3", "V4"])[np.searchsorted([0.6, 0.85, 0.97], hl)])
        nick = join(text.given_py.take(pa.array((text.h(idx, 2) % np.uint64(50)).astype(np.int64))),
                    "_", digits((text.h(idx, 46) % np.uint64(10000)).astype(np.int64), 4))  # fmt: skip
        cols = {
            "member_id": join("WM", digits(pop.mall_no[idx], 9)),
            "openid": text.openid_mp(idx),
            "unionid": text.unionid(idx),
            "nickname": nick,
            "real_name": null_where(~_bit(bits, 0), text.name(idx)),
            "gender": pa.array(gender.astype(np.int64)),
            "mobile": null_where(~_bit(bits, 3), mobile),
            "province": null_where(~_bit(bits, 5), prov),
            "city": null_where(~_bit(bits, 5), city),
            "level": level,
            "created_at": self.clock.format(self.mall_sec[idx], "iso_offset"),
            "updated_at": self.clock.format(t_upd, "iso_offset"),
        }
        return pa.table(cols)

    # --- deliveries -------------------------------------------------------------------
    def full_export(self) -> None:
        """First delivered day: every member registered before it (latest version each)."""
        pop, hist = self.pop, self.hist
        rng = rng_for(self.seed, "profiles", 0)
        ymd = self.clock.date(hist).strftime("%Y%m%d")
        main = np.flatnonzero(pop.crm_reg_day < hist)
        dups = np.flatnonzero(pop.dup_day < hist)
        idx = np.concatenate([main, dups])
        dup = np.concatenate([np.zeros(len(main), bool), np.ones(len(dups), bool)])
        order = np.argsort(np.where(dup, pop.dup_day[idx], pop.crm_reg_day[idx]), kind="stable")
        idx, dup = idx[order], dup[order]
        for part, s in enumerate(range(0, len(idx), FULL_EXPORT_ROWS)):
            i, d = idx[s : s + FULL_EXPORT_ROWS], dup[s : s + FULL_EXPORT_ROWS]
            t_reg = np.where(d, pop.dup_day[i].astype(np.int64) * 86400 + 37_000, self.reg_sec[i])
            later = rng.random(len(i)) < 0.3
            t_upd = t_reg + (later * rng.random(len(i)) * (hist * 86400 - t_reg)).astype(np.int64)
            bits = np.where(d, self._dup_bits(i), pop.crm_bits[i])
            table = self.crm_table(i, bits, d, t_upd, rng)
            self.landing.write_file(
                "crm_members", hist, f"members_full_{ymd}_part{part + 1:02d}.csv", table
            )
            self.landing.identity.add(
                "customers", join("crm:", table["会员编号"].combine_chunks()), i
            )

        main = np.flatnonzero(pop.mall_reg_day < hist)
        main = main[np.argsort(pop.mall_reg_day[main], kind="stable")]
        for part, s in enumerate(range(0, len(main), FULL_EXPORT_ROWS)):
            i = main[s : s + FULL_EXPORT_ROWS]
            t_upd = self.mall_sec[i]
            table = self.mall_table(i, pop.mall_bits[i], t_upd, rng)
            self.landing.write_file(
                "mall_members", hist, f"mall_members_full_{ymd}_part{part + 1:02d}.jsonl", table
            )
            self.landing.identity.add(
                "customers", join("mall:", table["member_id"].combine_chunks()), i
            )

    def _dup_bits(self, idx: np.ndarray) -> np.ndarray:
        """Bits of a duplicate registration: style 0 shares the phone, 1 the e-mail,
        2 nothing (a new phone number, no e-mail)."""
        style = self.pop.dup_style[idx]
        bits = self.pop.dup_bits[idx].astype(np.int64)
        bits = np.where(style == 0, (bits | 8) & ~16, bits)
        bits = np.where(style == 1, bits | 16, bits)
        bits = np.where(style == 2, (bits | 8) & ~16, bits)
        return bits.astype(np.uint8)

    def day(self, k: int) -> None:
        """New registrations, duplicate registrations and profile updates of day k."""
        pop, rates = self.pop, self.rates
        rng = rng_for(self.seed, "profiles", k + 1)
        days = pop.timeline.days
        t_day = np.int64(k) * 86400

        new = np.flatnonzero(pop.crm_reg_day == k) if k >= self.hist else np.empty(0, np.int64)
        dups = np.flatnonzero(pop.dup_day == k)
        # updates: Poisson count over registered members, filling missing fields
        frac = (k - self.hist) / max(days, 1)
        hazard = rates.profile_update_hazard / max(days, 1) * (0.5 + frac)
        n_reg = pop.registered_prefix(k - 1)
        cand = pop.order_by_reg[rng.integers(0, max(n_reg, 1), rng.poisson(hazard * n_reg))]
        upd = np.unique(cand[pop.in_crm[cand]]) if n_reg else np.empty(0, np.int64)
        upd = upd[pop.crm_bits[upd] != 0b111111]  # only incomplete profiles change
        bits = pop.crm_bits[upd]
        missing = ~bits & 0b111111
        fill = (rng.random((len(upd), 6)) < rates.profile_fill_on_update) * (1 << np.arange(6))
        add = missing & fill.sum(axis=1).astype(np.uint8)
        lowest = missing & (-missing.astype(np.int16)).astype(np.uint8)
        add = np.where((add == 0) & (missing != 0), lowest, add).astype(np.uint8)
        pop.crm_bits[upd] = bits | add
        self.landing.count("crm_members", "profile_updates", len(upd))

        idx = np.concatenate([new, dups, upd])
        if len(idx):
            dup = np.concatenate([np.zeros(len(new), bool), np.ones(len(dups), bool),
                                  np.zeros(len(upd), bool)])  # fmt: skip
            t_upd = np.concatenate([
                self.reg_sec[new], pop.dup_day[dups].astype(np.int64) * 86400 + 37_000,
                t_day + rng.integers(8 * 3600, 23 * 3600, len(upd)),
            ])  # fmt: skip
            bits = np.where(dup, self._dup_bits(idx), pop.crm_bits[idx])
            table = self.crm_table(idx, bits, dup, t_upd, rng)
            n_id = len(new) + len(dups)
            keys = join("crm:", table["会员编号"].combine_chunks().slice(0, n_id))
            self.landing.add(
                "crm_members", np.full(len(idx), k), table,
                ("customers", keys, idx[:n_id], np.arange(n_id)),
            )  # fmt: skip
            self.landing.count("crm_members", "registrations", len(new))
            self.landing.count("crm_members", "duplicate_registrations", len(dups))

        # mall: registrations and slower updates (binding a phone, sharing the city)
        new = np.flatnonzero(pop.mall_reg_day == k) if k >= self.hist else np.empty(0, np.int64)
        cand = pop.order_by_reg[rng.integers(0, max(n_reg, 1), rng.poisson(hazard * 0.4 * n_reg))]
        upd = np.unique(cand[pop.mall_reg_day[cand] < k]) if n_reg else np.empty(0, np.int64)
        upd = upd[(pop.mall_bits[upd] & MALL_FIELDS_MASK) != MALL_FIELDS_MASK]
        bits = pop.mall_bits[upd]
        missing = ~bits & MALL_FIELDS_MASK
        fill = (rng.random((len(upd), 6)) < rates.profile_fill_on_update) * (1 << np.arange(6))
        pop.mall_bits[upd] = bits | (missing & fill.sum(axis=1).astype(np.uint8))
        idx = np.concatenate([new, upd])
        if len(idx):
            t_upd = np.concatenate(
                [self.mall_sec[new], t_day + rng.integers(8 * 3600, 23 * 3600, len(upd))]
            )
            table = self.mall_table(idx, pop.mall_bits[idx], t_upd, rng)
            keys = join("mall:", table["member_id"].combine_chunks().slice(0, len(new)))
            self.landing.add(
                "mall_members", np.full(len(idx), k), table,
                ("customers", keys, new, np.arange(len(new))),
            )  # fmt: skip
