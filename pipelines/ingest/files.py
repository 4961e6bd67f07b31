"""Delivered files read in Python: sha256 and line count, the text check, GB18030/GBK
transcoding into the batch's scratch folder, line breaks, and physical lines by number.
"""

from __future__ import annotations

import codecs
import hashlib
import mmap
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np

CHUNK = 1 << 22


@dataclass
class _FileScan:
    sha256: str
    size: int
    lines: int  # physical lines ('\n'-terminated, plus a last unterminated one)


def _scan_file(path: Path) -> _FileScan:
    """sha256, size and lines of a file; of a symbolic link, of the link itself (its target
    is never read)."""
    if path.is_symlink():
        target = os.fsencode(os.readlink(path))
        return _FileScan(hashlib.sha256(target).hexdigest(), len(target), 0)
    digest = hashlib.sha256()
    size = newlines = 0
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    lines = newlines + (1 if size and last != b"\n" else 0)
    return _FileScan(digest.hexdigest(), size, lines)


def _transcode(src: Path, encoding: str, tmpdir: Path, prefix: str = "") -> Path:
    """Decode a GB18030/GBK file into a UTF-8 temp file, chunk by chunk.

    Invalid byte sequences become U+FFFD (the rows holding one are quarantined with the
    reason "invalid <encoding> byte sequence"); line breaks are kept, so line numbers are
    those of the original file.
    """
    dst = tmpdir / (prefix + src.name + ".utf8")
    decoder = codecs.getincrementaldecoder(encoding)(errors="replace")
    first = True
    with src.open("rb") as fin, dst.open("w", encoding="utf-8", newline="") as fout:
        while chunk := fin.read(CHUNK):
            text = decoder.decode(chunk)
            if first and text:
                text = text.removeprefix("\ufeff")
                first = False
            fout.write(text)
        fout.write(decoder.decode(b"", final=True))
    return dst


def _line_texts(path: Path, wanted: list[int]) -> dict[int, str]:
    """Physical lines (1-based) of a UTF-8 file as DuckDB's line reader gives them: without
    the line break (``\\n`` or ``\\r\\n``), and without a BOM on line 1."""
    want = sorted(set(wanted))
    out: dict[int, str] = {}
    size = path.stat().st_size
    if not want or not size:
        return out

    def text(raw: bytes, line: int) -> str:
        s = raw.removesuffix(b"\r").decode("utf-8", errors="replace")
        return s.removeprefix("\ufeff") if line == 1 else s

    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        data = np.frombuffer(mm, dtype=np.uint8)
        try:
            j, done, prev = 0, 0, -1  # next wanted, lines ended so far, last '\n' offset
            for off in range(0, size, CHUNK):
                ends = np.flatnonzero(data[off : off + CHUNK] == 10) + off
                while j < len(want) and want[j] <= done + len(ends):
                    i = want[j] - done - 1
                    start = prev + 1 if i == 0 else int(ends[i - 1]) + 1
                    out[want[j]] = text(mm[start : int(ends[i])], want[j])
                    j += 1
                if len(ends):
                    prev = int(ends[-1])
                done += len(ends)
                if j == len(want):
                    break
            if j < len(want) and want[j] == done + 1 and prev + 1 < size:  # no final '\n'
                out[want[j]] = text(mm[prev + 1 : size], want[j])
        finally:
            del data
    return out


def _timed_scan(path: Path) -> tuple[_FileScan, float]:
    t0 = time.perf_counter()
    scan = _scan_file(path)
    return scan, time.perf_counter() - t0


def _scan_all(paths: list[Path], cache: dict[Path, tuple[_FileScan, float]]) -> None:
    """Hash the files not hashed yet, on every core (hashlib releases the GIL)."""
    todo = [p for p in dict.fromkeys(paths) if p not in cache]
    if len(todo) > 1:
        with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            cache.update(zip(todo, pool.map(_timed_scan, todo), strict=True))
    else:
        cache.update((p, _timed_scan(p)) for p in todo)


def _not_text(path: Path, encoding: str) -> str | None:
    """Why a delivered text file is no text in the mapping's encoding at all (binary bytes,
    UTF-16), judged on its first 64 KB; else None."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return f"UTF-16 text (the mapping declares {encoding})"
    if b"\x00" in head:
        return f"binary content (NUL bytes), not {encoding} text"
    return None


def _line_breaks(path: Path) -> str:
    """'line breaks mixed: LF, CRLF' when a text file mixes kinds of line breaks (the usual
    reason the readers give up on it), else ''."""
    lf = cr = crlf = 0
    last = b""
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            crlf += chunk.count(b"\r\n") + (last == b"\r" and chunk[:1] == b"\n")
            lf, cr, last = lf + chunk.count(b"\n"), cr + chunk.count(b"\r"), chunk[-1:]
    kinds = [k for k, n in (("LF", lf - crlf), ("CRLF", crlf), ("CR", cr - crlf)) if n]
    return f"line breaks mixed: {', '.join(kinds)}" if len(kinds) > 1 else ""


SCRATCH_PREFIX = ".crm_ingest_"


@contextmanager
def _scratch(con: duckdb.DuckDBPyConnection):
    """The batch's scratch folder (transcoded copies of files: clear text), inside the
    folder of the database the connection writes (the restricted store's owner-only
    folder); the system's temporary folder only for an in-memory database. Scratch
    folders left behind by a crash are removed first (one writer per database file)."""
    path = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchone()
    parent = Path(path[0]).resolve().parent if path and path[0] else None
    if parent is not None:
        for old in parent.glob(SCRATCH_PREFIX + "*"):
            shutil.rmtree(old, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix=SCRATCH_PREFIX, dir=parent) as tmp:
        yield Path(tmp)
