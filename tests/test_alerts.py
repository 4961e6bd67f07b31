"""Alerts reach a webhook (a local HTTP server) and an SMTP server (a local fake one): a run
that fails under the daemon (the sensor), a run of `crm` that fails (crm itself), and a
night whose quarantined share spikes."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import pytest

from pipelines.ingest.assets import quarantine_spikes
from pipelines.ingest.load_log import SourceCounts
from pipelines.lib.alerts import Alert, notify
from pipelines.lib.resources import CrmSettingsResource
from pipelines.lib.settings import Settings
from pipelines.orchestrate import PROCESS_TAG, _report
from pipelines.publish.sensors import build_failed_run_alert_sensor


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    """A local HTTP server that records the JSON bodies POSTed to it."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            assert self.headers["Content-Type"] == "application/json"
            received.append(json.loads(self.rfile.read(length)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", received
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp() -> Iterator[tuple[str, list[str]]]:
    """A local fake SMTP server (enough of RFC 5321 for smtplib) recording each message."""
    messages: list[str] = []

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            self.wfile.write(b"220 fake ready\r\n")
            while line := self.rfile.readline():
                command = line.decode().strip().upper()
                if command == "DATA":
                    self.wfile.write(b"354 go on\r\n")
                    data = []
                    while (row := self.rfile.readline()) not in (b".\r\n", b""):
                        data.append(row.decode())
                    messages.append("".join(data))
                    self.wfile.write(b"250 queued\r\n")
                elif command == "QUIT":
                    self.wfile.write(b"221 bye\r\n")
                    return
                else:  # EHLO, MAIL FROM, RCPT TO
                    self.wfile.write(b"250 ok\r\n")

    server = socketserver.TCPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_address[1]}", messages
    server.shutdown()
    server.server_close()


def test_an_alert_is_posted_as_json_and_mailed(tmp_path: Path, webhook, smtp) -> None:
    url, received = webhook
    server, messages = smtp
    settings = Settings(
        home=tmp_path,
        alert_webhook_url=url,
        alert_email_to="oncall@example.com",
        alert_smtp=server,
        alert_email_from="crm@example.com",
    )
    alert = Alert("run_failure", "nightly", "r-1", "Steps failed: ['raw__orders'].", "2026-01-06")
    assert notify(settings, alert) == []
    assert received == [
        {
            "alert": "run_failure",
            "job": "nightly",
            "run_id": "r-1",
            "reason": "Steps failed: ['raw__orders'].",
            "delivery_date": "2026-01-06",
            "warehouse": str(tmp_path),
        }
    ]
    [message] = messages
    assert "Subject: [crm] run failed: nightly (2026-01-06)" in message
    assert "To: oncall@example.com" in message
    assert "run_id: r-1" in message


def test_an_unreachable_channel_is_reported_not_raised(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, alert_webhook_url="http://127.0.0.1:9/nothing")
    [error] = notify(settings, Alert("run_failure", "nightly", "r-1", "failed"))
    assert error.startswith("alert webhook http://127.0.0.1:9/nothing not reached")


def _counts(source: str, read: int, quarantined: int, erased: int = 0) -> SourceCounts:
    return SourceCounts(source, "orders", 1, read, read - quarantined, quarantined, 0, 0, 0, erased)


def test_a_spike_is_a_share_above_factor_times_the_trailing_share_and_one_percent() -> None:
    night = [
        _counts("shop", 1_000, 40),  # 4.0 % vs 1.0 % before: > 3 x 1.0 %: spike
        _counts("pos", 1_000, 30),  # 3.0 % vs 1.0 %: not > 3 x 1.0 %
        _counts("app", 1_000, 9),  # 0.9 % vs 0 %: under the 1 % floor
        _counts("desk", 100, 50),  # 50 %, but no trailing night to compare with
        _counts("wx", 1_000, 30, erased=25),  # 0.5 % failed: erased rows are not failures
    ]
    trailing = [
        _counts("shop", 7_000, 70),  # 1.0 %
        _counts("pos", 7_000, 70),
        _counts("app", 7_000, 0),
        _counts("wx", 7_000, 0),
    ]
    assert [(c.source, past) for c, past in quarantine_spikes(night, trailing, 3.0)] == [
        ("shop", 0.01)
    ]
    # a lower factor: pos (3.0 % > 2 x 1.0 %) too
    assert [c.source for c, _ in quarantine_spikes(night, trailing, 2.0)] == ["shop", "pos"]


@dg.asset
def broken() -> None:
    raise dg.Failure(description="pos.yaml: file a.csv lacks column 'qty'")


def _failed_run(tags: dict[str, str] | None = None):
    job = dg.Definitions(assets=[broken], jobs=[dg.define_asset_job("nightly")]).resolve_job_def(
        "nightly"
    )
    instance = dg.DagsterInstance.ephemeral()
    result = job.execute_in_process(instance=instance, raise_on_error=False, tags=tags)
    assert not result.success
    return instance, result


def test_the_sensor_alerts_a_run_failed_under_the_daemon(tmp_path: Path, webhook) -> None:
    url, received = webhook
    crm = CrmSettingsResource.from_settings(Settings(home=tmp_path, alert_webhook_url=url))
    sensor = build_failed_run_alert_sensor([])
    assert sensor.description
    for tags, alerted in (
        ({"dagster/partition": "2026-01-06"}, True),
        ({PROCESS_TAG: "h:1:2"}, False),
    ):
        instance, result = _failed_run(tags)
        failure = next(e for e in result.all_events if e.is_run_failure)
        context = dg.build_run_status_sensor_context(
            sensor_name=sensor.name,
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure,
            resources={"crm": crm},
        ).for_run_failure()
        sensor(context)
        if alerted:
            assert received == [
                {
                    "alert": "run_failure",
                    "job": "nightly",
                    "run_id": result.run_id,
                    "reason": "Execution of run for \"nightly\" failed. Steps failed: ['broken'].",
                    "delivery_date": "2026-01-06",
                    "warehouse": str(tmp_path),
                }
            ]
    assert len(received) == 1  # the run started by crm: crm alerted it itself


def test_crm_alerts_its_own_failed_run(tmp_path: Path, webhook, capsys) -> None:
    url, received = webhook
    _, result = _failed_run({PROCESS_TAG: "h:1:2"})
    assert not _report(result, "nightly", 1.0, Settings(home=tmp_path, alert_webhook_url=url))
    [body] = received
    assert body["run_id"] == result.run_id and body["job"] == "nightly"
    assert "Steps failed: ['broken']" in body["reason"]
    assert "[crm] alert sent" in capsys.readouterr().out
