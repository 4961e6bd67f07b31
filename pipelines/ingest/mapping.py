"""Source mappings: one YAML file per source says where its files are, how to read them and
how every canonical field is obtained. Reference: docs/ingestion.md and docs/contracts.md.

``load_mapping(path)`` reads and validates one file into a ``SourceMapping``;
every error is a ``MappingError`` whose message starts with the mapping file.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from pipelines.ingest.canonical import ENTITIES, CanonicalField, fields_of

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
from pipelines.ingest.sql_expr import ExpressionError, ValidatedExpression, validate_expression

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
TOP_KEYS = {
    "name",
    "entity",
    "version",
    "files",
    "format",
    "timezone",
    "fields",
    "description",
    "customer_ref_system",
}
FORMAT_KEYS = {
    "type",
    "delimiter",
    "quote",
    "escape",
    "header",
    "columns",
    "encoding",
    "null_tokens",
}
FIELD_KEYS = {"column", "expr", "formats", "values"}
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
    """Validate an already-parsed mapping document (a dict)."""
    where = str(path) if path is not None else "<mapping>"

    def err(msg: str) -> MappingError:
        return MappingError(f"{where}: {msg}")

    if not isinstance(data, dict):
        raise err("the mapping must be a YAML mapping (key: value)")
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise err(f"unknown key(s) {sorted(unknown)}; allowed: {sorted(TOP_KEYS)}")
    name = data.get("name", path.stem if path is not None else None)
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise err(f"name {name!r} must match [a-z0-9_]+ (it is the landing folder name)")
    entity = data.get("entity")
    if entity not in ENTITIES:
        raise err(f"unknown entity {entity!r}; use one of {sorted(ENTITIES)}")
    version = str(data.get("version", "1"))
    timezone = data.get("timezone")  # None: the business timezone (CRM_TIMEZONE)
    if timezone is not None:
        try:
            ZoneInfo(str(timezone))
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise err(
                f"timezone {timezone!r} is not an IANA timezone (e.g. Asia/Shanghai); leave it "
                "out to use the business timezone (CRM_TIMEZONE)"
            ) from exc
    fmt = _parse_format(data.get("format") or {}, err)
    files = data.get("files") or _default_glob(fmt)
    if not isinstance(files, str):
        raise err("files must be a glob string such as '*.csv'")
    if files.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", files):
        raise err(
            f"files must be a glob inside the delivery folder, not an absolute path ({files!r})"
        )
    if ".." in re.split(r"[/\\]", files):
        raise err(f"files may not leave the delivery folder ('..' in {files!r})")
    raw_fields = data.get("fields")
    if not isinstance(raw_fields, dict) or not raw_fields:
        raise err("fields: missing; map every required canonical field")
    canon = fields_of(entity)
    fields: dict[str, FieldSpec] = {}
    for fname, spec in raw_fields.items():
        if fname not in canon:
            raise err(
                f"fields.{fname}: unknown canonical field for {entity}; use one of {list(canon)}"
            )
        fields[fname] = _parse_field(fname, canon[fname], spec, err)
    missing = [
        f.name
        for f in canon.values()
        if f.required and f.name not in fields and (entity, f.name) not in DEFAULTED
    ]
    if missing:
        raise err(f"required canonical field(s) not mapped for {entity}: {', '.join(missing)}")
    if fmt.columns is not None:
        unknown_cols = [c for spec in fields.values() for c in spec.source_columns]
        unknown_cols = [c for c in unknown_cols if c not in fmt.columns]
        if unknown_cols:
            raise err(f"fields read column(s) {unknown_cols} not in format.columns")
    defaults = tuple(n for (e, n) in sorted(DEFAULTED) if e == entity and n not in fields)
    ref_system = data.get("customer_ref_system")
    if ref_system is not None:
        if entity != "service_events":
            raise err(
                "customer_ref_system applies to service_events mappings only (customers and "
                "orders name the system of each row in fields.source_system)"
            )
        if not isinstance(ref_system, str) or not ref_system.strip():
            raise err("customer_ref_system must be a source system name, e.g. crm")
        ref_system = ref_system.strip()
    return SourceMapping(
        name=name,
        entity=entity,
        version=version,
        files=files,
        format=fmt,
        timezone=None if timezone is None else str(timezone),
        fields=fields,
        path=path,
        description=str(data.get("description", "")),
        unmapped_defaults=defaults,
        customer_ref_system=ref_system,
    )


def _default_glob(fmt: FormatSpec) -> str:
    return {"csv": "*", "jsonl": "*.json*", "parquet": "*.parquet"}[fmt.type]


def _parse_format(raw: Any, err) -> FormatSpec:
    if isinstance(raw, str):
        raw = {"type": raw}
    if not isinstance(raw, dict):
        raise err("format must be a mapping (type, delimiter, encoding, ...)")
    unknown = set(raw) - FORMAT_KEYS
    if unknown:
        raise err(f"format: unknown key(s) {sorted(unknown)}; allowed: {sorted(FORMAT_KEYS)}")
    ftype = str(raw.get("type", "csv")).lower()
    if ftype not in FORMAT_TYPES:
        raise err(f"format.type {ftype!r} is not supported; use csv, tsv, txt, jsonl or parquet")
    base, implied_delim = FORMAT_TYPES[ftype]
    delimiter = raw.get("delimiter", implied_delim or ",")
    if not isinstance(delimiter, str) or not delimiter:
        raise err("format.delimiter must be a non-empty string (or 'whitespace')")
    if delimiter != WHITESPACE and len(delimiter.encode("utf-8")) > 4:
        raise err("format.delimiter may be at most 4 bytes (or 'whitespace')")
    quote = raw.get("quote", '"')
    escape = raw.get("escape", quote)
    for key, value in (("quote", quote), ("escape", escape)):
        if value is None:
            continue
        if not isinstance(value, str) or len(value) > 1:
            raise err(f"format.{key} must be one character or empty")
    header = raw.get("header", True)
    if not isinstance(header, bool):
        raise err("format.header must be true or false")
    columns = raw.get("columns")
    if columns is not None:
        if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
            raise err(
                f"format.columns must be a list of column names, got {columns!r} "
                "(quote names YAML reads as booleans or numbers: 'no', 'yes', 'on', '1')"
            )
        if len(set(columns)) != len(columns):
            raise err("format.columns has duplicate names")
        columns = tuple(columns)
    encoding_raw = str(raw.get("encoding", "utf-8")).lower().replace("_", "-")
    if encoding_raw not in ENCODINGS:
        raise err(f"format.encoding {encoding_raw!r} is not supported; use utf-8, gb18030 or gbk")
    encoding = ENCODINGS[encoding_raw]
    codecs.lookup(encoding)
    if base != "csv" and encoding != "utf-8" and base == "parquet":
        raise err("format.encoding does not apply to parquet")
    null_tokens = raw.get("null_tokens", [""])
    if isinstance(null_tokens, str):
        null_tokens = [null_tokens]
    if not isinstance(null_tokens, list) or not all(isinstance(t, str) for t in null_tokens):
        raise err("format.null_tokens must be a list of strings")
    return FormatSpec(
        type=base,
        delimiter=delimiter,
        quote=quote or "",
        escape=escape or "",
        header=header,
        columns=columns,
        encoding=encoding,
        null_tokens=tuple(null_tokens),
    )


def _parse_field(fname: str, canon: CanonicalField, spec: Any, err) -> FieldSpec:
    where = f"fields.{fname}"
    if isinstance(spec, str):
        spec = {"column": spec}
    if isinstance(spec, bool | int | float):
        raise err(
            f"{where}: {spec!r} is not a column name; quote names YAML reads as booleans or "
            "numbers ('no', 'yes', 'on', '1')"
        )
    if not isinstance(spec, dict):
        raise err(f"{where}: give a source column name, or {{column: ...}} / {{expr: ...}}")
    unknown = set(spec) - FIELD_KEYS
    if unknown:
        raise err(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(FIELD_KEYS)}")
    column, expr_text = spec.get("column"), spec.get("expr")
    if (column is None) == (expr_text is None):
        raise err(f"{where}: give exactly one of column or expr")
    if column is not None and (not isinstance(column, str) or not column):
        raise err(f"{where}: column must be a non-empty string")
    expr = None
    if expr_text is not None:
        if not isinstance(expr_text, str):
            expr_text = str(expr_text)
        try:
            expr = validate_expression(expr_text)
        except ExpressionError as exc:
            raise err(f"{where}: expression {expr_text!r} refused: {exc}") from exc
    formats = spec.get("formats", [])
    if isinstance(formats, str):
        formats = [formats]
    if not isinstance(formats, list) or not all(isinstance(f, str) and f for f in formats):
        raise err(f"{where}: formats must be a list of strptime formats")
    if formats and canon.kind not in ("timestamp", "date"):
        raise err(f"{where}: formats only apply to timestamp and date fields")
    for f in formats:
        if not STRPTIME_RE.search(f):
            raise err(f"{where}: format {f!r} has no % directive (e.g. '%Y-%m-%d %H:%M:%S')")
    values = spec.get("values", {})
    if not isinstance(values, dict):
        raise err(f"{where}: values must be a mapping of source value -> canonical value")
    pairs = tuple((str(k), "" if v is None else str(v)) for k, v in values.items())
    return FieldSpec(
        name=fname,
        canonical=canon,
        column=column,
        expr=expr,
        formats=tuple(formats),
        values=pairs,
    )
