"""How a recovery drill reads in Slack: the DRILL marks, rehearsal results, the scorecard.

Pure functions (no I/O), used by `bot.slack.thread_output`, `bot.slack.root_view`,
`bot.slack.cards` and `bot.slack.timeline_text`. Everything a drill posts says
DRILL, so nobody mistakes a rehearsal for a real outage (or a real outage for a
rehearsal: real incidents' text is never touched here).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from bot.drills.scorecard import format_duration_seconds
from bot.slack.blocks import HEADER_LIMIT, SECTION_LIMIT, clip, escape, mention, to_json, who
from bot.timeline.events import Event

__all__ = [
    "DRILL_NOTICE",
    "DRILL_REPLY_PREFIX",
    "DRILL_TITLE_PREFIX",
    "DrillStatus",
    "drill_context_block",
    "drill_reply",
    "drill_status_line",
    "format_seconds",
    "rehearsal_done",
    "rehearsal_failed",
    "scorecard_blocks",
    "scorecard_text",
]

DRILL_TITLE_PREFIX = "🧪 DRILL — "  # the root message's title
DRILL_REPLY_PREFIX = "DRILL · "  # every thread reply's text
DRILL_NOTICE = "This is a recovery drill: nothing real changes"

# Where a drill stands, as its root message shows it.
DrillStatus = Literal["running", "passed", "failed"]

# Slack allows 50 blocks a message; the scorecard keeps a few for its header,
# timings, participants and findings, and folds the rest of the steps into one.
_MAX_STEP_BLOCKS = 40


def drill_reply(text: str) -> str:
    """A thread reply's text, marked as a drill's (once, even if marked already)."""
    return text if text.startswith(DRILL_REPLY_PREFIX) else f"{DRILL_REPLY_PREFIX}{text}"


def drill_status_line(status: DrillStatus) -> str:
    """The root message's drill line: what a drill is and, once over, how it went."""
    line = f":test_tube: *{DRILL_NOTICE}.*"
    if status != "running":
        line += f" *DRILL finished: {status.upper()}*"
    return line


def drill_context_block(text: str = f":test_tube: *DRILL* — {DRILL_NOTICE}.") -> dict[str, Any]:
    """A context line put above a drill's Block Kit replies (their blocks hide the text)."""
    return ContextBlock(elements=[MarkdownTextObject(text=clip(text, 2900))]).to_dict()


def format_seconds(seconds: float | int | None) -> str:
    """1m 05s, 45s, 2h 03m (the scorecard's own wording); an em dash when it never happened."""
    return "—" if seconds is None else format_duration_seconds(max(0.0, float(seconds)))


# -- rehearsal results ---------------------------------------------------------


def rehearsal_done(e: Event) -> str:
    """remediation.done in a drill: the rehearsal says the step would work, and why."""
    checks = [f"• {escape(str(c))}" for c in e.fact("checks", []) or []]
    lines = [
        f"Approved by <@{e.fact('approved_by')}> at {e.fact('approved_at')} UTC "
        f"(requested by <@{e.fact('requested_by')}>).",
        f":white_check_mark: {_verdict_text('Would work', str(e.fact('summary', '')))}",
        *(escape(str(d)) for d in e.fact("details", []) or []),
        *(["Checked:", *checks] if checks else []),
    ]
    verify = e.fact("verify")
    if isinstance(verify, dict):  # the verify step's rehearsal, under the step's
        verdict = "would work" if verify.get("ok") else "would NOT work"
        lines.append(f"Verification ({escape(str(verify.get('title', '')))}) {verdict}: ")
        lines[-1] += escape(str(verify.get("summary", "")))
    title = escape(str(e.fact("title", "")))
    return f"Remediation #{e.fact('request_id')} ({title}) rehearsed.\n" + "\n".join(lines)


def rehearsal_failed(e: Event) -> str:
    """remediation.failed in a drill: the step would not have worked."""
    title = escape(str(e.fact("title", "")))
    return (
        f":x: Remediation #{e.fact('request_id')} ({title}) rehearsed. "
        f"{_verdict_text('Would NOT work', str(e.fact('message', '')))}"
    )


def _verdict_text(verdict: str, text: str) -> str:
    """`verdict: text`, unless the rehearsal already said it ("Would work (dry run …): …")."""
    if text.lower().startswith(("would ", "rehearsal ")):
        return escape(text)
    return f"{verdict}: {escape(text)}"


# -- the scorecard ---------------------------------------------------------------


def _verdict(facts: Mapping[str, Any]) -> str:
    return "PASSED" if facts.get("passed") else "FAILED"


def _header(facts: Mapping[str, Any]) -> str:
    title = str(facts.get("scenario_title") or facts.get("scenario") or "drill")
    return f"DRILL scorecard — {title}: {_verdict(facts)}"


