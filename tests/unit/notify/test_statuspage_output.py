"""Statuspage output: events → outbox rows (real databases), rows → fake Statuspage (real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.notify.statuspage_output import (
    StatuspageDelivery,
    StatuspageOutput,
    statuspage_output_from_settings,
)
from bot.settings import Settings
from bot.store.models import Incident, OutboxMessage
from bot.timeline.events import Kind
from bot.timeline.queue import Failed, Retry, Sent
from bot.timeline.recorder import Timeline
from bot.web.config import ComponentConfig, StatusPageConfig
from tests.fakes.statuspage import FakeStatuspage

OPENED_AT = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
SSOT_CP = "cmpssot01"  # Statuspage component ids of the config below
AI_CP = "cmpai0001"


def _status_page() -> StatusPageConfig:
    return StatusPageConfig(
        incident_name="Service disruption",
        components=[
            ComponentConfig(id="ssot", name="SSOT", services=["ssot"], statuspage_id=SSOT_CP),
            ComponentConfig(
                id="frenly-ai",
                name="AI",
                services=["frenly-ai"],
                warning_state="partial_outage",
                statuspage_id=AI_CP,
            ),
            ComponentConfig(id="apis", name="APIs", services=["orders-api"]),  # not mirrored
        ],
    )


def _settings(**overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "statuspage_api_key": "k3y",
        "statuspage_page_id": "pg0fake0page",
        "statuspage_api_url": "http://127.0.0.1:9/v1",
        "status_page": _status_page(),
        **overrides,
    }
    return Settings(**values)


def _add_incident(
    session: Session,
    *,
    key: str = "alertmanager:ssot-sync",
    severity: str = "critical",
    service: str = "ssot",
    public_status: str | None = None,
) -> int:
    incident = Incident(
        key=key,
        source="alertmanager",
        title="SSOT sync failure on db-7 (internal)",
        severity=severity,
        status="triggered",
        playbook_id="ssot-sync",
        created_at=OPENED_AT,
        updated_at=OPENED_AT,
        labels={"service": service, "alertname": "SSOTSyncFailing", "team": "platform"},
        public_status=public_status,
    )
    session.add(incident)
    session.flush()
    return incident.id


def _post_update(
    engine: sa.Engine, timeline: Timeline, number: int, status: str, text: str = "Looking."
) -> None:
    with Session(engine) as session, session.begin():
        timeline.record(session, number, Kind.UPDATE_POSTED, "U0COMMS", status=status, text=text)


def _new_incident(engine: sa.Engine, **incident: Any) -> int:
    with Session(engine) as session, session.begin():
        return _add_incident(session, **incident)


def _rows(engine: sa.Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def _payload(number: int, status: str, body: str, components: dict[str, str]) -> dict[str, Any]:
    return {
        "incident": number,
        "opened_at": OPENED_AT.isoformat(),
        "name": "Service disruption",
        "status": status,
        "body": body,
        "components": components,
    }


# -- events → rows ---------------------------------------------------------------------


@pytest.mark.usefixtures("isolated_settings")
def test_public_updates_enqueue_rows_with_only_public_facts(engine: sa.Engine) -> None:
    timeline = Timeline([StatuspageOutput(_settings())])
    critical = _new_incident(engine)
    warning = _new_incident(engine, key="k-ai", severity="warning", service="frenly-ai")
    unmirrored = _new_incident(engine, key="k-api", severity="critical", service="orders-api")

    _post_update(engine, timeline, critical, "investigating", "We are looking into it.")
    _post_update(engine, timeline, warning, "identified", "Slow answers.")
    _post_update(engine, timeline, unmirrored, "monitoring", "Fixed, watching.")
    _post_update(engine, timeline, critical, "resolved", "All good.")

    rows = _rows(engine)
    assert [(r.output, r.channel, r.method) for r in rows] == [
        ("statuspage", "pg0fake0page", "statuspage.update")
    ] * 4
    assert [r.incident_id for r in rows] == [critical, warning, unmirrored, critical]
    assert [r.payload for r in rows] == [
        _payload(critical, "investigating", "We are looking into it.", {SSOT_CP: "major_outage"}),
        _payload(warning, "identified", "Slow answers.", {AI_CP: "partial_outage"}),
        _payload(unmirrored, "monitoring", "Fixed, watching.", {}),
        _payload(critical, "resolved", "All good.", {SSOT_CP: "operational"}),
    ]


@pytest.mark.usefixtures("isolated_settings")
def test_a_component_shows_the_worst_of_its_open_published_incidents(engine: sa.Engine) -> None:
    timeline = Timeline([StatuspageOutput(_settings())])
    _new_incident(engine, key="k-other", public_status="investigating")  # critical, still open
    _new_incident(engine, key="k-unpublished", severity="critical")  # not public: no effect
    warning = _new_incident(engine, key="k-warn", severity="warning")

    _post_update(engine, timeline, warning, "investigating")
    _post_update(engine, timeline, warning, "resolved", "Done.")

    assert [r.payload["components"] for r in _rows(engine)] == [
        {SSOT_CP: "major_outage"},
        {SSOT_CP: "major_outage"},
    ]


@pytest.mark.usefixtures("isolated_settings")
def test_nothing_is_enqueued_unconfigured_or_for_other_kinds(engine: sa.Engine) -> None:
    number = _new_incident(engine)
    for settings in (_settings(statuspage_api_key=None), _settings(statuspage_page_id=None)):
        _post_update(engine, Timeline([StatuspageOutput(settings)]), number, "investigating")
    timeline = Timeline([StatuspageOutput(_settings())])
    with Session(engine) as session, session.begin():
        timeline.record(session, number, Kind.OPENED, "nexus-bot", title="x")
        timeline.record(session, number, Kind.RESOLVED, "nexus-bot", reason="manual", via="slack")
        timeline.record(session, number, Kind.REOPENED, "nexus-bot", via="alerts", firing=1)
        timeline.record(session, number, Kind.NOTE_ADDED, "U0ALICE", text="secret", via="slack")
        # Not a public status, or no text: nothing a customer could be shown.
        timeline.record(session, number, Kind.UPDATE_POSTED, "U0", status="fixed", text="x")
        timeline.record(session, number, Kind.UPDATE_POSTED, "U0", status="resolved", text=" ")

    assert _rows(engine) == []


@pytest.mark.usefixtures("isolated_settings")
def test_hostile_text_is_data_and_overlong_text_is_cut(engine: sa.Engine) -> None:
    timeline = Timeline([StatuspageOutput(_settings())])
    number = _new_incident(engine)
    script = '<script>alert("x")</script> & "quotes" ' + "é" * 20_000
    _post_update(engine, timeline, number, "investigating", script)
    _post_update(engine, timeline, number, "identified", "y" * 30_000)

    first, second = (r.payload["body"] for r in _rows(engine))
    assert first == script
    assert second == "y" * 24_999 + "…"


# -- rows → Statuspage -------------------------------------------------------------------


@pytest.fixture
def sp() -> Iterator[FakeStatuspage]:
    with FakeStatuspage(components={SSOT_CP: "operational", AI_CP: "operational"}) as fake:
        yield fake


@pytest.fixture
def delivery(sp: FakeStatuspage) -> Iterator[StatuspageDelivery]:
    sender = StatuspageDelivery(sp.url, sp.api_key, sp.page_id, timeout=2.0)
    yield sender
    sender.close()


MARKER = {"nexus": {"incident": "12", "opened_at": OPENED_AT.isoformat()}}


def _row(status: str, body: str = "Looking.", state: str = "major_outage") -> dict[str, Any]:
    return _payload(12, status, body, {SSOT_CP: state})


def _components(state: str) -> dict[str, Any]:
    return {"component_ids": [SSOT_CP], "components": {SSOT_CP: state}}


def _patch(status: str, body: str, state: str) -> dict[str, Any]:
    return {"incident": {"status": status, "body": body, **_components(state)}}


def test_first_update_creates_later_ones_patch_and_resolve(
    sp: FakeStatuspage, delivery: StatuspageDelivery
) -> None:
    assert delivery.send("statuspage.update", _row("investigating", "<b>Looking</b>")) == Sent()
    assert delivery.send("statuspage.update", _row("identified", "Found it.")) == Sent()
    resolved = _row("resolved", "Fixed.", "operational")
    assert delivery.send("statuspage.update", resolved) == Sent()

    [incident] = sp.incidents()
    path = f"/pages/{sp.page_id}/incidents"
    created = {
        "name": "Service disruption",
        "status": "investigating",
        "body": "<b>Looking</b>",
        "deliver_notifications": True,
        "metadata": MARKER,
        **_components("major_outage"),
    }
    assert sp.writes() == [
        ("POST", path, {"incident": created}),
        ("PATCH", f"{path}/{incident.id}", _patch("identified", "Found it.", "major_outage")),
        ("PATCH", f"{path}/{incident.id}", _patch("resolved", "Fixed.", "operational")),
    ]
    assert [u["status"] for u in incident.updates] == ["investigating", "identified", "resolved"]
    assert incident.status == "resolved"
    assert sp.components() == {SSOT_CP: "operational", AI_CP: "operational"}
    assert {r.header("Authorization") for r in sp.requests()} == {f"OAuth {sp.api_key}"}


def test_an_update_after_resolution_reopens_the_same_incident(
    sp: FakeStatuspage, delivery: StatuspageDelivery
) -> None:
    for status in ("investigating", "resolved", "investigating"):
        assert delivery.send("statuspage.update", _row(status)) == Sent()

    [incident] = sp.incidents()
    assert incident.status == "investigating"
    assert [m for m, _, _ in sp.writes()] == ["POST", "PATCH", "PATCH"]


@pytest.mark.parametrize("delay", [0.0, 3.0], ids=["500-after-write", "timeout-after-write"])
def test_a_create_whose_answer_was_lost_is_found_not_repeated(
    sp: FakeStatuspage, delivery: StatuspageDelivery, delay: float
) -> None:
    sp.lose_answer_next(1, 500, delay=delay)

    first = delivery.send("statuspage.update", _row("investigating"))
    again = delivery.send("statuspage.update", _row("investigating"))

    assert isinstance(first, Retry)
    assert again == Sent()
    [incident] = sp.incidents()
    assert [m for m, _, _ in sp.writes()] == ["POST", "PATCH"]
    assert len(incident.updates) == 2  # the repeated update itself is harmless


def test_a_resolve_whose_answer_was_lost_is_found_among_resolved_incidents(
    sp: FakeStatuspage, delivery: StatuspageDelivery
) -> None:
    assert delivery.send("statuspage.update", _row("investigating")) == Sent()
    sp.lose_answer_next(1, 502)
    resolved = _row("resolved", "Fixed.", "operational")

    assert isinstance(delivery.send("statuspage.update", resolved), Retry)
    assert delivery.send("statuspage.update", resolved) == Sent()

    assert len(sp.incidents()) == 1
    assert [m for m, _, _ in sp.writes()] == ["POST", "PATCH", "PATCH"]


def test_other_incidents_are_never_taken_for_ours(
    sp: FakeStatuspage, delivery: StatuspageDelivery
) -> None:
    sp.add_incident(status="investigating")  # made by hand, no metadata
    sp.add_incident(status="monitoring", metadata={"jira": {"issue": "OPS-1"}})
    # Incident #12 of an earlier NEXUS database (same number, another opening time).
    earlier = {"nexus": {"incident": "12", "opened_at": "2023-01-01T00:00:00+00:00"}}
    sp.add_incident(created_at=OPENED_AT - timedelta(days=400), metadata=earlier)

    assert delivery.send("statuspage.update", _row("investigating")) == Sent()

    ours = [i for i in sp.incidents() if i.metadata == MARKER]
    assert len(ours) == 1
    assert [m for m, _, _ in sp.writes()] == ["POST"]


def test_a_wrong_key_fails_with_a_report(sp: FakeStatuspage) -> None:
    sender = StatuspageDelivery(sp.url, "wrong-key-123", sp.page_id)
    try:
        result = sender.send("statuspage.update", _row("investigating"))
    finally:
        sender.close()

    assert isinstance(result, Failed)
    assert "HTTP 401" in result.error
    assert "wrong-key-123" not in result.error
    assert result.report == {
        "output": "statuspage",
        "problem": "rejected",
        "what": "Statuspage update of incident #12 (investigating)",
        "error": result.error,
    }
    assert sp.incidents() == []


def test_a_rejected_body_fails_with_a_report(
    sp: FakeStatuspage, delivery: StatuspageDelivery
) -> None:
    row = _payload(12, "investigating", "x", {"cmpunknown": "major_outage"})

    result = delivery.send("statuspage.update", row)

    assert isinstance(result, Failed)
    assert "HTTP 422" in result.error and "cmpunknown" in result.error
    assert result.report is not None and result.report["problem"] == "rejected"


@pytest.mark.parametrize(("retry_after", "after"), [("7", 7.0), (None, 5.0), ("86400", 300.0)])
def test_rate_limited_is_retried_after_what_statuspage_asked(
    sp: FakeStatuspage, delivery: StatuspageDelivery, retry_after: str | None, after: float
) -> None:
    sp.rate_limit_next(1, retry_after=retry_after)

    result = delivery.send("statuspage.update", _row("investigating"))

    assert isinstance(result, Retry)
    assert result.after == after
    assert "HTTP 429" in result.error
    assert sp.incidents() == []


def test_server_errors_are_retried_with_backoff(
    sp: FakeStatuspage, delivery: StatuspageDelivery
) -> None:
    sp.fail_next(1, 503)

    result = delivery.send("statuspage.update", _row("investigating"))

    assert isinstance(result, Retry)
    assert result.after is None
    assert "HTTP 503" in result.error
    assert delivery.send("statuspage.update", _row("investigating")) == Sent()
    assert len(sp.incidents()) == 1


def test_connection_refused_is_retried(closed_port: int) -> None:
    sender = StatuspageDelivery(f"http://127.0.0.1:{closed_port}/v1", "k3y", "pg0fake0page")
    try:
        result = sender.send("statuspage.update", _row("investigating"))
    finally:
        sender.close()

    assert isinstance(result, Retry)
    assert result.after is None
    assert "ConnectError" in result.error


@pytest.mark.parametrize(
    ("method", "payload", "says"),
    [
        ("statuspage.page", _row("investigating"), "unknown method"),
        ("statuspage.update", {"incident": 12}, "bad payload"),
        ("statuspage.update", _row("fixed"), "bad payload"),
    ],
)
def test_rows_the_sender_cannot_send_fail(
    sp: FakeStatuspage,
    delivery: StatuspageDelivery,
    method: str,
    payload: dict[str, Any],
    says: str,
) -> None:
    result = delivery.send(method, payload)

    assert isinstance(result, Failed)
    assert says in result.error
    assert sp.requests() == []


# -- from settings -------------------------------------------------------------------------


@pytest.mark.usefixtures("isolated_settings")
def test_from_settings(sp: FakeStatuspage) -> None:
    output, sender = statuspage_output_from_settings(_settings(statuspage_api_key=None))
    assert (output.name, output.configured, sender) == ("statuspage", False, None)

    settings = _settings(
        statuspage_api_key=sp.api_key, statuspage_page_id=sp.page_id, statuspage_api_url=sp.url
    )
    output, sender = statuspage_output_from_settings(settings)
    assert sender is not None
    try:
        assert (output.configured, sender.rate, sender.burst) == (True, 1.0, 2)
        assert sender.send("statuspage.update", _row("investigating")) == Sent()
    finally:
        sender.close()
    assert len(sp.incidents()) == 1


# -- recovery drills -------------------------------------------------------------


@pytest.mark.usefixtures("isolated_settings")
def test_a_drill_never_reaches_statuspage_nor_colours_a_component(
    engine: sa.Engine, sp: FakeStatuspage, delivery: StatuspageDelivery
) -> None:
    timeline = Timeline([StatuspageOutput(_settings())])
    drill = _new_incident(engine, key="drill:ssot", public_status="investigating")
    with Session(engine) as session, session.begin():
        session.execute(sa.update(Incident).where(Incident.id == drill).values(drill_run_id=4))
    real = _new_incident(engine, key="k-real", severity="warning")

    _post_update(engine, timeline, drill, "investigating", "DRILL: rehearsing the wording.")
    _post_update(engine, timeline, real, "investigating")
    _post_update(engine, timeline, real, "resolved", "Done.")

    rows = _rows(engine)
    assert [r.incident_id for r in rows] == [real, real]
    # The drill's "investigating" holds no component down: the real resolve clears it.
    assert [r.payload["components"] for r in rows] == [
        {SSOT_CP: "degraded_performance"},
        {SSOT_CP: "operational"},
    ]
    assert [delivery.send(r.method, r.payload) for r in rows] == [Sent(), Sent()]
    [mirrored] = sp.incidents()
    assert mirrored.status == "resolved"
    assert all("DRILL" not in str(body) for _, _, body in sp.writes())
