"""`crm`: the command-line tool of the CRM warehouse.

Every pipeline command goes through Dagster: its runs are recorded in DAGSTER_HOME (default
$CRM_HOME/dagster) under their job of the code location, so the UI (`make dev`) lists them. `crm forget` (erasure of a
person) works on the stores directly and is audited in the restricted store.
"""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import click

from pipelines.generate.presets import DEFAULT_SEED
from pipelines.lib.settings import Settings, SettingsError

# The multiprocessing resource tracker (a child process) warns about a semaphore that a
# library leaves behind when `crm` exits early; the warning is noise for the user.
os.environ.setdefault("PYTHONWARNINGS", "ignore::UserWarning:multiprocessing.resource_tracker")


def _finish(ok: bool) -> None:
    """Exit after a pipeline command. Output is flushed, then the process ends without the
    interpreter's teardown, where DuckDB's bindings print reference-leak noise."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if ok else 1)


def _settings() -> Settings:
    """The settings of this command: the one reading of the environment (README, Settings)."""
    from pipelines.lib.duck import set_memory_limit

    try:
        settings = Settings.from_env().ensure_dirs()
    except SettingsError as exc:
        raise click.UsageError(str(exc)) from exc
    set_memory_limit(settings.duckdb_memory_limit)
    return settings


def _iso_date(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date in YYYY-MM-DD form") from exc


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="crm-warehouse")
def main() -> None:
    """CRM analytics warehouse: ingest CRM exports, build the marts, publish for BI.

    Settings come from environment variables (CRM_HOME, CRM_TIMEZONE, CRM_CURRENCY,
    CRM_MAPPINGS_DIR, ...); see the README.
    """


def _register_generate() -> None:
    from pipelines.generate.cli import generate_command

    main.add_command(generate_command, name="generate")


_register_generate()


@main.command("run")
@click.option(
    "--date", "run_date", required=True, callback=_iso_date, help="Delivery date D (YYYY-MM-DD)."
)
@click.option("--force", is_flag=True, help="Reload the delivery even if its files are unchanged.")
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Rebuild every mart from the raw tables (see docs/operations.md).",
)
def run_command(run_date: date, force: bool, full_refresh: bool) -> None:
    """One night: ingest the delivery of DATE and run everything downstream as of DATE."""
    from pipelines.orchestrate import print_outputs, run_nightly

    settings = _settings()
    if full_refresh:
        from pipelines.privacy import request_full_refresh

        request_full_refresh(settings, f"crm run --full-refresh ({run_date})")
    ok = run_nightly(settings, run_date, run_date, force=force)
    if ok:
        print_outputs(settings)
    _finish(ok)


@main.command("backfill")
@click.option("--start", "start", required=True, callback=_iso_date, help="First delivery date.")
@click.option(
    "--end", "end", required=True, callback=_iso_date, help="Last delivery date (the as-of date)."
)
@click.option("--force", is_flag=True, help="Reload deliveries even if their files are unchanged.")
@click.option(
    "--full-refresh",
    is_flag=True,
    help="Rebuild every mart from the raw tables (after a mapping change; docs/ingestion.md).",
)
def backfill_command(start: date, end: date, force: bool, full_refresh: bool) -> None:
    """Ingest every delivery from START to END in date order, then build downstream once.

    Resumable: an interrupted backfill run again skips deliveries already loaded whose
    files have not changed.
    """
    if end < start:
        raise click.BadParameter("--end is before --start")
    from pipelines.orchestrate import print_outputs, run_nightly

    settings = _settings()
    if full_refresh:
        from pipelines.privacy import request_full_refresh

        request_full_refresh(settings, f"crm backfill --full-refresh ({start} .. {end})")
    ok = run_nightly(settings, start, end, force=force)
    if ok:
        print_outputs(settings)
    _finish(ok)


@main.command("check-mapping")
@click.argument("mapping_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--sample", default=20, show_default=True, help="Rows to show per file.")
@click.option(
    "--date", "delivery", callback=_iso_date, help="Delivery date to check (default: the latest)."
)
def check_mapping_command(mapping_file: Path, sample: int, delivery: date | None) -> None:
    """Dry run: how each field of MAPPING_FILE maps on real landing rows, what would be
    quarantined and why. Writes nothing to the warehouse."""
    from pipelines.orchestrate import run_check_mapping

    text, ok = run_check_mapping(_settings(), mapping_file, sample, delivery)
    click.echo(text)
    sys.exit(0 if ok else 1)


@main.group("targets")
def targets_group() -> None:
    """The managers' SMART targets (setting CRM_TARGETS_FILE; README, section Targets)."""


