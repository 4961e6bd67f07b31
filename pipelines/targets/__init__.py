"""The managers' SMART targets: a CSV file outside the dbt project (setting
CRM_TARGETS_FILE; the demo's copy is pipelines/targets/demo/kpi_targets.csv), validated row
by row, loaded into the warehouse table `targets.kpi_targets` before each dbt build.

A row is a `Target` (pydantic): every rule is declared on its field, so the errors of a
file come out all at once, one line per bad row naming the file, the line, the column and
the reason (README, section "Targets"; `crm targets check FILE`). What a target may name
comes from the dbt project: the KPIs of seed kpi_definitions, the segments of
fct_kpi_monthly (RFM segment names from seed rfm_segment_map).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pipelines.lib.duck import replace_table
from pipelines.lib.settings import DBT_PROJECT_DIR

#: The columns of the file, in order (those of the dbt source targets.kpi_targets).
COLUMNS = (
    "target_id",
    "kpi",
    "segment",
    "baseline_period",
    "target_value",
    "direction",
    "start_date",
    "due_date",
    "owner",
    "description_en",
    "description_zh",
)
#: Where the pipeline loads the validated targets (the dbt source `targets.kpi_targets`).
SCHEMA = "targets"
TABLE = "kpi_targets"
#: The warehouse table's columns and types (the dbt macro create_targets_placeholder
#: creates the same, empty, for a bare `dbt build`).
TABLE_COLUMNS: dict[str, str] = {
    **{name: "varchar" for name in COLUMNS},
    "start_date": "date",
    "due_date": "date",
}

#: Segments of fct_kpi_monthly other than RFM segments and channels (docs/warehouse.md,
#: "KPI segments").
FIXED_SEGMENTS = {
    "all": ("all",),
    "vip": ("vip",),
    "lifecycle stage": ("prospect", "new", "active", "dormant", "churned"),
    "quadrant": (
        "high_value_high_potential",
        "high_value_low_potential",
        "low_value_high_potential",
        "low_value_low_potential",
    ),
}
#: A channel segment is the channel's code as delivered (online_store, tmall, ...).
CHANNEL_CODE = re.compile(r"^[a-z][a-z0-9_]*$")
PERIOD = re.compile(r"^(\d{4})-(\d{2})$")
ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NUMBER = re.compile(r"^[+-]?\d+(\.\d+)?$")
RELATIVE = re.compile(r"^([+-])(\d+(\.\d+)?)%$")


class TargetsError(ValueError):
    """The targets file cannot be used; `errors` holds one line per bad row (or file)."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


@dataclass(frozen=True)
class RowError:
    """What is wrong with one line of the file: (column, reason) pairs."""

    path: Path
    line: int
    #: (column, reason); column "" for a problem of the whole line or file
    problems: tuple[tuple[str, str], ...]

    def __str__(self) -> str:
        reasons = "; ".join(
            f"column {column}: {reason}" if column else reason for column, reason in self.problems
        )
        where = f"{self.path}, line {self.line}" if self.line else str(self.path)
        return f"{where}: {reasons}"


@dataclass(frozen=True)
class Catalogue:
    """What a target may name: KPI -> unit, and the segments by kind."""

    kpi_units: dict[str, str]
    segments: dict[str, tuple[str, ...]]

    @classmethod
    def from_dbt_project(cls, project: Path = DBT_PROJECT_DIR) -> Catalogue:
        with (project / "seeds" / "kpi_definitions.csv").open(encoding="utf-8") as handle:
            units = {row["kpi"].strip(): row["unit"].strip() for row in csv.DictReader(handle)}
        with (project / "seeds" / "rfm_segment_map.csv").open(encoding="utf-8") as handle:
            rfm = tuple(row["segment"].strip() for row in csv.DictReader(handle))
        return cls(kpi_units=units, segments={**FIXED_SEGMENTS, "RFM segment": rfm})

    def is_segment(self, value: str) -> bool:
        known = any(value in names for names in self.segments.values())
        return known or bool(CHANNEL_CODE.match(value))

    def describe_segments(self) -> str:
        kinds = [f"{kind}: {', '.join(names)}" for kind, names in self.segments.items()]
        return "; ".join(kinds) + "; or a channel code in lower case (online_store)"


