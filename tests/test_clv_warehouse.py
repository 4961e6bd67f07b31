"""The CLV asset's summaries computed in DuckDB (pipelines/models/assets.py).

The asset summarises the orders per customer in SQL instead of loading them into pandas.
Its summaries are checked against values worked out by hand and against the pandas
summary of tests/test_clv.py (clv.summarise_transactions), an independent implementation;
the scores and the holdout check of the whole pipeline against the pandas path run on the
warehouse's own orders.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from test_clv import HAND_SUMMARY, simulate_bgnbd_orders

from pipelines.lib.duck import connect
from pipelines.lib.resources import CrmSettingsResource
from pipelines.models import clv
from pipelines.models.assets import (
    HOLDOUT_DAYS,
    build_clv_asset,
    holdout_summary,
    order_summary,
    previous_fit,
    purchase_days,
    write_scores,
)

ORDERS_DDL = """
    create schema marts;
    create table marts.fct_orders (
        order_id varchar, customer_id varchar, order_date date, is_cancelled boolean,
        net_revenue decimal(18, 2)
    )
"""


def _warehouse(rows: list[tuple]) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(ORDERS_DDL)
    con.executemany("insert into marts.fct_orders values (?, ?, ?, ?, ?)", rows)
    return con


HAND = [
    # A: Jan 1 (10.00 + 5.00), Jan 15 (20.10 + 4.00), Jan 29 (30.00); a cancelled order on
    # Feb 5 does not count
    ("o1", "A", date(2024, 1, 1), False, Decimal("10.00")),
    ("o2", "A", date(2024, 1, 1), False, Decimal("5.00")),
    ("o3", "A", date(2024, 1, 15), False, Decimal("20.10")),
    ("o4", "A", date(2024, 1, 15), False, Decimal("4.00")),
    ("o5", "A", date(2024, 1, 29), False, Decimal("30.00")),
    ("o6", "A", date(2024, 2, 5), True, Decimal("999.00")),
    # B: one day, two weeks before D
    ("o7", "B", date(2024, 2, 12), False, Decimal("99.00")),
    # C: Feb 1; its Mar 10 order is after D
    ("o8", "C", date(2024, 2, 1), False, Decimal("7.00")),
    ("o9", "C", date(2024, 3, 10), False, Decimal("1000.00")),
    # no customer: not resolved, not counted
    ("o10", None, date(2024, 1, 8), False, Decimal("50.00")),
    # E: a repeat day whose value is 0.10 - 0.10 = 0 exactly (a refund the same day)
    ("o11", "E", date(2024, 1, 3), False, Decimal("0.10")),
    ("o12", "E", date(2024, 1, 10), False, Decimal("0.10")),
    ("o13", "E", date(2024, 1, 10), False, Decimal("-0.10")),
    # F: only after D
    ("o14", "F", date(2024, 3, 1), False, Decimal("5.00")),
    # G: a first day whose revenue is unknown (NULL counts as 0), then 8.00 a week later
    ("o15", "G", date(2024, 2, 5), False, None),
    ("o16", "G", date(2024, 2, 12), False, Decimal("8.00")),
]
D = date(2024, 2, 26)


def test_order_summary_by_hand() -> None:
    summary = order_summary(_warehouse(HAND), D)
    assert summary.index.tolist() == ["A", "B", "C", "E", "G"]
    # A: purchase days Jan 1 (15.00), Jan 15 (24.10), Jan 29 (30.00); D is 8 weeks after
    # Jan 1; the repeat days' mean value (24.10 + 30.00) / 2
    assert summary.loc["A"].tolist() == [2, 4.0, 8.0, pytest.approx(27.05, abs=1e-12)]
    assert summary.loc["B"].tolist() == [0, 0.0, 2.0, 0.0]
    assert summary.loc["C"].tolist() == [0, 0.0, 25 / 7, 0.0]
    # E's repeat day is worth exactly 0 (it stays out of the spend fit, which needs > 0)
    assert summary.loc["E"].tolist() == [1, 1.0, 54 / 7, 0.0]
    assert summary.loc["G"].tolist() == [1, 1.0, 3.0, 8.0]
    assert summary["frequency"].dtype == np.int64


def _pandas_orders(rows: list[tuple]) -> pd.DataFrame:
    frame = pd.DataFrame(
        rows, columns=["order_id", "customer_id", "order_date", "is_cancelled", "net_revenue"]
    )
    frame = frame[~frame["is_cancelled"]]
    return frame.assign(
        order_date=pd.to_datetime(frame["order_date"]),
        net_revenue=frame["net_revenue"].astype(float),
    )


def test_order_summary_equals_the_pandas_summary() -> None:
    rng = np.random.default_rng(11)
    orders = simulate_bgnbd_orders(
        3_000, pd.Timestamp("2023-01-01"), pd.Timestamp("2024-12-31"), seed=5
    )
    cents = rng.integers(-500, 50_000, len(orders))
    rows = [
        (f"o{i}", f"c{c:05d}", d.date(), bool(cancel), Decimal(int(v)) / 100)
        for i, (c, d, v, cancel) in enumerate(
            zip(
                orders["customer_id"],
                orders["order_date"],
                cents,
                rng.random(len(orders)) < 0.05,
                strict=True,
            )
        )
    ]
    con = _warehouse(rows)
    expected_orders = _pandas_orders(rows)
    for as_of in (date(2024, 6, 30), date(2024, 12, 31)):
        got = order_summary(con, as_of)
        # the asset's path: the purchase days once, in a temporary table (then dropped)
        with purchase_days(con, as_of) as days:
            pd.testing.assert_frame_equal(order_summary(con, as_of, days), got)
        assert con.execute("select count(*) from duckdb_tables() where temporary").fetchone() == (
            0,
        )
        expected = clv.summarise_transactions(
            expected_orders, "customer_id", "order_date", as_of, "net_revenue"
        )
        assert got.index.tolist() == expected.index.tolist()
        assert got["frequency"].tolist() == expected["frequency"].tolist()
        for column in ("recency", "T", "monetary_value"):
            np.testing.assert_allclose(got[column], expected[column], rtol=1e-12, atol=1e-9)


def test_holdout_summary_and_check_equal_the_pandas_path() -> None:
    orders = simulate_bgnbd_orders(
        5_000, pd.Timestamp("2023-01-01"), pd.Timestamp("2024-12-31"), seed=20241
    )
    as_of = date(2024, 12, 31)
    rng = np.random.default_rng(3)
    rows = [
        (f"o{i}", f"c{c:05d}", d.date(), bool(cancel), Decimal("1.00"))
        for i, (c, d, cancel) in enumerate(
            zip(
                orders["customer_id"],
                orders["order_date"],
                rng.random(len(orders)) < 0.05,
                strict=True,
            )
        )
    ]
    # orders after D (of a customer with earlier orders, and of a new one) and without a
    # customer count nowhere
    rows += [
        ("late1", "c00000", date(2025, 1, 5), False, Decimal("1.00")),
        ("late2", "z99999", date(2025, 1, 6), False, Decimal("1.00")),
        ("anon1", None, date(2024, 11, 20), False, Decimal("1.00")),
        ("anon2", None, date(2024, 5, 20), False, Decimal("1.00")),
    ]
    con = _warehouse(rows)
    got = holdout_summary(con, as_of, HOLDOUT_DAYS)
    with purchase_days(con, as_of) as days:
        pd.testing.assert_frame_equal(holdout_summary(con, as_of, HOLDOUT_DAYS, days), got)

    frame = _pandas_orders(rows)
    end = pd.Timestamp(as_of) - pd.Timedelta(days=HOLDOUT_DAYS)
    expected = clv.summarise_transactions(frame, "customer_id", "order_date", end)
    after = frame[(frame["order_date"] > end) & (frame["order_date"] <= pd.Timestamp(as_of))]
    actual = after.drop_duplicates(["customer_id", "order_date"]).groupby("customer_id").size()
    assert got.index.tolist() == expected.index.tolist()
    assert got["frequency"].tolist() == expected["frequency"].tolist()
    np.testing.assert_allclose(got["recency"], expected["recency"], rtol=1e-12)
    np.testing.assert_allclose(got["T"], expected["T"], rtol=1e-12)
    assert got["actual"].tolist() == actual.reindex(expected.index, fill_value=0).tolist()

    table = clv.holdout_from_summary(got, HOLDOUT_DAYS)
    reference = clv.calibration_holdout(frame, as_of, HOLDOUT_DAYS)
    assert table.attrs["fit"].converged
    assert table["bucket"].tolist() == reference["bucket"].tolist()
    assert table["customers"].tolist() == reference["customers"].tolist()
    np.testing.assert_allclose(table["actual_mean"], reference["actual_mean"], rtol=1e-12)
    np.testing.assert_allclose(table["predicted_mean"], reference["predicted_mean"], rtol=1e-6)


@pytest.mark.xdist_group("e2e")
def test_the_pipelines_scores_equal_the_pandas_path(crm_home: Path) -> None:
    """The asset's scores and holdout table, against score_customers and
    calibration_holdout run on the warehouse's orders loaded into pandas."""
    db = crm_home / "warehouse" / "warehouse.duckdb"
    with duckdb.connect(str(db), read_only=True) as con:
        scores = con.sql("select * from clv.customer_scores order by customer_id").df()
        as_of = scores["scored_as_of"].iloc[0]
        as_of = as_of.date() if hasattr(as_of, "date") else as_of
        orders = con.execute(
            "select customer_id, order_date, net_revenue::double as net_revenue "
            "from marts.fct_orders where customer_id is not null and not is_cancelled",
        ).df()
        holdout = con.execute(
            "select bucket, customers, predicted_mean, actual_mean from clv.holdout_validation "
            "where as_of_date = ? order by bucket",
            [as_of],
        ).df()
    orders = orders[pd.to_datetime(orders["order_date"]) <= pd.Timestamp(as_of)]
    expected, info = clv.score_customers(orders, as_of)
    assert clv.usable(info) and len(scores) == len(expected) > 100
    expected = expected.sort_values("customer_id").reset_index(drop=True)
    assert scores["customer_id"].tolist() == expected["customer_id"].tolist()
    for column in ("p_alive", "expected_purchases_90d"):
        np.testing.assert_allclose(scores[column], expected[column], rtol=1e-6, atol=1e-9)
    # clv_365d is stored rounded to the cent
    np.testing.assert_allclose(
        scores["clv_365d"].astype(float), expected["clv_365d"], rtol=1e-6, atol=0.006
    )

    reference = clv.calibration_holdout(orders, as_of, HOLDOUT_DAYS)
    assert len(holdout) and holdout["bucket"].tolist() == reference["bucket"].astype(str).tolist()
    assert holdout["customers"].tolist() == reference["customers"].tolist()
    np.testing.assert_allclose(holdout["actual_mean"], reference["actual_mean"], rtol=1e-12)
    np.testing.assert_allclose(holdout["predicted_mean"], reference["predicted_mean"], rtol=1e-6)