@targets_group.command("check")
@click.argument("targets_file", required=False, type=click.Path(dir_okay=False, path_type=Path))
def targets_check_command(targets_file: Path | None) -> None:
    """Validate TARGETS_FILE (default: $CRM_TARGETS_FILE, else the demo's targets) as the
    nightly run does: one line per bad row naming the line, the column and the reason.
    Writes nothing. Exit status 1 when the file has errors."""
    from pipelines.targets import validate_targets

    if targets_file is None:
        try:
            targets_file = Settings.from_env().targets_file
        except SettingsError as exc:
            raise click.UsageError(str(exc)) from exc
    targets, errors = validate_targets(targets_file)
    for error in errors:
        click.echo(f"error: {error}")
    if errors:
        click.echo(
            f"{len(errors)} bad row(s) in {targets_file}: the nightly run refuses the file until they are fixed"
        )
        sys.exit(1)
    click.echo(f"{targets_file}: {len(targets)} target(s), all valid")


@main.command("forget")
@click.option("--phone", help="The person's phone number, in any common format.")
@click.option("--email", help="The person's e-mail address.")
@click.option(
    "--customer-ref", help="An account of the person: SOURCE_SYSTEM:CUSTOMER_REF (crm:M100...)."
)
@click.option(
    "--request-id", required=True, help="Id of the erasure request (ticket, letter), for the audit."
)
@click.option("--requested-by", help="Who carries it out (default: the OS user).")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; change nothing.")
def forget_command(
    phone: str | None,
    email: str | None,
    customer_ref: str | None,
    request_id: str,
    requested_by: str | None,
    dry_run: bool,
) -> None:
    """Erase a person (PIPL / GDPR right to be forgotten).

    Removes every raw row of the person (found through identity resolution: all their
    linked records) from the restricted store, keeps their identifiers as keyed pseudonyms
    only so that files delivered again bring nobody back, deletes their rows from the
    warehouse and makes the next dbt build a full refresh: the next publication neither
    counts nor shows them. Writes an audit record without personal data. See
    docs/operations.md, "Answering an erasure request".
    """
    from pipelines.lib.duck import WarehouseBusyError
    from pipelines.lib.pseudonym import PseudonymKeyError
    from pipelines.privacy import ErasureError, forget

    settings = _settings()
    try:
        result = forget(
            settings,
            phone=phone,
            email=email,
            customer_ref=customer_ref,
            request_id=request_id,
            requested_by=requested_by,
            dry_run=dry_run,
        )
    except (ErasureError, PseudonymKeyError, WarehouseBusyError) as exc:
        click.echo(f"error: {exc}", err=True)
        _finish(False)
        return
    click.echo(("[dry run] " if dry_run else "") + result.summary())
    if not result.found:
        click.echo("nothing matched: check the identifier (no record of it in the warehouse)")
    elif not dry_run:
        click.echo(
            "The next run (the nightly schedule, or `crm run --date D` now) rebuilds the marts "
            "in full and republishes without them."
        )
    _finish(True)


