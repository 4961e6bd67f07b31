"""Source mappings: one YAML file per source says where its files are, how to read them and
how every canonical field is obtained. Reference: docs/ingestion.md and docs/contracts.md.

``load_mapping(path)`` reads and validates one file into a ``SourceMapping``;
every error is a ``MappingError`` whose message starts with the mapping file.

Each section has a schema (pydantic): ``_MappingSchema`` for the top-level keys,
``_FormatSchema`` for ``format:``, ``_FieldSchema`` for each ``fields.<name>:``. A key's
type and constraints are declared beside the message a user reads when its value does
not fit (``Says``); the checks that read several keys are validators of the schema. A key
a section does not know is refused, naming the keys it allows.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Strict,
    StrictBool,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from pipelines.ingest.canonical import ENTITIES, CanonicalField, fields_of
from pipelines.ingest.sql_expr import ExpressionError, ValidatedExpression, validate_expression

__all__ = [
    "ENTITIES",
    "FieldSpec",
    "FormatSpec",
    "MappingError",
    "SchemaDriftError",
    "SourceMapping",
    "load_mapping",
    "load_mappings",
    "parse_mapping",
]

NAME_RE = re.compile(r"^[a-z0-9_]+$")
FORMAT_TYPES = {
    "csv": ("csv", None),
    "tsv": ("csv", "\t"),
    "txt": ("csv", None),
    "jsonl": ("jsonl", None),
    "ndjson": ("jsonl", None),
    "json": ("jsonl", None),
    "parquet": ("parquet", None),
}
ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8",
    "gb18030": "gb18030",
    "gbk": "gbk",
    "gb2312": "gbk",
}
WHITESPACE = "whitespace"
STRPTIME_RE = re.compile(r"%[-]?[a-zA-Z%]")


class MappingError(ValueError):
    """A mapping cannot be used (or does not fit a delivered file); the message says which
    mapping file, which data file when there is one, and what is wrong."""


class SchemaDriftError(MappingError):
    """A delivered file lacks a source column that the mapping reads."""


@dataclass(frozen=True)
class FormatSpec:
    type: str = "csv"  # csv | jsonl | parquet
    delimiter: str = ","  # any string, or "whitespace"
    quote: str = '"'
    escape: str = '"'
    header: bool = True
    columns: tuple[str, ...] | None = None
    encoding: str = "utf-8"  # utf-8 | gb18030 | gbk
    null_tokens: tuple[str, ...] = ("",)

    @property
    def whitespace(self) -> bool:
        return self.type == "csv" and self.delimiter == WHITESPACE


@dataclass(frozen=True)
class FieldSpec:
    """How one canonical field is obtained: a source column or an expression."""

    name: str
    canonical: CanonicalField
    column: str | None = None
    expr: ValidatedExpression | None = None
    formats: tuple[str, ...] = ()
    values: tuple[tuple[str, str], ...] = ()

    @property
    def source_columns(self) -> tuple[str, ...]:
        if self.column is not None:
            return (self.column,)
        return self.expr.columns if self.expr is not None else ()

    def describe(self) -> str:
        if self.column is not None:
            return f"column {self.column!r}"
        assert self.expr is not None
        return f"expr {self.expr.source}"


@dataclass(frozen=True)
class SourceMapping:
    name: str
    entity: str
    version: str
    files: str
    format: FormatSpec
    timezone: str | None  # of timestamps without an offset; None: the business timezone
    fields: dict[str, FieldSpec]
    path: Path | None = None
    description: str = ""
    unmapped_defaults: tuple[str, ...] = field(default=())
    #: service_events: the source system the rows' customer_ref belongs to (None: the
    #: deployment's member system; pipelines/ingest/deployment.py)
    customer_ref_system: str | None = None

    @property
    def label(self) -> str:
        return str(self.path) if self.path is not None else f"<mapping {self.name}>"

    def with_timezone(self, business_timezone: str) -> SourceMapping:
        """This mapping with its timezone resolved: its own ``timezone`` when it sets one,
        else ``business_timezone`` (the project's setting, CRM_TIMEZONE)."""
        return self if self.timezone else replace(self, timezone=business_timezone)

    @property
    def fingerprint(self) -> str:
        """A digest of what decides the loaded rows (entity, files, format, timezone and
        fields; not the name, path, version or description): recorded per loaded file in
        raw.load_log, so that a mapping edited without a new ``version`` is noticed."""
        fields = [
            (f.name, f.column, f.expr.source if f.expr else None, f.formats, f.values)
            for f in sorted(self.fields.values(), key=lambda spec: spec.name)
        ]
        text = repr((self.entity, self.files, self.format, self.timezone, fields))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]

    @property
    def source_columns(self) -> tuple[str, ...]:
        """Every source column the mapping reads (in order of first use)."""
        seen: dict[str, None] = {}
        for spec in self.fields.values():
            for col in spec.source_columns:
                seen.setdefault(col, None)
        return tuple(seen)


