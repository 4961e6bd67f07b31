"""Hand-computed cases for the pandas reference's normalisation and identity resolution
(tests/reference/identity.py), and the runtime's own copy of the normalisation
(pipelines/lib/identifiers.py) agreeing with it."""

from __future__ import annotations

import pandas as pd
import pytest
from reference.identity import (
    identity_links,
    normalise_email,
    normalise_gender,
    normalise_phone,
    resolve_identities,
)


@pytest.mark.parametrize(
    "raw",
    ["13800138000", "138 0013 8000", "+86-138-0013-8000", "8613800138000", "+86 13800138000",
     "138-0013-8000", "008613800138000", "0086 138 0013 8000"],
)  # fmt: skip
def test_phone_e164(raw):
    assert normalise_phone(raw) == "+8613800138000"


def test_phone_landline_international_and_invalid():
    assert normalise_phone("010-12345678") == "+861012345678"
    assert normalise_phone("0755-8888 1234") == "+8675588881234"
    assert normalise_phone("+1 (415) 555-0100") == "+14155550100"
    assert normalise_phone("+86 12345") is None  # +86 must be a CN mobile or landline
    assert normalise_phone("12800138000") is None  # 12x is not a mobile prefix
    assert normalise_phone("12345") is None
    assert normalise_phone(None) is None


def test_phone_email_gender_invalid():
    assert normalise_email("  Lei.Hu@Outlook.COM  ") == "lei.hu@outlook.com"
    assert normalise_email("not-an-email") is None
    assert normalise_email("a@b") is None
    assert [normalise_gender(g) for g in ("M", "female", "男", "女", "unknown", None)] == [
        "male", "female", "male", "female", None, None,
    ]  # fmt: skip


def _links(pairs):
    return pd.DataFrame(pairs, columns=["record_id", "identifier"])


def test_components_are_transitive_and_keyed_by_smallest_record():
    links = _links(
        [
            ("order:a", "phone:1"),
            ("order:b", "phone:1"),
            ("order:b", "email:x"),
            ("order:c", "email:x"),
            ("order:d", "email:y"),
        ]
    )
    out = resolve_identities(links).set_index("record_id")["customer_key"]
    assert out.to_dict() == {
        "order:a": "order:a",
        "order:b": "order:a",
        "order:c": "order:a",
        "order:d": "order:d",
    }


def test_supernode_guard_threshold_is_more_than_20_records():
    shared20 = [(f"order:{i:02d}", "phone:desk") for i in range(20)]
    out = resolve_identities(_links(shared20), threshold=20)
    assert out["customer_key"].nunique() == 1 and len(out) == 20  # 20 records: still links
    shared21 = [(f"order:{i:02d}", "phone:desk") for i in range(21)] + [
        ("order:00", "email:own"),
        ("account:crm:M1", "phone:desk"),
    ]
    out = resolve_identities(_links(shared21), threshold=20)
    # the desk phone (22 records) links nothing: order 00 is identified by its own
    # e-mail, the account by itself; the other orders identify nobody
    assert out.set_index("record_id")["customer_key"].to_dict() == {
        "account:crm:M1": "account:crm:M1",
        "order:00": "order:00",
    }


def test_references_are_never_suppressed():
    links = _links(
        [(f"ticket:T{i:02d}", "account:crm:M1") for i in range(30)]
        + [("account:crm:M1", "account:crm:M1")]
    )
    out = resolve_identities(links, threshold=20)
    assert out["customer_key"].nunique() == 1 and len(out) == 31


