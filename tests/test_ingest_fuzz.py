"""Fuzz: malformed delivery files thrown at the loader engine (hypothesis).

For delimited text (UTF-8, GB18030, TSV, a header-less ``||`` file), whitespace text, JSON
Lines and Parquet mappings, each example delivers one generated malformed file next to a
small valid control file and loads the partition into a fresh in-memory DuckDB. Then:

- nothing raises, except ``SchemaDriftError`` when no file of the delivery is readable for
  lacking a mapped source column (the partition is left as it was; the message names
  mapping, file and field); a file lacking one beside the control file is quarantined as
  a file (one row, no content);
- per file: ``rows_read = rows_loaded + rows_quarantined`` in the result and in
  ``raw.load_log``, and the rows of ``raw.<entity>`` plus those of ``raw.quarantine`` for
  the file are exactly ``rows_read``; every quarantine row has a reason;
- line formats: every non-blank line (after the header) is a row; Parquet: every row of a
  readable file is a row; delimited text: a file with a data line has a row;
- the control file loads exactly, whatever its neighbour holds;
- loading the same bytes again (``load_partitions``) leaves identical tables.

The CI profile is derandomised (the same examples on every run) and small:
``CRM_FUZZ_EXAMPLES`` examples (default 5) per (mapping, kind of damage). A longer fuzz,
locally, with fresh random examples:

    CRM_FUZZ_EXAMPLES=300 CRM_FUZZ_RANDOM=1 .venv/bin/python -m pytest -q -x \
        tests/test_ingest_fuzz.py

(``-m fuzz`` selects these tests, ``-m "not fuzz"`` leaves them out). A failure prints
the shrunk example and a ``@reproduce_failure`` line to replay it.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import tempfile
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.ingest_fuzz_damage import (
    JSONL_KINDS,
    PARQUET_KINDS,
    TEXT_KINDS,
    Delivery,
    delivery,
    valid_table,
)
from support.ingest_fuzz_sources import (
    DAY,
    LOADED_AT,
    SOURCES,
    Source,
    encode_file,
    parquet_bytes,
)

from pipelines.ingest.engine import load_partition, load_partitions
from pipelines.ingest.mapping import SchemaDriftError, SourceMapping

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("CRM_FUZZ_EXAMPLES", "5"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=os.environ.get("CRM_FUZZ_RANDOM", "") != "1",
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)


# --------------------------------------------------------------------------- the checks
def control_file(src: Source) -> tuple[bytes, list[str]]:
    """A small valid file loaded next to the generated one: it must load exactly."""
    rows = [
        {c: CONTROL.get(c, "") for c in src.columns} | {src.id_column: f"CTRL{i}"} for i in range(2)
    ]
    ids = [r[src.id_column] for r in rows]
    if src.kind == "parquet":
        return parquet_bytes(valid_table(rows, list(src.columns))), ids
    return encode_file(src, rows), ids


# a valid value per column of every source (the control files; ids are replaced)
CONTROL = {
    "line": "1", "order_time": "2026-01-05 10:00:00", "state": "PAID", "qty": "2",
    "price": "9.90", "buyer": "张三", "ccy": "CNY", "更新时间": "2026-01-05 10:00:00",
    "出生日期": "1990-01-01", "同意营销": "yes", "姓名": "李四", "省份": "广东",
    "event_time": "2026-01-05 10:00:00", "event": "created", "csat": "5", "agent": "a1",
    "at": "2026-01-05T10:00:00", "platform": "weibo", "account": "u1", "dir": "in",
    "action": "like", "dt": "2026-01-05", "tm": "10:00:00",
    "updated_at": "2026-01-05T10:00:00+08:00", "created_at": "2026-01-01 09:00:00",
    "real_name": "王五", "gender": "1", "consent": "true", "level": "gold", "open_id": "o1",
    "direction": "out", "text": "hi",
}  # fmt: skip


BLANK = re.compile(r"[ \t\r]*")


def nonblank_lines(data: bytes, encoding: str, *, whole: bool = False) -> int:
    """Lines of a line-format file that are rows (the loader's rule: a line of only spaces,
    tabs and CR is blank; a BOM at the start of the file is not part of the text). Lines
    end at LF; in a file without any LF at CR (DuckDB's reader then takes CR as the line
    break) unless the file was quarantined whole (``whole``: the loader splits at LF)."""
    text = data.decode(encoding, errors="replace").removeprefix("\ufeff")
    lines = text.split("\n") if whole or "\n" in text else re.split("\r\n?", text)
    if lines and lines[-1] == "":
        lines.pop()
    return sum(1 for line in lines if not BLANK.fullmatch(line))


def snapshot(con, entity: str) -> dict[str, list[tuple]]:
    return {
        "raw": con.execute(f"SELECT * FROM raw.{entity} ORDER BY ALL").fetchall(),
        "quarantine": con.execute("SELECT * FROM raw.quarantine ORDER BY ALL").fetchall(),
        "load_log": con.execute(
            "SELECT * EXCLUDE (seconds) FROM raw.load_log ORDER BY ALL"
        ).fetchall(),
    }


def drift_possible(src: Source, bad: Delivery, con) -> bool:
    """Whether the file may lack a mapped column: a Parquet file without one, a header
    without one, JSON Lines with an object (a file without any has no keys to check)."""
    if src.kind == "parquet":
        return bool(bad.missing)
    text = bad.data.decode(src.encoding, errors="replace").removeprefix("\ufeff")
    if src.kind == "jsonl":  # DuckDB's JSON (it takes '{"a":1,}', Python does not)
        lines = re.split(r"\r\n?|\n", text)
        return con.execute(
            "SELECT count(*) FROM (SELECT unnest($1::VARCHAR[]) AS l) WHERE CASE WHEN "
            "json_valid(l) THEN json_type(l) = 'OBJECT' AND len(json_keys(l)) > 0 END",
            [lines],
        ).fetchall() != [(0,)]
    if not src.header:
        return False
    lines = [ln for ln in re.split(r"\r\n?|\n", text) if src.kind != "whitespace" or ln.strip()]
    first = lines[0] if lines else ""
    names = first.split() if src.kind == "whitespace" else first.split(src.delimiter)
    return not set(src.columns) <= set(names)


def check_drift(exc: SchemaDriftError, mapping: SourceMapping, rel: str, con) -> None:
    """A drift error names the mapping, the file, the missing column and its field; the
    partition was left as it was (nothing loaded)."""
    message = str(exc)
    assert message.startswith(mapping.label), message
    assert f"data file {rel} lacks source column" in message, message
    assert "no file of" in message and "is readable" in message, message
    assert any(f"{name} <- " in message for name in mapping.fields), message
    for table in (f"raw.{mapping.entity}", "raw.quarantine", "raw.load_log"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)], table


def check_load(src: Source, bad: Delivery) -> None:
    """Deliver ``bad`` next to a control file, load, check every invariant, load again."""
    mapping = src.mapping
    entity = mapping.entity
    control, control_ids = control_file(src)
    with tempfile.TemporaryDirectory(prefix="crm_fuzz_") as tmp:
        landing = Path(tmp)
        folder = landing / mapping.name / DAY
        folder.mkdir(parents=True)
        files = {"bad" + src.ext: bad.data, "control" + src.ext: control}
        for name, data in files.items():
            (folder / name).write_bytes(data)
        rel = {name: f"{mapping.name}/{DAY}/{name}" for name in files}
        con = duckdb.connect()
        try:
            try:
                result = load_partition(con, mapping, landing, DAY, loaded_at=LOADED_AT)
            except SchemaDriftError as exc:
                assert bad.exact_ids is None, f"a valid file failed: {exc}"
                assert drift_possible(src, bad, con), f"no column is missing: {exc}"
                check_drift(exc, mapping, rel["bad" + src.ext], con)
                again = load_partitions(con, mapping, landing, [DAY], loaded_at=LOADED_AT)
                assert isinstance(again.failures.get(date.fromisoformat(DAY)), SchemaDriftError)
                return
            by_file = {Path(f.file).name: f for f in result.files}
            # a Parquet file lacking a mapped column is quarantined as a file (one row), as
            # is one without any column (the reader cannot read it)
            if bad.missing and by_file["bad" + src.ext].status == "loaded":
                b = by_file["bad" + src.ext]
                assert (b.rows_read, b.rows_loaded, b.rows_quarantined) == (1, 0, 1), b
            assert set(by_file) == set(files)
            log = {
                Path(f).name: (read, loaded, quarantined, status)
                for f, read, loaded, quarantined, status in con.execute(
                    "SELECT _source_file, rows_read, rows_loaded, rows_quarantined, status "
                    "FROM raw.load_log"
                ).fetchall()
            }
            for name, f in by_file.items():
                assert f.rows_read == f.rows_loaded + f.rows_quarantined, (name, f)
                assert log[name] == (f.rows_read, f.rows_loaded, f.rows_quarantined, f.status)
                n_raw, n_quarantine = con.execute(
                    f"SELECT (SELECT count(*) FROM raw.{entity} WHERE _source_file = $1), "
                    f"(SELECT count(*) FROM raw.quarantine WHERE _source_file = $1)",
                    [rel[name]],
                ).fetchall()[0]
                assert (n_raw, n_quarantine) == (f.rows_loaded, f.rows_quarantined), (name, f)
                assert n_raw + n_quarantine == f.rows_read
                if f.status == "loaded":
                    sha = hashlib.sha256(files[name]).hexdigest()
                    assert f.sha256 == sha and f.bytes == len(files[name])
            assert con.execute(
                "SELECT count(*) FROM raw.quarantine WHERE coalesce(trim(reason), '') = ''"
            ).fetchall() == [(0,)]
            # the control file loads exactly, whatever its neighbour holds
            ctrl = by_file["control" + src.ext]
            if ctrl.status == "loaded":
                assert (ctrl.rows_read, ctrl.rows_loaded) == (2, 2), ctrl
            bad_result = by_file["bad" + src.ext]
            if bad_result.status == "loaded":
                check_rows_read(src, bad, bad_result.rows_read, con, rel["bad" + src.ext])
            if bad.exact_ids is not None and bad_result.status == "loaded":
                loaded = loaded_ids(con, mapping, src, rel["bad" + src.ext])
                assert loaded == sorted(bad.exact_ids)
                assert bad_result.rows_quarantined == 0
            if ctrl.status == "loaded":
                assert loaded_ids(con, mapping, src, rel["control" + src.ext]) == control_ids
            # the same bytes again: identical tables
            first = snapshot(con, entity)
            again = load_partitions(con, mapping, landing, [DAY], loaded_at=LOADED_AT)
            assert not again.failures, again.failures
            assert snapshot(con, entity) == first
        finally:
            con.close()


def loaded_ids(con, mapping: SourceMapping, src: Source, rel: str) -> list[str]:
    field = next(n for n, spec in mapping.fields.items() if spec.column == src.id_column)
    rows = con.execute(
        f"SELECT {field} FROM raw.{mapping.entity} WHERE _source_file = ? ORDER BY ALL", [rel]
    ).fetchall()
    return [r[0] for r in rows]


def check_rows_read(src: Source, bad: Delivery, rows_read: int, con, rel: str) -> None:
    """What the file's rows must add up to, as far as the format says it exactly."""
    whole = con.execute(
        "SELECT count(*) FROM raw.quarantine WHERE _source_file = ? "
        "AND reason LIKE 'unreadable file%'",
        [rel],
    ).fetchall()[0][0]
    as_file = con.execute(
        "SELECT count(*) FROM raw.quarantine WHERE _source_file = ? "
        "AND reason LIKE 'unreadable file (% bytes, sha256 %' AND raw_text IS NULL",
        [rel],
    ).fetchall()[0][0]
    if as_file:  # quarantined as a file (not text, lacks a mapped column): one row
        assert rows_read == 1
        return
    if src.kind == "parquet":
        if whole:
            assert rows_read == 1
            return
        try:
            expected = pq.read_metadata(io.BytesIO(bad.data)).num_rows if bad.data else 0
        except (pa.ArrowException, OSError):
            return  # not readable by pyarrow, read by DuckDB: no count to compare with
        assert rows_read == expected
        return
    lines = nonblank_lines(bad.data, src.encoding, whole=bool(whole))
    if src.kind in ("jsonl", "whitespace"):
        header = 1 if src.kind == "whitespace" and src.header and lines else 0
        assert rows_read == lines - header, (rows_read, lines)
        return
    # delimited text: records may span lines, yet a data line is at least one row
    header = 1 if src.header else 0
    physical = len(re.split(rb"\r\n?|\n", bad.data.removesuffix(b"\n").removesuffix(b"\r")))
    assert rows_read <= max(physical - header, 0), (rows_read, physical)
    first_break = bad.data.find(b"\n")
    rest = bad.data[first_break + 1 :] if header and first_break >= 0 else b""
    if not header:
        rest = bad.data
    if nonblank_lines(rest, src.encoding, whole=True):
        assert rows_read >= 1, "a data line was not read as a row"


