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
