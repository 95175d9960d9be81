"""`@nexus timeline`: one short mrkdwn line per timeline event, with who and when.

A recovery drill's timeline starts with a DRILL line, and its rehearsed
remediations say whether they would have worked.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bot.communication import ROLE_TITLES
from bot.slack.blocks import escape, who
from bot.slack.drill_text import DRILL_NOTICE
from bot.timeline.events import Event, Kind

_SUMMARIES: dict[str, Callable[[Event], str]] = {
    Kind.OPENED: lambda e: (
        f"opened ({e.fact('severity', '?')}, playbook `{e.fact('playbook_id', '?')}`)"
        if not e.fact("migrated")
        else "opened"
    ),
    Kind.ALERTS_ADDED: lambda e: (
        f"alerts: {e.fact('new', 0)} new, {e.fact('firing', 0)} firing, "
        f"{e.fact('resolved', 0)} resolved"
    ),
    Kind.ACKNOWLEDGED: lambda e: "acknowledged" + _via(e),
    Kind.UNACKNOWLEDGED: lambda e: "unacknowledged" + _via(e),
    Kind.RESOLVED: lambda e: (
        "resolved (all alerts resolved)" if e.fact("reason") == "alerts" else "resolved" + _via(e)
    ),
    Kind.REOPENED: lambda e: "reopened" + _via(e),
    Kind.LEVEL_REACHED: lambda e: (
        f"level {e.fact('level')} — {escape(str(e.fact('role', '')))}: "
        f"{escape(str(e.fact('reason', '')))}"
    ),
    Kind.PAGERDUTY_NOTE: lambda e: f"PagerDuty: {escape(str(e.fact('event_type', '')))}",
    Kind.REMEDIATION_REQUESTED: lambda e: (
        f"requested remediation #{e.fact('request_id')}: {escape(str(e.fact('title', '')))}"
    ),
    Kind.REMEDIATION_REFUSED: lambda e: f"remediation refused: {escape(str(e.fact('reason', '')))}",
    Kind.REMEDIATION_APPROVED: lambda e: (
        f"approved remediation #{e.fact('request_id')} "
        f"(requested by {who(str(e.fact('requested_by')))})"
    ),
    Kind.REMEDIATION_DENIED: lambda e: f"denied remediation #{e.fact('request_id')}",
    Kind.REMEDIATION_EXPIRED: lambda e: f"remediation #{e.fact('request_id')} expired",
    Kind.REMEDIATION_DONE: lambda e: (
        f"remediation #{e.fact('request_id')} "
        + ("rehearsed: would work" if e.fact("rehearsal") else "done")
        + (f", undoing #{e.fact('undoes')}" if e.fact("undoes") else "")
        + f" (approved by {who(str(e.fact('approved_by')))})"
    ),
    Kind.REMEDIATION_FAILED: lambda e: (
        f"remediation #{e.fact('request_id')} {e.fact('outcome', 'failed')}"
    ),
    Kind.ROLE_ASSIGNED: lambda e: (
        f"{ROLE_TITLES.get(str(e.fact('role')), str(e.fact('role')))} → "
        + (", ".join(who(str(h)) for h in e.fact("holders", [])) or "nobody")
    ),
    Kind.UPDATE_POSTED: lambda e: (
        f"public update ({e.fact('status')}): {escape(str(e.fact('text', '')))[:200]}"
    ),
    Kind.NOTE_ADDED: lambda e: f"note: {escape(str(e.fact('text', '')))[:200]}",
    Kind.UPDATE_REMINDER: lambda e: "reminded Communications to post a public update",
    Kind.DELIVERY_PROBLEM: lambda e: f"{escape(str(e.fact('output', '')))} delivery refused",
    Kind.REVIEW_LINKED: lambda e: f"review linked: <{e.fact('url')}>",
    Kind.DRILL_FINISHED: lambda e: (
        f"drill finished: {'PASSED' if e.fact('passed') else 'FAILED'} "
        f"({escape(str(e.fact('scenario_title') or e.fact('scenario', '')))})"
    ),
}
DRILL_LINE = f":test_tube: *DRILL* — {DRILL_NOTICE}."


def _via(e: Event) -> str:
    via = e.fact("via")
    return f" in {escape(str(via))}" if via and via not in ("slack",) else ""


def is_drill_timeline(events: Iterable[Event]) -> bool:
    """Whether these are a recovery drill's events, told from the events alone
    (for callers that do not have the incident row)."""
    return any(_drill_event(e) for e in events)


def _drill_event(e: Event) -> bool:
    if e.kind == Kind.DRILL_FINISHED:
        return True
    if e.kind == Kind.OPENED and e.fact("drill_run_id") is not None:
        return True
    return bool(e.fact("drill") or e.fact("rehearsal"))


def timeline_lines(events: Iterable[Event], *, drill: bool | None = None) -> list[str]:
    """One line per event; a drill's (``drill``, else told from the events) start
    with `DRILL_LINE`."""
    events = list(events)
    if drill is None:
        drill = is_drill_timeline(events)
    lines = [DRILL_LINE] if drill else []
    for event in events:
        summary = _SUMMARIES.get(event.kind)
        text = summary(event) if summary else escape(event.kind)
        if event.kind == Kind.REMEDIATION_FAILED and drill:
            text = f"remediation #{event.fact('request_id')} rehearsed: would NOT work"
        lines.append(f"{event.at:%H:%M:%S} {who(event.actor)} — {text}")
    return lines
