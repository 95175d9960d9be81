"""Block Kit for incident threads, built with `slack_sdk.models.blocks`.

Pure functions (no I/O) so tests can snapshot them and `simulate` can print
them. slack_sdk validates Slack's limits when a block is serialised; we trim
text ourselves first so an enormous alert never makes a message fail.

Text that came from outside (alert titles, labels) is escaped: a title of
`<!channel>` must not page a whole channel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.domain.playbooks import PlannedStep, Playbook

SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "warning": ":large_orange_circle:",
    "info": ":large_blue_circle:",
}
STATUS_EMOJI = {
    "triggered": ":rotating_light:",
    "acknowledged": ":eyes:",
    "resolved": ":white_check_mark:",
}
MAX_BLOCKS = 50
SECTION_LIMIT = 3000
FIELD_LIMIT = 2000  # per section field; slack_sdk does not check this one
HEADER_LIMIT = 150

ACTION_ACKNOWLEDGE = "incident.acknowledge"
ACTION_RESOLVE = "incident.resolve"
ACTION_REQUEST_REMEDIATION = "remediation.request"


def escape(text: str) -> str:
    """Slack mrkdwn escaping: only &, < and > are control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def who(actor: str) -> str:
    """Slack user IDs become mentions; anything else (PagerDuty names, "cli") is escaped text."""
    if actor[:1] in ("U", "W") and actor.isalnum():
        return f"<@{actor}>"
    return escape(actor)


def mention(entry: str) -> str:
    """A configured Slack user (U…) or user group (S…) as a mention."""
    return f"<!subteam^{entry}>" if entry.startswith("S") else f"<@{entry}>"


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _markdown(text: str, limit: int = SECTION_LIMIT) -> MarkdownTextObject:
    return MarkdownTextObject(text=clip(text, limit))


def _field(text: str) -> MarkdownTextObject:
    return _markdown(text, FIELD_LIMIT)


@dataclass(frozen=True)
class IncidentView:
    """What the root message shows; everything else lives in the thread."""

    title: str
    severity: str
    status: str
    playbook_id: str
    playbook_title: str
    escalation_level: int = 1
    escalation_role: str | None = None
    number: int | None = None
    service: str | None = None
    pagerduty_url: str | None = None
    firing: int = 0
    resolved: int = 0
    first_seen: datetime | None = None
    last_seen: datetime | None = None
    top_labels: tuple[tuple[str, str, int], ...] = ()
    # (role title, holder IDs) in the order the communication plan lists them.
    roles: tuple[tuple[str, tuple[str, ...]], ...] = ()
    public_status: str | None = None
    review_url: str | None = None  # the post-incident review issue, once filed


def root_blocks(view: IncidentView) -> list[Block]:
    number = f"#{view.number} " if view.number is not None else ""
    header = f"{number}{view.severity.upper()}: {view.title}"
    fields = [
        _field(f"*Severity*\n{SEVERITY_EMOJI.get(view.severity, '')} {view.severity}"),
        _field(f"*Status*\n{STATUS_EMOJI.get(view.status, '')} {view.status}"),
        _field(f"*Service*\n{escape(view.service or 'unknown')}"),
        _field(
            f"*Escalation*\nLevel {view.escalation_level}"
            + (f" — {escape(view.escalation_role)}" if view.escalation_role else "")
        ),
        _field(f"*Playbook*\n`{view.playbook_id}` {escape(view.playbook_title)}"),
    ]
    if view.pagerduty_url:
        fields.append(_field(f"*PagerDuty*\n<{_safe_url(view.pagerduty_url)}|open incident>"))
    if view.firing or view.resolved:
        fields.append(_field(f"*Alerts*\n{view.firing} firing, {view.resolved} resolved"))
    if view.public_status:
        fields.append(_field(f"*Public status*\n{view.public_status.capitalize()}"))
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(header, HEADER_LIMIT), emoji=True)),
        SectionBlock(fields=fields[:10]),
    ]
    if view.roles:
        holders = [
            f"*{title}*: " + (", ".join(mention(h) for h in ids) if ids else "_unassigned_")
            for title, ids in view.roles
        ]
        blocks.append(
            ContextBlock(elements=[MarkdownTextObject(text=clip(" · ".join(holders), 2900))])
        )
    if view.review_url:
        review = f"*Post-incident review*: <{_safe_url(view.review_url)}|open the issue>"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=review)]))
    if view.status != "resolved":
        value = json.dumps({"i": view.number}) if view.number is not None else "{}"
        buttons = [
            ButtonElement(
                text="Acknowledge", action_id=ACTION_ACKNOWLEDGE, value=value, style="primary"
            ),
            ButtonElement(text="Resolve", action_id=ACTION_RESOLVE, value=value),
        ]
        if view.status == "acknowledged":
            buttons = buttons[1:]
        blocks.append(ActionsBlock(block_id="incident", elements=buttons))
    return blocks


