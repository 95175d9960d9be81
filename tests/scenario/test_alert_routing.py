"""Alert channels per severity, end to end: critical pages through PagerDuty Events
(one PagerDuty incident per incident, however many alerts) and is resolved there;
email goes out once per incident and level; PagerDuty's own incidents are not sent back."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.pagerduty import FakePagerDuty
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, BotProcess, config_with_contacts
from tests.unit.notify.notify_support import BoundController, Recorder

DATA = Path(__file__).resolve().parents[1] / "data"


def batch(name: str, alerts: int = 1) -> dict[str, Any]:
    body = json.loads((DATA / name).read_text())
    template = body["alerts"][0]
    body["alerts"] = []
    for n in range(alerts):
        alert = copy.deepcopy(template)
        alert["fingerprint"] = f"{template.get('fingerprint', 'fp')}-{n}"
        body["alerts"].append(alert)
    return body


def resolved(body: dict[str, Any]) -> dict[str, Any]:
    done = copy.deepcopy(body)
    done["status"] = "resolved"
    for alert in done["alerts"]:
        alert["status"] = "resolved"
    return done


@pytest.fixture
def routed(
    tmp_path: Path, sqlite_url: str
) -> Iterator[tuple[BotProcess, FakeSlack, FakePagerDuty, Recorder]]:
    path = config_with_contacts(tmp_path)
    recorder = Recorder()
    smtp = BoundController(recorder)
    smtp.start()
    try:
        with FakeSlack() as slack, FakePagerDuty() as pagerduty:
            bot = BotProcess(
                sqlite_url,
                slack.url,
                slack.token or "",
                NEXUS_CONFIG=str(path),
                PAGERDUTY_EVENTS_URL=pagerduty.events_url,
                PAGERDUTY_ROUTING_KEY=pagerduty.routing_key,
                PAGERDUTY_CA_BUNDLE=pagerduty.ca_file,
                SMTP_URL=f"smtp://127.0.0.1:{smtp.port}?starttls=never",
            ).start()
            try:
                yield bot, slack, pagerduty, recorder
            finally:
                bot.stop()
                print(bot.stderr[-10000:])
    finally:
        smtp.stop()


def test_critical_storm_is_one_pagerduty_incident_and_one_email(routed: Any) -> None:
    bot, slack, pagerduty, mail = routed
    storm = batch("alertmanager-frenly-ai.json", alerts=40)
    assert bot.alertmanager(storm).status_code == 202
    assert bot.alertmanager(storm).status_code == 202  # Alertmanager repeats itself
    slack.wait_for(lambda: pagerduty.events(), timeout=10)
    slack.wait_for(lambda: mail.messages, timeout=10)
    events = pagerduty.events()
    assert [e["event_action"] for e in events] == ["trigger"]
    assert events[0]["payload"]["severity"] == "critical"
    assert events[0]["dedup_key"].startswith("alertmanager:")
    assert len(mail.messages) == 1
    assert mail.messages[0].rcpt_tos == ["level1@nexus.test"]

    assert bot.alertmanager(resolved(storm)).status_code == 202
    slack.wait_for(lambda: len(pagerduty.events()) == 2, timeout=10)
    assert pagerduty.events()[1]["event_action"] == "resolve"
    assert pagerduty.events()[1]["dedup_key"] == events[0]["dedup_key"]


def test_warning_goes_to_slack_and_email_not_pagerduty(routed: Any) -> None:
    bot, slack, pagerduty, mail = routed
    assert bot.alertmanager(batch("alertmanager-error-rate.json", alerts=5)).status_code == 202
    slack.wait_for(lambda: slack.roots(CHANNEL), timeout=10)
    slack.wait_for(lambda: mail.messages, timeout=10)
    assert pagerduty.events() == []
    assert "[WARNING]" in mail.messages[0].message["Subject"]


def test_pagerduty_incidents_are_not_sent_back(routed: Any) -> None:
    bot, slack, pagerduty, _mail = routed
    trigger = json.loads((DATA / "pagerduty-incident-triggered.json").read_text())
    assert bot.pagerduty(trigger).status_code == 202
    slack.wait_for(lambda: slack.roots(CHANNEL), timeout=10)
    slack.wait_for(lambda: len(slack.messages(CHANNEL)) >= 4, timeout=10)  # level 1 said
    assert pagerduty.events() == []
