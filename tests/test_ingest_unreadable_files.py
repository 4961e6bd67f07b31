"""Files that cannot be read at all (landing contract, "Files"): each is quarantined as a
file -- name, size, sha256 and reason, never its content -- and the good file beside it
loads; a delivery of which no file is readable for lacking a mapped column fails, naming
mapping, file and field, without quoting the file."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import duckdb
import pytest

from pipelines.ingest.engine import load_partition, load_partitions
from pipelines.ingest.mapping import SchemaDriftError, load_mapping

FIXTURES = Path(__file__).parent / "fixtures" / "ingest"
MAPPING = FIXTURES / "orders_csv.yaml"
DAY = "2026-01-06"
HEADER = "order_no,line,order_time,state,qty,price,ccy\n"
GOOD = HEADER + "G1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n"
# a member record: the content that must never reach a message or a log
RECORD = "M1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY,张伟,13800138000,zhang.wei@example.com\n"
PASSWD = "root:x:0:0:root:/root:/bin/bash\n"


@pytest.fixture
def con():
    c = duckdb.connect()
    yield c
    c.close()


def _bad_files(tmp_path: Path) -> dict[str, bytes]:
    rng = random.Random(7)
    return {
        "a_random.csv": bytes(rng.randrange(256) for _ in range(4096)),
        "b_utf16.csv": (HEADER + RECORD).encode("utf-16"),
        "c_headerless.csv": RECORD.encode() * 3,
        "e_no_qty.csv": ("order_no,line,order_time,state,price,ccy\n" + RECORD).encode(),
    }


def _deliver(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    landing = tmp_path / "landing"
    folder = landing / "shop" / DAY
    folder.mkdir(parents=True)
    (folder / "good.csv").write_text(GOOD, encoding="utf-8")
    bad = _bad_files(tmp_path)
    for name, data in bad.items():
        (folder / name).write_bytes(data)
    secret = tmp_path / "outside" / "passwd"
    secret.parent.mkdir()
    secret.write_text(PASSWD)
    os.symlink(secret, folder / "d_link.csv")
    return landing, bad


def test_each_unreadable_file_is_quarantined_as_a_file_and_the_good_one_loads(con, tmp_path):
    landing, bad = _deliver(tmp_path)
    result = load_partition(con, load_mapping(MAPPING), landing, DAY)
    assert con.execute("SELECT order_id FROM raw.orders").fetchall() == [("G1",)]
    rows = con.execute(
        "SELECT _source_file, _source_line, raw_text, reason, _file_sha256 "
        "FROM raw.quarantine ORDER BY 1"
    ).fetchall()
    names = [Path(f).name for f, *_ in rows]
    assert names == [
        "a_random.csv",
        "b_utf16.csv",
        "c_headerless.csv",
        "d_link.csv",
        "e_no_qty.csv",
    ]
    link_target = os.fsencode(str(tmp_path / "outside" / "passwd"))
    expected = {
        **{n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in bad.items()},
        "d_link.csv": (len(link_target), hashlib.sha256(link_target).hexdigest()),
    }
    reasons = {}
    for f, line, text, reason, sha in rows:
        name = Path(f).name
        assert f == f"shop/{DAY}/{name}"  # the name as delivered, not the link's target
        assert line is None and text is None  # never the content
        size, digest = expected[name]
        assert sha == digest
        assert reason.startswith(f"unreadable file ({size} bytes, sha256 {digest}): ")
        reasons[name] = reason.split("): ", 1)[1]
    assert reasons["a_random.csv"] == "binary content (NUL bytes), not utf-8 text"
    assert reasons["b_utf16.csv"] == "UTF-16 text (the mapping declares utf-8)"
    assert reasons["d_link.csv"] == "a symbolic link (links are not followed)"
    assert reasons["c_headerless.csv"].startswith("lacks source column(s) 'order_no'")
    assert "fields.order_id <- 'order_no'" in reasons["c_headerless.csv"]
    assert (
        reasons["e_no_qty.csv"] == "lacks source column(s) 'qty' (used by fields.quantity <- 'qty')"
    )
    # rows read = loaded + quarantined, a file quarantined as a file counting one row
    by_file = {
        Path(f.file).name: (f.rows_read, f.rows_loaded, f.rows_quarantined) for f in result.files
    }
    assert by_file == {"good.csv": (1, 1, 0), **{n: (1, 0, 1) for n in expected}}
    # nothing of the content anywhere in the results, warnings or the load log
    text = repr(result) + repr(con.execute("SELECT * FROM raw.load_log").fetchall())
    for needle in ("13800138000", "zhang.wei", "张伟", "root:x", "M1,1"):
        assert needle not in text and needle not in repr(rows)


def test_a_range_load_quarantines_them_the_same_way(con, tmp_path):
    landing, _ = _deliver(tmp_path)
    loaded = load_partitions(con, load_mapping(MAPPING), landing, [DAY])
    assert not loaded.failures
    assert con.execute("SELECT count(*) FROM raw.quarantine").fetchall() == [(5,)]
    assert con.execute("SELECT order_id FROM raw.orders").fetchall() == [("G1",)]


def test_a_delivery_without_a_readable_file_fails_naming_mapping_file_and_field(con, tmp_path):
    landing = tmp_path / "landing"
    folder = landing / "shop" / DAY
    folder.mkdir(parents=True)
    (folder / "headerless.csv").write_text(RECORD * 2, encoding="utf-8")
    with pytest.raises(SchemaDriftError) as exc:
        load_partition(con, load_mapping(MAPPING), landing, DAY)
    message = str(exc.value)
    assert str(MAPPING) in message
    assert f"data file shop/{DAY}/headerless.csv lacks source column(s)" in message
    assert "fields.quantity <- 'qty'" in message
    for needle in ("13800138000", "zhang.wei", "张伟", "M1,1"):
        assert needle not in message
    for table in ("raw.orders", "raw.quarantine", "raw.load_log"):
        assert con.execute(f"SELECT count(*) FROM {table}").fetchall() == [(0,)]


def test_a_file_reached_through_a_linked_folder_is_not_read(con, tmp_path):
    landing = tmp_path / "landing"
    folder = landing / "shop" / DAY
    (folder / "real").mkdir(parents=True)
    (folder / "real" / "good.csv").write_text(GOOD, encoding="utf-8")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "x.csv").write_text(HEADER + RECORD, encoding="utf-8")
    os.symlink(outside, folder / "sub")
    text = MAPPING.read_text(encoding="utf-8").replace('files: "*.csv"', 'files: "*/*.csv"')
    path = tmp_path / "deep.yaml"
    path.write_text(text, encoding="utf-8")
    load_partition(con, load_mapping(path), landing, DAY)
    rows = con.execute("SELECT _source_file, raw_text, reason FROM raw.quarantine").fetchall()
    assert len(rows) == 1 and rows[0][1] is None
    assert rows[0][2].endswith("): the path leads outside the delivery folder")
    assert con.execute("SELECT order_id FROM raw.orders").fetchall() == [("G1",)]


def test_transcoded_copies_stay_in_the_restricted_folder(tmp_path, monkeypatch):
    """A GB18030 file is transcoded to a clear-text UTF-8 copy: it is made beside the
    database file (the restricted store's folder), never in the system's temporary folder,
    and a copy left by a crash is removed by the next load."""
    import pipelines.ingest.engine as engine

    landing = tmp_path / "landing"
    folder = landing / "shop" / DAY
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes(
        (HEADER + "张1,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n").encode("gb18030")
    )
    text = MAPPING.read_text(encoding="utf-8").replace(
        "  type: csv\n", "  type: csv\n  encoding: gb18030\n"
    )
    path = tmp_path / "gb.yaml"
    path.write_text(text, encoding="utf-8")
    store = tmp_path / "restricted"
    store.mkdir()
    (store / ".crm_ingest_leftover").mkdir()  # a crash's leftover
    (store / ".crm_ingest_leftover" / "0_a.csv.utf8").write_text("clear text")
    seen = []
    real = engine._transcode

    def spy(src, encoding, tmpdir, prefix=""):
        seen.append(Path(tmpdir))
        return real(src, encoding, tmpdir, prefix)

    monkeypatch.setattr(engine, "_transcode", spy)
    con = duckdb.connect(str(store / "restricted.duckdb"))
    try:
        load_partition(con, load_mapping(path), landing, DAY)
        assert con.execute("SELECT order_id FROM raw.orders").fetchall() == [("张1",)]
    finally:
        con.close()
    assert seen and all(p.parent == store.resolve() for p in seen)
    assert list(store.glob(".crm_ingest_*")) == []


POS_MAPPING = """name: pos
entity: orders
version: "1"
files: "*.csv"
format: {type: csv}
fields:
  order_id: {expr: "cust || '-' || day"}
  ordered_at: {column: day, formats: ["%Y-%m-%d"]}
  quantity: qty
  unit_price: price
  status: {expr: "'paid'"}
"""
# member records: every name, phone and e-mail must stay out of logs, messages and metadata
MEMBERS = [
    ("M1001", "张伟", "13800138000", "zhang.wei@example.com"),
    ("M1002", "Li Na", "13912345678", "li.na@example.org"),
    ("M1003", "王秀英", "+86-137-0000-1111", "wxy@example.net"),
]


def test_a_failing_night_logs_no_row_content(tmp_path):
    """`crm run` on a delivery whose only file lost its header (its first line is a member
    record): the night fails naming mapping, file and field, and no phone, e-mail or name
    of the file is in the console output or anywhere under DAGSTER_HOME."""
    import subprocess
    import sys

    home = tmp_path / "home"
    (tmp_path / "maps").mkdir()
    (tmp_path / "maps" / "pos.yaml").write_text(POS_MAPPING, encoding="utf-8")
    folder = home / "landing" / "pos" / "2026-01-06"
    folder.mkdir(parents=True)
    lines = [f"{ref},2026-01-05,1,10,{name},{phone},{mail}\n" for ref, name, phone, mail in MEMBERS]
    (folder / "members.csv").write_text("".join(lines), encoding="utf-8")
    env = os.environ | {
        "CRM_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "CRM_MAPPINGS_DIR": str(tmp_path / "maps"),
    }
    env.pop("CRM_LANDING_DIR", None)
    proc = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--date", "2026-01-06"],
        env=env,
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 1
    assert "data file pos/2026-01-06/members.csv lacks source column(s) 'cust'" in proc.stdout
    assert "fields.order_id <- 'cust'" in proc.stdout
    needles = [v for _, name, phone, mail in MEMBERS for v in (name, phone, mail)]
    needles += [ref for ref, *_ in MEMBERS]

    def hits(data: bytes) -> list[str]:
        return [n for n in needles if n.encode() in data]

    # the scan finds them where they are: the landing file
    assert hits((folder / "members.csv").read_bytes()) == needles
    found = {"console": hits((proc.stdout + proc.stderr).encode())}
    stored = [p for p in (home / "dagster").rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in stored)  # the run database was scanned
    for p in stored:
        found[str(p)] = hits(p.read_bytes())
    assert {k: v for k, v in found.items() if v} == {}


@pytest.mark.parametrize(
    "line",
    [
        "L1,1," + "X" * (1 << 18) + ",x",  # few fields: also reported as missing columns
        "L1" + "X" * (1 << 18),
        "L1,1,2026-01-05 10:00:00,PAID,1,1.00," + '"' + "X" * (1 << 18) + '"',
    ],
    ids=["few-fields", "one-field", "quoted"],
)
def test_a_runaway_line_is_quarantined_as_too_long(con, tmp_path, monkeypatch, line):
    """A line over the readers' max_line_size (8 MB; 64 KB here, to stay fast) is one
    quarantined row with the reason 'line longer than … bytes' (the reader also reports
    it as missing columns: that reason read 'wrong column count (expected 7, got )')."""
    from pipelines.ingest import line_reader

    monkeypatch.setattr(line_reader, "MAX_LINE", 1 << 16)
    landing = tmp_path / "landing"
    folder = landing / "shop" / DAY
    folder.mkdir(parents=True)
    (folder / "a.csv").write_text(
        GOOD + line + "\nG2,1,2026-01-05 10:00:00,PAID,1,1.00,CNY\n", encoding="utf-8"
    )
    result = load_partition(con, load_mapping(MAPPING), landing, DAY)
    rows = con.execute("SELECT _source_line, reason FROM raw.quarantine").fetchall()
    assert rows == [(3, "line longer than 65536 bytes")]
    assert con.execute("SELECT order_id FROM raw.orders ORDER BY 1").fetchall() == [
        ("G1",),
        ("G2",),
    ]
    (f,) = result.files
    assert (f.rows_read, f.rows_loaded, f.rows_quarantined) == (3, 2, 1)
