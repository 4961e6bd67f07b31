"""What a load did: per file, per partition, per range of partitions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from pipelines.ingest.mapping import MappingError


@dataclass
class FileResult:
    """What happened to one delivered file."""

    file: str  # path relative to the landing folder
    sha256: str
    bytes: int
    rows_read: int = 0
    rows_loaded: int = 0
    rows_quarantined: int = 0
    # rows (of this or earlier files) that a later row of this file replaces: staging keeps
    # one row per natural key, the latest; identical rows are duplicates, others superseded
    rows_duplicate: int = 0
    rows_superseded: int = 0
    status: str = "loaded"  # loaded | duplicate
    duplicate_of: str | None = None
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class PartitionResult:
    """What one ``load_partition`` call did: one entry per file, in file-name order."""

    source: str
    entity: str
    delivery_date: date
    files: list[FileResult]
    seconds: float = 0.0

    @property
    def rows_read(self) -> int:
        return sum(f.rows_read for f in self.files)

    @property
    def rows_loaded(self) -> int:
        return sum(f.rows_loaded for f in self.files)

    @property
    def rows_quarantined(self) -> int:
        return sum(f.rows_quarantined for f in self.files)

    @property
    def rows_duplicate(self) -> int:
        return sum(f.rows_duplicate for f in self.files)

    @property
    def rows_superseded(self) -> int:
        return sum(f.rows_superseded for f in self.files)

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)

    @property
    def warnings(self) -> list[str]:
        return [f"{f.file}: {w}" for f in self.files for w in f.warnings]


@dataclass
class RangeResult:
    """What one ``load_partitions`` call did."""

    source: str
    entity: str
    partitions: list[PartitionResult]  # the partitions loaded, in the order asked
    failures: dict[date, MappingError]  # partitions not loaded (left as they were)
    seconds: float = 0.0


#: How the loader words the columns of a file that no field of its mapping reads.
EXTRA_COLUMNS = "extra column(s) ignored: "
ABSENT_KEYS = "key(s) in no line, read as NULL: "
#: Warnings about columns that hold for many files of a source at once: said once per source
#: and run (which columns, in how many files, over which delivery dates), not once per file.
PER_SOURCE = {
    EXTRA_COLUMNS: "no field of the mapping reads them",
    ABSENT_KEYS: "a sparse export: the fields they map are NULL in those files",
}


def summarize_warnings(files: list[FileResult]) -> list[str]:
    """The warnings of a run's files, each said once: the column warnings of ``PER_SOURCE``
    (columns a source's files carry beyond its mapping, keys of the mapping no line of a
    JSON file has) as one line per source and kind (which columns, in how many files, over
    which delivery dates), any other warning once per file (``<file>: <warning>``).
    A file's path is ``<source>/<delivery date>/<name>`` (relative to the landing folder)."""
    counted: dict[tuple[str, str], dict[str, int]] = {}  # (source, prefix) -> column -> files
    dates: dict[tuple[str, str], set[str]] = {}
    lines = []
    for f in files:
        source, _, rest = f.file.partition("/")
        for warning in f.warnings:
            prefix = next((p for p in PER_SOURCE if warning.startswith(p)), None)
            if prefix is None:
                lines.append(f"{f.file}: {warning}")
                continue
            columns = counted.setdefault((source, prefix), {})
            for column in warning.removeprefix(prefix).split(", "):
                columns[column] = columns.get(column, 0) + 1
            dates.setdefault((source, prefix), set()).add(rest.partition("/")[0])
    summaries = []
    for (source, prefix), columns in sorted(counted.items()):
        days = sorted(dates[source, prefix])
        span = days[0] if len(days) == 1 else f"{days[0]} .. {days[-1]}"
        listed = ", ".join(f"{c} ({n:,} file{'s' if n > 1 else ''})" for c, n in columns.items())
        summaries.append(f"{source}: {prefix}{listed}; deliveries {span} ({PER_SOURCE[prefix]})")
    return summaries + lines
