"""Block Kit for remediation approval cards, their outcomes and the undo button."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.remediation.flow import Decided
from bot.slack.blocks import clip, escape, mention, to_json
from bot.slack.drill_text import DRILL_NOTICE

ACTION_APPROVE = "approval.approve"
ACTION_DENY = "approval.deny"
ACTION_UNDO = "remediation.undo"
REHEARSAL_APPROVE = "Approve (rehearsal — nothing real changes)"


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
    rehearsal: bool = False,
) -> list[dict[str, Any]]:
    """The card a second person approves or denies; ``rehearsal``: a drill's request."""
    value = json.dumps({"r": request_id})
    lines = "\n".join(f"• {escape(line)}" for line in details[:25])
    who = ", ".join(mention(a) for a in approvers) if approvers else "_nobody is configured_"
    if rehearsal:
        heading = (
            f":test_tube: *DRILL — Remediation #{request_id} (rehearsal): {escape(title)}*\n"
            f"Requested by <@{requested_by}>. It is rehearsed only when a second, different, "
            f"authorised person approves it; {DRILL_NOTICE.lower()}.\n"
            f"*What would happen:* {escape(summary)}"
        )
    else:
        heading = (
            f":raised_hand: *Remediation #{request_id}: {escape(title)}*\n"
            f"Requested by <@{requested_by}>. It runs only when a second, different, "
            f"authorised person approves it.\n*What will happen:* {escape(summary)}"
        )
    blocks: list[Block] = [SectionBlock(text=_md(heading))]
    if lines:
        blocks.append(SectionBlock(text=_md(f"*Preview (live)*\n{lines}")))
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(text=f"May approve: {who} · expires {expires_at:%H:%M} UTC")
            ]
        )
    )
    approve = ButtonElement(text="Approve", action_id=ACTION_APPROVE, value=value, style="primary")
    if rehearsal:
        # The dialog makes the approver read it: in a drill, approving rehearses.
        approve = ButtonElement(
            text=REHEARSAL_APPROVE,
            action_id=ACTION_APPROVE,
            value=value,
            style="primary",
            confirm=ConfirmObject(
                title="Approve the rehearsal?",
                text=f"{REHEARSAL_APPROVE}: this is a recovery drill, the step is only rehearsed.",
                confirm="Approve rehearsal",
                deny="Cancel",
            ),
        )
    blocks.append(
        ActionsBlock(
            block_id=f"approval-{request_id}",
            elements=[
                approve,
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


def approved_line(approved_by: str, requested_by: str, at: str) -> str:
    return f"Approved by <@{approved_by}> at {at} UTC (requested by <@{requested_by}>)."


def outcome_lines(decided: Decided) -> list[str]:
    """What a decided card and the thread say about how a request ended."""
    if decided.outcome == "denied":
        return [f"Denied by <@{decided.decided_by}>: {escape(decided.reason)}"]
    approved = approved_line(decided.decided_by, decided.requested_by, decided.at)
    if decided.rehearsal:  # a drill: say what was rehearsed, never that it was done
        approved = f"DRILL (rehearsal — nothing real changed) · {approved}"
        if decided.outcome == "done":  # the rehearsal's summary starts "Would work …"
            return [approved, escape(decided.summary)]
        return [approved, f"Would NOT work: {escape(decided.reason)}"]
    if decided.outcome == "done":
        lines = [approved, f":white_check_mark: {escape(decided.summary)}"]
        lines += [escape(line) for line in decided.details]
        return lines + [f"<{link}>" for link in decided.links]
    return [approved, escape(decided.reason)]


def card_for(decided: Decided) -> list[dict[str, Any]]:
    return decided_card(decided.request_id, decided.title, decided.outcome, outcome_lines(decided))


def expired_card(request_id: int, title: str, requested_by: str) -> list[dict[str, Any]]:
    """The approval card once its request expired: no buttons left to click."""
    return decided_card(
        request_id,
        title,
        "expired",
        [
            f"Requested by <@{requested_by}>; nobody approved it in time. "
            "Request it again if it is still needed."
        ],
    )
