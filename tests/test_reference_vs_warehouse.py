"""End to end: the pandas reference recomputes every KPI of ``marts.fct_kpi_monthly``
straight from the landing files and must agree with the warehouse.

Generates a small dataset (60 delivery days, fixed seed), runs the real pipeline on it
(``crm backfill``, i.e. ``python -m pipelines.cli backfill``, in a subprocess with
CRM_HOME = a temporary folder), reads the mart read-only and compares every
(month, segment, kpi), the quadrant segments of the month of D included (the reference
takes the CLV scores, clv.customer_scores as of D, from the warehouse and computes the
revenue ranks, engagement, quadrants and KPIs itself):

- counts exactly;
- rates, averages and money within 1e-9 relative (1e-9 absolute near zero);
- percentiles: DuckDB ``quantile_cont`` and pandas ``quantile(interpolation="linear")``
  are the same estimator (linear interpolation between closest ranks), so the same
  tolerance applies;
- NULL (no denominator) on both sides counts as equal;
- numerators and denominators, where both sides publish one, with the same tolerance.

A disagreement fails the test with a table of (month, segment, kpi, warehouse,
reference); docs/reference.md says how to judge which side is wrong.
"""

from __future__ import annotations

import math
import time
from datetime import date, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest
from reference.metrics import (
    COUNT_KPIS,
    MATURITY_DAYS,
    QUADRANTS,
    Month,
    Prepared,
    compute_kpis,
    compute_weekly_kpis,
    mature_service_kpis,
    mature_social_kpis,
    with_maturity,
)
from reference.metrics.operations import OPERATIONS_KPIS, SERVICE_KPIS
from support.e2e import END, SEED, backfill
from support.reference_demo import REL_TOL, prepared_reference, same

REPO = Path(__file__).resolve().parents[1]
DAYS = 60

# Readers of the shared `crm_home` in group "e2e"; a test that runs the pipeline in a group of
# its own (tests/conftest.py, GROUP_ORDER).
pytestmark = pytest.mark.slow


def warehouse_kpis(home: Path) -> pd.DataFrame:
    """The KPI rows of the metric dictionary's KPIs; the service-operations rows (the
    service KPIs per ticket channel, category and priority, NPS, complaints, one-touch,
    first assignment) are recomputed in tests/test_reference_service_operations.py. The
    business-hours SLA rates are compared for segment `all` here (and per ticket in
    test_reference_recomputes_business_hours_clocks); their rows per ticket channel, category and priority
    come from the same segmentation loop as the calendar rates and are left out."""
    db = home / "warehouse" / "warehouse.duckdb"
    operations = ", ".join(f"'{kpi}'" for kpi in OPERATIONS_KPIS)
    service = ", ".join(
        f"'{kpi}'"
        for kpi in (
            *SERVICE_KPIS,
            "first_response_business_sla_rate",
            "resolution_business_sla_rate",
        )
    )
    with duckdb.connect(str(db), read_only=True) as con:
        frame = con.sql(
            "select month, segment, kpi, value, numerator, denominator, is_complete "
            f"from marts.fct_kpi_monthly where kpi not in ({operations}) and not "
            f"(segment_type in ('channel', 'category', 'priority') and kpi in ({service}))"
        ).df()
    frame["month"] = pd.to_datetime(frame["month"]).dt.date
    for c in ("value", "numerator", "denominator"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float)
    return frame


def warehouse_clv_scores(home: Path, as_of: date = END) -> pd.DataFrame:
    """clv.customer_scores of the warehouse, the CLV model's scores as of D: the one input
    the reference takes from the warehouse (for the quadrant's expected_purchases_90d;
    the model is validated on its own, tests/test_clv.py)."""
    db = home / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        scores = con.sql(
            "select customer_id, expected_purchases_90d, is_stale, scored_as_of "
            "from clv.customer_scores"
        ).df()
    assert len(scores), "no CLV scores: the quadrant would be checked on engagement alone"
    assert set(pd.to_datetime(scores["scored_as_of"]).dt.date) == {as_of}
    assert not scores["is_stale"].any()
    return scores


@pytest.fixture(scope="module")
def reference_of_crm_home(crm_home: Path) -> Prepared:
    """`crm_home`'s landing files staged by the reference as of END, once for both tests
    that recompute from them (what it caches is keyed by what it computes)."""
    return prepared_reference(crm_home)


def reference_kpis(
    p: Prepared,
    segments: tuple[str, ...],
    first_month: date,
    clv_scores: pd.DataFrame | None = None,
) -> pd.DataFrame:
    kpis = compute_kpis(p, segments=segments, first_month=first_month, clv_scores=clv_scores)
    return with_maturity(kpis, p)  # metrics.md "Maturity": pending events, is_complete per KPI