# --------------------------------------------------------------------------------------
# A failed fit: flagged, recorded, and every customer scored
# --------------------------------------------------------------------------------------

#: clv.clv_model_runs as created before fit_status and the scoring methods were recorded
OLD_RUNS_DDL = """
    create schema clv;
    create table clv.clv_model_runs (
        run_id varchar, as_of_date date, fitted_at timestamp, used boolean, converged boolean,
        r double, alpha double, a double, b double, gg_p double, gg_q double, gg_gamma double,
        log_likelihood double, gg_log_likelihood double, n_customers bigint, n_repeat bigint,
        fit_seconds double, warnings varchar
    )
"""
ACCEPTED = (0.2426, 4.4136, 0.7929, 2.4259, 6.25, 3.74, 15.44)


def _old_run(con: duckdb.DuckDBPyConnection, run_id: str, as_of: date, converged: bool) -> None:
    con.execute(
        "insert into clv.clv_model_runs values "
        "(?, ?, now()::timestamp, true, ?, ?, ?, ?, ?, ?, ?, ?, -9582.4, -4000, 2357, 946, 1, '[]')",
        [run_id, as_of, converged, *ACCEPTED],
    )


def test_failed_fit_uses_the_last_accepted_run_as_of_d() -> None:
    """The previous parameters: the last accepted run dated D or before (never a later D,
    never a failed run), read from a runs table of the earlier layout, which gains the new
    columns; the failed run is recorded with its flag and methods."""
    con = duckdb.connect()
    con.execute(OLD_RUNS_DDL)
    _old_run(con, "accepted", date(2024, 12, 1), True)
    _old_run(con, "failed", date(2024, 12, 20), False)
    _old_run(con, "later", date(2025, 1, 5), True)
    previous = previous_fit(con, date(2024, 12, 31))
    assert previous is not None
    assert previous == dict(
        zip(("r", "alpha", "a", "b", "gg_p", "gg_q", "gg_gamma"), ACCEPTED, strict=True),
        as_of=date(2024, 12, 1),
    )
    assert previous_fit(con, date(2024, 11, 30)) is None

    with pytest.warns(clv.ModelWarning, match="CLV fit failed"):
        scores, info = clv.score_summary(HAND_SUMMARY, "2024-12-31", previous=previous)
    assert write_scores(con, scores, info, date(2024, 12, 31), "tonight")
    stored = con.execute(
        "select used, converged, fit_status, purchase_method, spend_method, params_as_of "
        "from clv.clv_model_runs where run_id = 'tonight'"
    ).fetchall()
    assert stored == [(True, False, "failed", "previous_fit", "previous_fit", date(2024, 12, 1))]
    got = con.execute(
        "select customer_id, p_alive, is_stale, scored_as_of from clv.customer_scores "
        "order by customer_id"
    ).fetchall()
    assert [row[0] for row in got] == list("ABCDEF")
    assert all(0 <= row[1] <= 1 and row[2] is False for row in got)
    # a failed run is never the fallback of a later one
    assert previous_fit(con, date(2025, 1, 1))["as_of"] == date(2024, 12, 1)