def _problem(message: str, **values: Any) -> PydanticCustomError:
    """An error whose message is `message` formatted with `values` (str.format)."""
    return PydanticCustomError("target", message.format(**values))


def _text(value: str) -> str:
    if not value:
        raise _problem("is empty")
    return value


def _iso_date(value: Any) -> Any:
    text = value.strip() if isinstance(value, str) else value
    if not (isinstance(text, str) and ISO_DATE.match(text)):
        raise _problem("{value!r} is not a date YYYY-MM-DD", value=value)
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise _problem("{value!r} is not a date of the calendar", value=value) from None


IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class Target(BaseModel):
    """One SMART target (metrics.md, "SMART targets and the KPI review").

    Validate with ``Target.model_validate(row, context=catalogue)``; the fields are checked
    in order, so a rule may read an earlier field (direction reads target_value)."""

    model_config = ConfigDict(str_strip_whitespace=True, frozen=True, extra="forbid")

    target_id: str
    kpi: str
    segment: str
    baseline_period: str
    target_value: str
    direction: str
    start_date: IsoDate
    due_date: IsoDate
    owner: str
    description_en: str
    description_zh: str

    @field_validator("target_id")
    @classmethod
    def _target_id(cls, value: str) -> str:
        if any(ch.isspace() for ch in _text(value)):
            raise _problem("{value!r} has a space (use an id such as T12)", value=value)
        return value

    @field_validator("kpi")
    @classmethod
    def _kpi(cls, value: str, info: ValidationInfo) -> str:
        catalogue: Catalogue = info.context
        if _text(value) not in catalogue.kpi_units:
            raise _problem(
                "unknown KPI {value!r} (the KPIs are those of "
                "dbt_project/seeds/kpi_definitions.csv: {known})",
                value=value,
                known=", ".join(catalogue.kpi_units),
            )
        return value

    @field_validator("segment")
    @classmethod
    def _segment(cls, value: str, info: ValidationInfo) -> str:
        catalogue: Catalogue = info.context
        if not catalogue.is_segment(_text(value)):
            raise _problem(
                "{value!r} is not a segment ({known})",
                value=value,
                known=catalogue.describe_segments(),
            )
        return value

    @field_validator("baseline_period")
    @classmethod
    def _baseline_period(cls, value: str) -> str:
        match = PERIOD.match(_text(value))
        if not match or not 1 <= int(match.group(2)) <= 12:
            raise _problem("{value!r} is not a month YYYY-MM (e.g. 2026-06)", value=value)
        return value

    @field_validator("target_value")
    @classmethod
    def _target_value(cls, value: str, info: ValidationInfo) -> str:
        relative = RELATIVE.match(_text(value))
        if relative:
            size = float(relative.group(2))
            if size == 0:
                raise _problem("{value!r} changes nothing (use +N% or -N% with N > 0)", value=value)
            if relative.group(1) == "-" and size > 100:
                raise _problem("{value!r} is a fall of more than 100%", value=value)
            return value
        if not NUMBER.match(value):
            raise _problem(
                "{value!r} is neither a number (0.90) nor a change relative to the "
                "baseline (+15%, -20%)",
                value=value,
            )
        catalogue: Catalogue = info.context
        unit = catalogue.kpi_units.get(info.data.get("kpi", ""))
        if unit == "ratio" and not 0 <= float(value) <= 1:
            raise _problem(
                "{value!r}: {kpi} is a rate, its target a fraction (0.90 for 90%)",
                value=value,
                kpi=info.data["kpi"],
            )
        return value

    @field_validator("direction")
    @classmethod
    def _direction(cls, value: str, info: ValidationInfo) -> str:
        if value not in ("increase", "decrease"):
            raise _problem("{value!r} is neither increase nor decrease", value=value)
        relative = RELATIVE.match(info.data.get("target_value", ""))
        if relative:
            wanted = "increase" if relative.group(1) == "+" else "decrease"
            if value != wanted:
                raise _problem(
                    "{value}, but the target {target} is {article} {wanted}",
                    value=value,
                    target=info.data["target_value"],
                    article="an" if wanted == "increase" else "a",
                    wanted=wanted,
                )
        return value

    @field_validator("due_date")
    @classmethod
    def _due_date(cls, value: date, info: ValidationInfo) -> date:
        start = info.data.get("start_date")
        if start is not None and value <= start:
            raise _problem(
                "{due} is not after start_date {start}", due=value.isoformat(), start=start
            )
        return value

    @field_validator("owner")
    @classmethod
    def _owner(cls, value: str) -> str:
        return _text(value)

    @field_validator("description_en", "description_zh")
    @classmethod
    def _description(cls, value: str, info: ValidationInfo) -> str:
        if not value:
            language = "English" if info.field_name == "description_en" else "Chinese"
            raise _problem("missing description ({language})", language=language)
        return value

    def row(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in COLUMNS)


