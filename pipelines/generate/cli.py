"""`crm generate`: write a landing folder of realistic demo deliveries."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import click

from pipelines.generate.engine import GenerateError, generate, resolve_period
from pipelines.generate.presets import DEFAULT_SEED, PRESETS


def _default_out() -> Path:
    from pipelines.lib.settings import get_settings

    return get_settings().landing


@click.command(name="generate")
@click.option(
    "--preset",
    type=click.Choice(list(PRESETS)),
    default="small",
    show_default=True,
    help="small: 20k customers, 180 days (the demo); medium: 200k, 1 year; "
    "large: 2M customers, 2 years (~20M order lines).",
)
@click.option(
    "--seed", type=int, default=DEFAULT_SEED, show_default=True, help="Same seed, same bytes."
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Landing folder to write [default: $CRM_LANDING_DIR or $CRM_HOME/landing].",
)
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    default=None,
    help="First delivery date [default: the period ends on 2026-10-31].",
)
@click.option("--days", type=click.IntRange(min=1), default=None, help="Delivery days.")
def generate_command(
    preset: str, seed: int, out: Path | None, start: datetime | None, days: int | None
) -> None:
    """Generate demo source exports: CRM members (GB18030 CSV), mini-program mall members
    (JSON Lines), shop orders (CSV), help-desk events (TSV) and social interactions
    (Parquet), one folder per source and delivery date, with their mappings in _mappings/
    and the ground truth in _truth/.

    The year before the first delivery date is simulated too and delivered with it as
    order history and a full member export.
    """
    start_d: date | None = start.date() if start is not None else None
    out = out if out is not None else _default_out()
    first, n = resolve_period(preset, start_d, days)
    click.echo(f"Generating preset {preset} (seed {seed}) for {first} + {n} days into {out}")
    try:
        result = generate(preset, seed, out, start=start_d, days=days, progress=True)
    except GenerateError as exc:
        raise click.ClickException(str(exc)) from exc

    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.out}  ({result.start} .. {result.end})")
    table.add_column("source")
    table.add_column("rows", justify="right")
    for source, rows in result.rows.items():
        table.add_row(source, f"{rows:,}")
    Console().print(table)
    click.echo(
        f"{len(result.files):,} files, {result.bytes_written / 1e6:,.1f} MB "
        f"in {result.seconds:.1f} s"
    )
