"""The post-incident review as Markdown, drafted from the incident's timeline.

Pure: `draft_review` turns `ReviewFacts` into text and does no I/O, so the
CLI, the Slack command and the GitHub publisher all produce the same body.

Everything that came from outside (alert titles, update texts, remediation
previews, names) is written through `inline`: one line, Markdown and HTML
neutralised, so a hostile alert cannot add headings, links, HTML, mentions or
a second `nexus-incident` marker to the issue. Our own values (times, counts,
request ids, Slack IDs that match the ID format) are written as they are.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bot.communication import ROLE_TITLES
from bot.reviews.facts import ReviewFacts
from bot.timeline.events import Event, Kind

NONE = "—"
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,30}$")
_SLACK_CHANNEL = re.compile(r"^[CGD][A-Z0-9]{2,30}$")
_SLACK_TS = re.compile(r"^\d{1,12}\.\d{1,9}$")
_SAFE_URL = re.compile(r"^https://[A-Za-z0-9._~:/?#@!$&'*+,;=%-]+$")
_SAFE_PATH = re.compile(r"^[A-Za-z0-9._/-]+$")
# What may go into inline code as it is: rule names, ids. Anything else (a
# `<!--` in particular: code spans keep it raw) goes through `inline`.
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_:./ -]{1,200}$")
# Backslash-escaped wherever they appear: they open headings, links, images,
# HTML, code, tables, emphasis, strikethrough and entities.
_SIGNIFICANT = frozenset("\\`*_[]<>#|~!&{}")
# Escaped only at the start of a field, where they would open a list or a rule.
_LEADING = frozenset("-+=")
# After an `@`, so GitHub does not notify a user or team named in an alert.
_WORD_JOINER = "\u2060"


def marker(incident_id: int) -> str:
    """The line the publisher finds an incident's review issue by."""
    return f"<!-- nexus-incident: {incident_id} -->"


