"""The review's "Segment movement" section (pipelines/publish/review_segments.py): the
transition matrix of the last month of fct_segment_transitions, in English and Chinese."""

from __future__ import annotations

import re
from datetime import date

import duckdb

from pipelines.publish.review_segments import load_movement, render_movement

TABLE = '"marts"."fct_segment_transitions"'


def _con() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("create schema marts")
    con.execute(
        "create table marts.fct_segment_transitions (month date, from_month date, "
        "segment_type varchar, from_segment varchar, to_segment varchar, customers integer)"
    )
    # December 2025 (the first month: everyone from none), January 2026 (hand-made):
    # new -> active 3, new -> new 2, active -> active 5, active -> dormant 1, none -> new 4
    con.execute(
        """insert into marts.fct_segment_transitions values
        ('2025-12-01', '2025-11-01', 'lifecycle_stage', 'none', 'new', 5),
        ('2025-12-01', '2025-11-01', 'lifecycle_stage', 'none', 'active', 6),
        ('2026-01-01', '2025-12-01', 'lifecycle_stage', 'new', 'active', 3),
        ('2026-01-01', '2025-12-01', 'lifecycle_stage', 'new', 'new', 2),
        ('2026-01-01', '2025-12-01', 'lifecycle_stage', 'active', 'active', 5),
        ('2026-01-01', '2025-12-01', 'lifecycle_stage', 'active', 'dormant', 1),
        ('2026-01-01', '2025-12-01', 'lifecycle_stage', 'none', 'new', 4),
        ('2026-01-01', '2025-12-01', 'vip', 'not_vip', 'vip', 1)"""
    )
    return con


def _rows(html: str) -> list[list[str]]:
    table = re.search(r'data-segment-type="lifecycle_stage".*?</table>', html, re.S).group(0)
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<t[hd][^>]*>.*?</t[hd]>", row)]
        for row in re.findall(r"<tr>.*?</tr>", table, re.S)
    ]


def test_the_matrix_shows_the_last_month_across_the_year() -> None:
    movement = load_movement(_con(), TABLE)
    assert movement["month"] == date(2026, 1, 1)
    assert movement["from_month"] == date(2025, 12, 1)
    html = str(render_movement(movement, "en"))
    assert "end of 2025-12 (rows) and at the end of 2026-01" in html
    # rows: none, new, active (lifecycle order); columns: new, active, dormant; + total
    assert _rows(html) == [
        ["from \\ to", "New", "Active", "Dormant", "total"],
        ["none", "4", "", "", "4"],
        ["New", "2", "3", "", "5"],
        ["Active", "", "5", "1", "6"],
    ]
    zh = str(render_movement(movement, "zh"))
    assert "分群迁移" not in zh  # the title is the page's heading
    assert _rows(zh)[0][-1] == "合计" and _rows(zh)[1][0] == "无"
    assert 'data-segment-type="vip"' in html


def test_without_the_table_or_a_second_month_the_section_says_so() -> None:
    assert load_movement(duckdb.connect(), None) is None  # the review found no table
    con = _con()
    con.execute("delete from marts.fct_segment_transitions where month = date '2026-01-01'")
    assert load_movement(con, TABLE) is None
    assert "No complete month" in str(render_movement(None, "en"))
