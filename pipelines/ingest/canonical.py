"""Canonical entities of the landing contract: fields, types, required flags, raw tables.

The single place that knows the canonical schema (docs/contracts.md, section Raw tables).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CanonicalField:
    name: str
    sql_type: str  # DuckDB type of the raw column
    required: bool = False
    # a phone, e-mail or id: Unicode-normalised (NFKC) at load, so that full-width digits,
    # '＠' and full-width spaces read as their ASCII forms
    nfkc: bool = False

    @property
    def kind(self) -> str:
        """varchar | timestamp | date | integer | decimal | boolean."""
        t = self.sql_type.lower()
        if t.startswith("decimal"):
            return "decimal"
        return t


def _f(spec: str) -> CanonicalField:
    """``"name type [R] [N]"``: R required, N normalised with NFKC (phones, e-mails, ids)."""
    name, sql_type, *flags = spec.split()
    return CanonicalField(name, sql_type, "R" in flags, "N" in flags)


ENTITIES: dict[str, tuple[CanonicalField, ...]] = {
    "customers": tuple(
        _f(s)
        for s in (
            "source_system varchar R N",
            "customer_ref varchar R N",
            "updated_at timestamp R",
            "registered_at timestamp",
            "name varchar",
            "gender varchar",
            "birth_date date",
            "phone varchar N",
            "email varchar N",
            "province varchar",
            "city varchar",
            "address varchar",
            "member_level varchar",
            "marketing_consent boolean",
            "unionid varchar N",
        )
    ),
    "orders": tuple(
        _f(s)
        for s in (
            "order_id varchar R N",
            "line_no integer",
            "ordered_at timestamp R",
            "status varchar R",
            "channel varchar",
            "source_system varchar N",
            "customer_ref varchar N",
            "buyer_name varchar",
            "buyer_phone varchar N",
            "buyer_email varchar N",
            "product_id varchar N",
            "product_name varchar",
            "category varchar",
            "quantity decimal(18,4) R",
            "unit_price decimal(18,2) R",
            "discount_amount decimal(18,2)",
            "refunded_amount decimal(18,2)",
            "currency varchar",
        )
    ),
    "service_events": tuple(
        _f(s)
        for s in (
            "ticket_id varchar R N",
            "event_id varchar N",
            "event_at timestamp R",
            "event_type varchar R",
            "channel varchar",
            "priority varchar",
            "category varchar",
            "customer_ref varchar N",
            "phone varchar N",
            "email varchar N",
            "social_account_id varchar N",
            "agent_id varchar N",
            "csat_score integer",
            "nps_score integer",
        )
    ),
    "social_interactions": tuple(
        _f(s)
        for s in (
            "interaction_id varchar R N",
            "occurred_at timestamp R",
            "platform varchar R",
            "account_id varchar R N",
            "unionid varchar N",
            "phone varchar N",
            "direction varchar R",
            "interaction_type varchar R",
            "campaign_id varchar N",
            "content varchar",
        )
    ),
}

LINEAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_source_name", "varchar"),
    ("_source_file", "varchar"),
    ("_source_line", "bigint"),
    ("_delivery_date", "date"),
    ("_loaded_at", "timestamp"),
    ("_mapping_version", "varchar"),
    ("_file_sha256", "varchar"),
)

QUARANTINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_source_name", "varchar"),
    ("entity", "varchar"),
    ("_source_file", "varchar"),
    ("_source_line", "bigint"),
    ("raw_text", "varchar"),
    ("reason", "varchar"),
    ("_delivery_date", "date"),
    ("_loaded_at", "timestamp"),
    ("_file_sha256", "varchar"),
)

LOAD_LOG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_source_name", "varchar"),
    ("entity", "varchar"),
    ("_delivery_date", "date"),
    ("_source_file", "varchar"),
    ("_file_sha256", "varchar"),
    ("bytes", "bigint"),
    ("rows_read", "bigint"),
    ("rows_loaded", "bigint"),
    ("rows_quarantined", "bigint"),
    ("status", "varchar"),
    ("duplicate_of", "varchar"),
    ("_mapping_version", "varchar"),
    ("_loaded_at", "timestamp"),
    ("seconds", "double"),
    ("warnings", "varchar"),
)

RAW_SCHEMA = "raw"


def raw_table(entity: str) -> str:
    """Qualified raw table name of an entity, e.g. ``raw.orders``."""
    return f"{RAW_SCHEMA}.{entity}"


def fields_of(entity: str) -> dict[str, CanonicalField]:
    return {f.name: f for f in ENTITIES[entity]}
