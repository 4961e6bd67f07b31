"""Expectation suites as data: `expectations/<suite>.json`, GX 1.x suite JSON plus our meta.

Suite meta (all optional but `table`):
    table           "schema.table" the suite validates
    asset_key       the Dagster asset the suite guards, e.g. ["raw", "orders"] or ["fct_orders"]
    sample_columns  columns shown for offending rows of a failed null check (default: rowid)
    entities        canonical entities whose sources the table is built from, e.g.
                    ["service_events"]: when no source mapping of any of them is configured
                    (CRM_MAPPINGS_DIR), the suite is skipped and reported as skipped

Expectation meta:
    check     a stable, readable name ("order_id_unique"); default: type + column
    severity  blocking | target  (blocking: integrity, stops publication; target: recorded)
    column    the column an `unexpected_rows_expectation` is about (key uniqueness), recorded
              in quality.dq_results like the column of a column expectation
    entities  as the suite's: the expectation is skipped when none of them has a mapping

Run-time values: a kwarg `{"$PARAMETER": "<name>"}` (GX suite parameter) or, inside SQL text
(`unexpected_rows_query`), a `{name}` token; names: `as_of` ('YYYY-MM-DD'), `as_of_end_utc`
(the first instant after D in the business timezone, as a UTC timestamp literal), and
`window_start` (D − 364, the 365-day revenue window of metrics.md).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from pipelines.ingest.canonical import ENTITIES
from pipelines.lib.settings import EXPECTATIONS_DIR

SEVERITIES = ("blocking", "target")


class SuiteError(ValueError):
    """A suite file is malformed; the message names the file and the fix."""


@dataclass(frozen=True)
class ExpectationSpec:
    type: str
    kwargs: dict[str, Any]
    check: str
    severity: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def entities(self) -> tuple[str, ...]:
        """The entities the expectation needs a source of (empty: none in particular)."""
        return tuple(self.meta.get("entities") or ())

    @property
    def column(self) -> str | None:
        if "column" in self.kwargs:
            return str(self.kwargs["column"])
        if "column_list" in self.kwargs:
            return ",".join(self.kwargs["column_list"])
        if "column" in self.meta:  # an unexpected-rows query about one column (key uniqueness)
            return str(self.meta["column"])
        return None


@dataclass(frozen=True)
class SuiteSpec:
    name: str
    table: str
    asset_key: tuple[str, ...]
    sample_columns: tuple[str, ...]
    expectations: tuple[ExpectationSpec, ...]
    path: Path
    #: the entities whose sources the table is built from (meta.entities; empty: any)
    entities: tuple[str, ...] = ()

    @property
    def schema(self) -> str:
        return self.table.split(".", 1)[0]

    @property
    def table_name(self) -> str:
        return self.table.split(".", 1)[1]


def runtime_parameters(as_of: date, timezone: str = "Asia/Shanghai") -> dict[str, str]:
    """The run-time values suites may refer to (see the module docstring)."""
    end_local = datetime.combine(as_of + timedelta(days=1), time(0), tzinfo=ZoneInfo(timezone))
    end_utc = end_local.astimezone(ZoneInfo("UTC")).replace(tzinfo=None)
    return {
        "as_of": as_of.isoformat(),
        "as_of_end_utc": end_utc.isoformat(sep=" "),
        "window_start": (as_of - timedelta(days=364)).isoformat(),
    }


def render(value: Any, params: dict[str, str]) -> Any:
    """Fill `{name}` tokens in the SQL text of a suite (other strings pass unchanged)."""
    if isinstance(value, str):
        for name, text in params.items():
            value = value.replace("{" + name + "}", text)
        return value
    if isinstance(value, list):
        return [render(item, params) for item in value]
    if isinstance(value, dict):
        return {key: render(item, params) for key, item in value.items()}
    return value


def _expectation(raw: dict[str, Any], path: Path, index: int) -> ExpectationSpec:
    where = f"{path.name}: expectation #{index + 1}"
    if "type" not in raw or "kwargs" not in raw:
        raise SuiteError(f"{where} needs 'type' and 'kwargs' (GX 1.x suite JSON)")
    meta = dict(raw.get("meta") or {})
    severity = meta.get("severity")
    if severity not in SEVERITIES:
        raise SuiteError(f"{where} ({raw['type']}): meta.severity must be one of {SEVERITIES}")
    kwargs = dict(raw["kwargs"])
    column = kwargs.get("column") or "_".join(kwargs.get("column_list", []))
    check = meta.get("check") or "_".join(p for p in (raw["type"], column) if p)
    _entities(meta.get("entities"), f"{where}: meta.entities")
    return ExpectationSpec(raw["type"], kwargs, str(check), severity, meta)


def load_suite(name: str, directory: Path = EXPECTATIONS_DIR) -> SuiteSpec:
    path = directory / f"{name}.json"
    if not path.exists():
        known = ", ".join(suite_names(directory)) or "none"
        raise SuiteError(f"no suite {name!r}: {path} does not exist (known suites: {known})")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc
    meta = raw.get("meta") or {}
    table = meta.get("table", "")
    if table.count(".") != 1:
        raise SuiteError(f"{path}: meta.table must be 'schema.table', got {table!r}")
    expectations = tuple(
        _expectation(item, path, index) for index, item in enumerate(raw.get("expectations", []))
    )
    checks = [spec.check for spec in expectations]
    duplicated = sorted({c for c in checks if checks.count(c) > 1})
    if duplicated:
        raise SuiteError(f"{path}: meta.check names must be unique, repeated: {duplicated}")
    return SuiteSpec(
        name=raw.get("name") or name,
        table=table,
        asset_key=tuple(meta.get("asset_key") or [table.split(".", 1)[1]]),
        sample_columns=tuple(meta.get("sample_columns") or ["rowid"]),
        expectations=expectations,
        path=path,
        entities=_entities(meta.get("entities"), f"{path}: meta.entities"),
    )


def _entities(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not value or any(v not in ENTITIES for v in value):
        raise SuiteError(f"{where} must be a non-empty list of {', '.join(ENTITIES)}")
    return tuple(value)


def suite_names(directory: Path = EXPECTATIONS_DIR) -> list[str]:
    return sorted(path.stem for path in directory.glob("*.json"))


def load_suites(directory: Path = EXPECTATIONS_DIR) -> list[SuiteSpec]:
    return [load_suite(name, directory) for name in suite_names(directory)]
