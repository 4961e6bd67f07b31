"""The guard that keeps clear personal data out of serving/.

The marts are built for BI: they carry pseudonymous keys (`customer_id`) and derived
attributes, never a person's name, phone, e-mail, address or the text they wrote. This module
refuses to publish a column whose *name* says it could hold such data. It checks names, not
values: the dbt contracts decide what a column holds, the guard catches a contract that lets
a personal field through.
"""

from __future__ import annotations

from collections.abc import Iterable

# Column names that are personal data wherever they appear (compared case-insensitively).
PII_EXACT: frozenset[str] = frozenset(
    {
        "name",
        "full_name",
        "first_name",
        "last_name",
        "customer_name",
        "nickname",
        "phone",
        "mobile",
        "telephone",
        "email",
        "address",
        "street",
        "birth_date",
        "birthday",
        "id_card",
        "id_number",
        "passport",
        "unionid",
        "openid",
        "content",
        "message_text",
        "raw_text",
    }
)
# Prefixes and suffixes: `buyer_name`, `buyer_phone`, `contact_email`, `shipping_address`, ...
PII_PREFIXES: tuple[str, ...] = ("buyer_", "receiver_", "recipient_", "contact_")
PII_SUFFIXES: tuple[str, ...] = ("_phone", "_mobile", "_email", "_address", "_id_card")


class PiiColumnError(ValueError):
    """A table about to be published has a column that may hold clear personal data."""


#: Indicator columns (`has_phone`, `is_email_verified`) say whether a field is known, never
#: what it holds: booleans by the marts' contracts, so they are allowed.
INDICATOR_PREFIXES: tuple[str, ...] = ("has_", "is_")


def is_pii_column(column: str) -> bool:
    lowered = column.lower()
    if lowered.startswith(INDICATOR_PREFIXES):
        return False
    return (
        lowered in PII_EXACT or lowered.startswith(PII_PREFIXES) or lowered.endswith(PII_SUFFIXES)
    )


def pii_columns(columns: Iterable[str]) -> list[str]:
    return [column for column in columns if is_pii_column(column)]


def check_no_pii(table_columns: dict[str, list[str]]) -> None:
    """Raise `PiiColumnError` naming every offending `table.column` and the fix."""
    offenders = [
        f"{table}.{column}"
        for table, columns in table_columns.items()
        for column in pii_columns(columns)
    ]
    if offenders:
        raise PiiColumnError(
            "refusing to publish: column(s) "
            + ", ".join(offenders)
            + " may hold clear personal data (deny-list in pipelines/publish/pii.py). "
            "Remove them from the mart in dbt_project/models/marts (keep personal data in "
            "the warehouse), or rename the column if it holds no personal data."
        )
