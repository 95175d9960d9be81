"""PagerDutyEvents end to end: the real pagerduty client, over TLS, against the fake."""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any

import pytest

from bot.notify.email import NotifyError
from bot.notify.pagerduty import PagerDutyEvents
from tests.fakes.pagerduty import FakePagerDuty
from tests.unit.notify.notify_support import FAST

WRONG_KEY = "RWRONGROUTINGKEY0000000000000042"


def test_trigger_then_resolve_with_the_dedup_key(
    pd: FakePagerDuty, events: PagerDutyEvents
) -> None:
    key = "nexus-incident-42"

    assert (
        events.trigger(key, "SSOT sync failing", "nexus-bot", "critical", {"incident": 42}) == key
    )
    assert events.resolve(key) == key

    trigger, resolve = pd.events()
    assert trigger == {
        "routing_key": pd.routing_key,
        "event_action": "trigger",
        "dedup_key": key,
        "payload": {
            "summary": "SSOT sync failing",
            "source": "nexus-bot",
            "severity": "critical",
            "custom_details": {"incident": 42},
        },
    }
    assert resolve == {"routing_key": pd.routing_key, "event_action": "resolve", "dedup_key": key}
    alert = pd.alerts()[key]
    assert alert.status == "resolved"
    assert alert.actions == ["trigger", "resolve"]
    assert [r.status for r in pd.requests()] == [202, 202]


def test_acknowledge(pd: FakePagerDuty, events: PagerDutyEvents) -> None:
    events.trigger("k-ack", "error rate 7%", "nexus-bot", "warning")
    events.acknowledge("k-ack")
    alert = pd.alerts()["k-ack"]
    assert (alert.status, alert.severity) == ("acknowledged", "warning")


def test_summary_is_one_line_and_within_the_api_limit(
    pd: FakePagerDuty, events: PagerDutyEvents
) -> None:
    events.trigger("k-long", "line one\nline two " + "x" * 2000, "nexus-bot", "info")
    summary = pd.alerts()["k-long"].summary
    assert summary.startswith("line one line two x")
    assert len(summary) == 1024


def test_wrong_routing_key_is_400_without_the_key(
    pd: FakePagerDuty, closing: Callable[[Any], Any]
) -> None:
    events = closing(PagerDutyEvents(WRONG_KEY, pd.events_url, verify=pd.ca_file, **FAST))

    with pytest.raises(NotifyError, match="Event object is invalid: Invalid routing key") as c:
        events.trigger("k1", "s", "src")

    assert c.value.status == 400
    assert not c.value.retryable
    assert WRONG_KEY not in "".join(traceback.format_exception(c.value))
    assert len(pd.requests()) == 1  # a 400 is not retried
    assert pd.alerts() == {}


def test_server_errors_are_retried_then_reported(
    pd: FakePagerDuty, events: PagerDutyEvents
) -> None:
    pd.fail_next(1, 500)
    events.trigger("k-retry", "s", "src")  # the retry succeeds
    assert [r.status for r in pd.requests()] == [500, 202]

    pd.fail_next(10, 503)
    with pytest.raises(NotifyError, match="HTTP 503") as caught:
        events.resolve("k-retry")
    assert caught.value.status == 503
    assert caught.value.retryable
    assert len(pd.requests()) == 2 + 3  # bounded: the call and retries=2


def test_rate_limited_events(pd: FakePagerDuty, events: PagerDutyEvents) -> None:
    pd.rate_limit_next(100, api="events")
    with pytest.raises(NotifyError, match="HTTP 429: Requests for this service") as caught:
        events.trigger("k-429", "s", "src")
    assert caught.value.retryable
    assert len(pd.requests()) == 3


@pytest.mark.parametrize(
    ("key", "severity", "message"),
    [
        ("", "critical", "dedup key must be"),
        ("k" * 256, "critical", "dedup key must be"),
        ("k", "fatal", "severity must be one of"),
    ],
)
def test_invalid_events_are_refused_before_sending(
    pd: FakePagerDuty, events: PagerDutyEvents, key: str, severity: str, message: str
) -> None:
    with pytest.raises(NotifyError, match=message):
        events.trigger(key, "s", "src", severity)
    assert pd.requests() == []
