"""What a Slack outbox row is: its kind, told from ``method`` and ``coalesce_key``.

Shared by the enqueuers (`bot.slack.outbox`) and the delivery worker
(`bot.slack.outbox_worker`, `bot.slack.outbox_store`). Every row written here
has ``output = 'slack'``; rows of other outputs (email, PagerDuty) share the
``outbox`` table but are delivered by `bot.timeline.delivery`::

    kind     method            coalesce_key             what delivery fills in
    root     chat.postMessage  "incident:<id>:root"     stores the incident's root ts when sent
    reply    chat.postMessage  NULL or the caller's key thread_ts = the root ts
    update   chat.update       "incident:<id>:update"   ts = the root ts
    edit     chat.update       "edit:<key>"             ts = result_ts of the sent reply
                                                        of the incident keyed <key>
    message  chat.postMessage  NULL (no incident)       as given (thread_ts optional)
"""

from __future__ import annotations

from typing import Literal, cast

import sqlalchemy as sa

from bot.store.models import Incident, OutboxMessage

__all__ = [
    "EDIT_PREFIX",
    "INCIDENTS",
    "OUTBOX",
    "OUTPUT",
    "POST",
    "PRIORITY_DRILL",
    "PRIORITY_REAL",
    "RENDER",
    "RENDER_ROOT",
    "UPDATE",
    "Kind",
    "check_reply_key",
    "edit_key",
    "edited_key",
    "root_key",
    "row_kind",
    "update_key",
]

OUTPUT = "slack"  # the outbox.output of every row this package writes and delivers
POST = "chat.postMessage"
UPDATE = "chat.update"
EDIT_PREFIX = "edit:"
# outbox.priority: among the rows due for one channel, lower goes first, so a
# recovery drill's messages never hold up a real incident's under pacing.
PRIORITY_REAL = 0
PRIORITY_DRILL = 1
# A root row's payload key: RENDER_ROOT means "render the root's text and blocks
# when the row is claimed" (its stored text is only the fallback). Rendering the
# root reads the incident's alert summary: at send time that happens once per
# Slack call instead of once per alert batch, and shows the newest state.
RENDER = "render"
RENDER_ROOT = "root"
# Keys of the incident's own root rows start with this; a reply key must not.
_INCIDENT_PREFIX = "incident:"

OUTBOX = cast(sa.Table, OutboxMessage.__table__)
INCIDENTS = cast(sa.Table, Incident.__table__)

Kind = Literal["root", "reply", "update", "edit", "message"]


def root_key(incident_id: int) -> str:
    return f"{_INCIDENT_PREFIX}{incident_id}:root"


def update_key(incident_id: int) -> str:
    return f"{_INCIDENT_PREFIX}{incident_id}:update"


def edit_key(key: str) -> str:
    """The coalesce_key of an edit of the reply keyed ``key``."""
    return f"{EDIT_PREFIX}{key}"


def edited_key(coalesce_key: str) -> str:
    """The key of the reply an edit row (``edit:<key>``) edits."""
    return coalesce_key.removeprefix(EDIT_PREFIX)


def check_reply_key(key: str) -> None:
    """Refuse a reply key that would make the row read as another kind."""
    if not key:
        raise ValueError("a reply key must not be empty")
    if key.startswith((_INCIDENT_PREFIX, EDIT_PREFIX)):
        raise ValueError(
            f"reply key {key!r} starts with a reserved prefix "
            f"({_INCIDENT_PREFIX!r} or {EDIT_PREFIX!r})"
        )


def row_kind(method: str, incident_id: int | None, coalesce_key: str | None) -> Kind:
    if incident_id is None:
        return "message"
    # Before the method test: an edit is a chat.update too, but of a reply, not the root.
    if coalesce_key is not None and coalesce_key.startswith(EDIT_PREFIX):
        return "edit"
    if method == UPDATE:
        return "update"
    if coalesce_key == root_key(incident_id):
        return "root"
    return "reply"
