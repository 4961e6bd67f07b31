"""Launch Dagster runs from the command line (crm run / backfill / check-mapping / demo)."""

from __future__ import annotations

import os
import socket
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import dagster as dg

from pipelines.definitions import NIGHTLY_JOB
from pipelines.lib.console import step_error
from pipelines.lib.launch import execute_in_code_location
from pipelines.lib.settings import Settings

#: The run tags that make one run cover a range of partitions (a single-run backfill).
#: Dagster documents them for launching such a run (dagster-io/dagster#10441, the backfills
#: docs: "Edit tags") but exports no constant for them, and `execute_in_process` takes no
#: partition range; the strings are Dagster's `dagster/asset_partition_range_start|end`.
ASSET_PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
ASSET_PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent instance under DAGSTER_HOME (default $CRM_HOME/dagster: runs show in
    the UI); an ephemeral one only for settings built without it (tests)."""
    if settings.dagster_home is None:
        return dg.DagsterInstance.ephemeral()
    ensure_dagster_home(settings.dagster_home)
    return dg.DagsterInstance.from_config(str(settings.dagster_home))


INSTANCE_TEMPLATE = Path(__file__).parent / "lib" / "dagster_instance.yaml"


def ensure_dagster_home(home: Path) -> Path:
    """Create DAGSTER_HOME with the project's dagster.yaml (pool limits) if it has none."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(INSTANCE_TEMPLATE.read_text())
    return config


#: Which process runs a run: "<host>:<pid>:<process start time>" (the start time tells a
#: reused pid from the original process).
PROCESS_TAG = "crm/process"


def _process_start(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]  # field 22: start time in clock ticks


def _this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_process_start(os.getpid())}"


def _alive(process: str) -> bool:
    host, _, rest = process.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's run: not ours to judge
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _process_start(pid) == started


def recover_interrupted_runs(instance: dg.DagsterInstance) -> list[str]:
    """Runs that `crm` started and whose process is gone (killed, power cut) still show as
    started and keep their slot of the `warehouse` pool, which would block every later run
    forever. Mark them failed and free their slots; returns their run ids."""
    recovered = []
    records = instance.get_run_records(
        filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING])
    )
    for record in records:
        run = record.dagster_run
        process = run.tags.get(PROCESS_TAG)
        if not process or _alive(process):
            continue
        instance.report_run_failed(
            run, message="the process running it ended abruptly (killed or crashed)"
        )
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        recovered.append(run.run_id)
    return recovered


def _echo(message: str) -> None:
    print(f"[crm] {message}", flush=True)


#: How Dagster names the exception of a step that raised ``dagster.Failure`` (a user-facing
#: message: printed without it).
FAILURE_CLASS = f"{dg.Failure.__module__}.{dg.Failure.__qualname__}"


def _report(result, label: str, seconds: float, settings: Settings | None = None) -> bool:
    """Print the outcome of a run; a failed run is alerted (`settings`' channels)."""
    if result.success:
        _echo(f"{label}: done in {seconds:.1f} s (run {result.run_id})")
        return True
    failed: dict[str, list[str]] = {}  # message -> steps (a broken mapping fails several)
    for event in result.all_events:
        if event.is_step_failure:
            info = step_error(event.step_failure_data.error)  # the step's own exception
            message = info.message.strip() if info else ""
            message = message.removeprefix(f"{FAILURE_CLASS}: ")
            failed.setdefault(message, []).append(event.step_key)
    for message, steps in failed.items():
        _echo(f"FAILED step {', '.join(steps)}: {message}")
    if settings is not None and (settings.alert_webhook_url or settings.alert_email_to):
        from pipelines.lib.alerts import notify
        from pipelines.publish.sensors import failure_alert

        failure = next((e for e in result.all_events if e.is_run_failure), None)
        errors = notify(settings, failure_alert(result.dagster_run, failure and failure.message))
        _echo("; ".join(errors) if errors else "alert sent")
    _echo(
        f"{label}: failed after {seconds:.1f} s (run {result.run_id}); the published outputs "
        "were not replaced"
    )
    return False


