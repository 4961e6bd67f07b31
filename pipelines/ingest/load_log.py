"""``raw.load_log``: duplicate files, one row per file loaded, the recount of rows
replaced by a later row of the same natural key, and what the log tells per source
(``source_counts``, ``stale_deliveries``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb

from pipelines.ingest.batch import _Item
from pipelines.ingest.canonical import (
    ENTITIES,
    KEY_PREFILTERS,
    LOAD_LOG_COLUMNS,
    NATURAL_KEYS,
    RAW_SCHEMA,
    raw_table,
)
from pipelines.ingest.discovery import _resolve_timezone
from pipelines.ingest.mapping import SourceMapping
from pipelines.ingest.rows import _insert_values
from pipelines.ingest.sql import _ident, _lit

# the natural keys a batch deletes or inserts, and the files holding them (not in TEMP_TABLES:
# they outlive the reads of the batch)
T_KEYS, T_HIT, T_CAND = "__ingest_keys", "__ingest_hit", "__ingest_cand"


def _mark_duplicates(con, mapping: SourceMapping, plan: list[tuple[date, list[_Item]]]) -> None:
    """A file whose bytes this mapping already loaded (in any partition) is a duplicate.

    Decided as if the partitions were loaded one after the other, each first deleting what
    it loaded before: the original is the first (delivery date, file) holding the bytes.
    """
    holders: dict[str, set[tuple[date, str]]] = {}
    old: dict[date, list[tuple[str, str]]] = {}
    for day, file, sha in con.execute(
        f"SELECT _delivery_date, _source_file, _file_sha256 FROM {RAW_SCHEMA}.load_log "
        f"WHERE _source_name = ? AND status = 'loaded'",
        [mapping.name],
    ).fetchall():
        holders.setdefault(sha, set()).add((day, file))
        old.setdefault(day, []).append((file, sha))
    for day, items in plan:
        for file, sha in old.pop(day, []):
            holders[sha].discard((day, file))
        for it in items:
            found = holders.get(it.scan.sha256)
            if found:
                it.result.status, it.result.duplicate_of = "duplicate", min(found)[1]
            else:
                holders.setdefault(it.scan.sha256, set()).add((day, it.rel))


def _insert_load_log(
    con, mapping: SourceMapping, items: list[_Item], loaded_at: datetime, tmp: Path
) -> None:
    rows = [
        [
            mapping.name,
            mapping.entity,
            it.delivery,
            it.rel,
            it.scan.sha256,
            it.scan.size,
            it.result.rows_read,
            it.result.rows_loaded,
            it.result.rows_quarantined,
            it.result.status,
            it.result.duplicate_of,
            mapping.version,
            loaded_at,
            it.result.seconds,
            "; ".join(it.result.warnings) or None,
            it.result.rows_duplicate,
            it.result.rows_superseded,
            mapping.fingerprint,
        ]
        for it in items
    ]
    _insert_values(con, f"{RAW_SCHEMA}.load_log", LOAD_LOG_COLUMNS, rows, tmp)


def _content_sql(entity: str) -> str:
    """A 64-bit hash of a raw row's canonical values (lineage aside), compared only between
    rows of one natural key: equal for exact duplicates. A service event's id may be a hash
    of the delivered row, so it is left out."""
    names = [f.name for f in ENTITIES[entity] if (entity, f.name) != ("service_events", "event_id")]
    return f"hash(struct_pack({', '.join(f'{_ident(n)} := {_ident(n)}' for n in names)}))"


def _remember_keys(con, mapping: SourceMapping, where: str, *, first: bool) -> None:
    """Add the key prefilter values (KEY_PREFILTERS) of the raw rows ``where`` selects to
    T_KEYS (a new table when ``first``): the keys whose rows a batch deletes or inserts."""
    table, pre = raw_table(mapping.entity), KEY_PREFILTERS[mapping.entity]
    select = f"SELECT DISTINCT {pre} AS p FROM {table} WHERE {where}"
    if first:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {T_KEYS} AS {select}")
    else:
        con.execute(f"INSERT INTO {T_KEYS} {select}")


def _count_replaced(con, mapping: SourceMapping) -> dict[tuple[date, str], tuple[int, int]]:
    """Recount ``rows_duplicate`` / ``rows_superseded`` in raw.load_log for every file of this
    source that may hold a row of a key in T_KEYS; returns (delivery, file) -> counts.

    Of the rows of a natural key, the latest (delivery date, load time, file, line; the
    order of the staging models) is kept downstream; every other row is counted on the file
    of the kept row, as a duplicate when its canonical values equal the kept row's, else as
    superseded. A file's counts depend on all of its keys, so the keys of the touched files
    are recounted whole. Rows are found by the key's prefilter (KEY_PREFILTERS), a plain
    column, so that whole keys and row digests are computed only for the rows that may
    share a key with the batch, not for every row of the source."""
    table, entity = raw_table(mapping.entity), mapping.entity
    pre = KEY_PREFILTERS[entity]
    parts = NATURAL_KEYS[entity]
    key_cols = ", ".join(f"{p} AS __k{i}" for i, p in enumerate(parts))
    partition = ", ".join(f"__k{i}" for i in range(len(parts)))
    src = f"_source_name = {_lit(mapping.name)}"
    # the candidate rows, materialised: the keys and digests below are computed on them only
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_CAND} AS SELECT * FROM {table} "
        f"WHERE {src} AND {pre} IN (SELECT p FROM {T_KEYS})"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {T_HIT} AS SELECT DISTINCT _delivery_date AS d, "
        f"_source_file AS f FROM {T_CAND}"
    )
    # the other keys of the files hit (a re-delivery's old files), and their rows
    more = f"__ingest_more_{id(con)}"
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {more} AS SELECT DISTINCT {pre} AS p FROM {table} AS r "
        f"SEMI JOIN {T_HIT} AS h ON r._delivery_date = h.d AND r._source_file = h.f "
        f"WHERE {src} AND {pre} NOT IN (SELECT p FROM {T_KEYS})"
    )
    if con.execute(f"SELECT count(*) FROM {more}").fetchall()[0][0]:
        con.execute(
            f"INSERT INTO {T_CAND} SELECT * FROM {table} "
            f"WHERE {src} AND {pre} IN (SELECT p FROM {more})"
        )
    con.execute(f"DROP TABLE {more}")
    counts = {
        (d, f): (int(dup), int(sup))
        for d, f, dup, sup in con.execute(
            f"WITH keyed AS (SELECT {key_cols}, {_content_sql(entity)} AS __c, _delivery_date, "
            f"_loaded_at, _source_file, _source_line FROM {T_CAND}), "
            f"ranked AS (SELECT __c, row_number() OVER w AS __rn, "
            f"first_value(_delivery_date) OVER w AS __d, first_value(_source_file) OVER w AS __f, "
            f"first_value(__c) OVER w AS __wc FROM keyed "
            f"WINDOW w AS (PARTITION BY {partition} ORDER BY _delivery_date DESC, _loaded_at DESC, "
            f"_source_file DESC, _source_line DESC)) "
            f"SELECT __d, __f, count(*) FILTER (WHERE __c = __wc), "
            f"count(*) FILTER (WHERE __c <> __wc) FROM ranked WHERE __rn > 1 GROUP BY ALL"
        ).fetchall()
    }
    log = f"{RAW_SCHEMA}.load_log"
    con.execute(
        f"UPDATE {log} AS l SET rows_duplicate = 0, rows_superseded = 0 FROM {T_HIT} AS h "
        f"WHERE l.{src} AND l._delivery_date = h.d AND l._source_file = h.f"
    )
    for (d, f), (dup, sup) in counts.items():
        con.execute(
            f"UPDATE {log} SET rows_duplicate = ?, rows_superseded = ? "
            f"WHERE {src} AND _delivery_date = ? AND _source_file = ?",
            [dup, sup, d, f],
        )
    return counts


def stale_deliveries(
    con: duckdb.DuckDBPyConnection,
    mapping: SourceMapping,
    before: date | None = None,
    business_timezone: str | None = None,
) -> list[date]:
    """Delivery dates (before ``before``, if given) whose files this source loaded with
    another version or content of its mapping (timezone resolved as it loads): their raw
    rows do not follow the mapping as it is now until they are loaded again."""
    mapping = _resolve_timezone(mapping, business_timezone)
    where = "" if before is None else f" AND _delivery_date < DATE {_lit(before.isoformat())}"
    return [
        d
        for (d,) in con.execute(
            f"SELECT DISTINCT _delivery_date FROM {RAW_SCHEMA}.load_log WHERE _source_name = ? "
            f"AND status = 'loaded' AND (_mapping_version IS DISTINCT FROM ? OR "
            f"coalesce(mapping_fingerprint, ?) <> ?){where} ORDER BY 1",
            [mapping.name, mapping.version, mapping.fingerprint, mapping.fingerprint],
        ).fetchall()
    ]


@dataclass(frozen=True)
class SourceCounts:
    """What raw.load_log holds for one source over some delivery dates."""

    source: str
    entity: str
    files: int
    rows_read: int
    rows_loaded: int
    rows_quarantined: int
    rows_duplicate: int
    rows_superseded: int
    duplicate_files: int
    # of rows_quarantined: rows of erased people delivered again (pipelines/lib/erasure_guards.py), not
    # rows that failed to load
    rows_erased: int = 0

    @property
    def quarantine_share(self) -> float:
        """The share of rows read that failed to load (erased people's rows aside)."""
        failed = self.rows_quarantined - self.rows_erased
        return failed / self.rows_read if self.rows_read else 0.0


def source_counts(
    con: duckdb.DuckDBPyConnection, first: date, last: date, entity: str | None = None
) -> list[SourceCounts]:
    """Per source (of ``entity``, or of every entity), the load log of the deliveries
    ``first`` .. ``last``: files, rows read, loaded, quarantined, duplicate and superseded
    (rows replaced by a later row of the same natural key; see ``_count_replaced``)."""
    where = "_delivery_date BETWEEN ? AND ?"
    params: list[object] = [first, last]
    if entity is not None:
        where += " AND entity = ?"
        params.append(entity)
    rows = con.execute(
        f"WITH erased AS (SELECT _source_name, count(*) AS n FROM {RAW_SCHEMA}.quarantine "
        f"WHERE _delivery_date BETWEEN ? AND ? AND reason LIKE 'erased (%' GROUP BY ALL) "
        f"SELECT l._source_name, any_value(entity), count(*), "
        f"coalesce(sum(rows_read), 0), coalesce(sum(rows_loaded), 0), "
        f"coalesce(sum(rows_quarantined), 0), coalesce(sum(rows_duplicate), 0), "
        f"coalesce(sum(rows_superseded), 0), count(*) FILTER (WHERE status = 'duplicate'), "
        f"coalesce(any_value(erased.n), 0) "
        f"FROM {RAW_SCHEMA}.load_log AS l LEFT JOIN erased USING (_source_name) "
        f"WHERE {where} GROUP BY l._source_name ORDER BY 2, 1",
        [first, last, *params],
    ).fetchall()
    return [SourceCounts(*(r[:2]), *(int(v) for v in r[2:])) for r in rows]
