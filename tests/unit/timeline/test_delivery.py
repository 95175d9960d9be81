"""The generic delivery worker against a far end over real HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session
from structlog.testing import capture_logs

from bot.metrics import REGISTRY
from bot.store.models import OutboxMessage, TimelineEvent, utcnow
from bot.timeline.delivery import DeliveryWorker, pending_deliveries
from bot.timeline.queue import Result
from tests.unit.timeline.delivery_support import (
    METHOD,
    Answer,
    FarEnd,
    HttpSender,
    add,
    drain,
    make_worker,
    new_incident,
    rows,
)


@pytest.fixture
def far_end() -> Iterator[FarEnd]:
    with FarEnd() as server:
        yield server


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_delivers_every_row_once_and_marks_it_sent(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    incident = new_incident(engine)
    for name in ("a", "b"):
        add(engine, name, incident_id=incident)
    add(engine, "loose")
    sent_before = metric("nexus_delivery_sent_total", output="mail")
    timed_before = metric("nexus_delivery_seconds_count", output="mail")
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)})

    assert pending_deliveries(engine, "mail") == 3
    await drain(worker, engine)

    assert sorted(far_end.names()) == ["a", "b", "loose"]
    assert {a.path for a in far_end.arrivals} == {f"/{METHOD}"}
    stored = rows(engine)
    assert {r.state for r in stored.values()} == {"sent"}
    assert {r.attempts for r in stored.values()} == {1}
    assert all(r.sent_at is not None and r.last_error is None for r in stored.values())
    assert pending_deliveries(engine, "mail") == 0
    assert metric("nexus_delivery_sent_total", output="mail") == sent_before + 3
    assert metric("nexus_delivery_seconds_count", output="mail") == timed_before + 3
    await worker.deliver_due()  # the gauge is counted at the start of a pass
    assert metric("nexus_delivery_pending", output="mail") == 0


async def test_a_row_in_backoff_holds_back_its_own_incident_only(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    stuck, other = new_incident(engine), new_incident(engine)
    add(engine, "stuck-1", incident_id=stuck)
    add(engine, "stuck-2", incident_id=stuck)
    add(engine, "other-1", incident_id=other)
    add(engine, "other-2", incident_id=other)
    far_end.answer("stuck-1", Answer(503))
    worker = make_worker(
        engine, {"mail": HttpSender(far_end.url)}, backoff_base=1.0, backoff_cap=1.0
    )

    await worker.deliver_due()  # stuck-1 fails, other-1 goes
    await worker.deliver_due()  # other-2 goes; stuck-1 is in backoff, stuck-2 behind it
    assert far_end.names() == ["stuck-1", "other-1", "other-2"]
    row = rows(engine)["stuck-1"]
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "http 503")
    assert row.next_attempt_at > utcnow()
    assert rows(engine)["stuck-2"].attempts == 0
    await worker.deliver_due()
    assert far_end.names() == ["stuck-1", "other-1", "other-2"]
    assert metric("nexus_delivery_pending", output="mail") == 2

    await drain(worker, engine)
    assert far_end.names()[3:] == ["stuck-1", "stuck-2"]


async def test_rows_without_an_incident_are_ordered_per_channel(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    add(engine, "smtp-1", key="smtp")
    add(engine, "smtp-2", key="smtp")
    add(engine, "relay-1", key="relay")
    far_end.answer("smtp-1", Answer(503))
    worker = make_worker(
        engine, {"mail": HttpSender(far_end.url)}, backoff_base=1.0, backoff_cap=1.0
    )

    await worker.deliver_due()
    await worker.deliver_due()
    assert sorted(far_end.names()) == ["relay-1", "smtp-1"]  # two keys: sent concurrently
    await drain(worker, engine)
    assert far_end.names()[2:] == ["smtp-1", "smtp-2"]


async def test_retry_after_blocks_the_key_and_does_not_count_an_attempt(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    add(engine, "first", key="smtp")
    add(engine, "second", key="smtp")
    add(engine, "elsewhere", key="relay")
    far_end.answer("first", Answer(429, retry_after=1))
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)}, max_attempts=1)

    await worker.deliver_due()
    waiting = rows(engine)["first"]
    assert (waiting.state, waiting.attempts, waiting.last_error) == ("pending", 0, "http 429")
    assert waiting.next_attempt_at > utcnow()
    assert sorted(far_end.names()) == ["elsewhere", "first"]  # the other key is not blocked

    await drain(worker, engine)
    (told, retried) = far_end.times("first")
    assert retried - told >= 0.95  # Retry-After: 1
    assert far_end.times("second")[0] > retried  # the key stayed blocked and in order
    stored = rows(engine)
    # max_attempts=1 and still sent: the 429 gave its attempt back.
    assert (stored["first"].state, stored["first"].attempts) == ("sent", 1)
    assert stored["first"].last_error is None


async def test_backs_off_then_succeeds(engine: sa.Engine, far_end: FarEnd) -> None:
    add(engine, "flaky")
    far_end.answer("flaky", Answer(503), Answer(502))
    worker = make_worker(
        engine, {"mail": HttpSender(far_end.url)}, backoff_base=0.1, backoff_cap=1.0
    )

    await drain(worker, engine)

    times = far_end.times("flaky")
    assert len(times) == 3
    # Equal jitter: at least half the exponential step (0.1·2^(n-1)) between tries.
    assert times[1] - times[0] >= 0.05
    assert times[2] - times[1] >= 0.1
    row = rows(engine)["flaky"]
    assert (row.state, row.attempts, row.last_error) == ("sent", 3, None)


async def test_failed_is_final_and_lets_the_incident_go_on(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    incident = new_incident(engine)
    add(engine, "refused", incident_id=incident)
    add(engine, "next", incident_id=incident)
    far_end.answer("refused", Answer(400))
    failed_before = metric("nexus_delivery_failed_total", output="mail", reason="permanent")
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)})

    await drain(worker, engine)
    await worker.deliver_due()

    assert far_end.names() == ["refused", "next"]
    stored = rows(engine)
    assert (stored["refused"].state, stored["refused"].last_error) == ("failed", "http 400")
    assert stored["refused"].attempts == 1
    assert stored["next"].state == "sent"
    after = metric("nexus_delivery_failed_total", output="mail", reason="permanent")
    assert after == failed_before + 1


async def test_a_row_that_keeps_failing_fails_after_max_attempts(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    add(engine, "down")
    far_end.answer("down", *[Answer(503)] * 10)
    failed_before = metric("nexus_delivery_failed_total", output="mail", reason="max_attempts")
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)}, max_attempts=3)

    await drain(worker, engine)

    assert far_end.names() == ["down"] * 3
    row = rows(engine)["down"]
    assert (row.state, row.attempts) == ("failed", 3)
    assert row.last_error is not None
    assert row.last_error.startswith("max_attempts (3)")
    assert "http 503" in row.last_error
    after = metric("nexus_delivery_failed_total", output="mail", reason="max_attempts")
    assert after == failed_before + 1


class RecordReport:
    """An on_report hook that writes a timeline event, as the app's does; the
    first `fail_first` calls raise after writing, to show the rollback."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.calls: list[tuple[int | None, str, Mapping[str, Any], str]] = []

    def __call__(
        self, session: Session, incident_id: int | None, output: str, report: Mapping[str, Any]
    ) -> None:
        assert incident_id is not None
        # What this transaction sees of the row: the state it is settling to.
        state = session.execute(
            sa.select(OutboxMessage.state).where(OutboxMessage.incident_id == incident_id)
        ).scalar_one()
        self.calls.append((incident_id, output, dict(report), state))
        session.add(
            TimelineEvent(
                incident_id=incident_id,
                kind="delivery.problem",
                actor="nexus",
                facts={"output": output, **report},
                at=utcnow(),
            )
        )
        session.flush()
        if len(self.calls) <= self.fail_first:
            raise RuntimeError("hook bug")


