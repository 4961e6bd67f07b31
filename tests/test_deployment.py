"""What the mappings say about a deployment (pipelines/ingest/deployment.py), the settings
of the reporting currency, VIP threshold and member system, and `crm check-mapping`'s
check of the system a help desk's customer_ref belongs to."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.ingest.deployment import (
    configured_entities,
    customer_ref_system_problem,
    customer_ref_systems,
    member_system,
)
from pipelines.ingest.mapping import MappingError, parse_mapping
from pipelines.lib.settings import Settings, SettingsError

DESK_FIELDS = {"ticket_id": "t", "event_at": "at", "event_type": "e", "customer_ref": "m"}


def _members(name: str, source_system: dict | str) -> object:
    return parse_mapping(
        {
            "name": name,
            "entity": "customers",
            "fields": {"source_system": source_system, "customer_ref": "r", "updated_at": "u"},
        }
    )


def _desk(name: str, system: str | None = None, fields: dict | None = None) -> object:
    doc = {"name": name, "entity": "service_events", "fields": fields or DESK_FIELDS}
    if system is not None:
        doc["customer_ref_system"] = system
    return parse_mapping(doc)


def test_customer_ref_system_is_a_service_events_mapping_key():
    assert _desk("desk", "  member ").customer_ref_system == "member"
    assert _desk("desk").customer_ref_system is None
    with pytest.raises(MappingError, match="customer_ref_system applies to service_events"):
        parse_mapping(
            {
                "name": "shop",
                "entity": "orders",
                "customer_ref_system": "crm",
                "fields": {"order_id": "o", "ordered_at": "a", "status": "s",
                           "quantity": "q", "unit_price": "p"},
            }
        )  # fmt: skip
    with pytest.raises(MappingError, match="must be a source system name"):
        _desk("desk", "")


def test_the_member_system_is_the_setting_else_the_one_system_of_the_customers_mappings():
    members = _members("members", {"expr": "'member'"})
    mall = _members("mall", {"expr": "'mall'"})
    varying = _members("varying", "sys")
    assert member_system([members]) == "member"
    assert member_system([members, mall]) is None
    assert member_system([members, varying]) is None
    assert member_system([members, mall], "mall") == "mall"
    assert member_system([]) is None


def test_each_help_desk_gets_its_system_or_the_member_system():
    members = _members("members", {"expr": "'member'"})
    mall = _members("mall", {"expr": "'mall'"})
    unmapped_ref = _desk(
        "calls", fields={k: v for k, v in DESK_FIELDS.items() if k != "customer_ref"}
    )
    assert customer_ref_systems([members, _desk("a"), _desk("b", "mall"), unmapped_ref]) == {
        "a": "member",
        "b": "mall",
    }
    assert customer_ref_systems([members, mall, _desk("a")], "member") == {"a": "member"}
    with pytest.raises(MappingError, match="add `customer_ref_system: <source system>`") as info:
        customer_ref_systems([members, mall, _desk("a")])
    assert "the customers mappings provide: mall, member" in str(info.value)


def test_a_system_no_customers_mapping_provides_is_a_problem():
    members = _members("members", {"expr": "'member'"})
    desk = _desk("desk", "crm")
    problem = customer_ref_system_problem(desk, [members, desk])
    assert problem is not None
    assert "customer_ref belongs to system 'crm'" in problem
    assert "no customers mapping provides it (they provide: member)" in problem
    assert customer_ref_system_problem(_desk("desk", "member"), [members]) is None
    # a customers mapping whose source_system varies: the systems of its deliveries count
    varying = _members("varying", "sys")
    assert customer_ref_system_problem(desk, [varying], found_systems={"varying": {"crm"}}) is None


def test_configured_entities():
    members = _members("members", {"expr": "'member'"})
    assert configured_entities([members, _desk("a")]) == {"customers", "service_events"}


def test_settings_of_currency_vip_threshold_and_member_system():
    s = Settings.from_env({"CRM_CURRENCY": "usd", "CRM_VIP_REVENUE_365D": "7000.5"})
    assert (s.currency, s.vip_revenue_365d, s.member_system) == ("USD", 7000.5, None)
    assert Settings.from_env({}).vip_revenue_365d == 50_000
    assert Settings.from_env({"CRM_MEMBER_SYSTEM": " member "}).member_system == "member"
    with pytest.raises(SettingsError, match="CRM_VIP_REVENUE_365D must be a number"):
        Settings.from_env({"CRM_VIP_REVENUE_365D": "50k"})
    with pytest.raises(SettingsError, match="CRM_VIP_REVENUE_365D must be a finite number"):
        Settings.from_env({"CRM_VIP_REVENUE_365D": "-1"})


def test_the_dbt_vars_follow_the_settings(tmp_path: Path):
    from pipelines.lib.settings import DEMO_MAPPINGS_DIR
    from pipelines.transform.assets import settings_vars

    env = {"CRM_HOME": str(tmp_path), "CRM_CURRENCY": "USD", "CRM_VIP_REVENUE_365D": "1000"}
    got = settings_vars(Settings.from_env(env))
    assert got["reporting_currency"] == "USD"
    assert got["vip_revenue_365d"] == 1000
    # the demo has two member systems (crm, mall): its help desk names crm
    assert got["customer_ref_systems"] == {"helpdesk_events": "crm"}
    assert Settings.from_env(env).mappings_dir == DEMO_MAPPINGS_DIR
    with pytest.raises(SettingsError, match="CRM_CURRENCY=XYZ: no rate for it"):
        settings_vars(Settings.from_env({**env, "CRM_CURRENCY": "XYZ"}))


def test_check_mapping_names_a_system_no_customers_mapping_provides(tmp_path: Path):
    """`crm check-mapping` (the Dagster job the CLI runs) on a help desk whose customer_ref
    system is not among the deployment's member systems: exit 1, with the reason."""
    from pipelines.orchestrate import run_check_mapping

    mappings = tmp_path / "mappings"
    mappings.mkdir()
    (mappings / "members.yaml").write_text(
        "name: members\nentity: customers\nfields:\n  source_system: {expr: \"'member'\"}\n"
        "  customer_ref: r\n  updated_at: u\n",
        encoding="utf-8",
    )
    desk = mappings / "desk.yaml"
    desk.write_text(
        "name: desk\nentity: service_events\ncustomer_ref_system: crm\nfields:\n"
        "  ticket_id: t\n  event_at: at\n  event_type: e\n  customer_ref: m\n",
        encoding="utf-8",
    )
    settings = Settings.from_env(
        {"CRM_HOME": str(tmp_path / "home"), "CRM_MAPPINGS_DIR": str(mappings)}
    ).ensure_dirs()
    text, ok = run_check_mapping(settings, desk, 5, None)
    assert not ok
    assert "customer_ref belongs to system 'crm'" in text
    assert "they provide: member" in text
    desk.write_text(
        desk.read_text().replace("customer_ref_system: crm", "customer_ref_system: member")
    )
    text, ok = run_check_mapping(settings, desk, 5, None)
    assert ok, text


def test_the_reference_follows_each_help_desks_customer_ref_system():
    """The test oracle (tests/reference) reads customer_ref_system from the mapping YAML
    itself: a ticket of a desk naming `mall` holds the account mall:<ref>, one of a desk
    naming none holds <member system>:<ref>."""
    import pandas as pd
    from reference.identity import identity_links
    from reference.landing import parse_mapping as reference_mapping

    doc = {"name": "desk_b", "entity": "service_events", "customer_ref_system": "mall",
           "fields": DESK_FIELDS}  # fmt: skip
    assert reference_mapping(doc).customer_ref_system == "mall"
    events = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2"],
            "customer_ref": ["M1", "M1"],
            "phone_e164": [None, None],
            "email_norm": [None, None],
            "social_account_id": [None, None],
            "_customer_ref_system": [None, "mall"],
        }
    )
    empty = pd.DataFrame()
    links = identity_links(empty, empty, events, empty, "member")
    accounts = sorted(zip(links["record_id"], links["identifier"], strict=True))
    assert accounts == [("ticket:T1", "account:member:M1"), ("ticket:T2", "account:mall:M1")]