def _equal(kpi: str, a: float, b: float) -> bool:
    a_null, b_null = a is None or math.isnan(a), b is None or math.isnan(b)
    if a_null or b_null:
        return a_null and b_null
    if kpi in COUNT_KPIS:
        return a == b
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL)


def _parts_equal(a: float, b: float) -> bool:
    """Numerators / denominators: compared when both sides publish one."""
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return True
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=REL_TOL)


def _row_agrees(r) -> bool:
    return (
        r.side == "both"
        and _equal(r.kpi, r.value_wh, r.value_ref)
        and _parts_equal(r.numerator_wh, r.numerator_ref)
        and _parts_equal(r.denominator_wh, r.denominator_ref)
        and bool(r.is_complete_wh) == bool(r.is_complete_ref)
    )


def compare(wh: pd.DataFrame, ref: pd.DataFrame) -> pd.DataFrame:
    """Rows where the two sides disagree (value, or a row on one side only)."""
    keys = ["month", "segment", "kpi"]
    both = wh.merge(ref, on=keys, how="outer", suffixes=("_wh", "_ref"), indicator="side")
    bad = [r for r in both.itertuples(index=False) if not _row_agrees(r)]
    cols = [*keys, "value_wh", "value_ref", "numerator_wh", "numerator_ref", "denominator_wh",
            "denominator_ref", "side"]  # fmt: skip
    return pd.DataFrame(bad, columns=both.columns)[cols] if bad else pd.DataFrame(columns=cols)


@pytest.mark.xdist_group("e2e")
def test_reference_recomputes_every_kpi(crm_home: Path, reference_of_crm_home: Prepared) -> None:
    started = time.monotonic()
    wh = warehouse_kpis(crm_home)
    assert len(wh), "marts.fct_kpi_monthly is empty"
    segments = tuple(sorted(wh["segment"].unique(), key=lambda s: (s != "all", s)))
    assert set(QUADRANTS) <= set(segments), "no quadrant segments in the warehouse"
    ref = reference_kpis(
        reference_of_crm_home,
        segments,
        min(wh["month"]),
        clv_scores=warehouse_clv_scores(crm_home),
    )
    print(f"reference: {time.monotonic() - started:.1f} s")
    bad = compare(wh, ref)
    with pd.option_context("display.width", 250, "display.max_rows", 400):
        assert bad.empty, f"{len(bad)} of {len(wh)} KPI rows disagree:\n{bad.to_string()}"


@pytest.mark.xdist_group("e2e_resumed")
def test_reference_after_a_resumed_backfill(tmp_path: Path) -> None:
    """Two backfills, the second starting 11 days after the first ended (a resumed
    backfill, or nights the pipeline did not run). docs/warehouse.md: the second run
    recomputes the months from the month of D - late_arrival_lookback_days (7) and every
    earlier month that the rows it delivered touch (late corrections up to 60 days old,
    records moved to another customer); the months nothing touched were published by the
    first run from the same rows. So every month must equal metrics.md as of the second
    D."""
    from pipelines.generate import generate

    first_end = date(2026, 10, 20)
    result = generate("small", SEED, tmp_path / "landing", days=DAYS)
    backfill(tmp_path, result.start, first_end)
    backfill(tmp_path, first_end + timedelta(days=1), END)
    wh = warehouse_kpis(tmp_path)
    segments = tuple(sorted(wh["segment"].unique(), key=lambda s: (s != "all", s)))
    first_month = min(wh["month"])
    # quadrant rows exist for the month of D only: October, recomputed as of END
    ref = reference_kpis(
        prepared_reference(tmp_path),
        segments,
        first_month,
        clv_scores=warehouse_clv_scores(tmp_path),
    )
    bad = compare(wh, ref)
    with pd.option_context("display.width", 250, "display.max_rows", 400):
        assert bad.empty, f"{len(bad)} of {len(wh)} KPI rows disagree:\n{bad.to_string()}"