def test_identity_links_from_staged_frames():
    cust = pd.DataFrame(
        {"source_system": ["crm"], "customer_ref": ["M1"], "phone_e164": ["+8613800138000"],
         "email_norm": [None], "unionid": ["U1"]}
    )  # fmt: skip
    orders = pd.DataFrame(
        {"source_system": ["crm", "tmall", "crm"], "order_id": ["O1", "O2", "O3"],
         "customer_ref": ["M1", "nick", None],
         "buyer_phone_e164": [None, "+8613800138000", None], "buyer_email_norm": [None] * 3}
    )  # fmt: skip
    events = pd.DataFrame(
        {"ticket_id": ["T1", "T2"], "customer_ref": [None, "M9"], "phone_e164": [None, None],
         "email_norm": [None, None], "social_account_id": ["oA1", None]}
    )  # fmt: skip
    social = pd.DataFrame(
        {"platform": ["wechat"], "account_id": ["oA1"], "unionid": ["U1"], "phone_e164": [None]}
    )
    links = identity_links(cust, orders, events, social)
    records = pd.Series(
        ["account:crm:M1", "account:tmall:nick", "order:crm:O3", "ticket:T1", "ticket:T2",
         "social:wechat:oA1"]
    )  # fmt: skip
    out = resolve_identities(links, records=records).set_index("record_id")["customer_key"]
    # M1 = nick (phone) = social (unionid) = T1 (social id); T2 references an account
    # nobody delivered: identified, alone; O3 has no identifier: nobody
    assert out.to_dict() == {
        "account:crm:M1": "account:crm:M1",
        "account:tmall:nick": "account:crm:M1",
        "social:wechat:oA1": "account:crm:M1",
        "ticket:T1": "account:crm:M1",
        "ticket:T2": "ticket:T2",
    }


def test_supernode_rule_of_the_warehouse_counts_long_lived_records_or_one_month():
    # a loyal guest buyer: 30 anonymous orders over three months (10 a month) with her own
    # phone, plus her account -> not a super-node under the warehouse rule (at most 11
    # records first seen in one month, 1 long-lived record), a super-node read literally
    pairs = [(f"order:crm:G{i:02d}", "phone:guest") for i in range(30)]
    pairs += [("account:crm:M1", "phone:guest"), ("account:crm:M1", "account:crm:M1")]
    first_seen = pd.Series(
        {f"order:crm:G{i:02d}": pd.Timestamp(f"2026-0{7 + i // 10}-15") for i in range(30)}
        | {"account:crm:M1": pd.Timestamp("2026-07-01")}
    )
    links = _links(pairs)
    out = resolve_identities(links, 20, first_seen=first_seen)
    assert out["customer_key"].nunique() == 1 and len(out) == 31
    literal = resolve_identities(links, 20)
    assert literal["record_id"].tolist() == ["account:crm:M1"]
    # a front-desk phone: 21 walk-in orders first seen in one month -> links nothing
    desk = [(f"order:pos:W{i:02d}", "phone:desk") for i in range(21)]
    seen = pd.Series({f"order:pos:W{i:02d}": pd.Timestamp("2026-07-03") for i in range(21)})
    assert resolve_identities(_links(desk), 20, first_seen=seen).empty
    # 21 member accounts sharing one e-mail over years -> links nothing
    shared = [(f"account:crm:A{i:02d}", "email:family@x.cn") for i in range(21)]
    shared += [(f"account:crm:A{i:02d}", f"account:crm:A{i:02d}") for i in range(21)]
    seen = pd.Series(
        {f"account:crm:A{i:02d}": pd.Timestamp(f"20{10 + i}-01-01") for i in range(21)}
    )
    assert resolve_identities(_links(shared), 20, first_seen=seen)["customer_key"].nunique() == 21


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000", "+86 138-0013-8000", "8613800138000", "0086 13800138000",
        "010-12345678", "0755-8888 1234", "+1 (415) 555-0100", "+86 12345", "12800138000",
        "12345", "", "  ", "abc", "+", "00", None, float("nan"),
    ],
)  # fmt: skip
def test_runtime_phone_normalisation_agrees_with_the_reference(raw):
    """pipelines/lib/identifiers.py (what `crm forget` uses) is a separate copy: the same
    answer as the oracle's."""
    from pipelines.lib import identifiers

    assert identifiers.normalise_phone(raw) == normalise_phone(raw)


@pytest.mark.parametrize(
    "raw",
    ["  Lei.Hu@Outlook.COM  ", "not-an-email", "a@b", "a@b.c", "x_y+z@mail.example.cn", "",
     None, float("nan")],
)  # fmt: skip
def test_runtime_email_normalisation_agrees_with_the_reference(raw):
    from pipelines.lib import identifiers

    assert identifiers.normalise_email(raw) == normalise_email(raw)