# Fields with a default: not required to be mapped even when the contract marks them so.
DEFAULTED = {
    ("orders", "line_no"),
    ("orders", "discount_amount"),
    ("orders", "refunded_amount"),
    ("orders", "currency"),
    ("orders", "source_system"),
    ("service_events", "event_id"),
}


def load_mapping(path: str | Path) -> SourceMapping:
    """Read and validate one mapping YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise MappingError(f"{path}: cannot read the mapping file ({exc})") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise MappingError(f"{path}: not valid YAML ({exc})") from exc
    return parse_mapping(data, path=path)


def load_mappings(folder: str | Path) -> list[SourceMapping]:
    """Every ``*.yaml``/``*.yml`` mapping in a folder, sorted by file name; names are unique."""
    folder = Path(folder)
    found: dict[str, SourceMapping] = {}
    for p in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
        if p.name.startswith((".", "_")):
            continue
        m = load_mapping(p)
        if m.name in found:
            raise MappingError(f"{p}: mapping name {m.name!r} is also used by {found[m.name].path}")
        found[m.name] = m
    return list(found.values())


def parse_mapping(data: Any, *, path: Path | None = None) -> SourceMapping:
    """Validate an already-parsed mapping document (a dict) against the schema of each
    section (``_MappingSchema``, ``_FormatSchema``, ``_FieldSchema``)."""
    where = str(path) if path is not None else "<mapping>"
    if not isinstance(data, dict):
        raise MappingError(f"{where}: the mapping must be a YAML mapping (key: value)")
    if "name" not in data and path is not None:
        data = {**data, "name": path.stem}
    try:
        schema = _MappingSchema.model_validate(data)
    except ValidationError as exc:
        raise MappingError(f"{where}: {_first_problem(exc, data)}") from None
    return schema.to_mapping(path)


# --------------------------------------------------------------------------- the schema
class Says:
    """Schema metadata: what a user reads when a key's value does not validate
    (``{value!r}``: the value as written)."""

    def __init__(self, text: str) -> None:
        self.text = text


def _refuse(reason: str) -> PydanticCustomError:
    """A validation error whose message is ``reason`` as written."""
    return PydanticCustomError("mapping", "{reason}", {"reason": reason})


def _text(value: Any) -> Any:
    return None if value is None else str(value)


def _listed(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


def _lowered(value: Any) -> str:
    return str(value).lower()


def _format_type(value: str) -> str:
    if value not in FORMAT_TYPES:
        raise _refuse(
            f"format.type {value!r} is not supported; use csv, tsv, txt, jsonl or parquet"
        )
    return value


def _encoding(value: Any) -> str:
    name = str(value).lower().replace("_", "-")
    if name not in ENCODINGS:
        raise _refuse(f"format.encoding {name!r} is not supported; use utf-8, gb18030 or gbk")
    codecs.lookup(ENCODINGS[name])
    return ENCODINGS[name]


def _short_delimiter(value: str) -> str:
    if value != WHITESPACE and len(value.encode("utf-8")) > 4:
        raise _refuse("format.delimiter may be at most 4 bytes (or 'whitespace')")
    return value


def _distinct(columns: list[str] | None) -> list[str] | None:
    if columns is not None and len(set(columns)) != len(columns):
        raise _refuse("format.columns has duplicate names")
    return columns


def _iana(value: str | None) -> str | None:
    if value is not None:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
            raise ValueError(value) from exc
    return value


def _inside_delivery_folder(files: str | None) -> str | None:
    if files is None:
        return None
    if files.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", files):
        raise _refuse(
            f"files must be a glob inside the delivery folder, not an absolute path ({files!r})"
        )
    if ".." in re.split(r"[/\\]", files):
        raise _refuse(f"files may not leave the delivery folder ('..' in {files!r})")
    return files


def _expression(value: Any) -> ValidatedExpression | None:
    if value is None:
        return None
    text = str(value)
    try:
        return validate_expression(text)
    except ExpressionError as exc:
        raise _refuse(f"expression {text!r} refused: {exc}") from None


def _directives(formats: list[str]) -> list[str]:
    for f in formats:
        if not STRPTIME_RE.search(f):
            raise _refuse(f"format {f!r} has no % directive (e.g. '%Y-%m-%d %H:%M:%S')")
    return formats


def _stripped_system(value: str | None) -> str | None:
    if value is not None and not value.strip():
        raise ValueError("blank")
    return None if value is None else value.strip()


Name = Annotated[str, StringConstraints(strict=True, min_length=1)]
OneChar = Annotated[str, StringConstraints(strict=True, max_length=1)]
COLUMN_NAMES = (
    "format.columns must be a list of column names, got {value!r} "
    "(quote names YAML reads as booleans or numbers: 'no', 'yes', 'on', '1')"
)
SCHEMA_CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=True, regex_engine="python-re")


class _FormatSchema(BaseModel):
    """``format:``: how the delivered files are read (a bare string is the type)."""

    model_config = SCHEMA_CONFIG

    type: Annotated[str, BeforeValidator(_lowered), AfterValidator(_format_type)] = "csv"
    delimiter: Annotated[
        Name,
        AfterValidator(_short_delimiter),
        Says("format.delimiter must be a non-empty string (or 'whitespace')"),
    ] = ","  # unset: the type's (tab for tsv), else ','
    quote: Annotated[OneChar | None, Says("format.quote must be one character or empty")] = '"'
    escape: Annotated[OneChar | None, Says("format.escape must be one character or empty")] = (
        None  # unset: the quote
    )
    header: Annotated[StrictBool, Says("format.header must be true or false")] = True
    columns: Annotated[list[Name] | None, AfterValidator(_distinct), Says(COLUMN_NAMES)] = None
    encoding: Annotated[str, BeforeValidator(_encoding)] = "utf-8"
    null_tokens: Annotated[
        list[Annotated[str, Strict()]],
        BeforeValidator(_listed),
        Says("format.null_tokens must be a list of strings"),
    ] = [""]

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, raw: Any) -> Any:
        if not raw:
            return {}
        if isinstance(raw, str):
            return {"type": raw}
        if not isinstance(raw, dict):
            raise _refuse("format must be a mapping (type, delimiter, encoding, ...)")
        return raw

    @model_validator(mode="after")
    def _parquet_is_binary(self) -> _FormatSchema:
        if FORMAT_TYPES[self.type][0] == "parquet" and self.encoding != "utf-8":
            raise _refuse("format.encoding does not apply to parquet")
        return self

    def to_spec(self) -> FormatSpec:
        base, implied_delimiter = FORMAT_TYPES[self.type]
        escape = self.escape if "escape" in self.model_fields_set else self.quote
        delimiter = self.delimiter
        if "delimiter" not in self.model_fields_set:
            delimiter = implied_delimiter or ","
        return FormatSpec(
            type=base,
            delimiter=delimiter,
            quote=self.quote or "",
            escape=escape or "",
            header=self.header,
            columns=None if self.columns is None else tuple(self.columns),
            encoding=self.encoding,
            null_tokens=tuple(self.null_tokens),
        )


class _FieldSchema(BaseModel):
    """``fields.<name>:``: a source column (a bare string is one) or an expression."""

    model_config = SCHEMA_CONFIG

    column: Annotated[Name | None, Says("column must be a non-empty string")] = None
    expr: Annotated[ValidatedExpression | None, BeforeValidator(_expression)] = None
    formats: Annotated[
        list[Name],
        BeforeValidator(_listed),
        AfterValidator(_directives),
        Says("formats must be a list of strptime formats"),
    ] = []
    values: Annotated[
        dict[Any, Any],
        Strict(),
        Says("values must be a mapping of source value -> canonical value"),
    ] = {}

    @model_validator(mode="before")
    @classmethod
    def _shape(cls, spec: Any) -> Any:
        if isinstance(spec, str):
            return {"column": spec}
        if isinstance(spec, bool | int | float):
            raise _refuse(
                f"{spec!r} is not a column name; quote names YAML reads as booleans or "
                "numbers ('no', 'yes', 'on', '1')"
            )
        if not isinstance(spec, dict):
            raise _refuse("give a source column name, or {column: ...} / {expr: ...}")
        if set(spec) <= set(cls.model_fields) and (spec.get("column") is None) == (
            spec.get("expr") is None
        ):  # unknown keys are told first
            raise _refuse("give exactly one of column or expr")
        return spec

    @property
    def source_columns(self) -> tuple[str, ...]:
        if self.column is not None:
            return (self.column,)
        return self.expr.columns if self.expr is not None else ()

    def to_spec(self, name: str, canon: CanonicalField) -> FieldSpec:
        return FieldSpec(
            name=name,
            canonical=canon,
            column=self.column,
            expr=self.expr,
            formats=tuple(self.formats),
            values=tuple((str(k), "" if v is None else str(v)) for k, v in self.values.items()),
        )


class _MappingSchema(BaseModel):
    """A mapping file: its top-level keys (``format`` and ``fields`` have their own schema)."""

    model_config = SCHEMA_CONFIG

    name: Annotated[
        str,
        StringConstraints(strict=True, pattern=NAME_RE.pattern),
        Says("name {value!r} must match [a-z0-9_]+ (it is the landing folder name)"),
    ]
    entity: Annotated[
        Literal[tuple(ENTITIES)],  # type: ignore[valid-type]
        Says(f"unknown entity {{value!r}}; use one of {sorted(ENTITIES)}"),
    ]
    version: Annotated[str, BeforeValidator(str)] = "1"
    # None: the business timezone (CRM_TIMEZONE)
    timezone: Annotated[
        str | None,
        BeforeValidator(_text),
        AfterValidator(_iana),
        Says(
            "timezone {value!r} is not an IANA timezone (e.g. Asia/Shanghai); leave it "
            "out to use the business timezone (CRM_TIMEZONE)"
        ),
    ] = None
    format: _FormatSchema = _FormatSchema()
    files: Annotated[
        Annotated[str, Strict()] | None,
        BeforeValidator(lambda v: v or None),
        AfterValidator(_inside_delivery_folder),
        Says("files must be a glob string such as '*.csv'"),
    ] = None  # None: the format's default glob
    fields: Annotated[
        dict[Any, _FieldSchema], Says("fields: missing; map every required canonical field")
    ]
    description: Annotated[str, BeforeValidator(str)] = ""
    customer_ref_system: Annotated[
        Annotated[str, Strict()] | None,
        AfterValidator(_stripped_system),
        Says("customer_ref_system must be a source system name, e.g. crm"),
    ] = None

    @field_validator("fields", mode="before")
    @classmethod
    def _canonical_names(cls, fields: Any, info: ValidationInfo) -> Any:
        """Every field named is a canonical field of the entity; formats only on its time
        fields."""
        if not isinstance(fields, dict) or not fields:
            raise _refuse("fields: missing; map every required canonical field")
        entity = info.data.get("entity")
        if entity is None:  # refused already
            return fields
        canon = fields_of(entity)
        for name, spec in fields.items():
            if name not in canon:
                raise _refuse(
                    f"fields.{name}: unknown canonical field for {entity}; use one of {list(canon)}"
                )
            try:
                checked = _FieldSchema.model_validate(spec)
            except ValidationError:
                break  # the fields are told in order: this one's own problem comes first
            if checked.formats and canon[name].kind not in ("timestamp", "date"):
                raise _refuse(f"fields.{name}: formats only apply to timestamp and date fields")
        return fields

    @field_validator("fields")
    @classmethod
    def _fit_the_entity(cls, fields: dict, info: ValidationInfo) -> dict:
        """Every required field mapped, every column read declared (when the format lists
        the columns)."""
        entity, fmt = info.data.get("entity"), info.data.get("format")
        if entity is None:
            return fields
        canon = fields_of(entity)
        missing = [
            f.name
            for f in canon.values()
            if f.required and f.name not in fields and (entity, f.name) not in DEFAULTED
        ]
        if missing:
            raise _refuse(
                f"required canonical field(s) not mapped for {entity}: {', '.join(missing)}"
            )
        if fmt is not None and fmt.columns is not None:
            read = [c for spec in fields.values() for c in spec.source_columns]
            unknown = [c for c in read if c not in fmt.columns]
            if unknown:
                raise _refuse(f"fields read column(s) {unknown} not in format.columns")
        return fields

    @field_validator("customer_ref_system", mode="before")
    @classmethod
    def _for_service_events(cls, system: Any, info: ValidationInfo) -> Any:
        if system is not None and info.data.get("entity", "service_events") != "service_events":
            raise _refuse(
                "customer_ref_system applies to service_events mappings only (customers and "
                "orders name the system of each row in fields.source_system)"
            )
        return system

    def to_mapping(self, path: Path | None) -> SourceMapping:
        fmt = self.format.to_spec()
        canon = fields_of(self.entity)
        fields = {name: spec.to_spec(name, canon[name]) for name, spec in self.fields.items()}
        return SourceMapping(
            name=self.name,
            entity=self.entity,
            version=self.version,
            files=self.files or _default_glob(fmt),
            format=fmt,
            timezone=self.timezone,
            fields=fields,
            path=path,
            description=self.description,
            unmapped_defaults=tuple(
                n for (e, n) in sorted(DEFAULTED) if e == self.entity and n not in fields
            ),
            customer_ref_system=self.customer_ref_system,
        )


def _default_glob(fmt: FormatSpec) -> str:
    return {"csv": "*", "jsonl": "*.json*", "parquet": "*.parquet"}[fmt.type]


# --------------------------------------------------------------------------- errors
SECTIONS: dict[str, type[BaseModel]] = {"format": _FormatSchema, "fields": _FieldSchema}


def _first_problem(exc: ValidationError, data: dict) -> str:
    """The first problem of a document, as today's users read it: the keys a section does
    not know (``unknown key(s) [...]; allowed: [...]``) before anything else in it, then
    the reason the schema gives for the key (``Says``), else the validator's own reason."""
    errors = exc.errors(include_url=False)
    top_unknown = [e for e in errors if e["type"] == "extra_forbidden" and len(e["loc"]) == 1]
    first = top_unknown[0] if top_unknown else errors[0]
    schema, prefix, rest = _section(first["loc"])
    unknown = [
        e["loc"][-1]
        for e in errors
        if e["type"] == "extra_forbidden" and _section(e["loc"])[1] == prefix
    ]
    lead = f"{prefix}: " if prefix else ""
    if unknown:
        allowed = sorted(schema.model_fields)
        return f"{lead}unknown key(s) {sorted(map(str, unknown))}; allowed: {allowed}"
    if first["type"] == "mapping":
        reason = first["ctx"]["reason"]
        return reason if schema is _FormatSchema or not prefix else lead + reason
    says = _says(schema, rest)
    if says is not None:
        value = None if first["type"] == "missing" else _as_written(data, first, rest)
        return (lead if schema is _FieldSchema else "") + says.text.format(value=value)
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}"


def _section(loc: tuple) -> tuple[type[BaseModel], str, tuple]:
    """(the schema of the section holding ``loc``, its name in messages, the rest of loc)."""
    if loc[:1] == ("format",) and len(loc) > 1:
        return _FormatSchema, "format", loc[1:]
    if loc[:1] == ("format",):
        return _FormatSchema, "format", ()
    if loc[:1] == ("fields",) and len(loc) > 1:
        return _FieldSchema, f"fields.{loc[1]}", loc[2:]
    return _MappingSchema, "", loc


def _as_written(data: dict, error: dict, rest: tuple) -> Any:
    """The value of the key an error is about, as the document has it (all of a list, not
    the one item that failed); else the value the schema saw."""
    value: Any = data
    for part in error["loc"][: len(error["loc"]) - len(rest) + 1]:
        if not isinstance(value, dict) or part not in value:
            return error["input"]
        value = value[part]
    return value


def _says(schema: type[BaseModel], rest: tuple) -> Says | None:
    if not rest or rest[0] not in schema.model_fields:
        return None
    return next((m for m in schema.model_fields[rest[0]].metadata if isinstance(m, Says)), None)
