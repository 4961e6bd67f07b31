"""The crm command: every subcommand documents itself and rejects bad input clearly."""

import pytest
from click.testing import CliRunner

from pipelines.cli import main


def _subcommands() -> list[str]:
    return sorted(main.commands)


def test_expected_subcommands_exist():
    assert {"generate", "run", "backfill", "check-mapping", "demo"} <= set(_subcommands())


@pytest.mark.parametrize("name", _subcommands())
def test_every_subcommand_has_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: main " + name in result.output or f"Usage: crm {name}" in result.output
    assert len(result.output.splitlines()) > 3


def test_bad_date_is_a_clear_error():
    result = CliRunner().invoke(main, ["run", "--date", "2026-13-45"])
    assert result.exit_code == 2
    assert "'2026-13-45' is not a date in YYYY-MM-DD form" in result.output


def test_backfill_end_before_start_is_refused():
    result = CliRunner().invoke(main, ["backfill", "--start", "2026-05-02", "--end", "2026-05-01"])
    assert result.exit_code == 2
    assert "--end is before --start" in result.output