def problem_events(engine: sa.Engine) -> list[dict[str, Any]]:
    with Session(engine) as session:
        return [
            dict(e.facts)
            for e in session.scalars(
                sa.select(TimelineEvent).where(TimelineEvent.kind == "delivery.problem")
            )
        ]


async def test_a_report_is_recorded_once_in_the_transaction_that_settles_the_row(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    incident = new_incident(engine)
    add(engine, "partly", incident_id=incident)
    refused = {"problem": "refused", "recipients": {"cto@example.com": "550 no such user"}}
    far_end.answer("partly", Answer(200, report=refused))
    hook = RecordReport(fail_first=1)
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)}, on_report=hook)

    await worker.deliver_due()
    # The hook raised: its event and the row's new state were rolled back together.
    assert hook.calls == [(incident, "mail", refused, "sent")]
    assert problem_events(engine) == []
    assert rows(engine)["partly"].state == "pending"

    await worker.deliver_due()
    assert problem_events(engine) == [{"output": "mail", **refused}]
    assert rows(engine)["partly"].state == "sent"
    assert far_end.names() == ["partly"]  # written again, never sent again
    await worker.deliver_due()
    assert len(hook.calls) == 2


async def test_a_failure_report_is_recorded_with_the_failed_state(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    incident = new_incident(engine)
    add(engine, "bounced", incident_id=incident)
    far_end.answer("bounced", Answer(400, report={"problem": "refused"}))
    hook = RecordReport()
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)}, on_report=hook)

    await drain(worker, engine)

    assert hook.calls == [(incident, "mail", {"problem": "refused"}, "failed")]
    assert problem_events(engine) == [{"output": "mail", "problem": "refused"}]


