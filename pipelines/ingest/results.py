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
