"""Enqueueing Slack messages: every message the bot sends is a row in the outbox first.

Enqueueing is a row in the ``outbox`` table (``output = 'slack'``), written in
the caller's own transaction: a message exists exactly when the state change
that caused it commits, and a crash can lose neither. When that transaction
commits, the delivery workers of this process are woken;
`bot.slack.outbox_worker.OutboxWorker` delivers the rows (ordering, pacing,
retries, exactly once; re-exported here with `pending_count` for the
importers that predate the split).

What each function enqueues (the row kinds are in `bot.slack.outbox_rows`):

* `enqueue_root_post`: the incident's root message; its ts becomes
  ``incidents.slack_root_ts``.
* `enqueue_thread_reply`: a reply in the incident's thread, optionally under a
  ``key`` so that `enqueue_reply_edit` can change it later (an approval card
  whose request expired is edited to say so, its buttons removed).
* `enqueue_root_update`: new content for the root message, **coalesced**:
  ``attempts = 0`` means "never in flight" (a claim makes it >= 1 and only a
  429 puts it back, once the call is over), so coalescing is
  ``UPDATE ... SET payload = ? WHERE id = ? AND state = 'pending' AND attempts = 0``
  on the newest pending root/update row of the incident; if that fails (the
  row is being sent), a new update row is inserted, at most one edit per
  `ROOT_EDIT_INTERVAL`.
* `enqueue_root_refresh`: the same, rendered when sent (`RENDER_ROOT`).
* `enqueue_reply_edit`: a chat.update of the keyed reply; the ts is that
  reply's, looked up when the edit is delivered (after the reply, in id order).
* `enqueue_message`: a message outside incident threads, ordered per channel.

Every function takes a ``priority`` (`PRIORITY_REAL`, the default, or
`PRIORITY_DRILL`): a drill incident's rows are enqueued with the latter so
that, under pacing, a channel sends real incidents' rows first. All rows of
one incident must have the same priority (the caller knows the incident).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.slack.outbox_rows import (
    INCIDENTS,
    OUTBOX,
    OUTPUT,
    POST,
    PRIORITY_REAL,
    RENDER,
    RENDER_ROOT,
    UPDATE,
    check_reply_key,
    edit_key,
    root_key,
    update_key,
)
from bot.slack.outbox_store import pending_count
from bot.slack.outbox_worker import OutboxWorker
from bot.store.models import OutboxMessage, utcnow
from bot.timeline.queue import wake_after_commit

__all__ = [
    "OutboxWorker",
    "enqueue_message",
    "enqueue_reply_edit",
    "enqueue_root_post",
    "enqueue_root_refresh",
    "enqueue_root_update",
    "enqueue_thread_reply",
    "pending_count",
]

ROOT_EDIT_INTERVAL = timedelta(seconds=3)


def _content(text: str, blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
    payload: dict[str, Any] = {"text": text}
    if blocks is not None:
        payload["blocks"] = blocks
    return payload


def _insert(
    session: Session,
    *,
    channel: str,
    method: str,
    payload: dict[str, Any],
    incident_id: int | None = None,
    coalesce_key: str | None = None,
    thread_ts: str | None = None,
    not_before: datetime | None = None,
    priority: int = PRIORITY_REAL,
) -> None:
    now = utcnow()
    session.execute(
        sa.insert(OutboxMessage).values(
            output=OUTPUT,
            channel=channel,
            method=method,
            incident_id=incident_id,
            thread_ts=thread_ts,
            coalesce_key=coalesce_key,
            payload=payload,
            state="pending",
            attempts=0,
            next_attempt_at=max(now, not_before) if not_before is not None else now,
            created_at=now,
            priority=priority,
        )
    )
    _wake_after_commit(session)


def _incident_channel(session: Session, incident_id: int, channel: str | None) -> str:
    """The channel to record on a reply/update/edit row (delivery uses the root's)."""
    if channel:
        return channel
    known = session.execute(
        sa.select(INCIDENTS.c.slack_channel).where(INCIDENTS.c.id == incident_id)
    ).scalar_one_or_none()
    if known:
        return str(known)
    pending_root = session.execute(
        sa.select(OUTBOX.c.channel)
        .where(OUTBOX.c.output == OUTPUT, OUTBOX.c.coalesce_key == root_key(incident_id))
        .order_by(OUTBOX.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return str(pending_root or "")


def enqueue_root_post(
    session: Session,
    incident_id: int,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]] | None,
    *,
    priority: int = PRIORITY_REAL,
) -> None:
    """Post the incident's root message; its ts becomes ``incidents.slack_root_ts``.

    The ts (and the channel id Slack answers with) is stored in the same
    transaction that marks the row sent. ``blocks=None``: rendered when sent
    (`enqueue_root_refresh`), ``text`` being the fallback.
    """
    payload = _content(text, blocks)
    if blocks is None:
        payload[RENDER] = RENDER_ROOT
    _insert(
        session,
        channel=channel,
        method=POST,
        payload=payload,
        incident_id=incident_id,
        coalesce_key=root_key(incident_id),
        priority=priority,
    )


def enqueue_thread_reply(
    session: Session,
    incident_id: int,
    channel: str | None,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    key: str | None = None,
    *,
    priority: int = PRIORITY_REAL,
) -> None:
    """Reply in the incident's thread; waits (without error) until the root exists.

    ``thread_ts`` and the channel are taken from the incident at delivery, so
    ``channel`` may be None when the root is not posted yet. ``key`` (stored as
    the row's ``coalesce_key``) names the reply for `enqueue_reply_edit`; it
    must not start with ``incident:`` or ``edit:`` (those name other row kinds).
    """
    if key is not None:
        check_reply_key(key)
    _insert(
        session,
        channel=_incident_channel(session, incident_id, channel),
        method=POST,
        payload=_content(text, blocks),
        incident_id=incident_id,
        coalesce_key=key,
        priority=priority,
    )


def enqueue_reply_edit(
    session: Session,
    incident_id: int,
    key: str,
    text: str,
    blocks: list[dict[str, Any]],
    *,
    priority: int = PRIORITY_REAL,
) -> None:
    """Make the incident's reply enqueued under ``key`` show ``text``/``blocks``.

    A chat.update delivered in the incident's order, so after the reply; its
    ts is that reply's ``result_ts`` (the newest reply with this key enqueued
    before the edit), resolved at delivery. If that reply failed or does not
    exist, the edit fails (``last_error`` says so) and later rows go on.
    Several edits of one reply are sent in order, the last one wins.
    """
    check_reply_key(key)
    _insert(
        session,
        channel=_incident_channel(session, incident_id, None),
        method=UPDATE,
        payload=_content(text, blocks),
        incident_id=incident_id,
        coalesce_key=edit_key(key),
        priority=priority,
    )


def enqueue_root_update(
    session: Session,
    incident_id: int,
    channel: str | None,
    text: str,
    blocks: list[dict[str, Any]],
    *,
    priority: int = PRIORITY_REAL,
) -> None:
    """Make the incident's root message show ``text``/``blocks``; coalesced.

    The newest pending root post or root update of the incident takes the new
    content if no worker has claimed it yet; otherwise a new chat.update row
    is added (ts resolved at delivery). The newest content is therefore always
    in the last root-content row delivered.
    """
    _set_root(session, incident_id, channel, _content(text, blocks), priority)


def enqueue_root_refresh(
    session: Session,
    incident_id: int,
    channel: str | None,
    fallback: str,
    *,
    priority: int = PRIORITY_REAL,
) -> None:
    """Make the root show the incident as it is when the row is sent; coalesced.

    Like `enqueue_root_update`, but nothing is rendered now: the delivery
    worker renders the root in its claim's transaction (`RENDER_ROOT`). An
    Alertmanager storm adds alerts to an incident many times a second, and
    Slack takes one edit per few seconds: rendering per batch was most of the
    cost of applying one. ``fallback``: the text sent if it cannot be rendered.
    """
    _set_root(session, incident_id, channel, {"text": fallback, RENDER: RENDER_ROOT}, priority)


def _set_root(
    session: Session, incident_id: int, channel: str | None, content: dict[str, Any], priority: int
) -> None:
    root_rows = (
        OUTBOX.c.output == OUTPUT,
        OUTBOX.c.incident_id == incident_id,
        OUTBOX.c.coalesce_key.in_([root_key(incident_id), update_key(incident_id)]),
    )
    newest = session.execute(
        sa.select(OUTBOX.c.id, OUTBOX.c.attempts, OUTBOX.c.payload)
        .where(*root_rows, OUTBOX.c.state == "pending")
        .order_by(OUTBOX.c.id.desc())
        .limit(1)
    ).first()
    if newest is not None and newest.attempts == 0:
        old = newest.payload or {}
        # Even when the row renders when sent already, the compare-and-set below
        # must run: a worker claiming it right now may have rendered the state
        # from before this transaction, and then this refresh needs its own row.
        if content.get(RENDER) == RENDER_ROOT:
            payload = {**old, RENDER: RENDER_ROOT}  # the stored content is the fallback
        else:
            payload = {**old, **content}
            payload.pop(RENDER, None)  # explicit content replaces a pending render
            if "blocks" not in content:
                payload.pop("blocks", None)
        result = session.execute(
            sa.update(OUTBOX)
            .where(
                OUTBOX.c.id == newest.id,
                OUTBOX.c.state == "pending",
                OUTBOX.c.attempts == 0,
            )
            .values(payload=payload)
        )
        if cast(sa.CursorResult[Any], result).rowcount == 1:
            _wake_after_commit(session)
            return
    # A root is edited at most once per ROOT_EDIT_INTERVAL: in a storm, the edits
    # that arrive meanwhile coalesce into this row instead of becoming calls.
    last_edit = session.execute(
        sa.select(sa.func.max(OUTBOX.c.sent_at)).where(*root_rows, OUTBOX.c.state == "sent")
    ).scalar_one_or_none()
    not_before = last_edit + ROOT_EDIT_INTERVAL if last_edit is not None else None
    _insert(
        session,
        channel=_incident_channel(session, incident_id, channel),
        method=UPDATE,
        payload=content,
        incident_id=incident_id,
        coalesce_key=update_key(incident_id),
        not_before=not_before,
        priority=priority,
    )


def enqueue_message(
    session: Session,
    channel: str,
    text: str,
    blocks: list[dict[str, Any]] | None = None,
    thread_ts: str | None = None,
    *,
    priority: int = PRIORITY_REAL,
) -> None:
    """A message not tied to an incident thread (ordered per channel)."""
    _insert(
        session,
        channel=channel,
        method=POST,
        payload=_content(text, blocks),
        thread_ts=thread_ts,
        priority=priority,
    )


def _wake_after_commit(session: Session) -> None:
    wake_after_commit(session, OUTPUT)