async def test_rows_of_other_outputs_are_never_touched(engine: sa.Engine, far_end: FarEnd) -> None:
    add(engine, "slack", output="slack", key="C1")
    add(engine, "pager", output="pagerduty", key="events")
    add(engine, "mail")
    columns = ("state", "attempts", "next_attempt_at", "first_attempt_at", "last_error")

    def snapshot(name: str) -> tuple[Any, ...]:
        row = rows(engine)[name]
        return tuple(getattr(row, c) for c in columns)

    before = {name: snapshot(name) for name in ("slack", "pager")}
    worker = make_worker(engine, {"mail": HttpSender(far_end.url)})

    await drain(worker, engine)
    await worker.deliver_due()

    assert far_end.names() == ["mail"]
    assert {name: snapshot(name) for name in ("slack", "pager")} == before
    assert pending_deliveries(engine, "slack") == pending_deliveries(engine, "pagerduty") == 1
    with pytest.raises(ValueError, match="Slack"):
        DeliveryWorker(engine, {"slack": HttpSender(far_end.url)})


class RaisesOnce:
    def __init__(self, sender: HttpSender) -> None:
        self.sender, self.rate, self.burst = sender, sender.rate, sender.burst
        self.raised = False

    def send(self, method: str, payload: Mapping[str, Any]) -> Result:
        if not self.raised:
            self.raised = True
            raise KeyError("bug")
        return self.sender.send(method, payload)


async def test_a_sender_that_raises_is_retried_like_a_failure(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    add(engine, "once")
    worker = make_worker(engine, {"mail": RaisesOnce(HttpSender(far_end.url))}, backoff_base=0.1)

    with capture_logs() as logs:
        await worker.deliver_due()
    row = rows(engine)["once"]
    assert (row.state, row.attempts, row.last_error) == ("pending", 1, "KeyError")
    (raised,) = [e for e in logs if e["event"] == "delivery_sender_raised"]
    assert raised["exc_info"] is True and raised["delivery_id"] == row.id

    await drain(worker, engine)
    assert far_end.names() == ["once"]
    assert rows(engine)["once"].attempts == 2


async def test_each_key_is_paced_by_its_senders_rate(engine: sa.Engine, far_end: FarEnd) -> None:
    for i in range(4):
        add(engine, f"smtp-{i}", key="smtp")
    add(engine, "relay", key="relay")
    worker = make_worker(engine, {"mail": HttpSender(far_end.url, rate=10, burst=1)})

    await drain(worker, engine)

    sends = [far_end.times(f"smtp-{i}")[0] for i in range(4)]
    # 10 per second, burst 1: three intervals of 0.1 s (less a little for the
    # varying time from spending a token to the request arriving).
    assert sends[-1] - sends[0] >= 0.27
    assert sends == sorted(sends)
    assert far_end.times("relay")[0] < sends[2]  # its own bucket: not queued behind smtp


async def test_a_drills_rows_wait_for_real_incidents_on_their_key(
    engine: sa.Engine, far_end: FarEnd
) -> None:
    drill, real = new_incident(engine), new_incident(engine)
    drill_rows = [add(engine, f"drill-{i}", incident_id=drill) for i in range(2)]
    add(engine, "real-1", incident_id=real)
    add(engine, "real-2", incident_id=real)
    with Session(engine) as session, session.begin():
        session.execute(
            sa.update(OutboxMessage).where(OutboxMessage.id.in_(drill_rows)).values(priority=1)
        )
    # One send per pass at first (burst 1): the order of heads decides who goes.
    worker = make_worker(engine, {"mail": HttpSender(far_end.url, rate=20, burst=1)})

    await worker.deliver_due()
    assert far_end.names() == ["real-1"]  # older drill rows waited
    await drain(worker, engine)
    names = far_end.names()
    assert names.index("drill-0") < names.index("drill-1")  # the drill's own order kept
    assert names.index("real-2") < names.index("drill-0")