def root_text(view: IncidentView) -> str:
    """Notification fallback text (what a phone shows)."""
    # This text is mrkdwn (it is what notifications show): escape it like any other.
    return clip(f"{view.severity.upper()} {view.status}: {escape(view.title)}", 300)


def playbook_blocks(
    playbook: Playbook, steps: list[PlannedStep], incident_number: int | None = None
) -> list[Block]:
    """The playbook posted in the incident thread, with one button per runnable step."""
    facts = (
        f"*Risk* {playbook.risk_level.value} · *Probability* {playbook.probability.value} · "
        f"*Impact* {playbook.impact.value}"
    )
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(f"Playbook: {playbook.title}", HEADER_LIMIT))),
        SectionBlock(text=_markdown(f"{facts}\n{escape(playbook.description)}")),
    ]
    if playbook.mitigations:
        bullets = "\n".join(f"• {escape(m)}" for m in playbook.mitigations)
        blocks.append(SectionBlock(text=_markdown(f"*Mitigations*\n{bullets}")))
    procedure = playbook.procedure_steps
    phases = "\n".join(
        f"*{phase.name}* ({phase.window}): " + "; ".join(phase.tasks) for phase in procedure.phases
    )
    blocks.append(SectionBlock(text=_markdown(f"*{procedure.title}*\n{phases}")))
    blocks.append(DividerBlock())
    blocks.append(SectionBlock(text=_markdown("*Rollback steps*")))
    for number, planned in enumerate(steps, 1):
        blocks.append(_step_block(number, planned, playbook.id, incident_number))
    if len(blocks) > MAX_BLOCKS:
        blocks = [
            *blocks[: MAX_BLOCKS - 1],
            ContextBlock(elements=[_markdown("…more steps in the playbook file")]),
        ]
    return blocks


def _step_block(
    number: int, planned: PlannedStep, playbook_id: str, incident_number: int | None
) -> SectionBlock:
    step = planned.step
    lines = [f"*{number}. {escape(step.title)}*"]
    if planned.command is not None:
        lines.append(f"```{escape(planned.command)}```")
        if planned.missing:
            lines.append(f"_Fill in: {', '.join(planned.missing)}_")
    elif planned.description:
        lines.append(escape(planned.description))
    if planned.refusal:
        lines.append(f":no_entry: Refused: {escape(planned.refusal)}")
    elif planned.missing:
        lines.append(f"_You will be asked for: {', '.join(planned.missing)}_")
    elif planned.invalid:
        lines.append(f"_Check these values: {escape('; '.join(planned.invalid))}_")
    if step.note:
        lines.append(f"_{escape(step.note)}_")
    accessory = None
    if planned.runnable:
        value: dict[str, Any] = {"p": playbook_id, "s": step.id}
        if incident_number is not None:
            value["i"] = incident_number
        accessory = ButtonElement(
            text=clip(f"Request: {step.title}", 75),
            action_id=f"{ACTION_REQUEST_REMEDIATION}.{step.id}",
            value=json.dumps(value, separators=(",", ":")),
        )
    return SectionBlock(text=_markdown("\n".join(lines)), accessory=accessory)


def _safe_url(url: str) -> str:
    # A URL inside <…|…> must not contain the characters that end the link.
    return url.replace("<", "%3C").replace(">", "%3E").replace("|", "%7C")


def to_json(blocks: list[Block]) -> list[dict[str, Any]]:
    """Serialise (and so validate against Slack's limits)."""
    return [block.to_dict() for block in blocks]
