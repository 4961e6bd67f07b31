"""End to end: the pandas reference (tests/reference/metrics/operations.py) recomputes the
service-operations outputs from the landing files of the e2e backfill and must agree with
the warehouse:

- every row of ``marts.fct_agent_daily`` (agent rows keyed by the agent's pseudonym,
  computed here with the tests' key, team rows by team);
- every ``fct_kpi_monthly`` row of the service KPIs per ticket channel, category and
  priority (pending events left out, as the warehouse), and of NPS, the complaint KPIs,
  one-touch resolution and time to first assignment, in every segment.

Counts exactly, rates and percentiles within 1e-9 relative (the tolerance of
tests/test_reference_vs_warehouse.py); NULL on both sides is equal.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pandas as pd
import pytest
from reference.metrics import Month
from reference.metrics.months import month_ends
from reference.metrics.operations import (
    OPERATIONS_KPIS,
    SERVICE_KPIS,
    agent_daily,
    read_agent_teams,
    segment_service_kpis,
)
from support.e2e import END
from support.pseudonyms import expected_customer_id
from support.reference_demo import SEEDS, prepared_reference, same

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e")]


@pytest.fixture(scope="module")
def prepared(crm_home: Path):
    return prepared_reference(crm_home), read_agent_teams(SEEDS / "agent_teams.csv")


def _warehouse(home: Path, sql: str) -> pd.DataFrame:
    with duckdb.connect(str(home / "warehouse" / "warehouse.duckdb"), read_only=True) as con:
        return con.sql(sql).df()


def test_reference_recomputes_fct_agent_daily(crm_home: Path, prepared) -> None:
    p, teams = prepared
    ref = agent_daily(p, teams)
    assert len(ref) and ref["level"].eq("agent").any(), "no agent in the e2e data"
    ref["agent_daily_id"] = [
        f"{day.isoformat()}|{level}|{expected_customer_id(agent) if level == 'agent' else team}"
        for day, level, agent, team in ref[["activity_date", "level", "agent", "team"]].itertuples(
            index=False
        )
    ]
    wh = _warehouse(crm_home, "select * from marts.fct_agent_daily")
    assert set(wh["agent_daily_id"]) == set(ref["agent_daily_id"])
    # the demo roster names every generated agent: no agent ends in team unassigned
    assert not wh.loc[wh["level"].eq("agent"), "team"].eq("unassigned").any()
    columns = [c for c in ref.columns if c not in ("activity_date", "level", "agent", "team",
                                                     "agent_daily_id")]  # fmt: skip
    merged = wh.merge(ref, on="agent_daily_id", suffixes=("_wh", "_ref"))
    bad = [
        (row["agent_daily_id"], c, row[f"{c}_wh"], row[f"{c}_ref"])
        for _, row in merged.iterrows()
        for c in columns
        if not same(row[f"{c}_wh"], row[f"{c}_ref"])
    ]
    assert bad == [], f"{len(bad)} values disagree, e.g. {bad[:10]}"


def test_reference_recomputes_breakdowns_nps_and_complaints(crm_home: Path, prepared) -> None:
    p, teams = prepared
    operations = ", ".join(f"'{kpi}'" for kpi in OPERATIONS_KPIS)
    service = ", ".join(f"'{kpi}'" for kpi in SERVICE_KPIS)
    wh = _warehouse(
        crm_home,
        "select month, segment_type, segment, kpi, value, numerator, denominator, pending "
        f"from marts.fct_kpi_monthly where kpi in ({operations}) or "
        f"(segment_type in ('channel', 'category', 'priority') and kpi in ({service}))",
    )
    wh["month"] = pd.to_datetime(wh["month"]).dt.date
    first = min(wh["month"])
    frames = []
    for month, start, end, complete in month_ends(first, END):
        m = Month(pd.Timestamp(month), pd.Timestamp(start), pd.Timestamp(end), complete)
        frames.append(segment_service_kpis(p, m, teams).assign(month=month))
    ref = pd.concat(frames, ignore_index=True)
    # every new KPI has a value in the demo data
    assert set(OPERATIONS_KPIS) <= set(ref.loc[ref["value"].notna(), "kpi"])
    keys = ["month", "segment_type", "segment", "kpi"]
    both = wh.merge(ref, on=keys, how="outer", suffixes=("_wh", "_ref"), indicator="side")
    bad = [
        r
        for r in both.itertuples(index=False)
        if r.side != "both"
        or not all(
            same(getattr(r, f"{c}_wh"), getattr(r, f"{c}_ref"))
            for c in ("value", "numerator", "denominator", "pending")
        )
    ]
    with pd.option_context("display.width", 250, "display.max_rows", 200):
        assert bad == [], f"{len(bad)} of {len(wh)} rows disagree:\n{pd.DataFrame(bad).head(60)}"


def test_the_demo_has_reassignments_and_one_touch_tickets(crm_home: Path) -> None:
    reassigned, one_touch, agents = _warehouse(
        crm_home,
        "select count(*) filter (where reassignment_count > 0), "
        "count(*) filter (where is_one_touch_resolution), count(distinct agent_id) "
        "from marts.fct_service_tickets",
    ).iloc[0]
    assert reassigned > 0 and one_touch > 0 and agents >= 12
