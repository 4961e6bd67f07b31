"""Presets (size and period) and the rates behind every realism feature and defect.

Every number here is documented in docs/generator.md and copied into
`_truth/defects.json` of each generated folder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

#: Fixed end of the demo period, so that a demo is reproducible whatever today's date is.
DEFAULT_END = date(2026, 10, 31)
#: The seed of `crm generate` and `crm demo` when none is given (same seed, same bytes).
DEFAULT_SEED = 7


@dataclass(frozen=True)
class Preset:
    """Size and period of a generated landing folder."""

    name: str
    customers: int
    days: int
    end: date = DEFAULT_END
    history_days: int = 365

    @property
    def default_start(self) -> date:
        return date.fromordinal(self.end.toordinal() - self.days + 1)


PRESETS: dict[str, Preset] = {
    "small": Preset("small", customers=20_000, days=180),
    "medium": Preset("medium", customers=200_000, days=365),
    "large": Preset("large", customers=2_000_000, days=730),
}


@dataclass(frozen=True)
class Rates:
    """Behaviour and defect rates. Per-day rates are per calendar day."""

    # --- population -------------------------------------------------------------------
    fans_ratio: float = 0.25  # social-only persons per customer
    preexisting_share: float = 0.45  # customers registered before the simulated timeline
    preexisting_alive: float = 0.60  # of those, share still purchasing at timeline start
    crm_share: float = 0.72  # customers with a CRM membership
    mall_share: float = 0.42  # customers with a WeChat mini-program mall membership
    wechat_share: float = 0.55  # non-mall customers following the WeChat official account
    weibo_share: float = 0.12
    douyin_share: float = 0.20
    xiaohongshu_share: float = 0.12
    female_share: float = 0.62
    duplicate_registration: float = 0.03  # CRM members registering a second time
    # of the duplicates: shares the phone (other format), the e-mail, nothing (new phone)
    duplicate_styles: tuple[float, float, float] = (0.5, 0.3, 0.2)
    crm_wechat_bound: float = 0.80  # CRM profiles of WeChat followers carrying the unionid
    # --- purchase process (BG/NBD-like) -----------------------------------------------
    prospect_share: float = 0.22  # customers who never buy on their own
    purchase_shape: float = 0.7  # gamma shape r of the purchase rate
    purchases_per_year: float = 10.0  # mean purchase rate of buyers (gamma mean)
    dropout_a: float = 0.9  # beta(a, b) dropout probability after each purchase
    dropout_b: float = 8.0
    # --- spend (gamma-gamma-like) -----------------------------------------------------
    spend_p: float = 4.0  # shape of order values around the customer mean
    spend_q: float = 3.5  # shape of the inverse-gamma spread of customer means
    mean_order_value: float = 350.0  # CNY
    vip_share: float = 0.003  # share of buyers in the high-value segment
    vip_rate_factor: float = 5.0
    vip_spend_factor: float = 5.0
    vip_dropout: float = 0.01
    extra_lines_mean: float = 0.9  # order lines = 1 + Poisson(this), at most 6
    # --- orders -----------------------------------------------------------------------
    channel_stickiness: float = 0.75  # share of orders in the customer's preferred channel
    cancel_rate: float = 0.04
    refund_rate: float = 0.03
    partial_refund_rate: float = 0.01
    non_cny_rate: float = 0.005
    currencies: dict[str, float] = field(
        default_factory=lambda: {"USD": 0.50, "HKD": 0.35, "EUR": 0.15}
    )
    fx_to_cny: dict[str, float] = field(
        default_factory=lambda: {"USD": 7.10, "HKD": 0.91, "EUR": 7.80}
    )
    walkin_share: float = 0.40  # offline orders of members not showing a member card
    frontdesk_share: float = 0.35  # of walk-in orders: typed with the front-desk phone
    walkin_own_phone_share: float = 0.45  # of walk-in orders: the buyer's own phone
    tmall_phone_share: float = 0.90  # Tmall orders showing the receiver's phone (else masked)
    guest_no_contact: float = 0.01  # web-shop orders of non-members without phone or e-mail
    # --- service ----------------------------------------------------------------------
    tickets_per_order: float = 0.045  # after-sales tickets triggered by an order (0-14 days)
    inquiries_per_person_year: float = 0.10  # pre-sales inquiry tickets
    inquiry_conversion: float = 0.25  # inquiries followed by an order within 1-29 days
    never_answered: float = 0.04
    unresolved: float = 0.05  # answered but never resolved
    reopen_rate: float = 0.08
    csat_response: float = 0.55
    nps_share: float = 0.30  # of CSAT surveys, also answering NPS
    reassignment_rate: float = 0.12  # answered tickets handed to a second agent before the reply
    priority_shares: tuple[float, float, float, float] = (0.05, 0.20, 0.50, 0.25)
    first_response_median_min: tuple[float, float, float, float] = (6.0, 25.0, 100.0, 400.0)
    first_response_sigma: float = 1.0
    resolution_median_h: tuple[float, float, float, float] = (1.5, 8.0, 30.0, 70.0)
    resolution_sigma: float = 0.9
    first_response_target_min: tuple[int, int, int, int] = (15, 60, 240, 1440)
    resolution_target_h: tuple[int, int, int, int] = (4, 24, 72, 168)
    # --- social -----------------------------------------------------------------------
    interactions_per_year: float = 3.6  # mean inbound interactions per social person
    wechat_unionid_share: float = 0.90  # WeChat official-account rows carrying the unionid
    # social accounts bound to the owner's phone (shown on all their rows), by platform
    # (wechat, weibo, douyin, xiaohongshu, mini_program): an account is bound with
    # probability 1 - (1 - b)^(1 + the owner's expected purchases a year)
    social_phone_bound: tuple[float, float, float, float, float] = (0.5, 0.3, 0.4, 0.3, 0.5)
    message_reply_rate: float = 0.82
    reply_median_min: float = 60.0
    reply_sigma: float = 1.9
    news_push_share: float = 0.05  # of WeChat followers, every 14 days
    promo_push_share: float = 0.15  # before 618, Double 11 and Double 12
    push_click_rate: float = 0.05
    click_order_rate: float = 0.20  # clickers ordering within 1-7 days
    winback_holdout: float = 0.50  # dormant customers kept out of the monthly win-back push
    winback_click_rate: float = 0.12
    winback_order_rate: float = 0.15  # extra orders within 1-29 days of a win-back push
    # new customers (first order 1-89 days ago) following the official account, on this
    # day of every month: a random hold-out, the rest pushed a second-order coupon
    second_order_push_day: int = 20
    second_order_holdout: float = 0.30
    second_order_click_rate: float = 0.10
    second_order_order_rate: float = 0.25  # extra orders within 1-29 days of the push
    # --- profiles ---------------------------------------------------------------------
    crm_fill: tuple[float, ...] = (0.80, 0.65, 0.30, 0.80, 0.40, 0.65)  # name..city
    crm_fill_target: float = 0.92  # fill of new registrations tends to this over the period
    crm_fill_drift: float = 0.6  # share of the way there by the end of the period
    mall_fill: tuple[float, ...] = (0.25, 0.85, 0.0, 0.60, 0.0, 0.75)
    profile_update_hazard: float = 1.2  # cumulative update hazard per member over the period
    profile_fill_on_update: float = 0.6  # each missing field filled by an update
    # --- defects ----------------------------------------------------------------------
    duplicate_file: float = 0.02  # delivered files re-delivered 1-3 days later
    malformed_row: float = 0.001  # rows with a wrong number of fields / broken JSON
    truncated_file: float = 0.01  # text files whose last row is cut off
    missing_required: float = 0.002  # rows with one required field blank
    unparseable_timestamp: float = 0.0005  # shop_orders '0000-00-00 00:00:00'
    # rows with an impossible date or time (2025-02-30, 25:61) in one of their text date
    # columns, written in that column's own format
    impossible_date: float = 0.0005
    full_width: float = 0.02  # CRM phones and e-mails typed in full-width characters
    absent_key_file: float = 0.10  # mall_members files whose lines all leave real_name out
    late_orders: float = 0.02  # delivered 1-5 days after the order
    late_service: float = 0.03  # delivered 1-4 days after the event
    late_social: float = 0.01  # delivered 1-3 days after the interaction
    # late corrections: an order's lines delivered again 2-60 days after the order with a
    # new status (refunded 50 %, cancelled 20 %, paid/shipped ones completed 30 %)
    late_corrections: float = 0.01
    very_late_service: float = 0.002  # events delivered 5-60 days after the event
    very_late_social: float = 0.002  # interactions delivered 5-60 days after
