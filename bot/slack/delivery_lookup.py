"""Find a post that reached Slack although its answer never reached us.

Every ``chat.postMessage`` the outbox makes carries Slack message metadata
naming its outbox row (`Delivery.metadata`)::

    {"event_type": "nexus_delivery",
     "event_payload": {"delivery_id": "42", "enqueued_at": "2026-12-04T10:00:00.123456+00:00",
                       "kind": "root", "incident_id": 7}}

A row claimed again after an attempt whose outcome is unknown (a timeout, a
dropped connection, a worker killed before it recorded Slack's answer: its
lease ran out) is looked for first: `find_delivery` reads the conversation
from the row's first attempt on, ``conversations.history`` for a top-level
post, ``conversations.replies`` for a thread reply, with
``include_all_metadata=true`` (Slack returns the metadata only then), and
returns the message whose metadata names this row. The outbox then records
that message as sent instead of posting again.

``delivery_id`` plus ``enqueued_at`` (the row's ``created_at``, to the
microsecond) tell this row from a row of the same id in another database
posting to the same channel (a staging bot, a restored backup).

Both methods are Tier 3 (about 50 calls a minute); a 429 or a network error is
returned as a `Failure` and handled like one of the post itself.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from slack_sdk.web.async_client import AsyncWebClient

from bot.slack import slack_calls
from bot.slack.slack_calls import Failure

__all__ = [
    "EVENT_TYPE",
    "Delivery",
    "Found",
    "NotFound",
    "find_delivery",
]

log = structlog.get_logger("bot.slack.outbox")

EVENT_TYPE = "nexus_delivery"
HISTORY = "conversations.history"
REPLIES = "conversations.replies"
PAGE_SIZE = 200
MAX_PAGES = 5
# Slack stamps ts with its own clock; look a little before our first attempt.
CLOCK_SKEW = timedelta(seconds=60)


@dataclass(frozen=True)
class Delivery:
    """The outbox row a post is made for, as its message metadata names it."""

    id: int
    created_at: datetime
    kind: str  # root | reply | message
    incident_id: int | None = None

    def payload(self) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "delivery_id": str(self.id),
            "enqueued_at": self.created_at.isoformat(),
            "kind": self.kind,
        }
        if self.incident_id is not None:
            payload["incident_id"] = self.incident_id
        return payload

    def metadata(self) -> dict[str, Any]:
        """The ``metadata`` argument of chat.postMessage."""
        return {"event_type": EVENT_TYPE, "event_payload": self.payload()}

    def is_in(self, message: Mapping[str, Any]) -> bool:
        """Whether ``message`` (as conversations.history lists it) is this delivery's post."""
        metadata = message.get("metadata")
        if not isinstance(metadata, Mapping) or metadata.get("event_type") != EVENT_TYPE:
            return False
        payload = metadata.get("event_payload")
        if not isinstance(payload, Mapping):
            return False
        return (
            str(payload.get("delivery_id")) == str(self.id)
            and payload.get("enqueued_at") == self.created_at.isoformat()
        )


@dataclass(frozen=True)
class Found:
    ts: str
    pages: int


@dataclass(frozen=True)
class NotFound:
    pages: int
    complete: bool  # False: gave up after MAX_PAGES with more history left


def _oldest(since: datetime) -> str:
    return f"{(since - CLOCK_SKEW).timestamp():.6f}"


async def find_delivery(
    client: AsyncWebClient,
    delivery: Delivery,
    *,
    channel: str,
    thread_ts: str | None,
    since: datetime,
    call_timeout: float,
    deadline: float | None = None,
    page_size: int = PAGE_SIZE,
    max_pages: int = MAX_PAGES,
) -> Found | NotFound | Failure:
    """Look for ``delivery``'s post in ``channel`` (in the thread of ``thread_ts``)
    among messages newer than ``since`` (minus `CLOCK_SKEW`).

    Pages through ``has_more`` with the cursor, up to ``max_pages`` calls, each
    given ``call_timeout`` seconds but together ending by ``deadline`` (a
    ``time.monotonic()`` value): past it, a transient ``lookup_deadline`` failure.
    """
    method = REPLIES if thread_ts else HISTORY
    args: dict[str, Any] = {
        "channel": channel,
        "oldest": _oldest(since),
        "include_all_metadata": True,
        "limit": page_size,
    }
    if thread_ts:
        args["ts"] = thread_ts
    request = client.conversations_replies if thread_ts else client.conversations_history
    for page in range(1, max_pages + 1):
        budget = (
            call_timeout if deadline is None else min(call_timeout, deadline - time.monotonic())
        )
        if budget <= 0:
            return Failure("transient", "lookup_deadline")
        answer = await slack_calls.call(
            method,
            request(**args),
            budget,
            outbox_id=delivery.id,
        )
        if isinstance(answer, Failure):
            return answer
        messages = answer.get("messages")
        for message in messages if isinstance(messages, list) else []:
            if isinstance(message, Mapping) and delivery.is_in(message) and message.get("ts"):
                return Found(str(message["ts"]), page)
        meta = answer.get("response_metadata")
        cursor = str(meta.get("next_cursor") or "") if isinstance(meta, Mapping) else ""
        if not answer.get("has_more") or not cursor:
            return NotFound(page, complete=True)
        args["cursor"] = cursor
    return NotFound(max_pages, complete=False)
