"""Identity resolution in pandas + scipy (landing contract, section Identity).

Identity records (accounts, anonymous orders, tickets, social accounts; see below) carry
identifiers: normalised phone, normalised e-mail, WeChat unionid and references (an
account key, a social account id). Records sharing an identifier are linked; linked
records form one customer (connected components, transitively). A phone, e-mail or
unionid held by implausibly many records (the shop's front-desk phone) links nothing:
see ``supernodes`` for how "implausibly many" is counted.

Normalisation of phones and e-mails lives here too because identity depends on it.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

EMAIL_RE = re.compile(r"^[a-z0-9._%+\-]+@[a-z0-9\-]+(\.[a-z0-9\-]+)*\.[a-z]{2,}$")
_PHONE_JUNK = re.compile(r"[\s\-().]")


_CN_MOBILE = re.compile(r"^1[3-9]\d{9}$")
_CN_LANDLINE = re.compile(r"^(10|2\d|[3-9]\d\d)\d{7,8}$")


def _cn_national(digits: str) -> bool:
    return bool(_CN_MOBILE.match(digits) or _CN_LANDLINE.match(digits))


def normalise_phone(value: object) -> str | None:
    """E.164 (``+8613800138000``) with CN as the default country; None when the value
    cannot be a phone number (docs/warehouse.md, "Staging rules").

    Separators (space, ``-``, ``.``, parentheses) are dropped. ``+`` / ``00`` prefixes are
    international (a ``+86`` number must be a CN mobile ``1[3-9]`` + 9 digits or a
    landline: area code 10 / 2x / [3-9]xx with a 7-8 digit subscriber number; other
    countries 8-15 digits); ``86`` + a mobile; a trunk ``0`` + a landline; a bare mobile.
    """
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    s = _PHONE_JUNK.sub("", str(value).strip())
    if not s:
        return None
    if s.startswith("+") or (s.startswith("00") and s.isdigit()):
        digits = s[1:] if s.startswith("+") else s[2:]
        if not digits.isdigit():
            return None
        if digits.startswith("86"):
            return "+" + digits if _cn_national(digits[2:]) else None
        return "+" + digits if 8 <= len(digits) <= 15 else None
    if not s.isdigit():
        return None
    if s.startswith("86") and _CN_MOBILE.match(s[2:]):
        return "+" + s
    if s.startswith("0") and _CN_LANDLINE.match(s[1:]):
        return "+86" + s[1:]
    if _CN_MOBILE.match(s):
        return "+86" + s
    return None


def normalise_email(value: object) -> str | None:
    """Trimmed lower case; None when not a plausible address."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    s = str(value).strip().lower()
    if not s or not EMAIL_RE.match(s):
        return None
    return s


def normalise_gender(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    s = str(value).strip().lower()
    if s in ("m", "male", "男", "1"):
        return "male"
    if s in ("f", "female", "女", "2"):
        return "female"
    return None


PLATFORMS = ("wechat", "weibo", "douyin", "xiaohongshu", "mini_program")


def _social_ref(value: object) -> str | None:
    """A ticket's social account id, with or without a ``platform:`` prefix."""
    s = _text_or_none(value)
    if s is not None and ":" in s:
        prefix, rest = s.split(":", 1)
        if prefix.lower() in PLATFORMS and rest:
            return rest
    return s


def _text_or_none(value: object) -> str | None:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    s = str(value).strip()
    return s or None


# --------------------------------------------------------------------------------------
# Identity records and their identifiers
# --------------------------------------------------------------------------------------
#
# Record ids (the warehouse's documented model, docs/warehouse.md):
#   account:<source_system>:<customer_ref>  a member profile, or a buyer id on orders
#                                           (all orders of one buyer id are one record)
#   order:<source_system>:<order_id>        an order without customer_ref
#   ticket:<ticket_id>                      a service ticket
#   social:<platform>:<account_id>          a social account
# Accounts and social accounts identify someone by themselves; orders and tickets only
# through an identifier. Identifiers: phone, email, unionid (shared attributes, subject
# to the super-node guard) and references, never suppressed: ``account`` (an account's
# own key, and a ticket's customer_ref in the help desk's member system) and ``social``
# (a social account's id, and a ticket's social_account_id).

SHARED_ATTRIBUTES = ("phone", "email", "unionid")


def account_record_id(system: pd.Series, ref: pd.Series) -> pd.Series:
    out = "account:" + system.astype(str) + ":" + ref.astype(str)
    return out.where(system.notna() & ref.notna(), None).astype(object)


def order_record_id(orders: pd.DataFrame) -> pd.Series:
    """Orders with a customer_ref belong to the buyer's account record."""
    acct = account_record_id(orders["source_system"], orders["customer_ref"])
    anon = "order:" + orders["source_system"].astype(str) + ":" + orders["order_id"].astype(str)
    return acct.where(acct.notna(), anon).astype(object)


def ticket_record_id(events: pd.DataFrame) -> pd.Series:
    return ("ticket:" + events["ticket_id"].astype(str)).astype(object)


def social_record_id(social: pd.DataFrame) -> pd.Series:
    return (
        "social:" + social["platform"].astype(str) + ":" + social["account_id"].astype(str)
    ).astype(object)


def _links(record: pd.Series, kind: str, value: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"record_id": record.to_numpy(dtype=object), "value": value.to_numpy(dtype=object)}
    )
    frame = frame[frame["value"].notna() & frame["record_id"].notna()]
    frame["identifier"] = kind + ":" + frame["value"].astype(str)
    return frame[["record_id", "identifier"]]


