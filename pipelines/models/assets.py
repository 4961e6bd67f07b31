"""The churn / lifetime-value model as a Dagster asset (BG/NBD + Gamma-Gamma, see docs/clv.md)."""

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import date, timedelta

import dagster as dg
import duckdb
import pandas as pd

from pipelines.lib.duck import connect
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.retry import TRANSIENT_RETRY
from pipelines.lib.settings import Settings
from pipelines.models.clv import holdout_from_summary, score_summary, usable

#: Purchase days of resolved customers as of D (metrics.md: an order is a distinct order_id
#: whose status is not cancelled): one row per customer and day with orders, their values
#: summed (orders of one day are one purchase). Summed as DECIMAL, so the first day's value
#: comes off exactly; a NULL net revenue counts as 0, as in score_customers (the column has
#: a not_null test).
PURCHASE_DAYS_SQL = """
    select customer_id, order_date as day, coalesce(sum(net_revenue), 0) as value
    from marts.fct_orders
    where customer_id is not null and not is_cancelled and order_date <= $as_of
    group by customer_id, order_date
"""

#: Per customer, in the shape of clv.summarise_transactions: frequency = repeat purchase
#: days, recency and T in weeks, monetary_value = mean value of the repeat purchase days (0
#: without); `{days}` is a relation of PURCHASE_DAYS_SQL's rows. Loading the 11 M orders of
#: the large preset into pandas and grouping them there took ~20 s per summary
#: (docs/performance.md).
SUMMARY_SQL = """
    select
        customer_id,
        count(*) - 1 as frequency,
        (max(day) - min(day))::double / 7 as recency,
        ($as_of::date - min(day))::double / 7 as "T",
        coalesce(
            (sum(value) - arg_min(value, day))::double / nullif(count(*) - 1, 0), 0
        )::double as monetary_value
    from {days}
    group by customer_id
    order by customer_id
"""

#: The calibration / holdout check's summary: per customer with an order up to D - h, the
#: summary as of D - h and ``actual``, their purchase days in (D - h, D].
HOLDOUT_SQL = """
    select
        customer_id,
        count(*) filter (where day <= $end) - 1 as frequency,
        (max(day) filter (where day <= $end) - min(day))::double / 7 as recency,
        ($end::date - min(day))::double / 7 as "T",
        count(*) filter (where day > $end) as actual
    from {days}
    group by customer_id
    having min(day) <= $end
    order by customer_id
"""

#: Days of the calibration / holdout check (docs/clv.md).
HOLDOUT_DAYS = 90


#: Orders the summary counts with a NULL net revenue (as 0): a note of the run.
NULL_REVENUE_SQL = """
    select count(*) from marts.fct_orders
    where customer_id is not null and not is_cancelled and order_date <= ? and net_revenue is null
"""

#: The temporary table both summaries of a night read (one pass over the orders instead of
#: two: 9.1 -> 6.6 s at the large preset).
PURCHASE_DAYS_TABLE = "clv_purchase_days"


def _days(days: str | None) -> str:
    return days if days is not None else f"({PURCHASE_DAYS_SQL}) as days"


def order_summary(con, as_of: date, days: str | None = None) -> pd.DataFrame:
    """Per-customer frequency, recency, T and monetary_value as of ``as_of`` (index:
    customer_id), computed in DuckDB from ``marts.fct_orders`` (or from ``days``, a table of
    its purchase days as of ``as_of``: see `purchase_days`)."""
    return (
        con.execute(SUMMARY_SQL.format(days=_days(days)), {"as_of": as_of})
        .df()
        .set_index("customer_id")
    )


def holdout_summary(con, as_of: date, holdout_days: int, days: str | None = None) -> pd.DataFrame:
    """Summary as of ``as_of - holdout_days`` and the purchase days after it, up to
    ``as_of`` (column ``actual``); index: customer_id. ``days``: as in `order_summary`."""
    end = as_of - timedelta(days=holdout_days)
    params = {"end": end} if days is not None else {"as_of": as_of, "end": end}
    return con.execute(HOLDOUT_SQL.format(days=_days(days)), params).df().set_index("customer_id")


@contextmanager
def purchase_days(con, as_of: date) -> Iterator[str]:
    """The purchase days as of ``as_of`` in a temporary table (its name), dropped after."""
    con.execute(
        f"create or replace temp table {PURCHASE_DAYS_TABLE} as {PURCHASE_DAYS_SQL}",
        {"as_of": as_of},
    )
    try:
        yield PURCHASE_DAYS_TABLE
    finally:
        con.execute(f"drop table if exists {PURCHASE_DAYS_TABLE}")


