"""The webhook inbox on SQLite and PostgreSQL: order, dedupe, backlog, retries, leases."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.ingest.inbox import MAX_ATTEMPTS, Inbox, InboxWorker, Put, SessionApplier
from bot.store.models import utcnow


def rows(engine: sa.Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT id, source, state, attempts, last_error FROM inbox ORDER BY id")
            )
        )


def make_due(engine: sa.Engine) -> None:
    """As if every lease and backoff had run out."""
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE inbox SET not_before = :t"), {"t": utcnow() - timedelta(seconds=1)}
        )


def test_pagerduty_goes_before_older_alertmanager_batches(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    assert inbox.put("alertmanager", '{"n": 1}', 100) is Put.QUEUED
    assert inbox.put("alertmanager", '{"n": 2}', 100) is Put.QUEUED
    assert inbox.put("pagerduty", '{"n": 3}', 1, delivery="wh-1") is Put.QUEUED
    order = []
    while (claimed := inbox.claim()) is not None:
        order.append(claimed.body)
        inbox.finish(claimed)
    assert order == ['{"n": 3}', '{"n": 1}', '{"n": 2}']
    assert rows(engine) == []


def test_a_redelivered_webhook_id_is_a_duplicate_and_stored_once(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    assert inbox.put("pagerduty", "{}", 1, delivery="wh-1") is Put.QUEUED
    assert inbox.put("pagerduty", "{}", 1, delivery="wh-1") is Put.DUPLICATE
    assert inbox.put("pagerduty", "{}", 1, delivery="wh-2") is Put.QUEUED
    assert len(rows(engine)) == 2


def test_backlog_counts_only_pending_rows_of_that_source(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    for _ in range(3):
        assert inbox.put("alertmanager", "{}", 10, max_backlog=3) is Put.QUEUED
    assert inbox.put("alertmanager", "{}", 10, max_backlog=3) is Put.FULL
    # PagerDuty is not refused because bulk alerts are waiting.
    assert inbox.put("pagerduty", "{}", 1, delivery="wh-9") is Put.QUEUED
    claimed = inbox.claim()
    assert claimed is not None and claimed.source == "pagerduty"
    inbox.finish(claimed)
    claimed = inbox.claim()
    assert claimed is not None
    inbox.finish(claimed)
    assert inbox.put("alertmanager", "{}", 10, max_backlog=3) is Put.QUEUED
    assert len(rows(engine)) == 3


def test_a_claimed_row_is_leased_and_comes_back_when_the_lease_runs_out(
    engine: sa.Engine,
) -> None:
    inbox = Inbox(engine)
    inbox.put("alertmanager", "{}", 1)
    first = inbox.claim()
    assert first is not None and first.attempts == 1
    assert inbox.claim() is None  # leased to the first claimer (a crashed replica, say)
    make_due(engine)
    again = inbox.claim()
    assert again is not None and (again.id, again.attempts) == (first.id, 2)


def test_failures_back_off_then_the_row_is_kept_as_failed(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    inbox.put("alertmanager", "{}", 1)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        claimed = inbox.claim()
        assert claimed is not None and claimed.attempts == attempt
        inbox.fail(claimed, f"boom {attempt}")
        assert inbox.claim() is None  # backing off
        make_due(engine)
    (row,) = rows(engine)
    assert (row.state, row.attempts, row.last_error) == ("failed", MAX_ATTEMPTS, "boom 8")
    assert inbox.claim() is None
    assert inbox.counts() == {"pending": 0, "failed": 1}


def test_claims_that_keep_expiring_end_as_failed(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    inbox.put("alertmanager", "{}", 1)
    for _ in range(MAX_ATTEMPTS):
        assert inbox.claim() is not None  # and the process "dies" each time
        make_due(engine)
    assert inbox.claim() is None
    (row,) = rows(engine)
    assert row.state == "failed" and "claims expired" in row.last_error


def test_concurrent_claimers_never_get_the_same_row(
    engine: sa.Engine, race: Callable[..., list[Any]]
) -> None:
    inbox = Inbox(engine)
    for n in range(40):
        inbox.put("alertmanager", f'{{"n": {n}}}', 1, group_key=f"group-{n}")
    seen: list[int] = []
    lock = threading.Lock()

    def claimer(_: int) -> None:
        while (claimed := inbox.claim()) is not None:
            with lock:
                seen.append(claimed.id)
            inbox.finish(claimed)

    race(4, claimer)
    assert len(seen) == 40 and len(set(seen)) == 40
    assert rows(engine) == []


def test_worker_applies_in_order_and_keeps_what_fails(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    applied: list[str] = []

    def apply(body: str, redelivered: bool) -> None:
        if "bad" in body:
            raise ValueError("cannot apply this one")
        applied.append(body)

    inbox.put("alertmanager", "a1", 1, group_key="g1")
    inbox.put("alertmanager", "bad", 1, group_key="g2")
    inbox.put("alertmanager", "a2", 1, group_key="g2")  # waits behind "bad": same group
    inbox.put("alertmanager", "a3", 1, group_key="g3")
    inbox.put("pagerduty", "p1", 1, delivery="wh-p1")
    worker = InboxWorker(inbox, {"alertmanager": apply, "pagerduty": apply})
    assert worker.apply_some() == 4
    assert applied == ["p1", "a1", "a3"]
    kept = {row.id: row for row in rows(engine)}
    assert [(r.state, r.attempts) for r in kept.values()] == [("pending", 1), ("pending", 0)]
    assert "ValueError: cannot apply this one" in next(iter(kept.values())).last_error


def test_a_group_is_applied_in_order_even_across_claimers(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    inbox.put("alertmanager", "g1-firing", 1, group_key="g1")
    inbox.put("alertmanager", "g1-resolved", 1, group_key="g1")
    inbox.put("alertmanager", "g2-firing", 1, group_key="g2")
    first = inbox.claim()  # this replica
    other = inbox.claim()  # another replica, meanwhile
    assert first is not None and first.body == "g1-firing"
    assert other is not None and other.body == "g2-firing"  # not g1's second batch
    assert inbox.claim() is None  # g1-resolved waits for g1-firing
    inbox.fail(first, "transient")  # backing off still holds the group
    make_due(engine)
    again = inbox.claim()
    assert again is not None and again.body == "g1-firing"
    inbox.finish(again)
    last = inbox.claim()
    assert last is not None and last.body == "g1-resolved"


def test_worker_run_wakes_on_put_and_stops_cleanly(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    applied: list[str] = []
    worker = InboxWorker(
        inbox, {"alertmanager": lambda body, _: applied.append(body)}, poll_seconds=30
    )

    async def scenario() -> None:
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.05)
        await asyncio.to_thread(inbox.put, "alertmanager", "woken", 1)
        worker.wake()  # what the webhook does after its put
        for _ in range(200):
            if applied:
                break
            await asyncio.sleep(0.01)
        await worker.stop()
        await asyncio.wait_for(task, timeout=5)

    asyncio.run(scenario())
    assert applied == ["woken"]  # long before the 30 s poll
    assert rows(engine) == []


def test_an_unknown_source_in_the_table_is_retried_not_dropped(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    inbox.put("pagerduty", "{}", 1, delivery="wh-x")
    worker = InboxWorker(inbox, {})  # e.g. a replica running an older build
    assert worker.apply_some() == 1
    (row,) = rows(engine)
    assert row.state == "pending" and "no applier" in row.last_error


def test_a_second_attempt_is_applied_as_redelivered(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    seen: list[tuple[str, bool]] = []

    def flaky(body: str, redelivered: bool) -> None:
        seen.append((body, redelivered))
        if len(seen) == 1:
            raise ConnectionError("database went away mid-apply")

    inbox.put("alertmanager", "batch", 1, group_key="g")
    worker = InboxWorker(inbox, {"alertmanager": flaky})
    worker.apply_some()
    make_due(engine)
    worker.apply_some()
    assert seen == [("batch", False), ("batch", True)]
    assert rows(engine) == []


# -- Alertmanager batches applied together, in one transaction ---------------------


def together(
    engine: sa.Engine, applied: list[tuple[int, str]], fail_on: str = "bad"
) -> SessionApplier:
    """Applies in the worker's session: writes a marker row, so a rollback shows."""
    sessions = sessionmaker(engine)
    transactions = itertools.count(1)

    @contextmanager
    def session() -> Iterator[Session]:
        with sessions.begin() as s:
            # A number per transaction: id(s) could be reused by the next session.
            s.info["transaction"] = next(transactions)
            yield s

    def apply(s: Session, body: str) -> None:
        s.execute(
            sa.text(
                "INSERT INTO webhook_deliveries (source, delivery_id, received_at) "
                "VALUES ('test', :body, :now)"
            ),
            {"body": body, "now": utcnow()},
        )
        if fail_on in body:
            raise ValueError("cannot apply this one")
        applied.append((s.info["transaction"], body))

    return SessionApplier("alertmanager", session, apply)


