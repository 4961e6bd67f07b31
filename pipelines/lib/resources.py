"""Dagster resources: configuration travels in resources, logic lives in assets."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from pipelines.lib.settings import DEMO_TARGETS_FILE, Settings


class CrmSettingsResource(dg.ConfigurableResource):
    """The project settings (see `pipelines.lib.settings.Settings`), as a Dagster resource."""

    home: str
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    mappings_dir: str
    landing_dir: str
    #: CRM_TARGETS_FILE (the managers' SMART targets; default: the demo's)
    targets_file: str = str(DEMO_TARGETS_FILE)
    supernode_threshold: int = 20
    report_language: str = "en"
    vip_revenue_365d: float = 50_000.0
    member_system: str = ""
    max_quarantine_share: float = 0.05
    spark_export: bool = False
    #: CRM_PSEUDONYM_KEY_FILE when set (else the default under restricted/)
    pseudonym_key_file: str = ""

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
            report_language=settings.report_language,
            vip_revenue_365d=settings.vip_revenue_365d,
            member_system=settings.member_system or "",
            max_quarantine_share=settings.max_quarantine_share,
            spark_export=settings.spark_export,
            pseudonym_key_file=settings.extra.get("CRM_PSEUDONYM_KEY_FILE", ""),
        )

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
            report_language=self.report_language,
            vip_revenue_365d=self.vip_revenue_365d,
            member_system=self.member_system or None,
            max_quarantine_share=self.max_quarantine_share,
            spark_export=self.spark_export,
            extra={"CRM_PSEUDONYM_KEY_FILE": self.pseudonym_key_file}
            if self.pseudonym_key_file
            else {},
        ).ensure_dirs()
