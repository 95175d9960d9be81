"""The Slack delivery worker against the fake Slack over HTTP, on SQLite and PostgreSQL.

Failures and retries, replicas sharing a database, and pacing.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from bot.slack.outbox import enqueue_message, enqueue_root_post, enqueue_thread_reply
from bot.slack.outbox_worker import OutboxWorker
from bot.store.db import make_engine
from bot.store.repository import Repository
from tests.fakes.slack import FakeSlack
from tests.unit.slack.outbox_support import (
    all_done,
    assert_each_once,
    drain,
    make_worker,
    outbox_rows,
    running,
    section,
    slack_client,
)

# -- failures ------------------------------------------------------------------


async def test_server_errors_then_rate_limits_still_deliver_each_message_once(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    slack.post_rate, slack.post_burst = 20, 5
    slack.fail_next(5)
    slack.rate_limit_next(3, retry_after=1)
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        enqueue_thread_reply(s, incident, "C1", "reply 1")
        enqueue_thread_reply(s, incident, "C1", "reply 2")
        for i in range(3):
            enqueue_message(s, "C2", f"loose {i}")

    async with running(make_worker(engine, slack, rate_per_channel=20, burst=3)):
        await slack.wait_for_async(lambda: len(slack.messages()) == 6, timeout=20)
        await slack.wait_for_async(lambda: all_done(engine))

    assert_each_once(slack, ["root", "reply 1", "reply 2", "loose 0", "loose 1", "loose 2"])
    (root,) = slack.roots("C1")
    assert [m.text for m in slack.thread("C1", root.ts)] == ["reply 1", "reply 2"]
    outcomes = Counter(c.outcome for c in slack.calls())
    assert (outcomes["http_500"], outcomes["ratelimited"]) == (5, 3)
    assert len(slack.calls("chat.postMessage", ok=True)) == 6
    # A post answered with a 5xx may have reached Slack: it is looked for before
    # it is sent again (conversations.history / .replies), and never found here.
    lookups = slack.calls("conversations.history") + slack.calls("conversations.replies")
    assert lookups
    assert outcomes["ok"] == 6 + sum(c.ok for c in lookups)
    rows = outbox_rows(engine)
    assert {r.state for r in rows} == {"sent"}
    # 5xx count as attempts, 429s do not.
    assert sum(r.attempts for r in rows) == 6 + 5
    # Retry-After was honoured: nothing went to a channel within 1 s of its 429.
    calls = slack.calls()
    for n, call in enumerate(calls):
        if call.outcome == "ratelimited":
            later = [c for c in calls[n + 1 :] if c.params["channel"] == call.params["channel"]]
            assert later[0].at - call.at >= 0.95


async def test_dropped_connections_are_retried_and_delivered_once(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    slack.post_rate, slack.post_burst = 20, 5
    slack.drop_connections_next(3)
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        enqueue_thread_reply(s, incident, "C1", "reply")
    async with running(make_worker(engine, slack, rate_per_channel=20, burst=3)):
        await slack.wait_for_async(lambda: len(slack.messages()) == 2 and all_done(engine))

    assert_each_once(slack, ["root", "reply"])
    assert len(slack.calls(ok=False)) == 3
    assert {c.outcome for c in slack.calls(ok=False)} == {"dropped"}
    assert all(r.last_error is None and r.state == "sent" for r in outbox_rows(engine))


async def test_permanent_error_fails_the_row_and_others_are_delivered(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    slack.inject_error("channel_not_found", channel="CGONE")
    incident = new_incident()
    with repo.session() as s:
        enqueue_message(s, "CGONE", "lost")
        enqueue_message(s, "CGONE", "lost too")
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        enqueue_message(s, "C2", "fine")

    worker = make_worker(engine, slack)
    await drain(worker, engine)
    for _ in range(3):  # later passes do not retry the failed rows
        await worker.deliver_due()

    assert_each_once(slack, ["root", "fine"])
    assert len(slack.calls(ok=False)) == 2  # one call each, never retried
    failed = {r.payload["text"]: r for r in outbox_rows(engine) if r.state == "failed"}
    assert set(failed) == {"lost", "lost too"}
    assert {(r.last_error, r.attempts) for r in failed.values()} == {("channel_not_found", 1)}


async def test_gives_up_after_max_attempts(
    engine: sa.Engine, repo: Repository, slack: FakeSlack
) -> None:
    slack.fail_next(100, status=503)
    with repo.session() as s:
        enqueue_message(s, "C1", "doomed")
    async with running(make_worker(engine, slack, max_attempts=3)):
        await slack.wait_for_async(lambda: all_done(engine))
        await asyncio.sleep(0.3)
    (row,) = outbox_rows(engine)
    assert (row.state, row.attempts, row.last_error) == ("failed", 3, "http_503")
    assert len(slack.calls()) == 3


async def test_the_worker_survives_exceptions_in_a_pass(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, monkeypatch: pytest.MonkeyPatch
) -> None:
    worker = make_worker(engine, slack)
    original = worker._load_candidates
    failures = iter([RuntimeError("database went away"), RuntimeError("still away")])

    def flaky() -> list[object]:
        error = next(failures, None)
        if error is not None:
            raise error
        return original()  # type: ignore[return-value]

    monkeypatch.setattr(worker, "_load_candidates", flaky)
    with repo.session() as s:
        enqueue_message(s, "C1", "eventually")
    async with running(worker):
        await slack.wait_for_async(lambda: slack.texts("C1") == ["eventually"])


async def test_stop_before_run_started_returns_promptly(
    engine: sa.Engine, slack: FakeSlack
) -> None:
    worker = make_worker(engine, slack)
    task = asyncio.create_task(worker.run())
    await worker.stop()  # run() has not had a chance to start yet
    await asyncio.wait_for(task, 2)


# -- replicas --------------------------------------------------------------------


async def test_two_workers_on_one_database_send_each_message_once(
    engine: sa.Engine,
    database_url: str,
    repo: Repository,
    slack: FakeSlack,
    new_incident: Callable[[], int],
) -> None:
    slack.post_rate, slack.post_burst = 50, 10
    second_engine = make_engine(database_url)
    workers = [make_worker(e, slack, rate_per_channel=20, burst=3) for e in (engine, second_engine)]
    expected: list[str] = []
    try:
        async with running(*workers):
            incidents = [new_incident() for _ in range(3)]
            for n, incident in enumerate(incidents):
                with repo.session() as s:
                    enqueue_root_post(s, incident, f"C{n}", f"root {n}", section(f"root {n}"))
                    for i in range(4):
                        enqueue_thread_reply(s, incident, f"C{n}", f"reply {n}.{i}")
                expected += [f"root {n}"] + [f"reply {n}.{i}" for i in range(4)]
            with repo.session() as s:
                for i in range(6):
                    enqueue_message(s, "C9", f"loose {i}")
            expected += [f"loose {i}" for i in range(6)]
            await slack.wait_for_async(
                lambda: len(slack.messages()) >= len(expected) and all_done(engine), timeout=20
            )
    finally:
        second_engine.dispose()

    assert_each_once(slack, expected)
    for n in range(3):
        (root,) = slack.roots(f"C{n}")
        replies = [m.text for m in slack.thread(f"C{n}", root.ts)]
        assert replies == [f"reply {n}.{i}" for i in range(4)]
    assert slack.texts("C9") == [f"loose {i}" for i in range(6)]


# -- pacing (timing only: SQLite is enough) ----------------------------------------


async def test_pacing_defaults_match_slack(sqlite_engine: sa.Engine, slack: FakeSlack) -> None:
    repo = Repository(sqlite_engine)
    with repo.session() as s:
        for i in range(4):
            enqueue_message(s, "C1", f"m{i}")
    # Production pacing (1/s, burst 2) against the fake's Slack-like limits.
    worker = OutboxWorker(sqlite_engine, slack_client(slack), poll_interval=0.05)
    async with running(worker):
        await slack.wait_for_async(lambda: len(slack.messages("C1")) == 4, timeout=10)

    assert slack.ratelimited_count == 0
    at = [c.at for c in slack.calls("chat.postMessage")]
    assert at[1] - at[0] < 0.5  # the burst
    for gap in (at[2] - at[1], at[3] - at[2]):
        assert 0.85 <= gap <= 1.5


async def test_pacing_twenty_messages_in_one_channel(
    sqlite_engine: sa.Engine, slack: FakeSlack
) -> None:
    rate = 5.0  # Slack's 1/s, five times faster, to keep the test short
    slack.post_rate, slack.post_burst = rate, 3
    repo = Repository(sqlite_engine)
    with repo.session() as s:
        for i in range(20):
            enqueue_message(s, "C1", f"m{i}")
    async with running(make_worker(sqlite_engine, slack, rate_per_channel=rate, burst=2)):
        await slack.wait_for_async(lambda: len(slack.messages("C1")) == 20, timeout=10)

    assert slack.ratelimited_count == 0
    assert slack.texts("C1") == [f"m{i}" for i in range(20)]
    at = [c.at for c in slack.calls("chat.postMessage")]
    for k in range(2, 20):  # after the burst of 2: one per 1/rate
        assert at[k] - at[0] >= (k - 1) / rate - 0.05
    assert at[19] - at[0] <= 18 / rate + 0.5


async def test_pacing_is_per_channel(sqlite_engine: sa.Engine, slack: FakeSlack) -> None:
    rate = 5.0
    slack.post_rate, slack.post_burst = rate, 3
    repo = Repository(sqlite_engine)
    with repo.session() as s:
        for i in range(10):
            enqueue_message(s, "C1", f"a{i}")
            enqueue_message(s, "C2", f"b{i}")
    async with running(make_worker(sqlite_engine, slack, rate_per_channel=rate, burst=2)):
        await slack.wait_for_async(lambda: len(slack.messages()) == 20, timeout=10)

    assert slack.ratelimited_count == 0
    at = [c.at for c in slack.calls("chat.postMessage")]
    # Each channel needs 8/rate = 1.6 s after its burst; one shared pace would need 3.6 s.
    assert at[-1] - at[0] < 2.8
    assert slack.texts("C1") == [f"a{i}" for i in range(10)]
    assert slack.texts("C2") == [f"b{i}" for i in range(10)]


async def test_two_replicas_share_one_pace_per_channel(engine: sa.Engine, slack: FakeSlack) -> None:
    rate = 5.0  # Slack's 1/s, five times faster
    slack.post_rate, slack.post_burst = rate, 3
    repo = Repository(engine)
    with repo.session() as s:
        for i in range(16):
            enqueue_message(s, "C1", f"m{i}")
    replicas = [make_worker(engine, slack, rate_per_channel=rate, burst=2) for _ in range(2)]
    async with running(*replicas):
        await slack.wait_for_async(lambda: len(slack.messages("C1")) == 16, timeout=15)

    # Each replica paced alone would send twice the rate between them: Slack would 429.
    assert slack.ratelimited_count == 0
    assert slack.texts("C1") == [f"m{i}" for i in range(16)]
    at = [c.at for c in slack.calls("chat.postMessage")]
    assert at[15] - at[0] >= 14 / rate - 0.1  # one shared pace: 2 at once, then 1/rate
    with engine.connect() as conn:
        keys = conn.execute(sa.text("SELECT key FROM slack_pace")).scalars().all()
    assert keys == ["chat.postMessage:C1"]


async def test_a_429_holds_the_channel_for_every_replica(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    first_incident, second_incident = new_incident(), new_incident()
    with repo.session() as s:
        enqueue_root_post(s, first_incident, "C1", "first", None)
    slack.post_rate, slack.post_burst = 1000.0, 1000
    slack.rate_limit_next(1, retry_after=2)
    async with running(make_worker(engine, slack, rate_per_channel=50.0, burst=2)):
        await slack.wait_for_async(lambda: slack.ratelimited_count == 1, timeout=5)
    # Another incident's root, independent of the first's: only the pace holds it.
    with repo.session() as s:
        enqueue_root_post(s, second_incident, "C1", "second", None)
    async with running(make_worker(engine, slack, rate_per_channel=50.0, burst=2)):
        await slack.wait_for_async(lambda: len(slack.roots("C1")) == 2, timeout=10)
    limited = next(c.at for c in slack.calls("chat.postMessage") if not c.ok)
    sent = [c.at for c in slack.calls("chat.postMessage") if c.ok]
    assert min(sent) - limited >= 1.9  # the replica that never saw the 429 waited too
    assert sorted(r.text for r in slack.roots("C1")) == ["first", "second"]


async def test_new_incidents_go_before_details_of_old_ones_pagerduty_first(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    old = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, old, "C1", "old root", section("old root"))
    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: slack.roots("C1"))
    paged, _ = repo.open_incident(
        key="paged", source="pagerduty", title="t", severity="critical", playbook_id="p", labels={}
    )
    quiet = new_incident()
    with repo.session() as s:
        for i in range(4):
            enqueue_thread_reply(s, old, "C1", f"old detail {i}")
        enqueue_root_post(s, quiet, "C1", "alertmanager root", section("am"))
        enqueue_root_post(s, paged.id, "C1", "pagerduty root", section("pd"))
    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: len(slack.messages("C1")) == 7, timeout=15)
    order = [m.text for m in slack.messages("C1")][1:]
    # Paced at ~1/s, the channel shows the new incidents first, the paging one first of all.
    assert order[:2] == ["pagerduty root", "alertmanager root"]
    assert order[2:] == [f"old detail {i}" for i in range(4)]
