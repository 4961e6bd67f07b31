"""The source mappings (docs/contracts.md) as this reader follows them: the canonical fields
of the landing contract, the mapping YAML parsed into ``Mapping``, and the ``expr`` fields
as an explicit table of pandas equivalents (``SUPPORTED_EXPRESSIONS``); any other
expression raises ``UnsupportedExpression`` naming the mapping and the field."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from reference.landing.values import _text

# Canonical fields (landing contract): name -> (kind, required). Kinds: text, timestamp,
# date, integer, decimal:<scale>, boolean.
CANONICAL: dict[str, dict[str, tuple[str, bool]]] = {
    "customers": {
        "source_system": ("text", True),
        "customer_ref": ("text", True),
        "updated_at": ("timestamp", True),
        "registered_at": ("timestamp", False),
        "name": ("text", False),
        "gender": ("text", False),
        "birth_date": ("date", False),
        "phone": ("text", False),
        "email": ("text", False),
        "province": ("text", False),
        "city": ("text", False),
        "address": ("text", False),
        "member_level": ("text", False),
        "marketing_consent": ("boolean", False),
        "unionid": ("text", False),
    },
    "orders": {
        "order_id": ("text", True),
        "line_no": ("integer", False),
        "ordered_at": ("timestamp", True),
        "status": ("text", True),
        "channel": ("text", False),
        "source_system": ("text", False),
        "customer_ref": ("text", False),
        "buyer_name": ("text", False),
        "buyer_phone": ("text", False),
        "buyer_email": ("text", False),
        "product_id": ("text", False),
        "product_name": ("text", False),
        "category": ("text", False),
        "quantity": ("decimal:4", True),
        "unit_price": ("decimal:2", True),
        "discount_amount": ("decimal:2", False),
        "refunded_amount": ("decimal:2", False),
        "currency": ("text", False),
    },
    "service_events": {
        "ticket_id": ("text", True),
        "event_id": ("text", False),
        "event_at": ("timestamp", True),
        "event_type": ("text", True),
        "channel": ("text", False),
        "priority": ("text", False),
        "category": ("text", False),
        "customer_ref": ("text", False),
        "phone": ("text", False),
        "email": ("text", False),
        "social_account_id": ("text", False),
        "agent_id": ("text", False),
        "csat_score": ("integer", False),
        "nps_score": ("integer", False),
    },
    "social_interactions": {
        "interaction_id": ("text", True),
        "occurred_at": ("timestamp", True),
        "platform": ("text", True),
        "account_id": ("text", True),
        "unionid": ("text", False),
        "phone": ("text", False),
        "direction": ("text", True),
        "interaction_type": ("text", True),
        "campaign_id": ("text", False),
        "content": ("text", False),
    },
}

# Phones, e-mails and ids: Unicode-normalised (NFKC) before typing (landing contract).
NFKC_FIELDS: dict[str, frozenset[str]] = {
    "customers": frozenset({"source_system", "customer_ref", "phone", "email", "unionid"}),
    "orders": frozenset(
        {"order_id", "source_system", "customer_ref", "buyer_phone", "buyer_email", "product_id"}
    ),
    "service_events": frozenset(
        {"ticket_id", "event_id", "customer_ref", "phone", "email", "social_account_id", "agent_id"}
    ),  # fmt: skip
    "social_interactions": frozenset(
        {"interaction_id", "account_id", "unionid", "phone", "campaign_id"}
    ),
}

# The event timestamp of each entity: the as-of filter keeps rows whose business date of
# this timestamp is <= D.
EVENT_TIMESTAMP = {
    "customers": "updated_at",
    "orders": "ordered_at",
    "service_events": "event_at",
    "social_interactions": "occurred_at",
}

DEFAULT_GLOB = {"csv": "*", "jsonl": "*.json*", "parquet": "*.parquet"}
FORMAT_ALIASES = {
    "csv": ("csv", None),
    "tsv": ("csv", "\t"),
    "txt": ("csv", None),
    "jsonl": ("jsonl", None),
    "ndjson": ("jsonl", None),
    "json": ("jsonl", None),
    "parquet": ("parquet", None),
}
ENCODINGS = {
    "utf-8": "utf-8-sig",
    "utf8": "utf-8-sig",
    "utf-8-sig": "utf-8-sig",
    "gb18030": "gb18030",
    "gbk": "gbk",
    "gb2312": "gbk",
}
DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class MappingProblem(ValueError):
    """A mapping this reader cannot follow; the message names the mapping file."""


class UnsupportedExpression(MappingProblem):
    """An ``expr`` field that is not in ``SUPPORTED_EXPRESSIONS``."""


@dataclass(frozen=True)
class FieldRule:
    name: str
    column: str | None = None
    expr: str | None = None
    formats: tuple[str, ...] = ()
    values: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Mapping:
    name: str
    entity: str
    files: str
    type: str
    delimiter: str
    quote: str
    escape: str
    header: bool
    columns: tuple[str, ...] | None
    encoding: str
    null_tokens: tuple[str, ...]
    timezone: str | None  # None: the business timezone
    fields: dict[str, FieldRule]
    path: Path | None = None
    #: service_events: the system of customer_ref (None: the member system of the config)
    customer_ref_system: str | None = None


def load_mapping(path: str | Path) -> Mapping:
    """Parse one mapping YAML (the format of docs/contracts.md)."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    return parse_mapping(doc, path=path)