def _playbook(facts: Mapping[str, Any]) -> str:
    expected = str(facts.get("playbook_id", ""))
    matched = facts.get("matched_playbook")
    # The playbook the drill's alert matched; None when that was not recorded.
    if matched is None:
        return f"`{expected}`"
    if str(matched) != expected:
        return f"`{expected}` ❌ matched `{escape(str(matched))}` instead"
    return f"`{expected}` ✅ matched"


def _timings(facts: Mapping[str, Any]) -> list[str]:
    acknowledged = format_seconds(facts.get("time_to_acknowledge_seconds"))
    if facts.get("acknowledged_by"):
        acknowledged += f" (by {who(str(facts['acknowledged_by']))})"
    ended = str(facts.get("ended", "")).replace("_", " ")
    return [
        f"*Time to acknowledge*\n{acknowledged}",
        f"*Time to first request*\n{format_seconds(facts.get('time_to_first_request_seconds'))}",
        f"*Playbook*\n{_playbook(facts)}",
        f"*Ended*\n{escape(ended) or '—'}",
    ]


def _step(number: int, step: Mapping[str, Any]) -> str:
    mark = "✅" if step.get("would_work") else "❌"
    outcome = escape(str(step.get("outcome", "")).replace("_", " "))
    action = f" (`{escape(str(step['action']))}`)" if step.get("action") else ""
    lines = [f"{mark} *{number}. {escape(str(step.get('title', '')))}*{action} — {outcome}"]
    if step.get("reason"):
        lines.append(escape(str(step["reason"])))
    timing = []
    if step.get("requested_by"):
        timing.append(
            f"requested by {who(str(step['requested_by']))} after "
            f"{format_seconds(step.get('time_to_request_seconds'))}"
        )
    if step.get("approved_by"):
        timing.append(
            f"approved by {who(str(step['approved_by']))} after "
            f"{format_seconds(step.get('time_to_approve_seconds'))}"
        )
    if timing:
        lines.append(" · ".join(timing))
    lines += [f"• {escape(str(c))}" for c in step.get("checks", []) or []]
    return "\n".join(lines)


def _steps(facts: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [s for s in facts.get("steps", []) or [] if isinstance(s, Mapping)]


def _participants(facts: Mapping[str, Any]) -> str:
    return ", ".join(mention(str(p)) for p in facts.get("participants", []) or []) or "_nobody_"


def _findings(facts: Mapping[str, Any]) -> list[str]:
    return [f"• {escape(str(f))}" for f in facts.get("findings", []) or []]


def scorecard_blocks(facts: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The drill.finished scorecard as Block Kit (see `Kind.DRILL_FINISHED` for its facts)."""
    blocks: list[Block] = [
        HeaderBlock(text=PlainTextObject(text=clip(_header(facts), HEADER_LIMIT), emoji=True)),
        SectionBlock(fields=[MarkdownTextObject(text=clip(f, 2000)) for f in _timings(facts)]),
    ]
    steps = [_step(n, s) for n, s in enumerate(_steps(facts), 1)]
    if len(steps) > _MAX_STEP_BLOCKS:
        steps = [*steps[: _MAX_STEP_BLOCKS - 1], "\n\n".join(steps[_MAX_STEP_BLOCKS - 1 :])]
    blocks += [SectionBlock(text=MarkdownTextObject(text=clip(s, SECTION_LIMIT))) for s in steps]
    if not steps:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="_No step was exercised._")))
    findings = _findings(facts)
    if findings:
        text = "*Findings*\n" + "\n".join(findings)
        blocks.append(SectionBlock(text=MarkdownTextObject(text=clip(text, SECTION_LIMIT))))
    blocks.append(
        ContextBlock(
            elements=[
                MarkdownTextObject(text=clip(f"*Participants*: {_participants(facts)}", 2900))
            ]
        )
    )
    return to_json(blocks)


def scorecard_text(facts: Mapping[str, Any]) -> str:
    """The scorecard's plain-text fallback (notifications, clients without blocks)."""
    acknowledged = format_seconds(facts.get("time_to_acknowledge_seconds"))
    first_request = format_seconds(facts.get("time_to_first_request_seconds"))
    lines = [
        escape(_header(facts)),
        f"Time to acknowledge: {acknowledged}; to first request: {first_request}.",
    ]
    for number, step in enumerate(_steps(facts), 1):
        mark = "✅" if step.get("would_work") else "❌"
        outcome = str(step.get("outcome", "")).replace("_", " ")
        reason = f": {step['reason']}" if step.get("reason") else ""
        lines.append(escape(f"{mark} {number}. {step.get('title', '')} — {outcome}{reason}"))
    lines += _findings(facts)
    lines.append(f"Participants: {_participants(facts)}")
    return clip("\n".join(lines), 3000)