def markers(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        query = "SELECT delivery_id FROM webhook_deliveries WHERE source = 'test' ORDER BY id"
        return [row[0] for row in conn.execute(sa.text(query))]


def test_alertmanager_rows_are_applied_and_deleted_together(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    singly: list[str] = []
    batched: list[tuple[int, str]] = []
    inbox.put("alertmanager", "a1", 1, group_key="g1")
    inbox.put("alertmanager", "a2", 1, group_key="g2")
    inbox.put("alertmanager", "a3", 1, group_key="g1")  # waits for a1: same group
    inbox.put("pagerduty", "p1", 1, delivery="wh-together")
    worker = InboxWorker(
        inbox,
        {"pagerduty": lambda body, again: singly.append(body)},
        together=together(engine, batched),
    )
    assert worker.apply_some() == 4
    assert singly == ["p1"]  # PagerDuty first, on its own path
    assert [body for _, body in batched] == ["a1", "a2", "a3"]
    first, second, third = (session for session, _ in batched)
    assert first == second != third  # a1 and a2 in one transaction; a3 after a1's commit
    assert rows(engine) == []
    assert markers(engine) == ["a1", "a2", "a3"]


def test_a_failed_batch_leaves_no_trace_and_its_rows_go_one_at_a_time(
    engine: sa.Engine,
) -> None:
    inbox = Inbox(engine)
    batched: list[tuple[int, str]] = []
    singly: list[str] = []

    def single(body: str, redelivered: bool) -> None:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO webhook_deliveries (source, delivery_id, received_at) "
                    "VALUES ('test', :body, :now)"
                ),
                {"body": f"single:{body}", "now": utcnow()},
            )
        if "bad" in body:
            raise ValueError("cannot apply this one")
        singly.append(body)

    for body, group in (("a1", "g1"), ("bad", "g2"), ("a2", "g3")):
        inbox.put("alertmanager", body, 1, group_key=group)
    worker = InboxWorker(inbox, {"alertmanager": single}, together=together(engine, batched))
    assert worker.apply_some() == 3
    # The batch got as far as "bad" and was rolled back (no marker of its a1);
    # a1 and bad went singly, then the batches went on with a2.
    assert [body for _, body in batched] == ["a1", "a2"]
    assert singly == ["a1"]
    assert markers(engine) == ["single:a1", "single:bad", "a2"]
    (kept,) = rows(engine)
    assert (kept.source, kept.state, kept.attempts) == ("alertmanager", "pending", 1)
    assert "ValueError: cannot apply this one" in kept.last_error
    # The bad row is backing off: the next batch goes together again without it.
    inbox.put("alertmanager", "a4", 1, group_key="g4")
    assert worker.apply_some() == 1
    assert [body for _, body in batched] == ["a1", "a2", "a4"]