def run_nightly(settings: Settings, start: date, end: date, *, force: bool = False) -> bool:
    """Ingest deliveries start..end (in date order) and build everything downstream once,
    as of `end`. Returns True on success.

    A range runs as two Dagster runs: the ingest job over start .. end-1 (one run, every
    delivery in date order, unchanged deliveries skipped, hence resumable), then the nightly
    job for `end` (ingest of `end`, dbt, CLV, quality gates, publication, as of `end`).
    The warehouse's marts are cumulative: one build as of `end` covers every earlier date
    (the incremental facts widen their window to the last build, docs/warehouse.md)."""
    from pipelines.definitions import INGEST_JOB, build_definitions
    from pipelines.lib.pseudonym import PseudonymKeyError
    from pipelines.privacy import verify_key
    from pipelines.publish.release import record_night

    try:
        # before anything runs: the key is the warehouse's (pipelines/lib/key_check.py)
        verify_key(settings)
    except PseudonymKeyError as exc:
        raise SystemExit(f"error: {exc}") from None
    defs = build_definitions(settings)
    job = defs.resolve_job_def(NIGHTLY_JOB)
    partitions = job.partitions_def
    assert partitions is not None
    keys = partitions.get_partition_keys()
    for day in (start, end):
        if day.isoformat() not in keys:
            raise SystemExit(
                f"error: {day} is not a delivery date the pipeline knows "
                f"({keys[0]} .. {keys[-1]}); set CRM_PARTITIONS_START for earlier data"
            )
    from pipelines.ingest.mapping import MappingError, load_mappings

    try:  # a broken mapping is one line here, before any run starts
        load_mappings(settings.mappings_dir)
    except MappingError as exc:
        _echo(f"error: {exc}")
        _echo("nothing was run: fix the mapping (check it with `crm check-mapping FILE`)")
        return False
    from pipelines.targets import validate_targets

    _, target_errors = validate_targets(settings.targets_file)
    if target_errors:  # the same errors as the night's targets step, before any run starts
        for error in target_errors:
            _echo(f"error: {error}")
        _echo("nothing was run: fix the targets file (check it with `crm targets check`)")
        return False
    tags = {"crm/force": "true" if force else "false", PROCESS_TAG: _this_process()}
    # Progress at INFO (dbt's own lines, row counts, warnings); step-level DEBUG is in the UI.
    run_config = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
    started = time.monotonic()
    with dagster_instance(settings) as instance:
        for run_id in recover_interrupted_runs(instance):
            _echo(f"run {run_id} was interrupted (its process is gone): marked failed")
        if start < end:
            last_before = end - timedelta(days=1)
            _echo(
                f"ingesting deliveries {start} .. {last_before} (warehouse {settings.warehouse_db})"
            )
            ingest = defs.resolve_job_def(INGEST_JOB)
            range_tags = tags | {
                ASSET_PARTITION_RANGE_START_TAG: start.isoformat(),
                ASSET_PARTITION_RANGE_END_TAG: last_before.isoformat(),
            }
            result = execute_in_code_location(
                ingest, instance, tags=range_tags, run_config=run_config
            )
            if not _report(result, "ingest", time.monotonic() - started, settings):
                record_night(settings.reports, end, "failed")
                print_ingest_summary(settings, start, last_before)
                return False
        _echo(
            f"running the nightly pipeline for delivery {end} (warehouse {settings.warehouse_db})"
        )
        nightly_started = time.monotonic()
        result = execute_in_code_location(
            job, instance, partition_key=end.isoformat(), tags=tags, run_config=run_config
        )
        ok = _report(result, f"nightly {end}", time.monotonic() - nightly_started, settings)
        if not ok:  # the reviews shown (older nights) say so (pipelines/publish/release.py)
            record_night(settings.reports, end, "failed")
    print_ingest_summary(settings, start, end)
    if ok and start < end:
        _echo(f"deliveries {start} .. {end}: done in {time.monotonic() - started:.1f} s")
    return ok


SUMMARY_COLUMNS = ("read", "loaded", "quarantined", "duplicates", "superseded")


def format_ingest_summary(counts: list, start: date, end: date, max_share: float) -> list[str]:
    """The lines that end `crm run` / `crm backfill`: per source, the rows of deliveries
    start .. end read, loaded, quarantined, duplicate and superseded (raw.load_log)."""
    span = str(start) if start == end else f"{start} .. {end}"
    if not counts:
        return [f"[crm] deliveries {span}: no file loaded (nothing in raw.load_log)"]
    width = max(len(c.source) for c in counts)
    head = f"  {'source':<{width}}  {'entity':<19}" + "".join(
        f"{name:>13}" for name in SUMMARY_COLUMNS
    )
    lines = [f"[crm] deliveries {span}, rows per source:", head]
    for c in counts:
        values = (c.rows_read, c.rows_loaded, c.rows_quarantined)
        values += (c.rows_duplicate, c.rows_superseded)
        lines.append(
            f"  {c.source:<{width}}  {c.entity:<19}" + "".join(f"{v:>13,}" for v in values)
        )
    for c in counts:
        if c.duplicate_files:
            lines.append(
                f"[crm] {c.source}: {c.duplicate_files:,} file(s) had the bytes of a file "
                "already loaded and were not read again (raw.load_log, status duplicate)"
            )
        if c.rows_erased:
            lines.append(
                f"[crm] {c.source}: {c.rows_erased:,} row(s) of erased people delivered again "
                "were removed (counted as quarantined)"
            )
        if c.rows_quarantined > c.rows_erased:
            over = c.quarantine_share > max_share
            lines.append(
                f"[crm] {c.source}: {c.rows_quarantined - c.rows_erased:,} row(s) quarantined "
                f"({c.quarantine_share:.1%} of rows read{', above' if over else ', within'} "
                f"CRM_MAX_QUARANTINE_SHARE={max_share:g}); reasons in raw.quarantine"
            )
    return lines


