"""Finding a post whose answer was lost, and adopting it instead of posting again.

The worker and `find_delivery` talk to the fake Slack over HTTP; the fake loses
answers (dropped after processing, or answered after the client gave up).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import sqlalchemy as sa

from bot.slack.delivery_lookup import (
    CLOCK_SKEW,
    EVENT_TYPE,
    Delivery,
    Found,
    NotFound,
    find_delivery,
)
from bot.slack.outbox import enqueue_message, enqueue_root_post, enqueue_thread_reply
from bot.slack.slack_calls import Failure
from bot.store.models import utcnow
from bot.store.repository import Repository
from tests.fakes.slack import FakeSlack
from tests.unit.slack.outbox_support import (
    all_done,
    incident_row,
    make_worker,
    outbox_rows,
    running,
    section,
    slack_client,
)

POST = "chat.postMessage"
HISTORY = "conversations.history"
REPLIES = "conversations.replies"


def lookups(slack: FakeSlack) -> list[str]:
    return [c.method for c in slack.calls() if c.method in (HISTORY, REPLIES)]


async def test_a_root_whose_answer_was_lost_is_found_by_its_metadata_and_adopted(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        enqueue_thread_reply(s, incident, "C1", "reply")
    # Slack posts the root, then the connection drops: the worker cannot know.
    slack.drop_connections_next(1, method=POST, after_processing=True)

    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: len(slack.messages()) == 2 and all_done(engine))

    (root,) = slack.roots("C1")
    assert [m.text for m in slack.thread("C1", root.ts)] == ["reply"]
    assert incident_row(engine, incident).slack_root_ts == root.ts
    root_row, reply_row = outbox_rows(engine)
    assert (root_row.state, root_row.attempts, root_row.result_ts) == ("sent", 2, root.ts)
    assert (reply_row.state, reply_row.attempts) == ("sent", 1)
    assert root.metadata == {
        "event_type": EVENT_TYPE,
        "event_payload": {
            "delivery_id": str(root_row.id),
            "enqueued_at": root_row.created_at.isoformat(),
            "kind": "root",
            "incident_id": incident,
        },
    }
    assert len(slack.calls(POST)) == 2  # the root once, the reply once
    (history,) = slack.calls(HISTORY)
    assert history.params["channel"] == "C1"
    assert history.params["include_all_metadata"] in ("1", "true")
    assert root_row.first_attempt_at is not None
    oldest = Decimal(history.params["oldest"])
    assert oldest == Decimal(f"{(root_row.first_attempt_at - CLOCK_SKEW).timestamp():.6f}")
    assert oldest < Decimal(root.ts)
    assert lookups(slack) == [HISTORY]  # the reply's answer came back: no look-up


async def test_a_thread_reply_whose_answer_was_lost_is_adopted(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        for i in range(3):
            enqueue_thread_reply(s, incident, "C1", f"reply {i}")
    slack.drop_connections_next(1, method=POST, after_processing=True, skip=2)  # "reply 1"

    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: len(slack.messages()) == 4 and all_done(engine))

    (root,) = slack.roots("C1")
    thread = slack.thread("C1", root.ts)
    assert [m.text for m in thread] == ["reply 0", "reply 1", "reply 2"]
    rows = outbox_rows(engine)
    assert [r.attempts for r in rows] == [1, 1, 2, 1]
    assert rows[2].result_ts == thread[1].ts
    (replies,) = slack.calls(REPLIES)
    assert (replies.params["channel"], replies.params["ts"]) == ("C1", root.ts)
    assert replies.params["include_all_metadata"] in ("1", "true")
    assert lookups(slack) == [REPLIES]


async def test_answers_that_come_too_late_are_adopted_not_posted_again(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    """Every post times out on our side after Slack stored it."""
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        enqueue_thread_reply(s, incident, "C1", "reply")
        enqueue_message(s, "C2", "loose")
    slack.answer_slowly(1.0, method=POST)

    worker = make_worker(engine, slack, call_timeout=0.3, lease_seconds=2)
    async with running(worker):
        await slack.wait_for_async(lambda: all_done(engine), timeout=20)

    assert sorted(slack.texts()) == ["loose", "reply", "root"]
    assert len(slack.calls(POST)) == 3
    assert sorted(lookups(slack)) == [HISTORY, HISTORY, REPLIES]
    assert [r.attempts for r in outbox_rows(engine)] == [2, 2, 2]
    assert all(r.last_error is None and r.result_ts for r in outbox_rows(engine))


async def test_nothing_found_means_the_message_is_posted(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
    slack.fail_next(1, method=POST)  # a 500 before Slack did anything

    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: slack.roots("C1") and all_done(engine))

    (root,) = slack.roots("C1")
    (row,) = outbox_rows(engine)
    assert (row.attempts, row.result_ts) == (2, root.ts)
    assert [c.outcome for c in slack.calls(POST)] == ["http_500", "ok"]
    assert [c.outcome for c in slack.calls(HISTORY)] == ["ok"]
    assert slack.calls(HISTORY)[0].response["messages"] == []  # type: ignore[index]
    assert root.metadata is not None
    assert root.metadata["event_payload"]["delivery_id"] == str(row.id)


async def test_only_a_message_naming_this_delivery_is_adopted(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
    (row,) = outbox_rows(engine)
    ours = Delivery(row.id, row.created_at, "root", incident).payload()
    decoys = {
        "another delivery": {
            "event_type": EVENT_TYPE,
            "event_payload": {**ours, "delivery_id": "0"},
        },
        "same id, another database": {
            "event_type": EVENT_TYPE,
            "event_payload": {**ours, "enqueued_at": "2020-01-01T00:00:00+00:00"},
        },
        "another app's event": {"event_type": "deploy_done", "event_payload": ours},
        "no metadata": None,
    }
    slack.rate_limits = False
    web = slack_client(slack)
    for text, metadata in decoys.items():
        await web.chat_postMessage(channel="C1", text=text, metadata=metadata)
    slack.fail_next(1, method=POST)  # our first attempt: outcome unknown to the worker

    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: all_done(engine))

    (history,) = slack.calls(HISTORY, ok=True)
    listed = history.response["messages"]  # type: ignore[index]
    assert sorted(m["text"] for m in listed) == sorted(decoys)  # all seen, none taken
    assert len(slack.roots("C1")) == len(decoys) + 1
    posted = slack.roots("C1")[-1]
    assert posted.text == "root"
    (row,) = outbox_rows(engine)
    assert row.result_ts == posted.ts
    assert incident_row(engine, incident).slack_root_ts == posted.ts


async def test_a_429_on_the_lookup_waits_retry_after_and_costs_no_attempt(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
    slack.drop_connections_next(1, method=POST, after_processing=True)
    slack.rate_limit_next(1, retry_after=1, method=HISTORY)

    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: all_done(engine), timeout=10)

    (root,) = slack.roots("C1")
    limited, answered = slack.calls(HISTORY)
    assert (limited.outcome, answered.outcome) == ("ratelimited", "ok")
    assert answered.at - limited.at >= 0.95
    (row,) = outbox_rows(engine)
    assert (row.state, row.attempts, row.result_ts) == ("sent", 2, root.ts)
    assert len(slack.calls(POST)) == 1


async def test_a_lookup_refused_for_good_falls_back_to_posting(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    """Without channels:history (app not reinstalled) the bot posts as it used to."""
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
    slack.fail_next(1, method=POST)
    slack.inject_error("missing_scope", method=HISTORY)

    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: all_done(engine))

    (root,) = slack.roots("C1")
    (row,) = outbox_rows(engine)
    assert (row.state, row.result_ts) == ("sent", root.ts)
    assert [c.outcome for c in slack.calls(HISTORY)] == ["error:missing_scope"]


# -- find_delivery on its own --------------------------------------------------


async def test_lookup_pages_through_history_and_stops_at_max_pages(slack: FakeSlack) -> None:
    slack.rate_limits = False
    web = slack_client(slack)
    since = utcnow()
    target = Delivery(7, since, "message")
    await web.chat_postMessage(channel="C1", text="ours", metadata=target.metadata())
    for i in range(5):  # newer messages: history lists them first
        await web.chat_postMessage(channel="C1", text=f"newer {i}")

    found = await find_delivery(
        web, target, channel="C1", thread_ts=None, since=since, call_timeout=5, page_size=2
    )
    assert found == Found(slack.roots("C1")[0].ts, pages=3)
    cursors = [c.params.get("cursor") for c in slack.calls(HISTORY)]
    assert cursors[0] is None and all(cursors[1:]) and len(cursors) == 3

    missing = Delivery(8, since, "message")
    gave_up = await find_delivery(
        web,
        missing,
        channel="C1",
        thread_ts=None,
        since=since,
        call_timeout=5,
        page_size=2,
        max_pages=2,
    )
    assert gave_up == NotFound(pages=2, complete=False)
    complete = await find_delivery(
        web, missing, channel="C1", thread_ts=None, since=since, call_timeout=5
    )
    assert complete == NotFound(pages=1, complete=True)


async def test_lookup_skips_messages_older_than_the_first_attempt(slack: FakeSlack) -> None:
    web = slack_client(slack)
    target = Delivery(9, utcnow(), "message")
    await web.chat_postMessage(channel="C1", text="long ago", metadata=target.metadata())
    since = utcnow() + CLOCK_SKEW + timedelta(seconds=1)  # after it, allowing for skew

    result = await find_delivery(
        web, target, channel="C1", thread_ts=None, since=since, call_timeout=5
    )
    assert result == NotFound(pages=1, complete=True)


async def test_lookup_past_its_deadline_is_a_transient_failure(slack: FakeSlack) -> None:
    result = await find_delivery(
        slack_client(slack),
        Delivery(1, utcnow(), "message"),
        channel="C1",
        thread_ts=None,
        since=utcnow(),
        call_timeout=5,
        deadline=time.monotonic() - 0.1,
    )
    assert result == Failure("transient", "lookup_deadline")
    assert slack.calls(HISTORY) == []