def test_the_asset_flags_a_failed_fit_and_scores_every_buyer(tmp_path: Path) -> None:
    """60 one-time buyers (no repeat purchase: the fit fails) in a real warehouse file:
    the materialization says so, every buyer gets the empirical rule's finite scores."""
    crm = CrmSettingsResource(
        home=str(tmp_path / "home"),
        mappings_dir=str(tmp_path),
        landing_dir=str(tmp_path / "landing"),
    )
    rows = [
        (f"o{i}", f"c{i:03d}", date(2024, 1, 1) + pd.Timedelta(days=5 * i).to_pytimedelta(),
         False, Decimal("25.00"))
        for i in range(60)
    ]  # fmt: skip
    with connect(crm.settings.warehouse_db) as con:
        con.execute(ORDERS_DDL)
        con.executemany("insert into marts.fct_orders values (?, ?, ?, ?, ?)", rows)
    asset = build_clv_asset(dg.DailyPartitionsDefinition(start_date="2024-01-01"))
    result = dg.materialize([asset], resources={"crm": crm}, partition_key="2024-12-31")
    assert result.success
    (materialization,) = result.asset_materializations_for_node(asset.op.name)
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert meta["fit_status"] == "failed" and meta["scores_written"] is True
    assert (meta["purchase_method"], meta["spend_method"]) == ("empirical", "empirical")
    assert "only 0 repeat buyers" in meta["warnings"]
    with connect(crm.settings.warehouse_db, read_only=True) as con:
        scores = con.sql("select * from clv.customer_scores order by customer_id").df()
        run = con.execute("select fit_status, used from clv.clv_model_runs").fetchall()
    assert run == [("failed", True)]
    assert len(scores) == 60 and scores[["p_alive", "expected_purchases_90d"]].notna().all().all()
    # c035 bought on 2024-06-24 (190 days before D): inactive; c036 on 2024-06-29 (185),
    # c037 on 2024-07-04 (180): inactive; c038 on 2024-07-09 (175 days): active
    active = scores.set_index("customer_id")["p_alive"]
    assert active[[f"c{i:03d}" for i in (35, 36, 37, 38, 59)]].tolist() == [0, 0, 0, 1, 1]
    assert (scores["expected_purchases_90d"] == 0).all()