def parse_mapping(doc: dict[str, Any], path: Path | None = None) -> Mapping:
    where = str(path) if path else "<mapping>"
    entity = doc.get("entity")
    if entity not in CANONICAL:
        raise MappingProblem(f"{where}: unknown entity {entity!r}")
    fmt = doc.get("format") or {}
    if isinstance(fmt, str):
        fmt = {"type": fmt}
    ftype, implied = FORMAT_ALIASES[str(fmt.get("type", "csv")).lower()]
    delimiter = fmt.get("delimiter", implied or ",")
    quote = fmt.get("quote", '"') or ""
    escape = fmt.get("escape", quote) or ""
    encoding = str(fmt.get("encoding", "utf-8")).lower().replace("_", "-")
    if encoding not in ENCODINGS:
        raise MappingProblem(f"{where}: encoding {encoding!r} not supported")
    nulls = fmt.get("null_tokens", [""])
    if isinstance(nulls, str):
        nulls = [nulls]
    columns = fmt.get("columns")
    rules: dict[str, FieldRule] = {}
    for name, spec in (doc.get("fields") or {}).items():
        if name not in CANONICAL[entity]:
            raise MappingProblem(f"{where}: fields.{name} is not a canonical {entity} field")
        if isinstance(spec, str):
            spec = {"column": spec}
        formats = spec.get("formats", [])
        if isinstance(formats, str):
            formats = [formats]
        values = {
            str(k): ("" if v is None else str(v)) for k, v in (spec.get("values") or {}).items()
        }
        expr = spec.get("expr")
        rules[name] = FieldRule(
            name=name,
            column=spec.get("column"),
            expr=None if expr is None else str(expr),
            formats=tuple(formats),
            values=values,
        )
        if expr is not None:
            _expression(str(expr), where, name)  # fail before reading anything
    name = doc.get("name") or (path.stem if path else None)
    return Mapping(
        name=str(name),
        entity=entity,
        files=doc.get("files") or DEFAULT_GLOB[ftype],
        type=ftype,
        delimiter=str(delimiter),
        quote=str(quote),
        escape=str(escape),
        header=bool(fmt.get("header", True)),
        columns=tuple(columns) if columns else None,
        encoding=ENCODINGS[encoding],
        null_tokens=tuple(str(t) for t in nulls),
        timezone=str(doc["timezone"]) if doc.get("timezone") else None,
        fields=rules,
        path=path,
        customer_ref_system=(str(doc["customer_ref_system"]).strip() or None)
        if doc.get("customer_ref_system") is not None
        else None,
    )


def load_mappings(folder: str | Path) -> dict[str, Mapping]:
    out: dict[str, Mapping] = {}
    for p in sorted([*Path(folder).glob("*.yaml"), *Path(folder).glob("*.yml")]):
        if p.name.startswith((".", "_")):
            continue
        m = load_mapping(p)
        out[m.name] = m
    return out


Frame = pd.DataFrame
ExprFn = Callable[[Frame], pd.Series]


def _col(df: Frame, name: str) -> pd.Series:
    if name not in df.columns:
        return pd.Series([None] * len(df), index=df.index, dtype=object)
    return df[name]


def _concat(*parts: Callable[[Frame], pd.Series]) -> ExprFn:
    """SQL ``a || b || ...``: NULL if any part is NULL."""

    def fn(df: Frame) -> pd.Series:
        out = pd.Series([""] * len(df), index=df.index, dtype=object)
        null = pd.Series(False, index=df.index)
        for part in parts:
            s = part(df)
            null |= s.isna()
            out = out + s.fillna("").astype(str)
        return out.where(~null, None)

    return fn


