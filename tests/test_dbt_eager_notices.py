"""dagster-dbt warns once per dbt test that dbt's eager indirect selection runs beside a
step's models (15 lines a demo night); the dbt step counts them and says it once."""

import logging

from dagster import get_dagster_logger

from pipelines.transform.assets import EagerTestNotices


def test_eager_test_warnings_are_counted_not_printed(caplog) -> None:
    logger = get_dagster_logger()
    notice = (
        "Logging an `AssetObservation` instead of an `AssetCheckResult` for dbt test "
        "`relationships_fct_orders_customer_id`.\n\nThis test was not included in Dagster's "
        "asset check selection, and was likely executed due to dbt indirect selection."
    )
    with caplog.at_level(logging.INFO, logger="dagster.builtin"):
        with EagerTestNotices() as eager:
            logger.warning(notice)
            logger.warning(notice.replace("fct_orders", "fct_order_lines"))
            logger.warning("a real warning")
        logger.warning(notice)  # outside the dbt step: printed as before
    assert eager.count == 2
    printed = [r.getMessage() for r in caplog.records]
    assert printed == ["a real warning", notice]