def draft_review(facts: ReviewFacts, thread_url: str | None) -> str:
    """The review: facts first, then the four headings the team fills in."""
    times = key_times(facts)
    sections = [
        f"# Post-incident review: #{facts.incident.id} {inline(facts.incident.title)}",
        _summary(facts),
        _key_times(times),
        _durations(times),
        _escalation(facts.events),
        _remediations(facts.events),
        _public_updates(facts.events),
        _alerts(facts),
        _thread(thread_url) if thread_url else "",
        _root_causes(),
        _procedures(facts),
        _monitoring(facts),
        _training(),
        marker(facts.incident.id),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def slack_thread_url(channel: str | None, root_ts: str | None) -> str | None:
    """`https://slack.com/archives/C…/p<ts without dot>`, when the thread is known."""
    if not (channel and root_ts and _SLACK_CHANNEL.match(channel) and _SLACK_TS.match(root_ts)):
        return None
    return f"https://slack.com/archives/{channel}/p{root_ts.replace('.', '')}"


# -- key times -----------------------------------------------------------------


@dataclass(frozen=True)
class KeyTimes:
    started: datetime
    acknowledged: datetime | None
    remediation_requested: datetime | None
    remediation_approved: datetime | None
    remediation_done: datetime | None
    resolved: datetime | None

    @property
    def to_acknowledge(self) -> timedelta | None:
        return _since(self.started, self.acknowledged)

    @property
    def to_mitigate(self) -> timedelta | None:
        return _since(self.started, self.remediation_done)

    @property
    def to_resolve(self) -> timedelta | None:
        return _since(self.started, self.resolved)


def key_times(facts: ReviewFacts) -> KeyTimes:
    """The incident's milestones, from the timeline (the incident row when it has none).

    Acknowledged and remediation times are the first ones; resolved is the last,
    and only while the incident is resolved: a reopened incident is not over.
    """
    incident, events = facts.incident, facts.events

    def first(kind: Kind) -> datetime | None:
        return next((e.at for e in events if e.kind == kind), None)

    resolved = None
    if incident.status == "resolved":
        last = [e.at for e in events if e.kind == Kind.RESOLVED]
        resolved = last[-1] if last else incident.resolved_at
    return KeyTimes(
        started=incident.created_at,
        acknowledged=first(Kind.ACKNOWLEDGED) or incident.acknowledged_at,
        remediation_requested=first(Kind.REMEDIATION_REQUESTED),
        remediation_approved=first(Kind.REMEDIATION_APPROVED),
        remediation_done=first(Kind.REMEDIATION_DONE),
        resolved=resolved,
    )


def human_duration(delta: timedelta | None) -> str:
    """`45s`, `4m 10s`, `1h 02m`, `2d 03h`; `—` when unknown (or negative: clock skew)."""
    if delta is None or delta < timedelta(0):
        return NONE
    days, rest = divmod(int(delta.total_seconds()), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, seconds = divmod(rest, 60)
    if days:
        return f"{days}d {hours:02d}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {seconds:02d}s"
    return f"{seconds}s"


def utc_minute(moment: datetime | None) -> str:
    return f"{moment.astimezone(UTC):%Y-%m-%dT%H:%MZ}" if moment else NONE


def _since(start: datetime, end: datetime | None) -> timedelta | None:
    return end - start if end is not None else None


# -- the facts -----------------------------------------------------------------


def _summary(facts: ReviewFacts) -> str:
    incident = facts.incident
    playbook = f"`{incident.playbook_id}`" if _SAFE_PATH.match(incident.playbook_id) else NONE
    if facts.playbook_title:
        playbook += f" — {inline(facts.playbook_title)}"
    lines = [
        f"- **Title:** {inline(incident.title)}",
        f"- **Severity:** {inline(incident.severity)}",
        f"- **Services:** {_joined(inline(s) for s in incident.services)}",
        f"- **Playbook:** {playbook}",
    ]
    roles = dict(incident.roles)
    for role in [*ROLE_TITLES, *sorted(set(roles) - set(ROLE_TITLES))]:
        title = ROLE_TITLES.get(role) or inline(role)
        lines.append(f"- **{title}:** {_joined(person(h) for h in roles.get(role, ()))}")
    lines.append(f"- **Final status:** {inline(incident.status)}")
    return "## Summary\n\n" + "\n".join(lines)


def _key_times(times: KeyTimes) -> str:
    rows = [
        ("Started", times.started),
        ("Acknowledged", times.acknowledged),
        ("First remediation requested", times.remediation_requested),
        ("First remediation approved", times.remediation_approved),
        ("First remediation done", times.remediation_done),
        ("Resolved", times.resolved),
    ]
    return "## Key times (UTC)\n\n" + "\n".join(f"- {name}: {utc_minute(at)}" for name, at in rows)


def _durations(times: KeyTimes) -> str:
    rows = [
        ("Time to acknowledge", times.to_acknowledge),
        ("Time to mitigate", times.to_mitigate),
        ("Time to resolve", times.to_resolve),
    ]
    return "## Durations\n\n" + "\n".join(f"- {name}: {human_duration(d)}" for name, d in rows)


def _escalation(events: Iterable[Event]) -> str:
    lines = [
        f"- Level {_number(e.fact('level'))} — {inline(e.fact('role') or NONE)}, "
        f"{utc_minute(e.at)}: {inline(e.fact('reason') or NONE)}"
        for e in events
        if e.kind == Kind.LEVEL_REACHED
    ]
    return "## Escalation\n\n" + ("\n".join(lines) or "No escalation level was reached.")


@dataclass
class _Remediation:
    request_id: int | None
    title: str
    lines: list[str] = field(default_factory=list)


def _remediations(events: Iterable[Event]) -> str:
    """Each request with its steps, in the order the requests began."""
    by_request: dict[int, _Remediation] = {}
    ordered: list[_Remediation] = []
    for event in events:
        if not event.kind.startswith("remediation."):
            continue
        request_id = event.fact("request_id")
        key = request_id if isinstance(request_id, int) else None
        entry = by_request.get(key) if key is not None else None
        if entry is None:
            entry = _Remediation(key, str(event.fact("title") or ""))
            ordered.append(entry)
            if key is not None:
                by_request[key] = entry
        entry.lines += _remediation_lines(event)
    if not ordered:
        return "## Remediations\n\nNo remediation was requested."
    blocks = []
    for entry in ordered:
        name = f"Request #{entry.request_id}" if entry.request_id else "Refused before a request"
        blocks.append(f"### {name}: {inline(entry.title)}\n\n" + "\n".join(entry.lines))
    return "## Remediations\n\n" + "\n\n".join(blocks)


def _remediation_lines(event: Event) -> list[str]:
    when = utc_minute(event.at)
    if event.kind == Kind.REMEDIATION_REQUESTED:
        return [
            f"- Requested by {person(event.fact('requested_by') or event.actor)} at {when}",
            f"- Preview: {inline(event.fact('summary') or NONE)}",
            *(f"  - {inline(d)}" for d in _listed(event.fact("details"))),
        ]
    if event.kind == Kind.REMEDIATION_APPROVED:
        return [f"- Approved by {person(event.actor)} at {when}"]
    if event.kind == Kind.REMEDIATION_DENIED:
        return [
            f"- Denied by {person(event.actor)} at {when}",
            f"- Result: denied: {inline(event.fact('reason') or NONE)}",
        ]
    if event.kind == Kind.REMEDIATION_EXPIRED:
        return [f"- Result: expired at {when}, nobody approved in time"]
    if event.kind == Kind.REMEDIATION_REFUSED:
        return [f"- Result: refused at {when}: {inline(event.fact('reason') or NONE)}"]
    if event.kind == Kind.REMEDIATION_FAILED:
        outcome = inline(event.fact("outcome") or "failed")
        return [f"- Result: {outcome} at {when}: {inline(event.fact('message') or NONE)}"]
    if event.kind == Kind.REMEDIATION_DONE:
        undoes = event.fact("undoes")
        lines = [f"- Result: done at {when}: {inline(event.fact('summary') or NONE)}"]
        if isinstance(undoes, int):
            lines[0] += f" (undoes request #{undoes})"
        lines += [f"  - {inline(d)}" for d in _listed(event.fact("details"))]
        lines += [f"  - {inline(link)}" for link in _listed(event.fact("links"))]
        return lines
    return []


def _public_updates(events: Iterable[Event]) -> str:
    lines = [
        f"- {utc_minute(e.at)} **{inline(str(e.fact('status') or NONE).capitalize())}**: "
        f"{inline(e.fact('text') or '')}"
        for e in events
        if e.kind == Kind.UPDATE_POSTED
    ]
    return "## Public updates\n\n" + ("\n".join(lines) or "No public update was posted.")


def _alerts(facts: ReviewFacts) -> str:
    alerts = facts.alerts
    names = _joined(code(n) for n in alerts.alertnames)
    if alerts.more_alertnames:
        names += ", and more"
    return (
        "## Alerts\n\n"
        f"- Firing: {alerts.firing}, resolved: {alerts.resolved}\n"
        f"- Alert rules that fired: {names}"
    )


def _thread(url: str) -> str:
    link = f"[the incident thread]({url})" if _SAFE_URL.match(url) else inline(url)
    return f"## Slack thread\n\n{link}"


# -- the headings the team fills in ----------------------------------------------


def _root_causes() -> str:
    return (
        "## Root causes\n\n"
        "- [ ] What triggered the incident?\n"
        "- [ ] Why did it reach production (tests, review, validation)?\n"
        "- [ ] What made it worse or slower to fix?"
    )


def _procedures(facts: ReviewFacts) -> str:
    path = facts.playbook_path
    if path is None:
        where = "No playbook file matched (generic triage): should one be written?"
    elif _SAFE_PATH.match(path):
        where = f"Playbook file: `{path}`"
    else:
        where = f"Playbook file: {inline(path)}"
    return (
        f"## Procedures to update\n\n{where}\n\n"
        "- [ ] Rollback steps that were missing, wrong or slow\n"
        "- [ ] Mitigations to add to the playbook\n"
        "- [ ] Escalation or communication plan changes"
    )


def _monitoring(facts: ReviewFacts) -> str:
    rules = [
        f"- [ ] {code(name)}: fired early enough, at the right severity?"
        for name in facts.alerts.alertnames
    ]
    if facts.alerts.more_alertnames:
        rules.append("- [ ] The other alert rules that fired (see the incident's alerts)")
    if not rules:
        rules = ["- [ ] No alert rule fired: which alert would have caught this?"]
    return "## Monitoring to improve\n\n" + "\n".join(rules)


def _training() -> str:
    return (
        "## Training\n\n"
        "- [ ] Who should walk through this incident and its playbook?\n"
        "- [ ] Drill the scenario (`nexus-bot simulate`) with the on-call rota"
    )


# -- writing outside text safely -------------------------------------------------


def inline(text: object) -> str:
    """Outside text as one line of inert Markdown (see the module docstring)."""
    flat = " ".join(str(text).split())  # newlines, tabs, U+2028 and the like → one space
    out: list[str] = []
    for index, char in enumerate(flat):
        if not char.isprintable():
            continue  # control and format characters (bidi overrides, zero-width)
        if char in _SIGNIFICANT or (index == 0 and char in _LEADING):
            out.append("\\" + char)
        elif char == "@":
            out.append("@" + _WORD_JOINER)
        else:
            out.append(char)
    return "".join(out)


def code(text: str) -> str:
    """A plain name (an alert rule) as inline code; anything else through `inline`."""
    if _PLAIN_NAME.match(text) and text.strip():
        return f"`{text}`"
    return inline(text)


def person(actor: object) -> str:
    """A Slack user or group ID as `@U…` code (no GitHub mention); anything else as text."""
    text = str(actor)
    return f"`@{text}`" if _SLACK_ID.match(text) else inline(text)


def _joined(parts: Iterable[str]) -> str:
    return ", ".join(parts) or NONE


def _listed(value: object) -> list[object]:
    """A list fact as its items; anything else (absent, malformed) as none."""
    return list(value) if isinstance(value, list) else []


def _number(value: object) -> str:
    return str(value) if isinstance(value, int) else NONE