def print_ingest_summary(settings: Settings, start: date, end: date) -> None:
    """Print ``format_ingest_summary`` from the restricted store (nothing if it has none)."""
    from pipelines.ingest.load_log import source_counts, stale_deliveries
    from pipelines.lib.duck import connect_restricted

    if not settings.restricted_db.exists():
        return
    from pipelines.ingest.mapping import MappingError, load_mappings

    try:
        mappings = load_mappings(settings.mappings_dir)
    except MappingError:
        mappings = []
    with connect_restricted(settings.restricted_db, read_only=True) as con:
        if not con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE schema_name = 'raw' "
            "AND table_name = 'load_log'"
        ).fetchall()[0][0]:
            return
        counts = source_counts(con, start, end)
        stale = [
            (m, stale_deliveries(con, m, business_timezone=settings.timezone)) for m in mappings
        ]
    lines = format_ingest_summary(counts, start, end, settings.max_quarantine_share)
    for mapping, dates in stale:
        if dates:
            lines.append(stale_mapping_line(mapping, dates, end))
    print("\n".join(lines))
    sys.stdout.flush()


def stale_mapping_line(mapping, dates: list[date], end: date) -> str:
    """What to run when deliveries were loaded with another version of their mapping."""
    first, last = dates[0], dates[-1]
    span = str(first) if first == last else f"{first} .. {last}"
    return (
        f"[crm] {mapping.name}: {len(dates)} delivery date(s) ({span}) were loaded with "
        f"another version of {mapping.label}; to load them again with it and rebuild the "
        f"marts: crm backfill --start {first} --end {max(last, end)} --force --full-refresh"
    )


def run_check_mapping(
    settings: Settings, mapping_file: Path, sample: int, delivery: date | None
) -> tuple[str, bool]:
    from pipelines.ingest.jobs import check_mapping_job
    from pipelines.lib.resources import CrmSettingsResource

    with dagster_instance(settings) as instance:
        result = execute_in_code_location(
            check_mapping_job,
            instance,
            run_config={
                # the report is the output: Dagster's own lines only when something fails
                "loggers": {"console": {"config": {"log_level": "ERROR"}}},
                "ops": {
                    "check_mapping_op": {
                        "config": {
                            "mapping_file": str(mapping_file.resolve()),
                            "sample": sample,
                            "delivery_date": delivery.isoformat() if delivery else None,
                        }
                    }
                },
            },
            resources={"crm": CrmSettingsResource.from_settings(settings)},
        )
    if result.success:
        return result.output_for_node("check_mapping_op"), True
    messages = [
        e.step_failure_data.error.message.strip()
        for e in result.all_events
        if e.is_step_failure and e.step_failure_data.error
    ]
    return "error: " + "\n".join(messages), False


def delivery_range(landing: Path) -> tuple[date, date] | None:
    from pipelines.ingest.sensors import delivery_dates

    dates = delivery_dates(landing)
    if not dates:
        return None
    return date.fromisoformat(dates[0]), date.fromisoformat(dates[-1])


def run_demo(settings: Settings, preset: str, seed: int) -> bool:
    span = delivery_range(settings.landing)
    if span is None:
        from pipelines.generate import generate

        _echo(f"generating the {preset} demo preset (seed {seed}) into {settings.landing}")
        generate(preset=preset, seed=seed, out=settings.landing)
        span = delivery_range(settings.landing)
        assert span is not None
    else:
        _echo(f"landing data already present in {settings.landing}: {span[0]} .. {span[1]}")
    ok = run_nightly(settings, span[0], span[1])
    if ok:
        print_outputs(settings)
    return ok


def print_outputs(settings: Settings) -> None:
    rows = [
        ("landing files", settings.landing),
        ("restricted store (pipeline only)", settings.restricted_db),
        ("warehouse (pipeline only)", settings.warehouse_db),
        ("dbt docs", settings.home / "docs" / "dbt" / "index.html"),
        ("serving DuckDB (analysts)", settings.serving / "serving.duckdb"),
        ("Parquet", settings.serving / "parquet"),
        ("Tableau extracts", settings.serving / "tableau"),
        ("KPI review (en)", settings.reports / "latest" / "kpi_review.en.html"),
        ("KPI review (zh)", settings.reports / "latest" / "kpi_review.zh.html"),
        ("quality Data Docs", settings.reports / "data_docs" / "index.html"),
    ]
    print()
    print("Outputs:")
    for label, path in rows:
        mark = "" if Path(path).exists() else "   (not produced yet)"
        print(f"  {label:<28} {path}{mark}")
    print()