def test_a_transaction_stops_taking_rows_after_its_time_budget(engine: sa.Engine) -> None:
    inbox = Inbox(engine)
    for n in range(6):
        inbox.put("alertmanager", f"a{n}", 1, group_key=f"g{n}")
    batched: list[tuple[int, str]] = []
    slow = together(engine, batched)

    def apply(s: Session, body: str) -> None:
        time.sleep(0.03)
        slow.apply(s, body)

    worker = InboxWorker(
        inbox,
        {},
        together=SessionApplier("alertmanager", slow.session, apply),
        together_seconds=0.05,
    )
    assert worker.apply_some() == 6
    per_transaction = Counter(session for session, _ in batched)
    # 30 ms a row, 50 ms a transaction: never more than two rows in one (fewer
    # on a busy machine), where the row limit (16) would have taken all six.
    assert sum(per_transaction.values()) == 6
    assert max(per_transaction.values()) <= 2
    assert rows(engine) == []


def test_replicas_applying_together_apply_each_row_once_in_group_order(
    engine: sa.Engine, race: Callable[..., list[Any]]
) -> None:
    inbox = Inbox(engine)
    for n in range(60):
        inbox.put("alertmanager", f"g{n % 6}-{n // 6:02d}", 1, group_key=f"g{n % 6}")
    applied: list[tuple[int, str]] = []
    lock = threading.Lock()

    def replica(_: int) -> None:
        mine: list[tuple[int, str]] = []
        worker = InboxWorker(inbox, {}, together=together(engine, mine), together_limit=4)
        while worker.apply_some(limit=5):
            pass
        with lock:
            applied.extend(mine)

    race(3, replica)
    bodies = [body for _, body in applied]
    assert sorted(bodies) == sorted(f"g{n % 6}-{n // 6:02d}" for n in range(60))
    assert sorted(markers(engine)) == sorted(bodies)  # every row once, none twice
    for group in range(6):
        mine = [b for b in markers(engine) if b.startswith(f"g{group}-")]
        assert mine == sorted(mine)  # committed in the group's order
    assert rows(engine) == []
