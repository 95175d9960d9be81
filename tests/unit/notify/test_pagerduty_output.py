"""PagerDuty output: events → outbox rows (real databases), rows → fake PagerDuty (real HTTP)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.notify.pagerduty import PagerDutyEvents, PagerDutyRest
from bot.notify.pagerduty_output import (
    DEFAULT_RATE_LIMIT_WAIT_S,
    PagerDutyDelivery,
    PagerDutyOutput,
    pagerduty_output_from_settings,
)
from bot.settings import Settings
from bot.store.models import Incident, OutboxMessage, utcnow
from bot.timeline.events import Kind
from bot.timeline.queue import Failed, Retry, Sent
from bot.timeline.recorder import Timeline
from tests.fakes.pagerduty import FakePagerDuty
from tests.unit.notify.notify_support import FAST

Closing = Callable[[Any], Any]
LEVEL_FACTS: dict[str, Any] = {
    "level": 2,
    "role": "Engineering manager",
    "reason": "not acknowledged in 5m",
    "slack": ["U0MANAGER"],
    "email": ["manager@example.com"],
    "pagerduty_level": 2,
    "notify_pagerduty": True,
}


def _timeline(*, events: bool = True, rest: bool = True) -> Timeline:
    return Timeline([PagerDutyOutput(events_configured=events, rest_configured=rest)])


def _add_incident(
    session: Session,
    *,
    key: str = "alertmanager:ssot-sync",
    severity: str = "critical",
    source: str = "alertmanager",
    pagerduty_incident_id: str | None = None,
) -> Incident:
    now = utcnow()
    incident = Incident(
        key=key,
        source=source,
        title="SSOT sync failure",
        severity=severity,
        status="triggered",
        playbook_id="ssot-sync",
        pagerduty_incident_id=pagerduty_incident_id,
        escalation_level=1,
        created_at=now,
        updated_at=now,
        labels={"service": "ssot", "alertname": "SSOTSyncFailing", "team": "platform"},
    )
    session.add(incident)
    session.flush()
    return incident


def _record(
    engine: sa.Engine, timeline: Timeline, kind: Kind, *, incident: dict[str, Any], **facts: Any
) -> int:
    """A new incident and one event of `kind` in one committed transaction; its id."""
    with Session(engine) as session, session.begin():
        number = _add_incident(session, **incident).id
        timeline.record(session, number, kind, "nexus-bot", **facts)
    return number


def _rows(engine: sa.Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def _expected_alert(number: int) -> dict[str, Any]:
    """What NoticeRouter sent for the incident of `_add_incident`: title, service, labels."""
    return {
        "summary": f"#{number} SSOT sync failure",
        "source": "ssot",
        "severity": "critical",
        # The labels PagerDuty responders use; "team" is not among them.
        "custom_details": {
            "incident": number,
            "playbook": "ssot-sync",
            "service": "ssot",
            "alertname": "SSOTSyncFailing",
        },
    }


# -- events → rows -----------------------------------------------------------------


def test_opened_critical_incident_enqueues_a_trigger(engine: sa.Engine) -> None:
    number = _record(engine, _timeline(), Kind.OPENED, incident={})

    [row] = _rows(engine)
    assert (row.output, row.channel, row.method) == ("pagerduty", "events", "pagerduty.trigger")
    assert (row.incident_id, row.state, row.attempts) == (number, "pending", 0)
    assert row.payload == {"dedup_key": "alertmanager:ssot-sync", **_expected_alert(number)}


def test_reopened_critical_incident_pages_again(engine: sa.Engine) -> None:
    """Resolved, then firing again: the same dedup key opens a new PagerDuty incident."""
    number = _record(engine, _timeline(), Kind.REOPENED, incident={}, via="alerts", firing=1)

    [row] = _rows(engine)
    assert row.method == "pagerduty.trigger"
    assert row.payload == {"dedup_key": "alertmanager:ssot-sync", **_expected_alert(number)}


def test_resolved_critical_incident_enqueues_a_resolve(engine: sa.Engine) -> None:
    number = _record(engine, _timeline(), Kind.RESOLVED, incident={}, reason="alerts", via="alerts")

    [row] = _rows(engine)
    assert (row.channel, row.method, row.incident_id) == ("events", "pagerduty.resolve", number)
    assert row.payload == {"dedup_key": "alertmanager:ssot-sync"}


def test_incidents_that_do_not_page_enqueue_nothing(engine: sa.Engine) -> None:
    # One database for all cases: a migrated PostgreSQL per case would cost seconds each.
    cases = [  # (case, incident, Events API configured)
        ("warning", {"severity": "warning"}, True),
        ("info", {"severity": "info"}, True),
        ("from-pagerduty", {"source": "pagerduty"}, True),
        ("events-not-configured", {}, False),
    ]
    for case, incident, events_configured in cases:
        for kind in (Kind.OPENED, Kind.REOPENED, Kind.RESOLVED):
            key = f"{case}:{kind}"
            _record(
                engine, _timeline(events=events_configured), kind, incident={"key": key, **incident}
            )
            assert _rows(engine) == [], key


def test_level_reached_enqueues_the_level_then_its_note(engine: sa.Engine) -> None:
    number = _record(
        engine,
        _timeline(),
        Kind.LEVEL_REACHED,
        incident={"source": "pagerduty", "pagerduty_incident_id": "PABC123"},
        **{**LEVEL_FACTS, "level": 3, "pagerduty_level": 2},
    )

    level, note = _rows(engine)
    assert [(r.output, r.channel, r.incident_id) for r in (level, note)] == [
        ("pagerduty", "rest", number),
        ("pagerduty", "rest", number),
    ]
    assert (level.method, level.payload) == (
        "pagerduty.level",
        {"pagerduty_incident_id": "PABC123", "level": 2},
    )
    assert (note.method, note.payload) == (
        "pagerduty.note",
        {
            "pagerduty_incident_id": "PABC123",
            "content": "NEXUS bot: level 3 — Engineering manager (not acknowledged in 5m).",
        },
    )


def test_levels_that_are_not_pushed_enqueue_nothing(engine: sa.Engine) -> None:
    cases = [  # (case, facts, has a PagerDuty incident, REST API configured)
        ("level-1", {"level": 1, "pagerduty_level": 1}, True, True),
        ("mirrored-from-pagerduty", {"notify_pagerduty": False}, True, True),
        ("no-pagerduty-level", {"pagerduty_level": None}, True, True),
        ("no-pagerduty-incident", {}, False, True),
        ("rest-not-configured", {}, True, False),
    ]
    for n, (case, facts, linked, rest_configured) in enumerate(cases):
        incident = {"key": case, "pagerduty_incident_id": f"PABC{n}" if linked else None}
        _record(
            engine,
            _timeline(rest=rest_configured),
            Kind.LEVEL_REACHED,
            incident=incident,
            **{**LEVEL_FACTS, **facts},
        )
        assert _rows(engine) == [], case


def test_other_events_enqueue_nothing(engine: sa.Engine) -> None:
    timeline = _timeline()
    with Session(engine) as session, session.begin():
        number = _add_incident(session, pagerduty_incident_id="PABC123").id
        timeline.record(session, number, Kind.ACKNOWLEDGED, "U0ALICE", via="slack")
        timeline.record(session, number, Kind.NOTE_ADDED, "U0ALICE", text="hi", via="slack")

    assert _rows(engine) == []


def test_rows_live_and_die_with_the_callers_transaction(engine: sa.Engine) -> None:
    timeline = _timeline()
    with Session(engine) as session:
        with session.begin():
            number = _add_incident(session, pagerduty_incident_id="PABC123").id
        session.begin()
        timeline.record(session, number, Kind.OPENED, "nexus-bot")
        timeline.record(session, number, Kind.LEVEL_REACHED, "nexus-bot", **LEVEL_FACTS)
        # Visible inside the transaction that recorded the events...
        assert len(session.scalars(sa.select(OutboxMessage)).all()) == 3
        session.rollback()

    # ...and gone with it.
    assert _rows(engine) == []


# -- rows → PagerDuty --------------------------------------------------------------


@pytest.fixture
def delivery(pd: FakePagerDuty) -> Iterator[PagerDutyDelivery]:
    rest = PagerDutyRest(pd.token, pd.user_email, pd.url, verify=pd.ca_file, retries=1, **FAST)
    events = PagerDutyEvents(pd.routing_key, pd.events_url, verify=pd.ca_file, retries=1, **FAST)
    sender = PagerDutyDelivery(rest, events)
    yield sender
    sender.close()


def _send_all(engine: sa.Engine, sender: PagerDutyDelivery) -> list[Any]:
    return [sender.send(row.method, row.payload) for row in _rows(engine)]


def test_trigger_and_resolve_rows_reach_pagerduty(
    engine: sa.Engine, pd: FakePagerDuty, delivery: PagerDutyDelivery
) -> None:
    timeline = _timeline()
    number = _record(engine, timeline, Kind.OPENED, incident={})
    with Session(engine) as session, session.begin():
        timeline.record(session, number, Kind.RESOLVED, "nexus-bot", reason="manual", via="slack")

    assert _send_all(engine, delivery) == [Sent(), Sent()]

    trigger, resolve = pd.events()
    assert trigger == {
        "routing_key": pd.routing_key,
        "event_action": "trigger",
        "dedup_key": "alertmanager:ssot-sync",
        "payload": _expected_alert(number),
    }
    assert resolve == {
        "routing_key": pd.routing_key,
        "event_action": "resolve",
        "dedup_key": "alertmanager:ssot-sync",
    }
    assert pd.alerts()["alertmanager:ssot-sync"].actions == ["trigger", "resolve"]


def test_level_and_note_rows_reach_pagerduty(
    engine: sa.Engine, pd: FakePagerDuty, delivery: PagerDutyDelivery
) -> None:
    pd_id = pd.add_incident()
    _record(
        engine,
        _timeline(),
        Kind.LEVEL_REACHED,
        incident={"source": "pagerduty", "pagerduty_incident_id": pd_id},
        **LEVEL_FACTS,
    )

    assert _send_all(engine, delivery) == [Sent(), Sent()]

    put, post = pd.requests()
    assert (put.method, put.path) == ("PUT", f"/incidents/{pd_id}")
    assert put.body == {"incident": {"type": "incident_reference", "escalation_level": 2}}
    assert (post.method, post.path) == ("POST", f"/incidents/{pd_id}/notes")
    content = "NEXUS bot: level 2 — Engineering manager (not acknowledged in 5m)."
    assert post.body == {"note": {"content": content}}
    assert post.header("From") == pd.user_email
    incident = pd.incident(pd_id)
    assert incident.escalation_level == 2
    assert [n["content"] for n in incident.notes] == [content]


def _trigger_payload() -> dict[str, Any]:
    return {
        "dedup_key": "k-1",
        "summary": "#1 SSOT sync failure",
        "source": "ssot",
        "severity": "critical",
        "custom_details": {"incident": 1},
    }


@pytest.mark.parametrize(
    ("api", "headers", "after"),
    [
        pytest.param("rest", {"ratelimit-reset": "7"}, 7.0, id="pagerduty-ratelimit-reset"),
        pytest.param("events", {"Retry-After": "3"}, 3.0, id="retry-after"),
        pytest.param("rest", {"Retry-After": "86400"}, 300.0, id="capped"),
        pytest.param("events", {}, DEFAULT_RATE_LIMIT_WAIT_S, id="no-header"),
    ],
)
def test_rate_limited_is_retried_after_what_pagerduty_asked(
    pd: FakePagerDuty, delivery: PagerDutyDelivery, api: str, headers: dict[str, str], after: float
) -> None:
    pd_id = pd.add_incident()
    # The client's one retry meets the second 429; the queue then waits.
    pd.rate_limit_next(2, api=api, headers=headers)

    if api == "rest":
        result = delivery.send("pagerduty.level", {"pagerduty_incident_id": pd_id, "level": 2})
    else:
        result = delivery.send("pagerduty.trigger", _trigger_payload())

    assert isinstance(result, Retry)
    assert result.after == after
    assert "HTTP 429" in result.error
    assert [r.status for r in pd.requests()] == [429, 429]
    assert (pd.incident(pd_id).escalation_level, pd.alerts()) == (1, {})


def test_server_error_is_retried_with_backoff(
    pd: FakePagerDuty, delivery: PagerDutyDelivery
) -> None:
    pd_id = pd.add_incident()
    pd.fail_next(2, 500, api="events")
    pd.fail_next(1, 500, api="rest")

    trigger = delivery.send("pagerduty.trigger", _trigger_payload())
    note = delivery.send("pagerduty.note", {"pagerduty_incident_id": pd_id, "content": "hi"})

    for result in (trigger, note):
        assert isinstance(result, Retry)
        assert result.after is None  # the queue's exponential backoff
        assert "HTTP 500" in result.error
    assert pd.incident(pd_id).notes == []
    # A passing failure that the Events client's one retry gets past is simply sent.
    pd.fail_next(1, 503, api="events")
    assert delivery.send("pagerduty.trigger", _trigger_payload()) == Sent()


@pytest.mark.parametrize(
    ("method", "payload", "known", "says"),
    [
        pytest.param(
            "pagerduty.level", {"level": 9}, True, "Escalation Level is not valid", id="bad-level"
        ),
        pytest.param(
            "pagerduty.note", {"content": "x" * 25_001}, True, "Content is too long", id="long"
        ),
        pytest.param("pagerduty.level", {"level": 2}, False, "HTTP 404", id="unknown-incident"),
    ],
)
def test_client_errors_fail_for_good(
    pd: FakePagerDuty,
    delivery: PagerDutyDelivery,
    method: str,
    payload: dict[str, Any],
    known: bool,
    says: str,
) -> None:
    pd_id = pd.add_incident() if known else "PNOPE"

    result = delivery.send(method, {"pagerduty_incident_id": pd_id, **payload})

    assert isinstance(result, Failed)
    assert says in result.error
    assert len(pd.requests()) == 1  # not retried by the client either


def test_forced_400_fails(pd: FakePagerDuty, delivery: PagerDutyDelivery) -> None:
    pd.fail_next(1, 400, api="events", body='{"status": "invalid event", "message": "nope"}')

    result = delivery.send("pagerduty.resolve", {"dedup_key": "k-1"})

    assert isinstance(result, Failed)
    assert "HTTP 400" in result.error


def test_connection_refused_is_retried(pd: FakePagerDuty, closed_port: int) -> None:
    nowhere = f"https://127.0.0.1:{closed_port}"
    rest = PagerDutyRest(pd.token, pd.user_email, nowhere, verify=pd.ca_file, retries=1, **FAST)
    events = PagerDutyEvents(pd.routing_key, nowhere, verify=pd.ca_file, retries=1, **FAST)
    sender = PagerDutyDelivery(rest, events)
    try:
        resolve = sender.send("pagerduty.resolve", {"dedup_key": "k-1"})
        note = sender.send("pagerduty.note", {"pagerduty_incident_id": "P1", "content": "hi"})
    finally:
        sender.close()

    for result in (resolve, note):
        assert isinstance(result, Retry)
        assert result.after is None
        assert "ConnectError" in result.error


def test_untrusted_certificate_fails_for_good(pd: FakePagerDuty, closing: Closing) -> None:
    """A certificate the trust store rejects is configuration, not a passing problem."""
    events = closing(PagerDutyEvents(pd.routing_key, pd.events_url, retries=1, **FAST))

    result = PagerDutyDelivery(None, events).send("pagerduty.resolve", {"dedup_key": "k-1"})

    assert isinstance(result, Failed)
    assert pd.events() == []


@pytest.mark.parametrize(
    ("method", "payload", "says"),
    [
        ("pagerduty.trigger", _trigger_payload(), "Events API not configured"),
        ("pagerduty.note", {"pagerduty_incident_id": "P1", "content": "x"}, "REST API not"),
        ("pagerduty.page", {}, "unknown method"),
    ],
)
def test_rows_the_sender_cannot_send_fail(method: str, payload: dict[str, Any], says: str) -> None:
    result = PagerDutyDelivery(None, None).send(method, payload)

    assert isinstance(result, Failed)
    assert says in result.error


def test_unreadable_payload_fails(pd: FakePagerDuty, delivery: PagerDutyDelivery) -> None:
    result = delivery.send("pagerduty.level", {"pagerduty_incident_id": "P1", "level": "two"})

    assert isinstance(result, Failed)
    assert "bad payload" in result.error
    assert pd.requests() == []


# -- from settings -------------------------------------------------------------------


@pytest.fixture
def clean_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the environment, no config/nexus.yaml in the working directory."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


@pytest.mark.usefixtures("clean_settings")
def test_nothing_configured_pages_nothing() -> None:
    output, sender = pagerduty_output_from_settings(Settings())

    assert (output.events_configured, output.rest_configured) == (False, False)
    assert (sender.rest, sender.events) == (None, None)
    # A token without From is not enough for REST, as pagerduty_from_settings says.
    output, sender = pagerduty_output_from_settings(Settings(pagerduty_api_token="t0ken"))
    assert (output.rest_configured, sender.rest) == (False, None)


@pytest.mark.usefixtures("clean_settings")
def test_settings_clients_retry_once_and_leave_the_rest_to_the_queue(
    pd: FakePagerDuty,
) -> None:
    settings = Settings(
        pagerduty_api_token=pd.token,
        pagerduty_from_email=pd.user_email,
        pagerduty_routing_key=pd.routing_key,
        pagerduty_api_url=pd.url,
        pagerduty_events_url=pd.events_url,
        pagerduty_ca_bundle=pd.ca_file,
    )
    output, sender = pagerduty_output_from_settings(settings)
    try:
        assert (output.name, output.events_configured, output.rest_configured) == (
            "pagerduty",
            True,
            True,
        )
        assert (sender.rate, sender.burst) == (2.0, 4)
        pd_id = pd.add_incident()
        pd.fail_next(5, 502)

        level = {"pagerduty_incident_id": pd_id, "level": 3}
        assert isinstance(sender.send("pagerduty.level", level), Retry)
        assert isinstance(sender.send("pagerduty.resolve", {"dedup_key": "k-1"}), Retry)
        # The Events client tries twice; the REST client never retries a 5xx by itself.
        assert [(r.path.startswith("/v2/"), r.status) for r in pd.requests()] == [
            (False, 502),
            (True, 502),
            (True, 502),
        ]

        pd.clear_faults()
        assert sender.send("pagerduty.level", level) == Sent()
        assert sender.send("pagerduty.trigger", _trigger_payload()) == Sent()
    finally:
        sender.close()
    assert pd.incident(pd_id).escalation_level == 3
    assert pd.alerts()["k-1"].status == "triggered"


# -- recovery drills -------------------------------------------------------------


def test_a_drill_pages_nobody_while_a_real_incident_still_pages(
    engine: sa.Engine, pd: FakePagerDuty, delivery: PagerDutyDelivery
) -> None:
    timeline = _timeline()
    drill_pd, real_pd = pd.add_incident(), pd.add_incident()
    with Session(engine) as session, session.begin():
        drill = _add_incident(session, key="drill:ssot-sync", pagerduty_incident_id=drill_pd)
        drill.drill_run_id = 3
        real = _add_incident(session, pagerduty_incident_id=real_pd)
        for incident in (drill, real):
            for kind in (Kind.OPENED, Kind.RESOLVED, Kind.REOPENED):
                timeline.record(session, incident.id, kind, "nexus-bot", via="alerts")
            timeline.record(session, incident.id, Kind.LEVEL_REACHED, "nexus-bot", **LEVEL_FACTS)
        real_number = real.id

    assert {row.incident_id for row in _rows(engine)} == {real_number}
    assert all(isinstance(result, Sent) for result in _send_all(engine, delivery))
    assert {e["dedup_key"] for e in pd.events()} == {"alertmanager:ssot-sync"}
    assert all(drill_pd not in r.path for r in pd.requests())
    assert pd.incident(drill_pd).escalation_level == 1
    assert pd.incident(drill_pd).notes == []
    assert pd.incident(real_pd).escalation_level == 2