def _problems(error: ValidationError) -> list[tuple[str, str]]:
    found = []
    for detail in error.errors(include_url=False):
        column = str(detail["loc"][0]) if detail["loc"] else "?"
        found.append((column, detail["msg"]))
    return found


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise TargetsError(
            [RowError(path, line, (("", "not UTF-8 text (save the file as CSV UTF-8)"),))]
        ) from None


def validate_targets(
    path: Path, catalogue: Catalogue | None = None
) -> tuple[list[Target], list[RowError]]:
    """Every target of the file at `path` and every bad row (sorted by line)."""
    path = Path(path)
    if not path.is_file():
        problem = ("", "no such file (setting CRM_TARGETS_FILE)")
        return [], [RowError(path, 0, (problem,))]
    try:
        text = _decode(path)
    except TargetsError as exc:
        return [], exc.errors
    catalogue = catalogue or Catalogue.from_dbt_project()
    reader = csv.reader(io.StringIO(text, newline=""))
    header = [name.strip() for name in next(reader, [])]
    missing = [name for name in COLUMNS if name not in header]
    unknown = [name for name in header if name not in COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        problems = [("header", f"missing {name}") for name in missing]
        problems += [("header", f"unknown column {name!r}") for name in unknown]
        if len(set(header)) != len(header):
            problems.append(("header", "a column appears twice"))
        problems.append(("header", f"expected: {','.join(COLUMNS)}"))
        return [], [RowError(path, 1, tuple(problems))]
    targets: list[Target] = []
    errors: dict[int, list[tuple[str, str]]] = {}
    first_line: dict[str, int] = {}
    previous_end = reader.line_num
    for fields in reader:
        line, previous_end = previous_end + 1, reader.line_num
        if not any(field.strip() for field in fields):
            continue  # blank line
        if len(fields) != len(header):
            errors[line] = [("", f"{len(fields)} fields, the header has {len(header)}")]
            continue
        row = dict(zip(header, fields, strict=True))
        try:
            target = Target.model_validate(row, context=catalogue)
        except ValidationError as exc:
            errors[line] = _problems(exc)
            target = None
        target_id = row["target_id"].strip()
        if target_id in first_line:
            errors.setdefault(line, []).insert(
                0, ("target_id", f"{target_id} is already the id of line {first_line[target_id]}")
            )
        elif target_id:
            first_line[target_id] = line
        if target is not None and line not in errors:
            targets.append(target)
    bad = [RowError(path, line, tuple(problems)) for line, problems in sorted(errors.items())]
    return targets, bad


def read_targets(path: Path, catalogue: Catalogue | None = None) -> list[Target]:
    """The targets of the file at `path`; TargetsError with every bad row when one is bad."""
    targets, errors = validate_targets(path, catalogue)
    if errors:
        raise TargetsError(errors)
    return targets


def load_targets(con: Any, targets: Iterable[Target]) -> int:
    """Replace the rows of `targets.kpi_targets` (the dbt source) by `targets`, in one
    transaction. `con`: a DuckDB connection to the warehouse. Returns rows written."""
    rows = [target.row() for target in targets]
    return replace_table(con, SCHEMA, TABLE, TABLE_COLUMNS, rows)
