"""Slack listeners of the remediation flow: request buttons, the parameter modal,
Approve / Deny (with a reason), and Undo.

Modals are opened straight after `ack()`: a `trigger_id` is only valid for a
few seconds. Slow work (previews and executions talk to git, GitHub and
Kubernetes) runs after the acknowledgement, in a worker thread.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncRespond
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from bot.remediation.flow import FlowAnswer, RemediationFlow
from bot.remediation.policy import expand_approvers
from bot.slack.blocks import ACTION_REQUEST_REMEDIATION
from bot.slack.cards import ACTION_APPROVE, ACTION_DENY, ACTION_UNDO, card_for
from bot.slack.payloads import button_value

log = structlog.get_logger("bot.slack.remediation")

PARAMS_VIEW = "remediation.params"
DENY_VIEW = "approval.deny_reason"
GROUP_CACHE_SECONDS = 60.0


def register_remediation_listeners(app: AsyncApp, flow: RemediationFlow) -> None:
    groups = UserGroups()

    @app.action(re.compile(rf"^{re.escape(ACTION_REQUEST_REMEDIATION)}\..+$"))
    async def request_remediation(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        value = button_value(body)
        number, playbook_id, step_id = (
            value.get("i"),
            str(value.get("p", "")),
            str(value.get("s", "")),
        )
        if not isinstance(number, int) or not playbook_id or not step_id:
            await _tell(respond, "That button is not attached to an incident.")
            return
        user = body["user"]["id"]
        answer = await asyncio.to_thread(flow.request, number, playbook_id, step_id, user)
        if answer.needs_input:
            meta = {"i": number, "p": playbook_id, "s": step_id, "c": _channel(body)}
            await client.views_open(trigger_id=body["trigger_id"], view=params_modal(answer, meta))
            return
        await _tell(respond, answer.message)

    @app.view(PARAMS_VIEW)
    async def params_submitted(
        ack: AsyncAck, body: dict[str, Any], view: dict[str, Any], client: AsyncWebClient
    ) -> None:
        supplied = _submitted_values(view)
        empty = {f"param-{k}": "A value is needed" for k, v in supplied.items() if not v.strip()}
        if empty:
            await ack(response_action="errors", errors=empty)
            return
        await ack()
        meta = json.loads(view.get("private_metadata") or "{}")
        user = body["user"]["id"]
        answer = await asyncio.to_thread(
            flow.request, int(meta["i"]), str(meta["p"]), str(meta["s"]), user, supplied
        )
        if meta.get("c"):
            await client.chat_postEphemeral(channel=meta["c"], user=user, text=answer.message)

    @app.action(ACTION_APPROVE)
    async def approve(
        ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond, client: AsyncWebClient
    ) -> None:
        await ack()
        request_id = button_value(body).get("r")
        if not isinstance(request_id, int):
            await _tell(respond, "That card is not attached to a remediation.")
            return
        request = await asyncio.to_thread(flow.repo.get_remediation_request, request_id)
        configured = flow.settings.approvers_for(request.action) if request else []
        members = await groups.members(client, [e for e in configured if e.startswith("S")])
        allowed = expand_approvers(configured, members)
        answer = await asyncio.to_thread(flow.approve, request_id, body["user"]["id"], allowed)
        await _show(respond, answer)

    @app.action(ACTION_DENY)
    async def deny(ack: AsyncAck, body: dict[str, Any], client: AsyncWebClient) -> None:
        await ack()
        request_id = button_value(body).get("r")
        meta = {"r": request_id, "u": body.get("response_url", "")}
        await client.views_open(trigger_id=body["trigger_id"], view=deny_modal(meta))

    @app.view(DENY_VIEW)
    async def deny_submitted(ack: AsyncAck, body: dict[str, Any], view: dict[str, Any]) -> None:
        reason = _submitted_values(view).get("reason", "").strip()
        if not reason:
            await ack(
                response_action="errors", errors={"param-reason": "Say why, for the audit trail"}
            )
            return
        await ack()
        meta = json.loads(view.get("private_metadata") or "{}")
        answer = await asyncio.to_thread(flow.deny, int(meta["r"]), body["user"]["id"], reason)
        if meta.get("u"):
            await _show(AsyncWebhookClient(meta["u"]).send_dict, answer, webhook=True)

    @app.action(ACTION_UNDO)
    async def undo(ack: AsyncAck, body: dict[str, Any], respond: AsyncRespond) -> None:
        await ack()
        request_id = button_value(body).get("r")
        if not isinstance(request_id, int):
            return
        answer = await asyncio.to_thread(flow.request_undo, request_id, body["user"]["id"])
        await _tell(respond, answer.message)


class UserGroups:
    """Slack user-group members, cached briefly: membership decides who may approve."""

    def __init__(self) -> None:
        self._cache: dict[str, tuple[float, set[str]]] = {}

    async def members(self, client: AsyncWebClient, groups: list[str]) -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for group in groups:
            cached = self._cache.get(group)
            if cached and time.monotonic() - cached[0] < GROUP_CACHE_SECONDS:
                found[group] = cached[1]
                continue
            try:
                answer = await client.usergroups_users_list(usergroup=group)
                users = {str(u) for u in answer.get("users") or []}
            except SlackApiError as exc:
                # Fail closed: an unreadable group approves nobody.
                log.warning(
                    "usergroup lookup failed", group=group, error=str(exc.response.get("error"))
                )
                users = set()
            self._cache[group] = (time.monotonic(), users)
            found[group] = users
        return found


def params_modal(answer: FlowAnswer, meta: dict[str, Any]) -> dict[str, Any]:
    blocks = [
        {
            "type": "input",
            "block_id": f"param-{name}",
            "label": {"type": "plain_text", "text": name},
            "element": {
                "type": "plain_text_input",
                "action_id": "value",
                **({"initial_value": answer.defaults[name]} if answer.defaults.get(name) else {}),
            },
        }
        for name in answer.needs_input[:10]
    ]
    return {
        "type": "modal",
        "callback_id": PARAMS_VIEW,
        "private_metadata": json.dumps(meta),
        "title": {"type": "plain_text", "text": "Remediation details"},
        "submit": {"type": "plain_text", "text": "Request"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": answer.message[:2900]}},
            *blocks,
        ],
    }


def deny_modal(meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": DENY_VIEW,
        "private_metadata": json.dumps(meta),
        "title": {"type": "plain_text", "text": "Deny remediation"},
        "submit": {"type": "plain_text", "text": "Deny"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {
                "type": "input",
                "block_id": "param-reason",
                "label": {"type": "plain_text", "text": "Why?"},
                "element": {"type": "plain_text_input", "action_id": "value", "multiline": True},
            }
        ],
    }


def _submitted_values(view: dict[str, Any]) -> dict[str, str]:
    values = view.get("state", {}).get("values", {})
    return {
        block_id.removeprefix("param-"): str((inputs.get("value") or {}).get("value") or "")
        for block_id, inputs in values.items()
        if block_id.startswith("param-")
    }


def _channel(body: dict[str, Any]) -> str:
    return str(
        (body.get("channel") or {}).get("id")
        or (body.get("container") or {}).get("channel_id")
        or ""
    )


async def _tell(respond: AsyncRespond, text: str) -> None:
    await respond(text=text, response_type="ephemeral", replace_original=False)


async def _show(send: Any, answer: FlowAnswer, webhook: bool = False) -> None:
    """Redraw the clicked card when there is a new one; else answer only the clicker."""
    if answer.decided is not None:
        card = card_for(answer.decided)
        message = {"text": answer.message, "blocks": card, "replace_original": True}
    else:
        message = {"text": answer.message, "response_type": "ephemeral", "replace_original": False}
    if webhook:
        await send(message)
    else:
        await send(**message)
