"""The business calendar step of the night: `assets.py` writes mainland China's business
calendar (pipelines/lib/business_calendar.py, from the `holidays` library) into the
warehouse table `calendar.business_days` before the dbt build."""
