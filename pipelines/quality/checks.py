"""Quality gates as Dagster asset checks. Each suite guards the asset it validates with two
check keys:

- `<suite>_integrity`  blocking=True,  severity ERROR: failed blocking expectations (duplicate
  or NULL keys, broken references, reconciliation) stop everything downstream (publication).
- `<suite>_targets`    blocking=False, severity WARN: completeness / dedupe vs SMART targets,
  recorded and shown, never blocking.

The suites run in as few Dagster steps (multi-asset checks) as the asset graph allows
(`gate_stages`): in the project, `quality_ingest` (the raw tables, before the first dbt
step), `quality_dbt_warehouse` (its models, before the CLV model and the customer marts) and
`quality_dbt_customer_marts` (before the publication). A step opens the warehouse once,
validates its suites through one GX context and builds the Data Docs once.

The lead wires them in `pipelines/definitions.py`:

    from pipelines.quality.checks import build_quality_checks
    asset_checks=build_quality_checks(partitions_def=partitions, assets=assets)
"""

# No `from __future__ import annotations`: Dagster inspects the `context` annotation.
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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


def _check_specs(
    spec: SuiteSpec, partitions_def: dg.PartitionsDefinition | None
) -> list[dg.AssetCheckSpec]:
    """The two check keys of one suite, on the asset the suite guards."""
    key = dg.AssetKey(list(spec.asset_key))
    return [
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


def build_gate_check(
    name: str,
    specs: Sequence[SuiteSpec],
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    expectations_dir: Path = EXPECTATIONS_DIR,
) -> dg.AssetChecksDefinition:
    """One Dagster step (`name`) validating the suites `specs`: one warehouse connection, one
    GX context, the Data Docs built once. Each suite keeps its two check keys; a run that
    selects some of them validates only the suites of the selected keys (`can_subset`)."""
    keys_of = {spec.name: {c.key: c for c in _check_specs(spec, partitions_def)} for spec in specs}

    @dg.multi_asset_check(
        name=name,
        specs=[c for checks in keys_of.values() for c in checks.values()],
        can_subset=True,
        compute_kind="great_expectations",
        pool="warehouse",
        description="GX suites " + ", ".join(s.name for s in specs),
    )
    def _gate(context: dg.AssetCheckExecutionContext, crm: CrmSettingsResource):
        selected = context.selected_asset_check_keys
        chosen = [s for s in specs if selected & keys_of[s.name].keys()]
        if not chosen:
            return
        settings = crm.settings
        as_of = as_of_for(context, settings.timezone)
        sources = configured_entities(load_mappings(settings.mappings_dir))
        with connect_warehouse(settings.warehouse_db, settings.restricted_db) as con:
            gate = run_suites(
                con,
                [s.name for s in chosen],
                as_of,
                context.run.run_id,
                docs_dir=settings.reports / "data_docs",
                timezone=settings.timezone,
                expectations_dir=expectations_dir,
                sources=sources,
            )
        for spec, result in zip(chosen, gate.suites, strict=True):
            if result.skipped:
                context.log.info(
                    f"{spec.name}: {len(result.skipped)} of {len(result.outcomes)} expectations "
                    f"skipped: {result.skipped[0].skipped}"
                )
            for item in result.blocking_failed:
                context.log.error(f"{spec.name}: {item.describe()}")
            for item in result.target_failed:
                context.log.warning(f"{spec.name}: {item.describe()}")
            for check in check_results(result, spec):
                if dg.AssetCheckKey(check.asset_key, check.check_name) in selected:
                    yield check
        # the step's failure names each failed blocking expectation and its offending keys
        # (the run's summary prints it; Dagster's own message names the checks only)
        failed = [
            f"{dg.AssetKey(list(spec.asset_key)).to_user_string()}: {spec.name}_{INTEGRITY}: "
            f"{spec.name}: {item.describe()}"
            for spec, result in zip(chosen, gate.suites, strict=True)
            for item in result.blocking_failed
        ]
        if failed:
            raise dg.Failure(
                description="blocking quality checks failed:\n" + "\n".join(failed),
                allow_retries=False,
            )

    return _gate


@dataclass
class _Graph:
    """What the staging of the gates needs of the asset graph: the step (node) producing
    each asset, each step's upstream steps, and the steps consuming each asset."""

    producer: dict[dg.AssetKey, str] = field(default_factory=dict)
    upstream: dict[str, set[str]] = field(default_factory=dict)
    consumers: dict[dg.AssetKey, set[str]] = field(default_factory=dict)
    groups: dict[dg.AssetKey, str | None] = field(default_factory=dict)

    @classmethod
    def of(cls, assets: Sequence[Any]) -> "_Graph":
        graph = cls()
        defs = [a for a in assets if isinstance(a, dg.AssetsDefinition) and a.is_executable]
        for ad in defs:
            for key in ad.keys:
                graph.producer[key] = ad.node_def.name
                graph.groups[key] = ad.group_names_by_key.get(key)
        for ad in defs:
            node = ad.node_def.name
            ups = graph.upstream.setdefault(node, set())
            for key in ad.keys:
                for dep in ad.get_asset_spec(key).deps:
                    if dep.asset_key in ad.keys:
                        continue
                    graph.consumers.setdefault(dep.asset_key, set()).add(node)
                    if dep.asset_key in graph.producer:
                        ups.add(graph.producer[dep.asset_key])
        return graph

    def ancestors(self, node: str) -> set[str]:
        """`node` and every step upstream of it."""
        seen, todo = {node}, [node]
        while todo:
            for up in self.upstream.get(todo.pop(), ()):
                if up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen

    def depth(self, node: str | None) -> int:
        return len(self.ancestors(node)) if node else 0

    def acyclic(self, keys: set[dg.AssetKey]) -> bool:
        """Whether one step checking `keys` fits the graph: it runs after the steps producing
        them, and every step consuming one of them waits for its blocking checks; so no such
        consumer may be one of those producers or upstream of them."""
        upstream: set[str] = set()
        for key in keys:
            if key in self.producer:
                upstream |= self.ancestors(self.producer[key])
        return not any(self.consumers.get(key, set()) & upstream for key in keys)


def gate_stages(specs: Sequence[SuiteSpec], assets: Sequence[Any]) -> list[list[SuiteSpec]]:
    """The suites in as few steps as the asset graph allows, in the order the graph runs
    them: a suite joins the last step unless a step consuming what that step checks would
    then have to run before it (the raw suites block the dbt step building from the raw
    tables, so the checks of that step's models need a step of their own)."""
    graph = _Graph.of(assets)

    def key(spec: SuiteSpec) -> dg.AssetKey:
        return dg.AssetKey(list(spec.asset_key))

    ordered = sorted(specs, key=lambda s: (graph.depth(graph.producer.get(key(s))), s.name))
    stages: list[list[SuiteSpec]] = []
    for spec in ordered:
        if stages and graph.acyclic({key(s) for s in [*stages[-1], spec]}):
            stages[-1].append(spec)
        else:
            stages.append([spec])
    return stages


def _stage_name(stage: Sequence[SuiteSpec], graph: _Graph, index: int) -> str:
    """`quality_<the step producing the checked assets>`, else `quality_<their group>`,
    else `quality_gate_<n>`."""
    keys = [dg.AssetKey(list(s.asset_key)) for s in stage]
    producers = {graph.producer.get(k) for k in keys}
    groups = {graph.groups.get(k) for k in keys}
    if len(producers) == 1 and None not in producers:
        return f"quality_{producers.pop()}"
    if len(groups) == 1 and None not in groups:
        return f"quality_{groups.pop()}"
    return f"quality_gate_{index}"


def build_quality_checks(
    *,
    partitions_def: dg.PartitionsDefinition | None = None,
    expectations_dir: Path = EXPECTATIONS_DIR,
    suites: list[str] | None = None,
    assets: Sequence[Any] | None = None,
) -> list[dg.AssetChecksDefinition]:
    """The suites in `expectations_dir` (or the named `suites`) as multi-asset checks, as few
    as `assets` (the Definitions' assets) allow: see `gate_stages`. Without `assets`, one
    step validates every suite.

    `partitions_def` must be the partitions of the guarded assets (the daily delivery
    partitions) so that the checks run per partition and read D from the partition key."""
    specs = load_suites(expectations_dir)
    if suites is not None:
        specs = [s for s in specs if s.name in suites]
    if not specs:
        return []
    graph = _Graph.of(assets or [])
    stages = gate_stages(specs, assets) if assets else [specs]
    names = [_stage_name(stage, graph, i) for i, stage in enumerate(stages, start=1)]
    if len(set(names)) < len(names):
        names = [f"quality_gate_{i}" for i in range(1, len(stages) + 1)]
    return [
        build_gate_check(
            name, stage, partitions_def=partitions_def, expectations_dir=expectations_dir
        )
        for name, stage in zip(names, stages, strict=True)
    ]