def identity_links(
    customers: pd.DataFrame,
    orders: pd.DataFrame,
    service_events: pd.DataFrame,
    social: pd.DataFrame,
    ticket_ref_system: str = "crm",
) -> pd.DataFrame:
    """(record_id, identifier) for every identifier every identity record holds.

    Inputs are staged frames: phone / email already normalised (columns ``phone_e164``,
    ``email_norm``; orders ``buyer_phone_e164``, ``buyer_email_norm``)."""
    parts = []
    if len(customers):
        rid = account_record_id(customers["source_system"], customers["customer_ref"])
        parts += [
            _links(rid, "account", rid.str.slice(len("account:"))),
            _links(rid, "phone", customers["phone_e164"]),
            _links(rid, "email", customers["email_norm"]),
            _links(rid, "unionid", customers["unionid"].map(_text_or_none)),
        ]
    if len(orders):
        rid = order_record_id(orders)
        is_acct = rid.str.startswith("account:")
        parts += [
            _links(rid.where(is_acct), "account", rid.str.slice(len("account:"))),
            _links(rid, "phone", orders["buyer_phone_e164"]),
            _links(rid, "email", orders["buyer_email_norm"]),
        ]
    if len(service_events):
        rid = ticket_record_id(service_events)
        ref = service_events["customer_ref"].map(_text_or_none)
        # the system of the help desk's mapping (customer_ref_system), else the member system
        system = pd.Series(ticket_ref_system, index=service_events.index, dtype=object)
        if "_customer_ref_system" in service_events:
            system = service_events["_customer_ref_system"].astype(object).fillna(system)
        parts += [
            _links(rid, "account", (system + ":" + ref.astype(str)).where(ref.notna())),
            _links(rid, "phone", service_events["phone_e164"]),
            _links(rid, "email", service_events["email_norm"]),
            _links(rid, "social", service_events["social_account_id"].map(_social_ref)),
        ]
    if len(social):
        rid = social_record_id(social)
        parts += [
            _links(rid, "social", social["account_id"].map(_text_or_none)),
            _links(rid, "unionid", social["unionid"].map(_text_or_none)),
            _links(rid, "phone", social["phone_e164"]),
        ]
    if not parts:
        return pd.DataFrame(columns=["record_id", "identifier"])
    return pd.concat(parts, ignore_index=True).drop_duplicates(ignore_index=True)


def is_self_identified(record_id: pd.Series) -> pd.Series:
    return record_id.str.startswith(("account:", "social:"))


def supernodes(
    links: pd.DataFrame, threshold: int, first_seen: pd.Series | None = None
) -> pd.Index:
    """Shared attributes (phone, email, unionid) that link nothing.

    The warehouse's documented guard: an attribute held by more than ``threshold``
    long-lived records (accounts, social accounts) in total, or by more than
    ``threshold`` records of any kind first seen in one calendar month (``first_seen``:
    record_id -> business date the record was first seen). Without ``first_seen`` the
    landing contract's literal rule applies: more than ``threshold`` records in total.
    """
    kinds = links["identifier"].str.split(":", n=1).str[0]
    shared = links[kinds.isin(SHARED_ATTRIBUTES)]
    if first_seen is None:
        counts = shared.groupby("identifier")["record_id"].nunique()
        return counts.index[counts > threshold]
    long_lived = shared[is_self_identified(shared["record_id"])]
    total = long_lived.groupby("identifier")["record_id"].nunique()
    month = pd.to_datetime(shared["record_id"].map(first_seen)).dt.to_period("M")
    per_month = shared.assign(month=month).groupby(["identifier", "month"])["record_id"].nunique()
    big = set(total.index[total > threshold]) | set(
        per_month.index.get_level_values(0)[per_month.to_numpy() > threshold]
    )
    return pd.Index(sorted(big))


def resolve_identities(
    links: pd.DataFrame,
    threshold: int = 20,
    records: pd.Series | None = None,
    first_seen: pd.Series | None = None,
) -> pd.DataFrame:
    """Connected components of the identified records.

    ``links``: (record_id, identifier). ``records``: every record id (records without
    any identifier included); default: those in ``links``. A record is identified when
    it identifies someone by itself (account, social) or holds at least one usable
    identifier (a reference, or a shared attribute that is not a super-node). Returns
    ``record_id, customer_key`` for the identified records; ``customer_key`` is the
    smallest record id of the component (stable as long as its records do not change).
    ``first_seen`` selects the super-node rule (see ``supernodes``).
    """
    links = links.drop_duplicates(["record_id", "identifier"])
    big = supernodes(links, threshold, first_seen)
    kept = links[~links["identifier"].isin(big)]
    if records is None:
        records = pd.Series(links["record_id"].unique(), dtype=object)
    records = pd.Series(pd.unique(records), dtype=object)
    nodes = pd.Index(
        pd.unique(pd.concat([records[is_self_identified(records)], kept["record_id"]]))
    )
    if len(nodes) == 0:
        return pd.DataFrame(columns=["record_id", "customer_key"])
    rec_codes = nodes.get_indexer(kept["record_id"])
    id_codes, _ = pd.factorize(kept["identifier"])
    n_rec = len(nodes)
    n = n_rec + (int(id_codes.max()) + 1 if len(id_codes) else 0)
    graph = coo_matrix(
        (np.ones(len(kept), dtype=np.int8), (rec_codes, n_rec + id_codes)), shape=(n, n)
    )
    _, labels = connected_components(graph, directed=False)
    out = pd.DataFrame({"record_id": nodes.to_numpy(dtype=object), "component": labels[:n_rec]})
    out["customer_key"] = out.groupby("component")["record_id"].transform("min")
    return out[["record_id", "customer_key"]].reset_index(drop=True)
