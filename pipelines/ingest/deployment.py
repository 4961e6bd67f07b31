"""What the configured source mappings (CRM_MAPPINGS_DIR) say about a deployment.

- ``configured_entities``: the canonical entities with at least one source mapping. The
  quality checks of a table built only from entities without one are skipped (and reported
  as skipped): a deployment with only an orders export publishes.
- ``customer_systems``: the source systems each customers mapping provides (its
  ``source_system``), read from the mapping when it is a constant (``{expr: "'crm'"}``).
- ``member_system``: the deployment's member system, the system a help desk's
  ``customer_ref`` belongs to when its mapping does not say: the setting CRM_MEMBER_SYSTEM,
  else the one system the customers mappings provide, else none.
- ``customer_ref_systems``: the system of each service_events mapping's ``customer_ref``
  (its ``customer_ref_system``, else the member system), passed to dbt as the var
  ``customer_ref_systems`` so that every ticket's customer_ref resolves against its system.

docs/ingestion.md, "Which system a ticket's customer_ref belongs to", explains it for users.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from pipelines.ingest.mapping import MappingError, SourceMapping, load_mapping, load_mappings
from pipelines.lib.settings import Settings

__all__ = [
    "ENTITIES_WITH_CUSTOMER_REF_SYSTEM",
    "check_customer_ref_system",
    "configured_entities",
    "customer_ref_system_problem",
    "customer_ref_systems",
    "customer_systems",
    "member_system",
]

#: Entities whose customer_ref names no system on the row (customers and orders map
#: `source_system`; social interactions carry no customer_ref).
ENTITIES_WITH_CUSTOMER_REF_SYSTEM = ("service_events",)
_LITERAL = re.compile(r"^\s*'([^']*)'\s*$")


def configured_entities(mappings: Iterable[SourceMapping]) -> set[str]:
    """The entities that have at least one source mapping."""
    return {m.entity for m in mappings}


def constant_source_system(mapping: SourceMapping) -> str | None:
    """The one source_system every row of a customers mapping has, when the mapping says
    so with a string literal (``{expr: "'crm'"}``); None when it varies per row."""
    spec = mapping.fields.get("source_system")
    if spec is None or spec.expr is None:
        return None
    found = _LITERAL.match(spec.expr.source)
    value = found.group(1).strip() if found else ""
    return value or None


def customer_systems(mappings: Iterable[SourceMapping]) -> dict[str, str | None]:
    """Customers mapping name -> the source system it provides (None: not a constant)."""
    return {m.name: constant_source_system(m) for m in mappings if m.entity == "customers"}


def member_system(mappings: Iterable[SourceMapping], configured: str | None = None) -> str | None:
    """The deployment's member system: `configured` (CRM_MEMBER_SYSTEM) when set, else the
    source system of the customers mappings when they provide exactly one (every one a
    constant), else None."""
    if configured:
        return configured
    systems = customer_systems(mappings)
    values = set(systems.values())
    if len(values) == 1 and None not in values:
        return values.pop()
    return None


def _needs_system(mapping: SourceMapping) -> bool:
    return mapping.entity in ENTITIES_WITH_CUSTOMER_REF_SYSTEM and "customer_ref" in mapping.fields


def customer_ref_systems(
    mappings: list[SourceMapping], configured_member: str | None = None
) -> dict[str, str]:
    """Service_events mapping name -> the system its customer_ref belongs to, for every
    mapping that maps customer_ref. Raises MappingError, naming the mapping, when neither
    the mapping (`customer_ref_system`) nor the deployment (the member system) names it."""
    member = member_system(mappings, configured_member)
    out: dict[str, str] = {}
    for mapping in mappings:
        if not _needs_system(mapping):
            continue
        system = mapping.customer_ref_system or member
        if system is None:
            systems = sorted({s for s in customer_systems(mappings).values() if s})
            raise MappingError(
                f"{mapping.label}: fields.customer_ref is mapped but the system it belongs to "
                "is not named: add `customer_ref_system: <source system>` to the mapping "
                f"(the customers mappings provide: {', '.join(systems) or 'none'}), or set "
                "CRM_MEMBER_SYSTEM"
            )
        out[mapping.name] = system
    return out


def customer_ref_system_problem(
    mapping: SourceMapping,
    mappings: list[SourceMapping],
    configured_member: str | None = None,
    found_systems: dict[str, set[str]] | None = None,
) -> str | None:
    """What is wrong with the system `mapping`'s customer_ref belongs to (None: nothing):
    it is not named, or no customers mapping provides it. `found_systems`: systems seen in
    the deliveries of customers mappings whose source_system is not a constant."""
    if not _needs_system(mapping):
        return None
    others = [m for m in mappings if m.name != mapping.name] + [mapping]
    try:
        system = customer_ref_systems(others, configured_member)[mapping.name]
    except MappingError as exc:
        return str(exc)
    provided: set[str] = {s for s in customer_systems(others).values() if s}
    for systems in (found_systems or {}).values():
        provided |= systems
    if system in provided:
        return None
    how = (
        f"customer_ref_system: {mapping.customer_ref_system}"
        if mapping.customer_ref_system
        else f"the member system {system!r}" + (" (CRM_MEMBER_SYSTEM)" if configured_member else "")
    )
    return (
        f"{mapping.label}: customer_ref belongs to system {system!r} ({how}), but no customers "
        f"mapping provides it (they provide: {', '.join(sorted(provided)) or 'none'}); its "
        "tickets would link to no member. Name one of those systems, or add the customers "
        "mapping of that system"
    )


def delivered_systems(mapping: SourceMapping, landing: Path) -> set[str]:
    """The source systems in the latest delivery of a customers mapping (a dry run in a
    scratch in-memory DuckDB: nothing is written); empty when nothing can be read."""
    import duckdb

    from pipelines.ingest.discovery import discover_partitions
    from pipelines.ingest.engine import load_partition

    dates = discover_partitions(landing, mapping)
    if not dates:
        return set()
    con = duckdb.connect()
    try:
        load_partition(con, mapping, landing, dates[-1])
        rows = con.execute(
            "select distinct trim(source_system) from raw.customers "
            "where nullif(trim(source_system), '') is not null"
        ).fetchall()
    except (MappingError, duckdb.Error):
        return set()
    finally:
        con.close()
    return {value for (value,) in rows}


def check_customer_ref_system(mapping_file: str | Path, settings: Settings) -> str | None:
    """`crm check-mapping`'s check of the system a service_events mapping's customer_ref
    belongs to: named (mapping or member system) and provided by a customers mapping of
    CRM_MAPPINGS_DIR (a constant source_system, else the systems of its latest delivery).
    None: nothing wrong, or not a mapping this applies to."""
    mapping = load_mapping(mapping_file)
    if not _needs_system(mapping):
        return None
    mappings = load_mappings(settings.mappings_dir) if settings.mappings_dir.is_dir() else []
    found = {
        m.name: delivered_systems(m, settings.landing)
        for m in mappings
        if m.entity == "customers" and constant_source_system(m) is None
    }
    return customer_ref_system_problem(mapping, mappings, settings.member_system, found)
