"""CRM analytics warehouse: Dagster + DuckDB + dbt + Great Expectations."""

import warnings

__version__ = "0.1.0"

# PySpark (the Spark target, pipelines/spark) warns about pandas 3 when it is imported, and
# Great Expectations imports it whenever it is installed; the Spark path converts nothing
# to pandas (dbt-spark collects rows).
warnings.filterwarnings(
    "ignore", message="PySpark does not yet fully support pandas", category=FutureWarning
)
