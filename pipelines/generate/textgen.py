"""Vectorised building blocks: seeded streams, integer hashing, strings and timestamps.

Person attributes that never change (name, phone, e-mail, WeChat ids, ...) are not stored:
they are derived from the person index with a keyed hash, so a chunk of any size can
render them without a lookup table.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pipelines.generate import vocab

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)

# Named random streams: a stream per component, then per day, keeps components independent.
STREAM = {
    "population": 1,
    "orders": 2,
    "service": 3,
    "social": 4,
    "profiles": 5,
    "defects": 6,
    "files": 7,
    "campaigns": 8,  # the new-customer campaign (docs/generator.md, "Social")
    # late corrections and very late rows (docs/generator.md, "Defects")
    "order_corrections": 20,
    "very_late_service": 21,
    "very_late_social": 22,
    # agents on shift and reassignments (docs/generator.md, "Service tickets")
    "service_agents": 30,
    # out-of-hours tickets left until the next opening (docs/generator.md, "Service tickets")
    "service_hours": 23,
    # products bought together (docs/generator.md, "Products bought together")
    "product_affinity": 24,
}


def rng_for(seed: int, stream: str, *keys: int) -> np.random.Generator:
    """A generator determined by (seed, stream, keys) only."""
    return np.random.default_rng(np.random.SeedSequence([seed, STREAM[stream], *keys]))


def mix64(x: np.ndarray, salt: int) -> np.ndarray:
    """splitmix64 of `x` keyed by `salt` (uint64 in, uint64 out)."""
    z = np.asarray(x).astype(np.uint64) + np.uint64(((salt + 1) * _GOLDEN) & _MASK)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        z = z ^ (z >> np.uint64(31))
    return z


def unit(h: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats from hashes."""
    return (h >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def lut(values: list[str]) -> pa.Array:
    return pa.array(values, type=pa.string())


def take(table: pa.Array, idx: np.ndarray) -> pa.Array:
    return table.take(pa.array(np.asarray(idx, dtype=np.int64)))


def digits(n: np.ndarray, width: int = 0) -> pa.Array:
    """Decimal strings of non-negative integers, zero-padded to `width`."""
    s = pa.array(np.asarray(n, dtype=np.int64)).cast(pa.string())
    return pc.utf8_lpad(s, width, "0") if width else s


def hex_strings(h: np.ndarray, width: int = 16) -> pa.Array:
    """Lower-case hex of uint64 hashes, the `width` (<= 16) most significant digits."""
    h = np.asarray(h, dtype=np.uint64)
    shifts = np.arange(60, -4, -4, dtype=np.uint64)[:width]
    nib = ((h[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.intp)
    chars = np.ascontiguousarray(_HEX[nib])
    return pa.array(chars.view(f"S{width}").ravel()).cast(pa.string())


def join(*parts: pa.Array | str) -> pa.Array:
    """Concatenate strings element-wise (null if any part is null)."""
    return pc.binary_join_element_wise(*parts, "")


def where(mask: np.ndarray, a: pa.Array | str | None, b: pa.Array | str | None) -> pa.Array:
    """`a` where mask else `b` (scalars broadcast; None = null)."""

    def arr(x: pa.Array | str | None) -> pa.Array | pa.Scalar:
        if x is None:
            return pa.scalar(None, type=pa.string())
        return pa.scalar(x, type=pa.string()) if isinstance(x, str) else x

    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), arr(a), arr(b))


def choose(index: np.ndarray, options: list[pa.Array]) -> pa.Array:
    """Element-wise pick of options[index[i]][i]."""
    return pc.choose(pa.array(np.asarray(index, dtype=np.int8)), *options)


def null_where(mask: np.ndarray, a: pa.Array) -> pa.Array:
    return pc.if_else(pa.array(np.asarray(mask, dtype=bool)), pa.scalar(None, a.type), a)


class Clock:
    """Formats local timestamps, given as int64 seconds since midnight of day 0 (t0).

    Day and time-of-day parts come from lookup tables, so formatting is a `take`.
    """

    def __init__(self, t0: date, n_days: int, before: int = 0) -> None:
        self.t0 = t0
        self.before = before  # days before t0 covered by the tables (for old registrations)
        days = [t0 + timedelta(k - before) for k in range(n_days + before)]
        self.n_days = n_days
        self.d_dash = lut([d.isoformat() for d in days])
        self.d_slash = lut([d.strftime("%Y/%m/%d") for d in days])
        self.d_compact = lut([d.strftime("%Y%m%d") for d in days])
        sec = np.arange(86400)
        hh, mm, ss = digits(sec // 3600, 2), digits(sec // 60 % 60, 2), digits(sec % 60, 2)
        self.t_colon = pc.binary_join_element_wise(hh, mm, ss, ":")
        self.t_compact = join(hh, mm, ss)
        self.t_hm = pc.binary_join_element_wise(hh, mm, ":")
        self.epoch_s = (t0 - date(1970, 1, 1)).days * 86400

    def date(self, k: int) -> date:
        return self.t0 + timedelta(k)

    def format(self, t: np.ndarray, style: str) -> pa.Array:
        """`style`: dash ("%Y-%m-%d %H:%M:%S"), slash_hm ("%Y/%m/%d %H:%M"),
        compact ("%Y%m%d%H%M%S"), iso ("%Y-%m-%dT%H:%M:%S"), iso_offset (+08:00)."""
        t = np.asarray(t, dtype=np.int64)
        k, s = t // 86400 + self.before, t % 86400
        if style == "dash":
            return pc.binary_join_element_wise(take(self.d_dash, k), take(self.t_colon, s), " ")
        if style == "slash_hm":
            return pc.binary_join_element_wise(take(self.d_slash, k), take(self.t_hm, s), " ")
        if style == "compact":
            return join(take(self.d_compact, k), take(self.t_compact, s))
        if style == "iso":
            return pc.binary_join_element_wise(take(self.d_dash, k), take(self.t_colon, s), "T")
        if style == "iso_offset":
            iso = pc.binary_join_element_wise(take(self.d_dash, k), take(self.t_colon, s), "T")
            return join(iso, "+08:00")
        raise ValueError(f"unknown timestamp style {style!r}")

    def timestamps(self, t: np.ndarray) -> pa.Array:
        """Naive local timestamps (Parquet)."""
        ms = (np.asarray(t, dtype=np.int64) + self.epoch_s) * 1000
        return pa.array(ms.astype("datetime64[ms]"))


def format_dates(days_since_epoch: np.ndarray, style: np.ndarray) -> pa.Array:
    """Dates (days since 1970-01-01) in one of three styles per row: 0 %Y-%m-%d,
    1 %Y/%m/%d, 2 %Y%m%d."""
    iso = pa.array(np.datetime_as_string(np.asarray(days_since_epoch).astype("datetime64[D]")))
    iso = iso.cast(pa.string())
    slash = pc.replace_substring(iso, "-", "/")
    compact = pc.replace_substring(iso, "-", "")
    return choose(style, [iso, slash, compact])


class PersonText:
    """Stable identifiers and profile values of persons, derived from the person index."""

    PREFIXES = [130, 131, 132, 133, 135, 136, 137, 138, 139, 150, 151, 152, 155, 156, 157,
                158, 159, 166, 176, 177, 178, 180, 181, 182, 183, 185, 186, 187, 188, 189]  # fmt: skip

    def __init__(self, seed: int) -> None:
        self.salt = (seed * 7919) & 0xFFFFFFFF
        self.surname = lut([s for s, _ in vocab.SURNAMES])
        self.surname_py = lut([p for _, p in vocab.SURNAMES])
        self.given = lut([g for g, _ in vocab.GIVEN])
        self.given_py = lut([p for _, p in vocab.GIVEN])
        self.prefix = lut([str(p) for p in self.PREFIXES])
        self.province = lut([p for p, _, _ in vocab.CITIES])
        self.city = lut([c for _, c, _ in vocab.CITIES])
        w = np.array([w for _, _, w in vocab.CITIES])
        self.city_cum = np.cumsum(w) / w.sum()
        self.districts = lut(vocab.DISTRICTS)
        self.streets = lut(vocab.STREETS)
        self.domains = lut(vocab.EMAIL_DOMAINS)
        # odd multipliers coprime with 10 make x -> (a x + b) mod 10^n a bijection
        self.a8 = 2 * ((seed * 104729 + 12345) % 5_000_000) + 1
        while self.a8 % 5 == 0:
            self.a8 += 2

    def h(self, idx: np.ndarray, salt: int) -> np.ndarray:
        return mix64(np.asarray(idx, dtype=np.uint64), self.salt * 131 + salt)

    def _perm(self, x: np.ndarray, modulus: int, salt: int) -> np.ndarray:
        b = int(self.h(np.array([salt]), salt)[0] % np.uint64(modulus))
        return (np.asarray(x, dtype=np.int64) * self.a8 + b) % modulus

    # --- profile values ---------------------------------------------------------------
    def name(self, idx: np.ndarray) -> pa.Array:
        h1, h2, h3 = self.h(idx, 1), self.h(idx, 2), self.h(idx, 3)
        ns, ng = len(vocab.SURNAMES), len(vocab.GIVEN)
        sur = take(self.surname, (h1 % np.uint64(ns)).astype(np.int64))
        g1 = take(self.given, (h2 % np.uint64(ng)).astype(np.int64))
        g2 = take(self.given, (h3 % np.uint64(ng)).astype(np.int64))
        two = unit(self.h(idx, 4)) < 0.7
        return where(two, join(sur, g1, g2), join(sur, g1))

    def is_female(self, idx: np.ndarray, share: float) -> np.ndarray:
        return unit(self.h(idx, 5)) < share

    def birth_days(self, idx: np.ndarray) -> np.ndarray:
        """Birth date as days since 1970-01-01 (born 1962-2006, mostly 1985-2000)."""
        u = unit(self.h(idx, 6))
        year_f = 1992.0 + 7.0 * np.sqrt(2.0) * _erfinv_approx(2 * u - 1)
        year_f = np.clip(year_f, 1962.0, 2006.9)
        return ((year_f - 1970.0) * 365.25).astype(np.int64)

    def city_index(self, idx: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.city_cum, unit(self.h(idx, 7)), side="right")

    def city_of(self, idx: np.ndarray) -> tuple[pa.Array, pa.Array]:
        ci = self.city_index(idx)
        return take(self.province, ci), take(self.city, ci)

    def address(self, idx: np.ndarray) -> pa.Array:
        h = self.h(idx, 8)
        ci = self.city_index(idx)
        d = take(self.districts, (h % np.uint64(10)).astype(np.int64))
        s = take(self.streets, (h // np.uint64(10) % np.uint64(10)).astype(np.int64))
        no = digits((h // np.uint64(100) % np.uint64(899)).astype(np.int64) + 1)
        room = digits((h // np.uint64(100_000) % np.uint64(30)).astype(np.int64) + 1)
        return join(take(self.city, ci), "市", d, s, no, "号", room, "栋")

    def phone(self, idx: np.ndarray, alt: bool = False) -> pa.Array:
        """Unique 11-digit CN mobile per person below 5e7 (alt: a second, different number)."""
        x = np.asarray(idx, dtype=np.int64) + (50_000_000 if alt else 0)
        pre = take(self.prefix, (self.h(x, 10) % np.uint64(len(self.PREFIXES))).astype(np.int64))
        suf = digits(self._perm(x, 100_000_000, 11), 8)
        return join(pre, suf)

    def email(self, idx: np.ndarray) -> pa.Array:
        h = self.h(idx, 9)
        ns, ng = len(vocab.SURNAMES), len(vocab.GIVEN)
        sur = take(self.surname_py, (self.h(idx, 1) % np.uint64(ns)).astype(np.int64))
        giv = take(self.given_py, (self.h(idx, 2) % np.uint64(ng)).astype(np.int64))
        num = digits(self._perm(idx, 10_000_000, 12), 7)
        dom = take(self.domains, (h % np.uint64(len(vocab.EMAIL_DOMAINS))).astype(np.int64))
        pinyin = join(giv, ".", sur, num, "@", dom)
        qq = join(digits(self._perm(idx, 10_000_000, 13) + 300_000_000), "@qq.com")
        return where(unit(h) < 0.35, qq, pinyin)

    # --- platform identifiers ---------------------------------------------------------
    def _id28(self, idx: np.ndarray, prefix: str, salt: int) -> pa.Array:
        return join(
            prefix, hex_strings(self.h(idx, salt), 16), hex_strings(self.h(idx, salt + 1), 10)
        )

    def unionid(self, idx: np.ndarray) -> pa.Array:
        return self._id28(idx, "oU", 20)

    def openid_oa(self, idx: np.ndarray) -> pa.Array:
        """Openid at the WeChat official account."""
        return self._id28(idx, "oA", 22)

    def openid_mp(self, idx: np.ndarray) -> pa.Array:
        """Openid at the mini-program (differs from the official account's)."""
        return self._id28(idx, "oM", 24)

    def weibo_uid(self, idx: np.ndarray) -> pa.Array:
        return digits(self._perm(idx, 1_000_000_000, 26) + 5_000_000_000)

    def douyin_id(self, idx: np.ndarray) -> pa.Array:
        return join("MS4wLjABAAAA", hex_strings(self.h(idx, 27), 16))

    def xhs_id(self, idx: np.ndarray) -> pa.Array:
        return join(hex_strings(self.h(idx, 28), 16), hex_strings(self.h(idx, 29), 8))

    def tmall_nick(self, idx: np.ndarray) -> pa.Array:
        return join("tb_", hex_strings(self.h(idx, 30), 10))

    def account(self, idx: np.ndarray, platform: np.ndarray) -> pa.Array:
        """Account id on platform code (0 wechat, 1 weibo, 2 douyin, 3 xiaohongshu, 4 mini_program)."""
        return choose(
            platform,
            [self.openid_oa(idx), self.weibo_uid(idx), self.douyin_id(idx), self.xhs_id(idx),
             self.openid_mp(idx)],
        )  # fmt: skip


def phone_formats(phone: pa.Array, style: np.ndarray) -> pa.Array:
    """Render 11-digit mobiles: 0 `13800138000`, 1 `138 0013 8000`, 2 `+86-138-0013-8000`,
    3 `8613800138000`, 4 `+86 13800138000`, 5 `138-0013-8000`."""
    a = pc.utf8_slice_codeunits(phone, 0, 3)
    b = pc.utf8_slice_codeunits(phone, 3, 7)
    c = pc.utf8_slice_codeunits(phone, 7, 11)
    return choose(
        style,
        [phone, pc.binary_join_element_wise(a, b, c, " "),
         join("+86-", pc.binary_join_element_wise(a, b, c, "-")), join("86", phone),
         join("+86 ", phone), pc.binary_join_element_wise(a, b, c, "-")],
    )  # fmt: skip


# ASCII '!'..'~' -> U+FF01..U+FF5E, space -> U+3000 (ideographic space)
_FULL_WIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000}


def full_width(values: pa.Array, mask: np.ndarray) -> pa.Array:
    """`values` with the rows of `mask` typed in full-width characters (a Chinese input
    method's full-width mode): `１３８ ００１３ ８０００`, `ｌｉ＠ｑｑ．ｃｏｍ`."""
    sel = np.flatnonzero(np.asarray(mask, dtype=bool))
    if len(sel) == 0:
        return values
    out = values.to_pylist()
    for i in sel:
        if out[i] is not None:
            out[i] = out[i].translate(_FULL_WIDTH)
    return pa.array(out, type=values.type)


def messy_emails(email: pa.Array, u: np.ndarray) -> pa.Array:
    """Mixed case and stray whitespace: 15 % upper case, 10 % capitalised, 12 % padded."""
    upper = pc.utf8_upper(email)
    cap = pc.utf8_capitalize(email)
    style = np.where(u < 0.15, 1, np.where(u < 0.25, 2, 0))
    cased = choose(style, [email, upper, cap])
    pad = (u * 7919) % 1 < 0.12
    return where(pad, join(" ", cased, "  "), cased)


def _erfinv_approx(x: np.ndarray) -> np.ndarray:
    """Inverse error function (Giles' single-precision approximation)."""
    x = np.clip(x, -0.999999, 0.999999)
    w = -np.log((1.0 - x) * (1.0 + x))
    small = w < 5.0
    ws = w - 2.5
    p1 = 2.81022636e-08
    for c in (3.43273939e-07, -3.5233877e-06, -4.39150654e-06, 0.00021858087, -0.00125372503,
              -0.00417768164, 0.246640727, 1.50140941):  # fmt: skip
        p1 = c + p1 * ws
    wl = np.sqrt(w) - 3.0
    p2 = -0.000200214257
    for c in (0.000100950558, 0.00134934322, -0.00367342844, 0.00573950773, -0.0076224613,
              0.00943887047, 1.00167406, 2.83297682):  # fmt: skip
        p2 = c + p2 * wl
    return np.where(small, p1, p2) * x
