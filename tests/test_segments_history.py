"""Point-in-time correctness of the segment history (docs/warehouse.md, "Segment history"):
the months fct_customer_segments_monthly holds after later nights equal what a build as of
each month's last day stored, quadrant included; and the dbt unit tests of the new models
(the transition across a year, the preferences) pass on the tiny build.

The tiny raw dataset of tests/support/dbt_tiny.py is built from scratch as of 2026-09-30
(September is complete), then by a nightly run as of 2026-10-31 on the same stores.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.dbt_tiny import build_vars, create_raw, query, run_dbt

pytestmark = pytest.mark.xdist_group("dbt_nightly")

HISTORY = "select * from marts.fct_customer_segments_monthly order by customer_month_id"
TRANSITIONS = "select * from marts.fct_segment_transitions order by transition_id"


def _build(work: Path, db: Path, as_of: str, *extra: str) -> None:
    run_dbt(["build", "--exclude", "source:clv+", *extra, "--vars", build_vars(as_of)], work, db)
    run_dbt(["build", "--select", "source:clv+", *extra, "--vars", build_vars(as_of)], work, db)


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("segments_history")
    db = work / "warehouse.duckdb"
    create_raw(db)
    _build(work, db, "2026-09-30")
    september = {"history": query(db, HISTORY), "transitions": query(db, TRANSITIONS)}
    _build(work, db, "2026-10-31")
    return {"work": work, "db": db, "september": september}


def test_the_history_of_a_month_equals_the_build_as_of_its_last_day(nights) -> None:
    db = nights["db"]
    september = nights["september"]
    # the build as of 2026-09-30 stored September only (the month of D is complete)
    assert september["history"]
    assert {row[3] for row in september["history"]} == {"2026-09"}
    # its quadrants are those the night of 09-30 computed: every customer has one
    assert all(row[15] is not None for row in september["history"])
    later = query(
        db,
        "select * from marts.fct_customer_segments_monthly "
        "where month = date '2026-09-01' order by customer_month_id",
    )
    assert later == september["history"]
    # the later night added October (complete on 10-31), with that night's quadrants
    assert {
        r[0] for r in query(db, "select month_label from marts.fct_customer_segments_monthly")
    } == {
        "2026-09",
        "2026-10",
    }
    # the movement into September did not change either
    assert (
        query(
            db,
            "select * from marts.fct_segment_transitions where month = date '2026-09-01' "
            "order by transition_id",
        )
        == september["transitions"]
    )


def test_transitions_count_each_customer_of_a_month_once_per_segment_type(nights) -> None:
    rows = query(
        nights["db"],
        """
        select t.month_label, t.segment_type, sum(t.customers) filter (where to_segment <> 'none'),
            (select count(*) from marts.fct_customer_segments_monthly h where h.month = t.month)
        from marts.fct_segment_transitions t group by t.month_label, t.segment_type, t.month
        """,
    )
    assert rows and all(r[2] == r[3] for r in rows), rows


def test_the_unit_tests_of_the_segment_models_pass(nights) -> None:
    run_dbt(
        [
            "test",
            "--select",
            "test_segment_transitions_across_a_year test_customer_preferences "
            "test_segment_history_adds_months_across_a_year",
            "--vars",
            build_vars("2026-10-31"),
        ],
        nights["work"],
        nights["db"],
    )
