"""Dagster resources: configuration travels in resources, logic lives in assets."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.lib.pseudonym import KEY_ENV
from pipelines.lib.settings import (
    DEFAULT_MEMORY_LIMIT,
    DEMO_TARGETS_FILE,
    Settings,
)


class CrmSettingsResource(dg.ConfigurableResource):
    """The project settings (see `pipelines.lib.settings.Settings`), as a Dagster resource.

    Built once, where the Definitions are built (pipelines/definitions.py), from
    `Settings.from_env()`: the one reading of the environment, with its validation and its
    derived defaults (the landing folder under CRM_HOME, relative paths resolved), which
    Dagster's `EnvVar` cannot express. The one exception is the pseudonymisation key: when
    it comes from $CRM_PSEUDONYM_KEY the resource holds `EnvVar("CRM_PSEUDONYM_KEY")`,
    which Dagster resolves when a run starts and shows by name only, so the key never
    appears in the UI's resource configuration nor in a run's config."""

    home: str
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    mappings_dir: str
    landing_dir: str
    #: CRM_TARGETS_FILE (the managers' SMART targets; default: the demo's)
    targets_file: str = str(DEMO_TARGETS_FILE)
    supernode_threshold: int = 20
    vip_revenue_365d: float = 50_000.0
    member_system: str = ""
    max_quarantine_share: float = 0.05
    spark_export: bool = False
    #: CRM_PSEUDONYM_KEY_FILE when set (else the default under restricted/)
    pseudonym_key_file: str = ""
    #: CRM_PSEUDONYM_KEY: `EnvVar(KEY_ENV)` when set (see the class docstring), else ""
    pseudonym_key: str = ""
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    #: CRM_PARTITIONS_START ("": from the first delivery folder)
    partitions_start: str = ""
    spark_sources_dir: str = ""
    dagster_home: str = ""
    java_home: str = ""
    alert_webhook_url: str = ""
    alert_email_to: str = ""
    alert_smtp: str = "localhost:25"
    alert_email_from: str = "crm-warehouse@localhost"
    quarantine_spike_factor: float = 3.0

    @classmethod
    def from_settings(cls, settings: Settings) -> CrmSettingsResource:
        return cls(
            home=str(settings.home),
            timezone=settings.timezone,
            currency=settings.currency,
            mappings_dir=str(settings.mappings_dir),
            landing_dir=str(settings.landing),
            targets_file=str(settings.targets_file),
            supernode_threshold=settings.supernode_threshold,
            vip_revenue_365d=settings.vip_revenue_365d,
            member_system=settings.member_system or "",
            max_quarantine_share=settings.max_quarantine_share,
            spark_export=settings.spark_export,
            pseudonym_key_file=settings.extra.get("CRM_PSEUDONYM_KEY_FILE", ""),
            pseudonym_key=dg.EnvVar(KEY_ENV) if settings.pseudonym_key else "",
            duckdb_memory_limit=settings.duckdb_memory_limit,
            partitions_start=settings.partitions_start or "",
            spark_sources_dir=str(settings.spark_sources_dir or ""),
            dagster_home=str(settings.dagster_home or ""),
            java_home=settings.java_home or "",
            alert_webhook_url=settings.alert_webhook_url or "",
            alert_email_to=settings.alert_email_to or "",
            alert_smtp=settings.alert_smtp,
            alert_email_from=settings.alert_email_from,
            quarantine_spike_factor=settings.quarantine_spike_factor,
        )

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        """When a run starts: the DuckDB memory limit of the databases this process opens."""
        from pipelines.lib.duck import set_memory_limit

        set_memory_limit(self.duckdb_memory_limit)

    def _pseudonym_key(self) -> str | None:
        key = self.pseudonym_key
        if isinstance(key, dg.EnvVar):
            # not resolved by a run (a test calling `.settings` directly): Dagster's own
            # reading of the variable, never the variable's name as the key
            key = key.get_value()
        return key or None

    @property
    def settings(self) -> Settings:
        return Settings(
            home=Path(self.home),
            timezone=self.timezone,
            currency=self.currency,
            mappings_dir=Path(self.mappings_dir),
            landing_dir=Path(self.landing_dir),
            targets_file=Path(self.targets_file),
            supernode_threshold=self.supernode_threshold,
            vip_revenue_365d=self.vip_revenue_365d,
            member_system=self.member_system or None,
            max_quarantine_share=self.max_quarantine_share,
            spark_export=self.spark_export,
            pseudonym_key=self._pseudonym_key(),
            duckdb_memory_limit=self.duckdb_memory_limit,
            partitions_start=self.partitions_start or None,
            spark_sources_dir=Path(self.spark_sources_dir) if self.spark_sources_dir else None,
            dagster_home=Path(self.dagster_home) if self.dagster_home else None,
            java_home=self.java_home or None,
            alert_webhook_url=self.alert_webhook_url or None,
            alert_email_to=self.alert_email_to or None,
            alert_smtp=self.alert_smtp,
            alert_email_from=self.alert_email_from,
            quarantine_spike_factor=self.quarantine_spike_factor,
            extra={"CRM_PSEUDONYM_KEY_FILE": self.pseudonym_key_file}
            if self.pseudonym_key_file
            else {},
        ).ensure_dirs()
