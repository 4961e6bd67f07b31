"""Read a landing folder with pandas, following the source mappings (docs/contracts.md).

Independent of the loader engine on purpose: the mapping YAML is parsed here, files are
read with the standard library / pandas / pyarrow, and every canonical field is typed by
the small functions below. What the loader quarantines (a row that cannot be parsed, a
required field that is NULL after typing, a non-empty value that does not type) is left
out here; ``SourceFrame.excluded`` counts those rows per reason.

Expressions (``expr`` fields) are not evaluated as SQL: ``SUPPORTED_EXPRESSIONS`` is an
explicit table of the expressions the demo mappings use, each with a pandas equivalent.
Any other expression raises ``UnsupportedExpression`` naming the mapping and the field.

The modules:

    mapping     the canonical fields, the mapping YAML, the supported expressions
    files       one landing file into records (delimited text, JSON lines, Parquet)
    values      typing the values of a canonical field
    sources     a mapping's deliveries as canonical typed frames; the whole landing folder

This package re-exports their public names: import from ``reference.landing``.
"""

from reference.landing.files import RawFile, read_file, read_text_records
from reference.landing.mapping import (
    CANONICAL,
    DATE_DIR,
    DEFAULT_GLOB,
    ENCODINGS,
    EVENT_TIMESTAMP,
    FORMAT_ALIASES,
    NFKC_FIELDS,
    SUPPORTED_EXPRESSIONS,
    ExprFn,
    FieldRule,
    Frame,
    Mapping,
    MappingProblem,
    UnsupportedExpression,
    load_mapping,
    load_mappings,
    parse_mapping,
)
from reference.landing.sources import (
    SourceFrame,
    apply_mapping,
    delivery_files,
    read_landing,
    read_source,
)
from reference.landing.values import (
    BOOL_FALSE,
    BOOL_TRUE,
    type_boolean,
    type_column,
    type_date,
    type_decimal,
    type_integer,
    type_timestamp,
)

__all__ = [
    "BOOL_FALSE",
    "BOOL_TRUE",
    "CANONICAL",
    "DATE_DIR",
    "DEFAULT_GLOB",
    "ENCODINGS",
    "EVENT_TIMESTAMP",
    "ExprFn",
    "FORMAT_ALIASES",
    "FieldRule",
    "Frame",
    "Mapping",
    "MappingProblem",
    "NFKC_FIELDS",
    "RawFile",
    "SUPPORTED_EXPRESSIONS",
    "SourceFrame",
    "UnsupportedExpression",
    "apply_mapping",
    "delivery_files",
    "load_mapping",
    "load_mappings",
    "parse_mapping",
    "read_file",
    "read_landing",
    "read_source",
    "read_text_records",
    "type_boolean",
    "type_column",
    "type_date",
    "type_decimal",
    "type_integer",
    "type_timestamp",
]