# --------------------------------------------------------------------------- the tests
def _cases(keys: list[str], kinds: list[str]) -> list:
    return [
        pytest.param(k, kind, id=f"{k}-{kind}")
        for k in keys
        for kind in kinds
        if SOURCES[k].header or kind != "nasty_columns"  # no header: no names to choose
    ]


@pytest.mark.parametrize(
    ("source", "kind"),
    _cases(["csv_utf8", "csv_gb18030", "tsv", "pipes_noheader", "whitespace"], TEXT_KINDS),
)
@FUZZ
@given(data=st.data())
def test_delimited_text_never_crashes(source, kind, data):
    src = SOURCES[source]
    check_load(src, data.draw(delivery(src, kind), label=kind))


@pytest.mark.parametrize(("source", "kind"), _cases(["jsonl"], JSONL_KINDS))
@FUZZ
@given(data=st.data())
def test_json_lines_never_crash(source, kind, data):
    src = SOURCES[source]
    check_load(src, data.draw(delivery(src, kind), label=kind))


@pytest.mark.parametrize(("source", "kind"), _cases(["parquet"], PARQUET_KINDS))
@FUZZ
@given(data=st.data())
def test_parquet_never_crashes(source, kind, data):
    src = SOURCES[source]
    check_load(src, data.draw(delivery(src, kind), label=kind))
