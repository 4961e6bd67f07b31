"""Quality gates as Dagster asset checks: one multi-asset check per suite, guarding the asset
the suite validates, with two check keys:

- `<suite>_integrity`  blocking=True,  severity ERROR: failed blocking expectations (duplicate
  or NULL keys, broken references, reconciliation) stop everything downstream (publication).
- `<suite>_targets`    blocking=False, severity WARN: completeness / dedupe vs SMART targets,
  recorded and shown, never blocking.

The lead wires them in `pipelines/definitions.py`:

    from pipelines.quality.checks import build_quality_checks
    asset_checks=build_quality_checks(partitions_def=partitions)
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation.
import json
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import dagster as dg

from pipelines.ingest.deployment import configured_entities
from pipelines.ingest.mapping import load_mappings
from pipelines.lib.duck import connect_warehouse
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.settings import EXPECTATIONS_DIR
from pipelines.quality.runner import ExpectationOutcome, SuiteResult, run_suites
from pipelines.quality.suites import SuiteSpec, load_suites

INTEGRITY = "integrity"
TARGETS = "targets"


def as_of_for(context: Any, timezone: str) -> date:
    """D for a check: the end of the run's partition (range), else yesterday in `timezone`."""
    try:
        if context.has_partition_key_range:
            return date.fromisoformat(context.partition_key_range.end)
        if context.has_partition_key:
            return date.fromisoformat(context.partition_key)
    except Exception:  # noqa: BLE001 - unpartitioned check contexts raise on access
        pass
    from zoneinfo import ZoneInfo

    return datetime.now(ZoneInfo(timezone)).date() - timedelta(days=1)


def _jsonable(value: Any) -> Any:
    """Dates, decimals and other values in failure samples, as JSON (str where needed)."""
    return json.loads(json.dumps(value, default=str))


def _outcome_row(item: ExpectationOutcome) -> dict[str, Any]:
    row: dict[str, Any] = {
        "check": item.check,
        "success": item.success,
        "observed": item.observed,
        "threshold": item.threshold,
    }
    if item.details.get("error"):
        row["error"] = item.details["error"]
    if item.sample:
        row["sample"] = item.sample
    return row


def check_results(result: SuiteResult, spec: SuiteSpec) -> list[dg.AssetCheckResult]:
    """The two AssetCheckResults of one suite run (pure: testable without Dagster)."""
    key = dg.AssetKey(list(spec.asset_key))
    out = []
    for name, severity_name, severity in (
        (INTEGRITY, "blocking", dg.AssetCheckSeverity.ERROR),
        (TARGETS, "target", dg.AssetCheckSeverity.WARN),
    ):
        items = [o for o in result.outcomes if o.severity == severity_name]
        failed = [o for o in items if not o.success]
        skipped = [o for o in items if o.skipped]
        lines = [f"- **{o.check}**: {o.describe()}" for o in failed]
        metadata: dict[str, Any] = {
            "table": result.table,
            "as_of": result.as_of.isoformat(),
            "run_id": result.run_id,
            "expectations": len(items),
            "failed": len(failed),
            "failed_checks": dg.MetadataValue.md("\n".join(lines) or "none"),
            "skipped": len(skipped),
            "skipped_checks": dg.MetadataValue.md(
                "\n".join(f"- **{o.check}**: {o.skipped}" for o in skipped) or "none"
            ),
            "results": dg.MetadataValue.json(_jsonable([_outcome_row(o) for o in items])),
            "seconds": round(result.seconds, 3),
        }
        out.append(
            dg.AssetCheckResult(
                asset_key=key,
                check_name=f"{spec.name}_{name}",
                passed=not failed,
                severity=severity,
                metadata=metadata,
                description=_description(items, failed, skipped, severity_name),
            )
        )
    return out


def _description(items: list, failed: list, skipped: list, severity_name: str) -> str:
    if items and len(skipped) == len(items):
        return f"skipped: {skipped[0].skipped}"
    text = (
        f"{len(failed)} of {len(items)} {severity_name} expectations failed"
        if failed
        else f"all {len(items) - len(skipped)} {severity_name} expectations passed"
    )
    return text + (f"; {len(skipped)} skipped ({skipped[0].skipped})" if skipped else "")


def build_suite_check(
    spec: SuiteSpec,
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    expectations_dir: Path = EXPECTATIONS_DIR,
) -> dg.AssetChecksDefinition:
    key = dg.AssetKey(list(spec.asset_key))
    specs = [
        dg.AssetCheckSpec(
            f"{spec.name}_{INTEGRITY}",
            asset=key,
            blocking=True,
            partitions_def=partitions_def,
            description=f"Blocking GX expectations of expectations/{spec.path.name} on {spec.table}",
        ),
        dg.AssetCheckSpec(
            f"{spec.name}_{TARGETS}",
            asset=key,
            blocking=False,
            partitions_def=partitions_def,
            description=f"Target GX expectations of expectations/{spec.path.name} on {spec.table}",
        ),
    ]

    @dg.multi_asset_check(
        name=f"quality_{spec.name}",
        specs=specs,
        can_subset=False,
        compute_kind="great_expectations",
        pool="warehouse",
    )
    def _check(context: dg.AssetCheckExecutionContext, crm: CrmSettingsResource):
        settings = crm.settings
        as_of = as_of_for(context, settings.timezone)
        sources = configured_entities(load_mappings(settings.mappings_dir))
        with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
            gate = run_suites(
                con,
                [spec.name],
                as_of,
                context.run.run_id,
                docs_dir=settings.reports / "data_docs",
                timezone=settings.timezone,
                expectations_dir=expectations_dir,
                sources=sources,
            )
        result = gate.suites[0]
        if result.skipped:
            context.log.info(
                f"{spec.name}: {len(result.skipped)} of {len(result.outcomes)} expectations "
                f"skipped: {result.skipped[0].skipped}"
            )
        for item in result.blocking_failed:
            context.log.error(f"{spec.name}: {item.describe()}")
        for item in result.target_failed:
            context.log.warning(f"{spec.name}: {item.describe()}")
        yield from check_results(result, spec)

    return _check


def build_quality_checks(
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    expectations_dir: Path = EXPECTATIONS_DIR,
    suites: list[str] | None = None,
) -> list[dg.AssetChecksDefinition]:
    """One multi-asset check per suite in `expectations_dir` (or the named `suites`).

    `partitions_def` must be the partitions of the guarded assets (the daily delivery
    partitions) so that the check runs per partition and reads D from the partition key."""
    specs = load_suites(expectations_dir)
    if suites is not None:
        specs = [s for s in specs if s.name in suites]
    return [
        build_suite_check(s, partitions_def=partitions_def, expectations_dir=expectations_dir)
        for s in specs
    ]