def _lit(value: str) -> Callable[[Frame], pd.Series]:
    return lambda df: pd.Series([value] * len(df), index=df.index, dtype=object)


def _c(name: str) -> Callable[[Frame], pd.Series]:
    return lambda df: _col(df, name)


def _coalesce(*parts: Callable[[Frame], pd.Series]) -> ExprFn:
    def fn(df: Frame) -> pd.Series:
        out = parts[0](df).astype(object)
        for part in parts[1:]:
            out = out.where(out.notna(), part(df))
        return out

    return fn


def _case(column: str, whens: str, default: str | None) -> ExprFn:
    """SQL simple CASE over the column's text; no match and no ELSE -> NULL."""
    pairs = dict(re.findall(r"when '([^']*)' then '([^']*)'", whens, flags=re.IGNORECASE))

    def fn(df: Frame) -> pd.Series:
        texts = [_text(v) for v in _col(df, column)]
        return pd.Series(
            [default if t is None else pairs.get(t, default) for t in texts],
            index=df.index,
            dtype=object,
        )

    return fn


def _normalise_expr(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip())


# pattern (regex over the whitespace-normalised expression) -> builder(match) -> fn
_EXPR_PATTERNS: list[tuple[re.Pattern[str], Callable[[re.Match[str]], ExprFn], str]] = [
    (
        re.compile(r"^'([^']*)'$"),
        lambda m: _lit(m.group(1)),
        "a string literal, e.g. 'shop'",
    ),
    (
        re.compile(r"^\"?([^\W\d]\w*)\"?$"),
        lambda m: _c(m.group(1)),
        "a bare column name",
    ),
    (
        re.compile(r"^coalesce\(\s*\"?([^\W\d]\w*)\"?\s*,\s*'([^']*)'\s*\)$", re.IGNORECASE),
        lambda m: _coalesce(_c(m.group(1)), _lit(m.group(2))),
        "coalesce(column, 'literal')",
    ),
    (
        re.compile(
            r"^coalesce\(\s*\"?([^\W\d]\w*)\"?\s*,\s*\"?([^\W\d]\w*)\"?\s*\)$", re.IGNORECASE
        ),
        lambda m: _coalesce(_c(m.group(1)), _c(m.group(2))),
        "coalesce(column, column)",
    ),
    (
        re.compile(
            r"^case (?:cast\(\s*)?\"?([^\W\d]\w*)\"?(?:\s+as\s+varchar\s*\))?"
            r"((?: when '[^']*' then '[^']*')+)(?: else '([^']*)')? end$",
            re.IGNORECASE,
        ),
        lambda m: _case(m.group(1), m.group(2), m.group(3)),
        "CASE column|CAST(column AS VARCHAR) WHEN 'a' THEN 'x' ... [ELSE 'z'] END",
    ),
    (
        re.compile(r"^(?:(?:'[^']*'|\"?[^\W\d]\w*\"?)\s*\|\|\s*)+(?:'[^']*'|\"?[^\W\d]\w*\"?)$"),
        lambda m: _concat(*_concat_parts(m.group(0))),
        "column/literal || column/literal ...",
    ),
]

#: Human-readable list of the supported expression shapes (docs/reference.md).
SUPPORTED_EXPRESSIONS = [desc for _, _, desc in _EXPR_PATTERNS]


def _concat_parts(text: str) -> list[Callable[[Frame], pd.Series]]:
    parts = []
    for tok in re.findall(r"'[^']*'|\"?[^\W\d]\w*\"?", text):
        parts.append(_lit(tok[1:-1]) if tok.startswith("'") else _c(tok.strip('"')))
    return parts


def _expression(text: str, where: str, fname: str) -> ExprFn:
    norm = _normalise_expr(text)
    for pattern, build, _ in _EXPR_PATTERNS:
        m = pattern.match(norm)
        if m:
            return build(m)
    raise UnsupportedExpression(
        f"{where}: fields.{fname}: expression {text!r} is not supported by the pandas "
        f"reference reader; supported shapes: {SUPPORTED_EXPRESSIONS}. Add it to "
        "tests/reference/landing/mapping.py (_EXPR_PATTERNS) with a unit test."
    )
