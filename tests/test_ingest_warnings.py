"""The warnings of a run's files, each said once: the columns a source's files carry beyond
its mapping are one line per source (the demo's 181 per-file lines a night were one
source's two extra columns), other warnings one line per file."""

from pipelines.ingest.results import FileResult, summarize_warnings


def _file(path: str, *warnings: str) -> FileResult:
    return FileResult(file=path, sha256="0", bytes=1, warnings=list(warnings))


def test_extra_columns_are_one_line_per_source() -> None:
    files = [
        _file("shop/2026-01-06/a.csv", "extra column(s) ignored: coupon, note"),
        _file("shop/2026-01-06/b.csv", "extra column(s) ignored: coupon"),
        _file("shop/2026-01-07/a.csv", "extra column(s) ignored: coupon"),
        _file("desk/2026-01-07/t.jsonl", "extra column(s) ignored: tags"),
        _file("shop/2026-01-07/c.csv", "every row quarantined: no data row"),
        _file("desk/2026-01-06/u.jsonl"),
    ]
    assert summarize_warnings(files) == [
        # desk: tags in 1 file, one delivery date
        "desk: extra column(s) ignored: tags (1 file); deliveries 2026-01-07 "
        "(no field of the mapping reads them)",
        # shop: coupon in 3 files (a, b on the 6th, a on the 7th), note in a.csv of the 6th
        "shop: extra column(s) ignored: coupon (3 files), note (1 file); deliveries "
        "2026-01-06 .. 2026-01-07 (no field of the mapping reads them)",
        "shop/2026-01-07/c.csv: every row quarantined: no data row",
    ]


def test_no_warnings_no_lines() -> None:
    assert summarize_warnings([_file("shop/2026-01-06/a.csv")]) == []


def test_keys_no_line_has_are_one_line_per_source() -> None:
    """A sparse JSON export leaves a key out of every line of many files (the demo's
    mall_members: real_name in 16 of 180 files): one line for the source, beside its extra
    columns, not one per file."""
    absent = "key(s) in no line, read as NULL: "
    files = [
        _file("mall/2026-05-14/m.jsonl", absent + "real_name", "extra column(s) ignored: openid"),
        _file("mall/2026-05-16/m.jsonl", absent + "real_name"),
        _file("mall/2026-06-01/m.jsonl", absent + "real_name, gender"),
    ]
    assert summarize_warnings(files) == [
        "mall: extra column(s) ignored: openid (1 file); deliveries 2026-05-14 "
        "(no field of the mapping reads them)",
        # real_name in 3 files, gender in 1; delivery dates from the 14th of May to 1 June
        "mall: key(s) in no line, read as NULL: real_name (3 files), gender (1 file); "
        "deliveries 2026-05-14 .. 2026-06-01 "
        "(a sparse export: the fields they map are NULL in those files)",
    ]
