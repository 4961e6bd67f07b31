"""CRM analytics warehouse: Dagster + DuckDB + dbt + Great Expectations."""

__version__ = "0.1.0"