RUNS_DDL = """
    create schema if not exists clv;
    create table if not exists clv.customer_scores (
        customer_id varchar, p_alive double, expected_purchases_90d double,
        clv_365d decimal(18, 2), is_stale boolean, scored_as_of date
    );
    create table if not exists clv.clv_model_runs (
        run_id varchar, as_of_date date, fitted_at timestamp, used boolean, converged boolean,
        r double, alpha double, a double, b double, gg_p double, gg_q double, gg_gamma double,
        log_likelihood double, gg_log_likelihood double, n_customers bigint, n_repeat bigint,
        fit_seconds double, warnings varchar
    );
    alter table clv.clv_model_runs add column if not exists fit_status varchar;
    alter table clv.clv_model_runs add column if not exists purchase_method varchar;
    alter table clv.clv_model_runs add column if not exists spend_method varchar;
    alter table clv.clv_model_runs add column if not exists params_as_of date;
    create table if not exists clv.holdout_validation (
        as_of_date date, bucket varchar, customers bigint, predicted_mean double, actual_mean double
    );
"""


#: The last accepted run (both fits converged) as of D or before: the parameters a night
#: whose fit fails scores with (docs/clv.md, "When the fit fails").
PREVIOUS_FIT_SQL = """
    select r, alpha, a, b, gg_p, gg_q, gg_gamma, as_of_date as as_of
    from clv.clv_model_runs
    where converged and as_of_date <= ? and r is not null and gg_p is not null
    order by as_of_date desc, fitted_at desc
    limit 1
"""


def previous_fit(con, as_of: date) -> dict | None:
    """The parameters of the last accepted run as of ``as_of`` or before (None if none)."""
    con.execute(RUNS_DDL)
    row = con.execute(PREVIOUS_FIT_SQL, [as_of]).fetchone()
    if row is None:
        return None
    names = ("r", "alpha", "a", "b", "gg_p", "gg_q", "gg_gamma", "as_of")
    return dict(zip(names, row, strict=True))


def write_scores(con, scores: pd.DataFrame, run_info: dict, as_of: date, run_id: str) -> bool:
    """Replace the scores (from the fit or its fallback, run_info's methods); when there is
    nothing to score keep the previous scores and mark them stale. Records the run either
    way. Returns whether new scores were written."""
    con.execute(RUNS_DDL)
    ok = len(scores) > 0
    con.execute("begin")
    if ok:
        con.register("new_scores", scores)
        con.execute("delete from clv.customer_scores")
        con.execute(
            """insert into clv.customer_scores
               select customer_id, p_alive, expected_purchases_90d,
                      round(clv_365d, 2)::decimal(18, 2), false, ?::date from new_scores""",
            [as_of],
        )
        con.unregister("new_scores")
    else:
        con.execute("update clv.customer_scores set is_stale = true")
    con.execute(
        """insert into clv.clv_model_runs (
               run_id, as_of_date, fitted_at, used, converged, r, alpha, a, b, gg_p, gg_q,
               gg_gamma, log_likelihood, gg_log_likelihood, n_customers, n_repeat, fit_seconds,
               warnings, fit_status, purchase_method, spend_method, params_as_of
           ) values (?, ?, now()::timestamp, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""",
        [
            run_id, as_of, ok, bool(usable(run_info)),
            run_info.get("r"), run_info.get("alpha"), run_info.get("a"), run_info.get("b"),
            run_info.get("gg_p"), run_info.get("gg_q"), run_info.get("gg_gamma"),
            run_info.get("log_likelihood"), run_info.get("gg_log_likelihood"),
            run_info.get("n_customers"), run_info.get("n_repeat"), run_info.get("fit_seconds"),
            json.dumps(run_info.get("warnings", []), ensure_ascii=False),
            run_info.get("fit_status"), run_info.get("purchase_method"),
            run_info.get("spend_method"), run_info.get("params_as_of"),
        ],
    )  # fmt: skip
    con.execute("commit")
    return ok


#: Writes clv.customer_scores as Parquet for Spark: (warehouse connection, settings) ->
#: rows. Passed in by the composition layer (pipelines/definitions.py), so that the model
#: does not depend on pipelines/spark.
ScoresExport = Callable[[duckdb.DuckDBPyConnection, Settings], int]


