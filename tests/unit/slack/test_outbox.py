"""Enqueueing into the Slack outbox, delivered to the fake Slack over HTTP (SQLite, PostgreSQL).

Threads and their order, coalescing of root updates, the enqueue as part of the
caller's transaction, edits of a keyed reply, and rows of other outputs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa

from bot.slack.outbox import (
    enqueue_message,
    enqueue_reply_edit,
    enqueue_root_post,
    enqueue_root_refresh,
    enqueue_root_update,
    enqueue_thread_reply,
    pending_count,
)
from bot.store.repository import Repository
from bot.timeline.queue import enqueue
from tests.fakes.slack import FakeSlack
from tests.unit.slack.outbox_support import (
    all_done,
    drain,
    incident_row,
    make_worker,
    outbox_rows,
    running,
    section,
)

POST = "chat.postMessage"
UPDATE = "chat.update"


def card(text: str) -> list[dict[str, object]]:
    """An approval card: a section and its buttons."""
    return [
        *section(text),
        {
            "type": "actions",
            "elements": [
                {"type": "button", "text": {"type": "plain_text", "text": "Approve"}},
                {"type": "button", "text": {"type": "plain_text", "text": "Reject"}},
            ],
        },
    ]


# -- threads and ordering ------------------------------------------------------


async def test_root_then_replies_land_in_order_in_one_thread(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    slack.post_rate, slack.post_burst = 20, 5
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        for i in range(3):
            enqueue_thread_reply(s, incident, "C1", f"reply {i}")

    async with running(make_worker(engine, slack, rate_per_channel=20, burst=3)):
        await slack.wait_for_async(lambda: len(slack.messages("C1")) == 4)

    (root,) = slack.roots("C1")
    assert root.text == "root"
    assert root.blocks == section("root")
    assert [m.text for m in slack.thread("C1", root.ts)] == ["reply 0", "reply 1", "reply 2"]
    stored = incident_row(engine, incident)
    assert (stored.slack_channel, stored.slack_root_ts) == ("C1", root.ts)
    rows = outbox_rows(engine)
    assert [r.state for r in rows] == ["sent"] * 4
    assert [r.attempts for r in rows] == [1] * 4
    assert all(r.result_ts for r in rows)


async def test_reply_enqueued_before_the_root_waits_without_blocking_others(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    waiting, other = new_incident(), new_incident()
    with repo.session() as s:
        # The channel may be unknown until the root is posted.
        enqueue_thread_reply(s, waiting, None, "early reply")
    with repo.session() as s:
        enqueue_root_post(s, other, "C2", "other root", section("other"))
        enqueue_thread_reply(s, other, "C2", "other reply")

    worker = make_worker(engine, slack)
    for _ in range(3):
        await worker.deliver_due()
    assert slack.texts("C2") == ["other root", "other reply"]
    early = next(r for r in outbox_rows(engine) if r.payload["text"] == "early reply")
    assert (early.state, early.attempts, early.last_error) == ("pending", 0, None)

    with repo.session() as s:
        enqueue_root_post(s, waiting, "C1", "late root", section("late"))
    await drain(worker, engine)

    (root,) = slack.roots("C1")
    assert root.text == "late root"
    assert [m.text for m in slack.thread("C1", root.ts)] == ["early reply"]
    assert slack.ratelimited_count == 0


# -- coalescing ----------------------------------------------------------------


async def test_quick_root_updates_are_coalesced_and_the_last_one_wins(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "v-root", section("v-root"))
    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: slack.roots("C1"))
        for i in range(10):  # ten state changes, ten transactions
            with repo.session() as s:
                enqueue_root_update(s, incident, "C1", f"v{i}", section(f"v{i}"))
        await slack.wait_for_async(lambda: slack.roots("C1")[0].text == "v9" and all_done(engine))

    (root,) = slack.roots("C1")
    assert root.blocks == section("v9")
    assert 1 <= len(slack.calls("chat.update")) <= 2
    assert root.edit_count == len(slack.calls("chat.update"))
    assert slack.ratelimited_count == 0


async def test_updates_coalesce_into_a_pending_root_post(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "v0", section("v0"))
    for i in range(1, 6):
        with repo.session() as s:
            enqueue_root_update(s, incident, "C1", f"v{i}", section(f"v{i}"))
    assert len(outbox_rows(engine)) == 1

    await drain(make_worker(engine, slack), engine)

    (root,) = slack.roots("C1")
    assert (root.text, root.blocks, root.edit_count) == ("v5", section("v5"), 0)
    assert slack.calls("chat.update") == []


async def test_update_after_the_root_was_claimed_gets_its_own_row(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    slack.hold_next(1, method="chat.postMessage")  # the root post is in flight...
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "v0", section("v0"))
    async with running(make_worker(engine, slack)):
        await slack.wait_for_async(lambda: slack.held_count == 1)
        with repo.session() as s:  # ...so this must not touch its payload
            enqueue_root_update(s, incident, "C1", "v1", section("v1"))
        assert [r.method for r in outbox_rows(engine)] == ["chat.postMessage", "chat.update"]
        slack.release()
        await slack.wait_for_async(lambda: all_done(engine))

    (root,) = slack.roots("C1")
    assert (root.text, root.edit_count) == ("v1", 1)
    assert root.edits == [{"text": "v0", "blocks": section("v0")}]


async def test_a_refreshed_root_is_rendered_when_sent_with_the_state_of_then(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    state = {"version": "v0"}
    rendered: list[int] = []

    def render(conn: sa.Connection, incident_id: int) -> tuple[str, list[dict[str, Any]]]:
        # Reads in the claim's transaction: the incident row is there.
        assert conn.execute(sa.text(f"SELECT id FROM incidents WHERE id = {incident_id}")).one()
        rendered.append(incident_id)
        return state["version"], section(state["version"])

    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "fallback", None)
    for _ in range(5):  # five refreshes before the post is sent: still one row, no rendering
        with repo.session() as s:
            enqueue_root_refresh(s, incident, "C1", "fallback")
    assert len(outbox_rows(engine)) == 1 and rendered == []
    state["version"] = "v1"

    await drain(make_worker(engine, slack, render_root=render), engine)

    (root,) = slack.roots("C1")
    assert (root.text, root.blocks, root.edit_count) == ("v1", section("v1"), 0)
    assert rendered == [incident]


async def test_a_root_that_cannot_be_rendered_is_sent_with_its_fallback_text(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()

    def broken(conn: sa.Connection, incident_id: int) -> tuple[str, list[dict[str, Any]]]:
        raise RuntimeError("template bug")

    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "Incident #1: fallback", None)
    await drain(make_worker(engine, slack, render_root=broken), engine)
    (root,) = slack.roots("C1")
    assert root.text == "Incident #1: fallback"
    assert all_done(engine)


async def test_explicit_content_replaces_a_pending_render_and_a_refresh_renders_it_again(
    engine: sa.Engine, repo: Repository, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "fallback", None)
        enqueue_root_update(s, incident, "C1", "explicit", section("explicit"))
    (row,) = outbox_rows(engine)
    assert row.payload == {"text": "explicit", "blocks": section("explicit")}
    with repo.session() as s:
        enqueue_root_refresh(s, incident, "C1", "fallback")
    (row,) = outbox_rows(engine)
    assert row.payload == {"text": "explicit", "blocks": section("explicit"), "render": "root"}


# -- durability of the enqueue --------------------------------------------------


async def test_enqueue_is_part_of_the_callers_transaction(
    engine: sa.Engine, repo: Repository, slack: FakeSlack
) -> None:
    with pytest.raises(RuntimeError), repo.session() as s:
        enqueue_message(s, "C1", "never")
        raise RuntimeError("the state change failed")
    assert outbox_rows(engine) == []
    assert await make_worker(engine, slack).deliver_due() == 0
    assert slack.calls() == []


async def test_commit_wakes_a_worker_in_this_process(
    engine: sa.Engine, repo: Repository, slack: FakeSlack
) -> None:
    def enqueue() -> None:  # as the app does: a repository call in a worker thread
        with repo.session() as s:
            enqueue_message(s, "C1", "fast")

    async with running(make_worker(engine, slack, poll_interval=30)):
        await asyncio.sleep(0.2)  # the worker is idle, sleeping for 30 s
        started = asyncio.get_running_loop().time()
        await asyncio.to_thread(enqueue)
        await slack.wait_for_async(lambda: slack.texts("C1") == ["fast"], timeout=3)
        assert asyncio.get_running_loop().time() - started < 2


# -- edits of a keyed reply ------------------------------------------------------


async def test_an_edit_updates_the_keyed_reply_not_the_root_nor_another_card(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    slack.post_rate, slack.post_burst = 20, 5
    incident = new_incident()
    with repo.session() as s:
        # All in one transaction: the edit waits behind its card in id order.
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        enqueue_thread_reply(s, incident, None, "card 1", card("card 1"), key="remediation:1:card")
        enqueue_thread_reply(s, incident, None, "card 2", card("card 2"), key="remediation:2:card")
        enqueue_reply_edit(s, incident, "remediation:1:card", "expired", section("expired"))
        enqueue_thread_reply(s, incident, None, "after the edit")

    await drain(make_worker(engine, slack, rate_per_channel=20, burst=3), engine)

    (root,) = slack.roots("C1")
    first, second, after = slack.thread("C1", root.ts)
    assert [c.method for c in slack.calls()] == [POST, POST, POST, UPDATE, POST]
    (update,) = slack.calls(UPDATE)
    assert (update.params["channel"], update.params["ts"]) == ("C1", first.ts)
    assert (first.text, first.blocks) == ("expired", section("expired"))  # buttons gone
    assert first.edits == [{"text": "card 1", "blocks": card("card 1")}]
    assert (second.text, second.edit_count) == ("card 2", 0)
    assert (root.text, root.edit_count) == ("root", 0)
    assert after.text == "after the edit"
    rows = outbox_rows(engine)
    assert [r.state for r in rows] == ["sent"] * 5
    assert (rows[1].coalesce_key, rows[3].coalesce_key) == (
        "remediation:1:card",
        "edit:remediation:1:card",
    )
    assert rows[3].result_ts == first.ts


async def test_an_edit_of_a_reply_never_sent_fails_clearly_and_others_go_on(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
    worker = make_worker(engine, slack)
    await drain(worker, engine)
    slack.inject_error("invalid_blocks", method=POST, times=1)  # the card is refused
    with repo.session() as s:
        enqueue_thread_reply(s, incident, None, "card", card("card"), key="remediation:1:card")
        enqueue_reply_edit(s, incident, "remediation:1:card", "expired", section("expired"))
        enqueue_reply_edit(s, incident, "remediation:9:card", "never posted", section("x"))
        enqueue_thread_reply(s, incident, None, "still delivered")
    await drain(worker, engine)

    (root,) = slack.roots("C1")
    assert [m.text for m in slack.thread("C1", root.ts)] == ["still delivered"]
    assert slack.calls(UPDATE) == []
    card_row, refused_edit, orphan_edit, last = outbox_rows(engine)[1:]
    assert (card_row.state, card_row.last_error) == ("failed", "invalid_blocks")
    assert refused_edit.state == "failed"
    assert refused_edit.last_error is not None
    assert refused_edit.last_error.startswith("edit_target_not_sent: reply keyed ")
    assert f"row {card_row.id}" in refused_edit.last_error
    assert "invalid_blocks" in refused_edit.last_error
    assert orphan_edit.state == "failed"
    assert orphan_edit.last_error == (
        "edit_target_missing: no reply keyed 'remediation:9:card' was enqueued before this edit"
    )
    assert last.state == "sent"


def test_reply_keys_that_would_read_as_another_kind_are_refused(
    engine: sa.Engine, repo: Repository, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    for key in ("", f"incident:{incident}:root", f"incident:{incident}:update", "edit:x"):
        with pytest.raises(ValueError), repo.session() as s:
            enqueue_thread_reply(s, incident, "C1", "card", key=key)
    with pytest.raises(ValueError), repo.session() as s:
        enqueue_reply_edit(s, incident, "edit:x", "text", section("text"))
    assert outbox_rows(engine) == []


# -- other outputs share the table ------------------------------------------------


async def test_rows_of_other_outputs_are_never_touched_nor_block_slack_rows(
    engine: sa.Engine, repo: Repository, slack: FakeSlack, new_incident: Callable[[], int]
) -> None:
    incident = new_incident()
    with repo.session() as s:
        # Older than the Slack rows of the same incident: in id order, they come first.
        enqueue(
            s,
            output="email",
            key="smtp.example.com",
            method="email.send",
            payload={"to": ["oncall@example.com"], "subject": "opened"},
            incident_id=incident,
        )
        enqueue(s, output="pagerduty", key="pagerduty", method="note.add", payload={"n": 1})
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        enqueue_thread_reply(s, incident, "C1", "reply")
    others_before = [r for r in outbox_rows(engine) if r.output != "slack"]
    assert pending_count(engine) == 2
    assert pending_count(engine, output=None) == 4

    worker = make_worker(engine, slack)
    await drain(worker, engine)
    for _ in range(3):  # later passes leave them alone too
        await worker.deliver_due()

    assert [(c.method, c.params["channel"]) for c in slack.calls()] == [(POST, "C1"), (POST, "C1")]
    (root,) = slack.roots("C1")
    assert [m.text for m in slack.thread("C1", root.ts)] == ["reply"]
    rows = outbox_rows(engine)
    assert [(r.output, r.state) for r in rows if r.output == "slack"] == [("slack", "sent")] * 2
    others_after = [r for r in rows if r.output != "slack"]
    fields = ("state", "attempts", "next_attempt_at", "first_attempt_at", "last_error", "sent_at")
    assert [[getattr(r, f) for f in fields] for r in others_after] == [
        [getattr(r, f) for f in fields] for r in others_before
    ]
    assert {r.state for r in others_after} == {"pending"}
    assert pending_count(engine) == 0
    assert pending_count(engine, output=None) == 2
