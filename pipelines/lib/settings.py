"""The one settings object. Everything configurable comes from environment variables,
with defaults that work from a fresh clone.

`Settings.from_env()` is the one reader of the environment: the entry points (`crm`, the
Dagster code location in pipelines/definitions.py) call it once and hand the values down;
libraries take them as arguments (tests/test_config_sources.py checks this)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

REPO_ROOT = Path(__file__).resolve().parents[2]
DEMO_MAPPINGS_DIR = REPO_ROOT / "pipelines" / "ingest" / "mappings" / "demo"
DBT_PROJECT_DIR = REPO_ROOT / "dbt_project"
EXPECTATIONS_DIR = REPO_ROOT / "expectations"
#: The demo's SMART targets (a deployment points CRM_TARGETS_FILE at its managers' file).
DEMO_TARGETS_FILE = REPO_ROOT / "pipelines" / "targets" / "demo" / "kpi_targets.csv"
#: DuckDB's memory per database; its own default (80 % of the RAM) let the large preset's
#: dbt build reach 12.7 GB of RSS.
DEFAULT_MEMORY_LIMIT = "4GB"
#: First delivery date the partitions cover.
DEFAULT_PARTITIONS_START = "2024-01-01"


class SettingsError(ValueError):
    """A setting has a value the project cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Project settings (see README, section Settings).

    | variable | default |
    |---|---|
    | CRM_HOME | ./data (relative to the current directory) |
    | CRM_TIMEZONE | Asia/Shanghai (business timezone: *_date columns, as-of dates, schedule, mappings without timezone) |
    | CRM_CURRENCY | CNY (reporting currency: every published amount and its unit label) |
    | CRM_VIP_REVENUE_365D | 50000 (VIP: net revenue of the last 365 days, reporting currency) |
    | CRM_MEMBER_SYSTEM | unset: the one source system of the customers mappings (the system a ticket's customer_ref belongs to when its mapping names none) |
    | CRM_MAPPINGS_DIR | the repo's demo mappings (pipelines/ingest/mappings/demo) |
    | CRM_LANDING_DIR | $CRM_HOME/landing |
    | CRM_TARGETS_FILE | the repo's demo targets (pipelines/targets/demo/kpi_targets.csv): the managers' SMART targets, CSV UTF-8 |
    | CRM_SUPERNODE_THRESHOLD | 20 (identity: an identifier shared by more records links nothing) |
    | CRM_MAX_QUARANTINE_SHARE | 0.05 (ingest: a source whose share of quarantined rows in a run is higher fails the run's blocking check) |
    | CRM_PSEUDONYM_KEY | unset (the key of the keyed pseudonyms; see docs/operations.md) |
    | CRM_PSEUDONYM_KEY_FILE | $CRM_HOME/restricted/pseudonym.key (created on first use) |
    | CRM_DUCKDB_MEMORY_LIMIT | 4GB (memory of each DuckDB database the pipeline and dbt open; DuckDB spills beyond it) |
    | CRM_PARTITIONS_START | unset: the first delivery folder of the landing, else 2024-01-01 (first delivery date Dagster knows) |
    | CRM_SPARK_EXPORT | unset (1: the ingest and CLV assets also write Parquet for the Spark target) |
    | CRM_SPARK_SOURCES_DIR | $CRM_HOME/restricted/spark/sources (the Spark target's sources) |
    | DAGSTER_HOME | $CRM_HOME/dagster (Dagster's instance: the runs of `crm` and of the UI) |
    | JAVA_HOME | unset: `java` on the PATH (the Java runtime of the Spark target) |
    | CRM_ALERT_WEBHOOK_URL | unset (a failed run or a quarantine spike POSTs a JSON alert here) |
    | CRM_ALERT_EMAIL_TO | unset (comma-separated addresses the alerts are e-mailed to) |
    | CRM_ALERT_SMTP | localhost:25 (the SMTP server of the alert e-mails, host[:port]) |
    | CRM_ALERT_EMAIL_FROM | crm-warehouse@localhost (the sender of the alert e-mails) |
    | CRM_QUARANTINE_SPIKE_FACTOR | 3 (a night whose quarantined share of a source is this many times its trailing 7 days' share, and at least 1 %, raises an alert) |
    """

    home: Path
    timezone: str = "Asia/Shanghai"
    currency: str = "CNY"
    mappings_dir: Path = DEMO_MAPPINGS_DIR
    landing_dir: Path | None = None
    #: the managers' SMART targets (README, section Targets)
    targets_file: Path = DEMO_TARGETS_FILE
    supernode_threshold: int = 20
    #: VIP threshold: net revenue of the last 365 days, in the reporting currency
    vip_revenue_365d: float = 50_000.0
    #: the deployment's member system (None: derived from the customers mappings)
    member_system: str | None = None
    max_quarantine_share: float = 0.05
    #: CRM_SPARK_EXPORT=1: the ingest and CLV assets also write their tables as Parquet for
    #: the Spark target (pipelines/spark, docs/spark.md).
    spark_export: bool = False
    #: the key itself ($CRM_PSEUDONYM_KEY; wins over the key file). Never printed.
    pseudonym_key: str | None = field(default=None, repr=False)
    #: memory of each DuckDB database the pipeline and dbt open (DuckDB spills beyond it)
    duckdb_memory_limit: str = DEFAULT_MEMORY_LIMIT
    #: first delivery date of the daily partitions (ISO date; None: the first delivery
    #: folder of the landing, pipelines/lib/partitions.py)
    partitions_start: str | None = None
    #: where `crm spark export` writes and the Spark target reads (None: under restricted/)
    spark_sources_dir: Path | None = None
    #: Dagster's instance folder (None: an ephemeral instance; from_env: $CRM_HOME/dagster)
    dagster_home: Path | None = None
    #: the Java runtime of the Spark target (None: `java` on the PATH)
    java_home: str | None = None
    #: where alerts go (pipelines/lib/alerts.py): a webhook URL, e-mail addresses
    alert_webhook_url: str | None = None
    alert_email_to: str | None = None
    alert_smtp: str = "localhost:25"
    alert_email_from: str = "crm-warehouse@localhost"
    #: a night's quarantined share this many times the trailing nights' raises an alert
    quarantine_spike_factor: float = 3.0
    extra: dict[str, str] = field(default_factory=dict)

    # Folders under CRM_HOME -------------------------------------------------------
    @property
    def landing(self) -> Path:
        return self.landing_dir if self.landing_dir is not None else self.home / "landing"

    @property
    def warehouse(self) -> Path:
        return self.home / "warehouse"

    @property
    def serving(self) -> Path:
        return self.home / "serving"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def warehouse_db(self) -> Path:
        """The DuckDB file the pipeline writes. Analysts never open it (see serving/)."""
        return self.warehouse / "warehouse.duckdb"

    @property
    def restricted(self) -> Path:
        """The restricted store: owner-only folder with the clear personal data."""
        return self.home / "restricted"

    @property
    def restricted_db(self) -> Path:
        """Raw tables, quarantine, load log and the golden record (clear personal data).

        Attached to the warehouse as catalog `restricted` by the pipeline and by dbt;
        nothing published reads it (docs/operations.md, "The restricted store")."""
        return self.restricted / "restricted.duckdb"

    @property
    def pseudonym_key_file(self) -> Path:
        override = self.extra.get("CRM_PSEUDONYM_KEY_FILE")
        return (
            Path(override).expanduser().resolve() if override else self.restricted / "pseudonym.key"
        )

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def ensure_dirs(self) -> Settings:
        for folder in (self.landing, self.warehouse, self.serving, self.reports):
            folder.mkdir(parents=True, exist_ok=True)
        self.restricted.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.restricted.chmod(0o700)
        return self

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        home = Path(env.get("CRM_HOME", "data")).expanduser().resolve()
        timezone = env.get("CRM_TIMEZONE", "Asia/Shanghai")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise SettingsError(
                f"CRM_TIMEZONE={timezone!r} is not an IANA timezone (e.g. Asia/Shanghai)"
            ) from exc
        currency = env.get("CRM_CURRENCY", "CNY").upper()
        if len(currency) != 3 or not currency.isalpha():
            raise SettingsError(f"CRM_CURRENCY={currency!r} is not an ISO 4217 code (e.g. CNY)")
        mappings = (
            Path(env["CRM_MAPPINGS_DIR"]).expanduser().resolve()
            if env.get("CRM_MAPPINGS_DIR")
            else DEMO_MAPPINGS_DIR
        )
        landing = (
            Path(env["CRM_LANDING_DIR"]).expanduser().resolve()
            if env.get("CRM_LANDING_DIR")
            else None
        )
        targets = (
            Path(env["CRM_TARGETS_FILE"]).expanduser().resolve()
            if env.get("CRM_TARGETS_FILE")
            else DEMO_TARGETS_FILE
        )
        try:
            threshold = int(env.get("CRM_SUPERNODE_THRESHOLD", "20"))
        except ValueError as exc:
            raise SettingsError("CRM_SUPERNODE_THRESHOLD must be an integer") from exc
        try:
            vip = float(env.get("CRM_VIP_REVENUE_365D", "50000"))
        except ValueError as exc:
            raise SettingsError(
                "CRM_VIP_REVENUE_365D must be a number (net revenue in the reporting currency)"
            ) from exc
        if not vip >= 0 or vip == float("inf"):
            raise SettingsError("CRM_VIP_REVENUE_365D must be a finite number >= 0")
        member = env.get("CRM_MEMBER_SYSTEM", "").strip() or None
        try:
            max_quarantine = float(env.get("CRM_MAX_QUARANTINE_SHARE", "0.05"))
        except ValueError as exc:
            raise SettingsError("CRM_MAX_QUARANTINE_SHARE must be a number (e.g. 0.05)") from exc
        if not 0 <= max_quarantine <= 1:
            raise SettingsError(
                f"CRM_MAX_QUARANTINE_SHARE={max_quarantine}: use a share between 0 and 1"
            )
        partitions_start = env.get("CRM_PARTITIONS_START") or None
        try:
            date.fromisoformat(partitions_start or DEFAULT_PARTITIONS_START)
        except ValueError as exc:
            raise SettingsError(
                f"CRM_PARTITIONS_START={partitions_start!r} is not a date in YYYY-MM-DD form"
            ) from exc

        try:
            spike = float(env.get("CRM_QUARANTINE_SPIKE_FACTOR", "3"))
        except ValueError as exc:
            raise SettingsError("CRM_QUARANTINE_SPIKE_FACTOR must be a number (e.g. 3)") from exc
        if not 1 <= spike < float("inf"):
            raise SettingsError(
                f"CRM_QUARANTINE_SPIKE_FACTOR={spike}: use a finite factor of at least 1"
            )

        def path_or_none(name: str) -> Path | None:
            return Path(env[name]).expanduser().resolve() if env.get(name) else None

        return cls(
            home=home,
            timezone=timezone,
            currency=currency,
            mappings_dir=mappings,
            landing_dir=landing,
            targets_file=targets,
            supernode_threshold=threshold,
            vip_revenue_365d=vip,
            member_system=member,
            max_quarantine_share=max_quarantine,
            spark_export=env.get("CRM_SPARK_EXPORT", "").lower() in ("1", "true", "yes"),
            pseudonym_key=env.get("CRM_PSEUDONYM_KEY") or None,
            duckdb_memory_limit=env.get("CRM_DUCKDB_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT,
            partitions_start=partitions_start,
            spark_sources_dir=path_or_none("CRM_SPARK_SOURCES_DIR"),
            dagster_home=path_or_none("DAGSTER_HOME") or home / "dagster",
            java_home=env.get("JAVA_HOME") or None,
            alert_webhook_url=env.get("CRM_ALERT_WEBHOOK_URL") or None,
            alert_email_to=env.get("CRM_ALERT_EMAIL_TO") or None,
            alert_smtp=env.get("CRM_ALERT_SMTP") or "localhost:25",
            alert_email_from=env.get("CRM_ALERT_EMAIL_FROM") or "crm-warehouse@localhost",
            quarantine_spike_factor=spike,
            extra={k: env[k] for k in ("CRM_PSEUDONYM_KEY_FILE",) if env.get(k)},
        )


def get_settings() -> Settings:
    return Settings.from_env()
