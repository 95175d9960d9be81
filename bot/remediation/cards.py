"""Block Kit for remediation approval cards and their outcomes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.slack.blocks import clip, escape, to_json

ACTION_APPROVE = "approval.approve"
ACTION_DENY = "approval.deny"
ACTION_UNDO = "remediation.undo"


def _md(text: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": clip(text, 3000)}


def approval_card(
    *,
    request_id: int,
    requested_by: str,
    title: str,
    summary: str,
    details: list[str],
    expires_at: datetime,
    approvers: list[str],
) -> list[dict[str, Any]]:
    value = json.dumps({"r": request_id})
    lines = "\n".join(f"• {escape(line)}" for line in details[:25])
    who = ", ".join(_mention(a) for a in approvers) if approvers else "_nobody is configured_"
    blocks: list[Block] = [
        SectionBlock(
            text=_md(
                f":raised_hand: *Remediation #{request_id}: {escape(title)}*\n"
                f"Requested by <@{requested_by}>. It runs only when a second, different, "
                f"authorised person approves it.\n*What will happen:* {escape(summary)}"
            )
        ),
    ]
    if lines:
        blocks.append(SectionBlock(text=_md(f"*Preview (live)*\n{lines}")))
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(text=f"May approve: {who} · expires {expires_at:%H:%M} UTC")
            ]
        )
    )
    blocks.append(
        ActionsBlock(
            block_id=f"approval-{request_id}",
            elements=[
                ButtonElement(
                    text="Approve", action_id=ACTION_APPROVE, value=value, style="primary"
                ),
                ButtonElement(text="Deny", action_id=ACTION_DENY, value=value, style="danger"),
            ],
        )
    )
    return to_json(blocks)


def decided_card(
    request_id: int, title: str, outcome: str, lines: list[str]
) -> list[dict[str, Any]]:
    """The card after a decision: no buttons left to click."""
    body = "\n".join(lines)
    return to_json(
        [
            SectionBlock(
                text=_md(f"*Remediation #{request_id}: {escape(title)}* — {outcome}\n{body}")
            )
        ]
    )


def undo_blocks(request_id: int, title: str) -> list[dict[str, Any]]:
    return to_json(
        [
            SectionBlock(
                text=_md(f"Undo available for remediation #{request_id}."),
                accessory=ButtonElement(
                    text=clip(title, 75), action_id=ACTION_UNDO, value=json.dumps({"r": request_id})
                ),
            )
        ]
    )


def _mention(entry: str) -> str:
    return f"<!subteam^{entry}>" if entry.startswith("S") else f"<@{entry}>"
