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

# The natural key of a raw row, as SQL over the raw columns, as the staging models key their
# rows (dbt_project/models/staging/raw): of the rows sharing a key, staging keeps the latest
# (delivery date, load time, file, line); the loader counts the others in raw.load_log.
# Customer profiles: a version is (system, ref, updated_at); older versions are history,
# not superseded. Service events have no trusted id: the event is its values.
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "customers": (
        "nullif(trim(source_system), '')",
        "nullif(trim(customer_ref), '')",
        "updated_at",
    ),
    "orders": (
        "coalesce(nullif(trim(source_system), ''), _source_name)",
        "nullif(trim(order_id), '')",
        "coalesce(line_no, 1)",
    ),
    "service_events": tuple(
        f.name for f in ENTITIES["service_events"] if f.name not in ("event_id",)
    ),
    "social_interactions": (
        "nullif(lower(trim(platform)), '')",
        "nullif(trim(interaction_id), '')",
    ),
}

# One cheap part of each natural key (equal keys have equal values of it): the loader
# finds the rows that may share a key with a batch by it before computing whole keys.
KEY_PREFILTERS: dict[str, str] = {
    "customers": "updated_at",
    "orders": "trim(order_id)",
    "service_events": "ticket_id",
    "social_interactions": "trim(interaction_id)",
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
    # rows of other files or lines that this file's rows replace (the file holds the later
    # row of their natural key): identical rows, and rows with other values
    ("rows_duplicate", "bigint"),
    ("rows_superseded", "bigint"),
    # SourceMapping.fingerprint of the mapping that loaded the file
    ("mapping_fingerprint", "varchar"),
)

RAW_SCHEMA = "raw"


def raw_table(entity: str) -> str:
    """Qualified raw table name of an entity, e.g. ``raw.orders``."""
    return f"{RAW_SCHEMA}.{entity}"


def fields_of(entity: str) -> dict[str, CanonicalField]:
    return {f.name: f for f in ENTITIES[entity]}
