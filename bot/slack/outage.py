"""What a Slack user sees while the incident database is unreachable.

Slack wants an answer within 3 s, and a 500 only shows the user a generic
failure (and makes the Events API retry). So a database error in a Bolt
listener or middleware is answered 200 and the user is told, ephemerally, to
try again in a minute: in the HTTP answer while the request is not yet
acknowledged (slash commands), else over the `response_url` (commands, buttons)
or `chat.postEphemeral` (@mentions, modals). The error is logged once per
outage, not once per request; the first database call that works again ends
the outage, and the next failure after that is logged again.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import sqlalchemy as sa
import structlog
from slack_bolt.async_app import AsyncRespond
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.store.outage import OutageLog

log = structlog.get_logger("bot.slack")

UNREACHABLE = ":warning: The incident database is unreachable, try again in a minute."


class DatabaseUnreachable(Exception):
    """A probe of the database failed (no driver exception to carry)."""


def is_outage(error: BaseException) -> bool:
    """Errors that mean "the database is not there", not "this request is wrong"."""
    return isinstance(
        error,
        sa.exc.OperationalError | sa.exc.InterfaceError | sa.exc.TimeoutError | DatabaseUnreachable,
    )


class DatabaseWatch(OutageLog):
    """Whether the Slack side currently believes the database is down: one error
    line when an outage starts, one when the first database call works again."""

    def __init__(self) -> None:
        super().__init__(
            "slack",
            down_event="slack: incident database unreachable; answering Slack users to try again",
            back_event="slack: incident database reachable again",
            down_level="error",
            logger=log,
        )


def error_handler(watch: DatabaseWatch) -> Any:
    """Bolt's global error handler: database outages as above, anything else as Bolt
    does by default (logged with its traceback, 500 unless already acknowledged)."""

    async def handle(
        error: Exception,
        body: dict[str, Any],
        response: BoltResponse | None,
        respond: AsyncRespond | None,
        client: AsyncWebClient,
        logger: logging.Logger,
    ) -> BoltResponse | None:
        if not is_outage(error):
            logger.error(f"Failed to run listener function (error: {error})", exc_info=error)
            return None
        watch.failed(error)
        if response is None:  # already acknowledged: only a follow-up can reach the user
            await _tell(body, respond, client)
            return None
        if "command" in body:
            return BoltResponse(
                status=200, body={"response_type": "ephemeral", "text": UNREACHABLE}
            )
        if body.get("type") == "view_submission":
            blocks = list(((body.get("view") or {}).get("state") or {}).get("values") or {})
            if blocks:  # the modal stays open with what was typed; submit again later
                return BoltResponse(
                    status=200,
                    body={"response_action": "errors", "errors": {blocks[0]: UNREACHABLE}},
                )
        await _tell(body, respond, client)
        return BoltResponse(status=200, body="")

    return handle


async def _tell(body: dict[str, Any], respond: AsyncRespond | None, client: AsyncWebClient) -> None:
    """Best effort: a user who is not told simply tries again."""
    try:
        if body.get("response_url") and respond is not None:
            await respond(text=UNREACHABLE, response_type="ephemeral", replace_original=False)
            return
        event = body.get("event") if body.get("type") == "event_callback" else None
        if isinstance(event, dict) and event.get("type") == "app_mention":
            await client.chat_postEphemeral(
                channel=str(event.get("channel", "")),
                user=str(event.get("user", "")),
                text=UNREACHABLE,
                thread_ts=event.get("thread_ts"),
            )
            return
        meta = _modal_metadata(body) if body.get("type") == "view_submission" else {}
        user = (body.get("user") or {}).get("id")
        if isinstance(meta.get("u"), str) and meta["u"]:  # the card's response_url
            message = {"text": UNREACHABLE, "response_type": "ephemeral", "replace_original": False}
            await AsyncWebhookClient(meta["u"]).send_dict(message)
        elif isinstance(meta.get("c"), str) and meta["c"] and isinstance(user, str):
            await client.chat_postEphemeral(channel=meta["c"], user=user, text=UNREACHABLE)
    except Exception as exc:  # Slack unreachable too, a bad response_url, ...
        log.warning("slack: could not tell the user the database is down", error=str(exc)[:300])


def _modal_metadata(body: dict[str, Any]) -> dict[str, Any]:
    try:
        meta = json.loads((body.get("view") or {}).get("private_metadata") or "{}")
    except (ValueError, RecursionError):
        return {}
    return meta if isinstance(meta, dict) else {}