def build_clv_asset(
    partitions_def: dg.PartitionsDefinition,
    dbt_assets: Sequence[dg.AssetsDefinition] | None = None,
    spark_export: ScoresExport | None = None,
) -> dg.AssetsDefinition:
    """The CLV scores: the asset behind dbt's source `clv`, downstream of the model
    `fct_orders`; both keys come from the dbt assets (`dbt_assets`, default: built from the
    project's manifest), as dagster-dbt names them. `spark_export` writes the scores for
    Spark when CRM_SPARK_EXPORT is on."""
    from dagster_dbt import get_asset_key_for_model, get_asset_key_for_source

    if dbt_assets is None:
        from pipelines.transform.assets import build_dbt_assets

        dbt_assets = build_dbt_assets(partitions_def)
    # dagster-dbt looks the names up in the manifest of one dbt AssetsDefinition (all of
    # ours share the project's manifest and translator)
    project = [dbt_assets[0]]

    @dg.asset(
        key=get_asset_key_for_source(project, "clv"),
        deps=[get_asset_key_for_model(project, "fct_orders")],
        group_name="models",
        partitions_def=partitions_def,
        backfill_policy=dg.BackfillPolicy.single_run(),
        retry_policy=TRANSIENT_RETRY,
        pool="warehouse",
        kinds={"python", "duckdb"},
    )
    def clv_customer_scores(
        context: dg.AssetExecutionContext, crm: CrmSettingsResource
    ) -> dg.MaterializeResult:
        """BG/NBD (purchase and dropout) and Gamma-Gamma (spend) fitted on every customer with
        at least one order as of D; per customer p_alive, expected_purchases_90d and clv_365d.
        A fit that fails (too few customers, no repeat buyers, no convergence, non-finite
        predictions) is logged as an error and flagged (fit_status in the metadata and in
        clv.clv_model_runs); the customers are then scored with the last accepted run's
        parameters, else with an empirical rule (docs/clv.md), never NaN. Also writes the
        calibration/holdout check (fit to D-90, compare the next 90 days)."""
        as_of = date.fromisoformat(
            context.partition_key_range.end
            if context.has_partition_key_range
            else context.partition_key
        )
        with connect(crm.settings.warehouse_db) as con, purchase_days(con, as_of) as days:
            summary = order_summary(con, as_of, days)
            context.log.info(f"CLV: {len(summary):,} customers with orders up to {as_of}")
            (null_revenue,) = con.execute(NULL_REVENUE_SQL, [as_of]).fetchone()
            notes = (
                [f"{null_revenue} orders with NULL net_revenue counted as 0"]
                if null_revenue
                else []
            )
            previous = previous_fit(con, as_of)
            scores, info = score_summary(summary, as_of, notes=notes, previous=previous)
            written = write_scores(con, scores, info, as_of, context.run.run_id)
            (row_count,) = con.execute("select count(*) from clv.customer_scores").fetchone()
            holdout = (
                holdout_from_summary(holdout_summary(con, as_of, HOLDOUT_DAYS, days), HOLDOUT_DAYS)
                if usable(info)
                else pd.DataFrame()
            )
            con.execute("delete from clv.holdout_validation where as_of_date = ?", [as_of])
            if len(holdout):
                con.register("holdout", holdout.assign(bucket=holdout["bucket"].astype(str)))
                con.execute(
                    "insert into clv.holdout_validation select ?::date, bucket, customers, predicted_mean, actual_mean from holdout",
                    [as_of],
                )
            if crm.settings.spark_export:
                if spark_export is None:
                    raise RuntimeError(
                        "CRM_SPARK_EXPORT is on but the CLV asset was built without a Spark "
                        "export (build_clv_asset(..., spark_export=...), as "
                        "pipelines/definitions.py does)"
                    )
                exported = spark_export(con, crm.settings)
                context.log.info(f"clv.customer_scores: {exported:,} rows as Parquet for Spark")
        for warning in info.get("warnings", []):
            context.log.warning(f"CLV model: {warning}")
        if not usable(info):
            context.log.error(
                f"CLV fit FAILED as of {as_of}: customers scored with purchase_method="
                f"{info.get('purchase_method')}, spend_method={info.get('spend_method')}"
                + (
                    f" (parameters as of {info['params_as_of']})"
                    if info.get("params_as_of")
                    else ""
                )
                + " (docs/clv.md, 'When the fit fails')"
            )
        if not written:
            context.log.warning("CLV: no customer to score, previous scores kept and marked stale")

        params = ("r", "alpha", "a", "b", "gg_p", "gg_q", "gg_gamma", "log_likelihood")
        fitted = {k: float(info[k]) for k in params if info.get(k) is not None}
        notes = "\n".join(f"- {w}" for w in info.get("warnings", [])) or "none"
        return dg.MaterializeResult(
            metadata={
                "as_of_date": as_of.isoformat(),
                "customers": int(info.get("n_customers", 0)),
                "repeat_customers": int(info.get("n_repeat", 0)),
                "scores_written": written,
                "dagster/row_count": int(row_count),
                "dagster/table_name": "warehouse.clv.customer_scores",
                "fit_status": str(info.get("fit_status")),
                "purchase_method": str(info.get("purchase_method")),
                "spend_method": str(info.get("spend_method")),
                "params_as_of": str(info.get("params_as_of") or ""),
                **fitted,
                "fit_seconds": round(float(info.get("fit_seconds", 0.0)), 3),
                "warnings": dg.MetadataValue.md(notes),
            }
        )

    return clv_customer_scores