@pytest.mark.xdist_group("e2e")
def test_reference_recomputes_maturity_pending_and_weekly_kpis(
    crm_home: Path, reference_of_crm_home: Prepared
) -> None:
    """metrics.md "Maturity" and the weekly mart, recomputed by the reference from the
    landing files: every KPI with maturity (segment all) per month with its value,
    numerator, denominator, pending count and is_complete (D >= end of M +
    maturity_days), and every row of fct_kpi_weekly."""
    db = crm_home / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        monthly = con.execute(
            "select month, kpi, value, numerator, denominator, pending, is_complete "
            "from marts.fct_kpi_monthly where segment = 'all' and maturity_days > 0"
        ).fetchall()
        weekly = con.execute(
            "select week, kpi, value, numerator, denominator, pending, is_complete, week_label "
            "from marts.fct_kpi_weekly"
        ).fetchall()
        first_date = con.execute("select min(first_date) from intermediate.int_kpi_months")
        first_date = first_date.fetchone()[0]
    assert {r[1] for r in monthly} == set(MATURITY_DAYS)
    assert any(r[5] > 0 for r in monthly), "no pending events at all as of D"
    p = reference_of_crm_home
    bad = []
    by_month: dict = {}
    for month, kpi, value, num, den, pending, complete in monthly:
        if month not in by_month:
            last = (pd.Timestamp(month) + pd.offsets.MonthEnd(0)).date()
            m = Month(pd.Timestamp(month), pd.Timestamp(month) - pd.Timedelta(days=1),
                      pd.Timestamp(min(last, END)), last <= END)  # fmt: skip
            by_month[month] = (mature_service_kpis(p, m) | mature_social_kpis(p, m), last)
        kpis, last = by_month[month]
        ref = kpis.get(kpi)
        ref_complete = last + timedelta(days=MATURITY_DAYS[kpi]) <= END
        if (
            ref is None
            or not (
                all(same(a, b) for a, b in zip((value, num, den, pending), ref, strict=True))
                or (kpi.startswith("first_response_minutes") and same(value, ref[0]))
            )
            or complete != ref_complete
        ):
            bad.append((month, kpi, (value, num, den, pending, complete), ref, ref_complete))
    ref_weekly = compute_weekly_kpis(p, first_date=first_date)
    ref_rows = {
        (r.week, r.kpi): (
            r.value,
            r.numerator,
            r.denominator,
            r.pending,
            r.is_complete,
            r.week_label,
        )
        for r in ref_weekly.itertuples(index=False)
    }
    assert len(ref_rows) == len(weekly)
    for week, kpi, value, num, den, pending, complete, label in weekly:
        ref = ref_rows.get((week, kpi))
        if ref is None or not (
            all(same(a, b) for a, b in zip((value, num, den, pending), ref[:4], strict=True))
            and complete == ref[4]
            and label == ref[5]
        ):
            bad.append((week, kpi, (value, num, den, pending, complete, label), ref, None))
    assert bad == [], f"{len(bad)} rows disagree:\n" + "\n".join(map(str, bad[:40]))


def test_reference_recomputes_business_hours_clocks(crm_home: Path) -> None:
    """docs/warehouse.md "SLA clocks": every ticket's business-hours clocks in
    marts.fct_service_tickets (working minutes, statuses, the instants the targets run out,
    breach times, waiting minutes) equal the reference's own per-minute computation
    (tests/reference/metrics/business_hours.py) on the generated data, which has tickets
    opened out of hours, over the National Day holidays and on make-up working days, and
    waiting periods."""
    from reference.metrics.business_hours import business_clocks

    db = crm_home / "warehouse" / "warehouse.duckdb"
    columns = (
        "first_response_business_minutes", "resolution_business_minutes",
        "first_response_business_sla_status", "resolution_business_sla_status",
        "first_response_business_due_at", "resolution_business_due_at",
        "first_response_business_breach_at", "resolution_business_breach_at",
        "waiting_minutes",
    )  # fmt: skip
    with duckdb.connect(str(db), read_only=True) as con:
        wh = con.sql(f"select ticket_id, {', '.join(columns)} from marts.fct_service_tickets").df()
        kinds = dict(
            con.execute(
                "select day_kind, count(*) from calendar.business_days group by 1"
            ).fetchall()
        )
    assert kinds.get("makeup_workday", 0) > 0 and kinds.get("holiday", 0) > 0
    wh = wh.set_index("ticket_id")
    p = prepared_reference(crm_home)
    ref = business_clocks(p)
    assert set(wh.index) == set(ref.index)
    ref = ref.loc[wh.index]
    # the data exercises every path: waiting, breaches on both clocks, pending clocks
    assert (ref["waiting_minutes"] > 0).sum() > 50
    assert ref["first_response_business_sla_status"].eq("breached").sum() > 10
    assert ref["resolution_business_sla_status"].eq("pending").sum() > 10
    bad = []
    for column in columns:
        a, b = wh[column], ref[column]
        if column.endswith("_status"):
            diff = ~((a == b) | (a.isna() & b.isna()))
        elif column.endswith("_at"):
            gap = (pd.to_datetime(a) - pd.to_datetime(b)).abs().dt.total_seconds()
            diff = ~((gap <= 1e-3) | (a.isna() & b.isna()))
        else:
            gap = (a.astype(float) - b.astype(float)).abs()
            diff = ~((gap <= 1e-6) | (a.isna() & b.isna()))
        for ticket in a.index[diff.to_numpy()][:5]:
            bad.append((column, ticket, a[ticket], b[ticket]))
    assert not bad, "warehouse vs reference (column, ticket, warehouse, reference):\n" + "\n".join(
        map(str, bad)
    )
