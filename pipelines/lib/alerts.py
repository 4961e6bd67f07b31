"""Alerts: a failed run or a quarantine spike, sent to a webhook and/or by e-mail.

Settings (pipelines/lib/settings.py): CRM_ALERT_WEBHOOK_URL receives a POST with a JSON body
``{"alert", "job", "run_id", "reason", "delivery_date", "warehouse"}``; CRM_ALERT_EMAIL_TO
(comma-separated) receives the same as an e-mail through CRM_ALERT_SMTP (host[:port]) from
CRM_ALERT_EMAIL_FROM. Neither set: alerts are only logged. An alert carries no personal
data: the reason is built from job and step names, source names, counts and the pipeline's
own error messages, which name mappings, files and columns, never a row's content.

A channel that cannot be reached does not fail the run or the sensor that alerts: the
failure is returned (and logged by the caller).
"""

from __future__ import annotations

import json
import smtplib
import urllib.request
from dataclasses import asdict, dataclass
from email.message import EmailMessage

from pipelines.lib.settings import Settings

TIMEOUT_SECONDS = 10


@dataclass(frozen=True)
class Alert:
    #: "run_failure" | "quarantine_spike"
    alert: str
    job: str
    run_id: str
    reason: str
    delivery_date: str | None = None
    #: which deployment (its CRM_HOME), for a team that runs several
    warehouse: str = ""

    def body(self) -> dict[str, str | None]:
        return asdict(self)

    @property
    def subject(self) -> str:
        what = "run failed" if self.alert == "run_failure" else "quarantine spike"
        night = f" ({self.delivery_date})" if self.delivery_date else ""
        return f"[crm] {what}: {self.job}{night}"


def _post(url: str, alert: Alert) -> None:
    request = urllib.request.Request(
        url,
        data=json.dumps(alert.body()).encode(),
        headers={"Content-Type": "application/json", "User-Agent": "crm-warehouse"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
        response.read()


def _mail(settings: Settings, alert: Alert) -> None:
    host, _, port = settings.alert_smtp.partition(":")
    message = EmailMessage()
    message["Subject"] = alert.subject
    message["From"] = settings.alert_email_from
    message["To"] = settings.alert_email_to or ""
    message.set_content("\n".join(f"{k}: {v}" for k, v in alert.body().items() if v) + "\n")
    with smtplib.SMTP(host, int(port or 25), timeout=TIMEOUT_SECONDS) as smtp:
        smtp.send_message(message)


def notify(settings: Settings, alert: Alert) -> list[str]:
    """Send `alert` to every configured channel; returns one line per channel that failed."""
    alert = Alert(**{**alert.body(), "warehouse": alert.warehouse or str(settings.home)})
    errors = []
    if settings.alert_webhook_url:
        try:
            _post(settings.alert_webhook_url, alert)
        except OSError as exc:  # URLError, HTTPError, timeouts
            errors.append(f"alert webhook {settings.alert_webhook_url} not reached: {exc}")
    if settings.alert_email_to:
        try:
            _mail(settings, alert)
        except (OSError, smtplib.SMTPException) as exc:
            errors.append(f"alert e-mail via {settings.alert_smtp} not sent: {exc}")
    return errors