@main.command("rotate-key")
@click.option(
    "--old-key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key the warehouse was built with (default: the key file).",
)
@click.option(
    "--new-key-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The new key, when not given by $CRM_PSEUDONYM_KEY (default: a random key).",
)
@click.option("--rotated-by", help="Who carries it out (default: the OS user).")
def rotate_key_command(
    old_key_file: Path | None, new_key_file: Path | None, rotated_by: str | None
) -> None:
    """Change the pseudonymisation key: every customer gets a new id at the next run.

    Checks the old key against the warehouse's, keeps it as a retired key file (erasures
    recorded under it keep holding), records the new key's fingerprint and makes the next
    run a full rebuild and a whole publication under the new key. See docs/operations.md,
    "Rotating the pseudonymisation key".
    """
    from pipelines.lib.duck import WarehouseBusyError
    from pipelines.lib.pseudonym import PseudonymKeyError
    from pipelines.privacy import rotate_key

    settings = _settings()
    try:
        rotation = rotate_key(
            settings, old_key_file=old_key_file, new_key_file=new_key_file, rotated_by=rotated_by
        )
    except (PseudonymKeyError, WarehouseBusyError) as exc:
        click.echo(f"error: {exc}", err=True)
        _finish(False)
        return
    click.echo(
        f"key {rotation.old_fingerprint} -> {rotation.new_fingerprint} (from "
        f"{rotation.new_key_source}); old key kept as {rotation.retired_key_file}. The next run "
        "(the nightly schedule, or `crm run --date D` now) rebuilds the marts in full and "
        "republishes every customer under the new key."
    )
    _finish(True)


@main.group("spark")
def spark_group() -> None:
    """Run the dbt project on Apache Spark over the same inputs (docs/spark.md)."""


@spark_group.command("export")
@click.option(
    "--delivery",
    "deliveries",
    multiple=True,
    callback=lambda ctx, param, values: [_iso_date(ctx, param, v) for v in values],
    help="Only this delivery date (repeatable); default: every date, stale files removed.",
)
def spark_export_command(deliveries: list[date]) -> None:
    """Write the raw tables (one Parquet file per table and delivery date) and the CLV scores
    under $CRM_HOME/restricted/spark/sources, where the Spark target reads them."""
    from pipelines.lib.duck import WarehouseBusyError
    from pipelines.spark import SparkBuildError, export_sources, spark_paths

    settings = _settings()
    try:
        rows = export_sources(settings, list(deliveries) or None, progress=click.echo)
    except (SparkBuildError, WarehouseBusyError) as exc:
        click.echo(f"error: {exc}", err=True)
        _finish(False)
        return
    click.echo(f"{sum(rows.values()):,} rows exported to {spark_paths(settings).sources}")
    _finish(True)


@spark_group.command("build")
@click.option(
    "--as-of", "as_of", required=True, callback=_iso_date, help="The as-of date D (YYYY-MM-DD)."
)
@click.option("--no-tests", is_flag=True, help="dbt seed + run only, without the data tests.")
@click.option("--select", "select", multiple=True, help="dbt node selection (repeatable).")
def spark_build_command(as_of: date, no_tests: bool, select: tuple[str, ...]) -> None:
    """`dbt build --target spark` as of D over the exported sources (local PySpark unless
    CRM_SPARK_MASTER names a cluster); the tables land in $CRM_HOME/restricted/spark/warehouse."""
    from pipelines.spark import SparkBuildError, build, spark_paths

    settings = _settings()
    try:
        seconds = build(settings, as_of, tests=not no_tests, select=list(select) or None)
    except SparkBuildError as exc:
        click.echo(f"error: {exc}", err=True)
        _finish(False)
        return
    click.echo(f"Spark build as of {as_of} in {seconds:.0f} s: {spark_paths(settings).warehouse}")
    _finish(True)


@main.command("demo")
@click.option(
    "--preset", default="small", show_default=True, type=click.Choice(["small", "medium", "large"])
)
@click.option(
    "--seed",
    default=DEFAULT_SEED,
    show_default=True,
    type=int,
    help="Same seed, same bytes (as crm generate).",
)
def demo_command(preset: str, seed: int) -> None:
    """Generate demo exports into CRM_HOME/landing (once), run the whole pipeline over every
    delivery date, and print where the outputs are."""
    from pipelines.orchestrate import run_demo

    _finish(run_demo(_settings(), preset, seed))


if __name__ == "__main__":  # pragma: no cover
    main()
