"""A recovery drill's scorecard as Markdown, for the GitHub issue filed when it ends.

Pure, like `bot.reviews.draft`: the facts of a ``drill.finished`` event (see
`bot.timeline.events.Kind.DRILL_FINISHED`) and a few of the incident's own in,
text out. Facts are read defensively (a missing or malformed one shows as
``—``): the scorecard is written by another module and stored as JSON.
Everything that may have come from outside (titles, reasons, checks, findings,
names) goes through `inline`, so the issue cannot gain headings, links, HTML,
mentions or a second ``nexus-incident`` marker; the body ends with the
incident's marker, which is how the publisher finds the issue again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.reviews.draft import (
    _SAFE_URL,  # one definition of a link the issue may carry
    NONE,
    human_duration,
    inline,
    marker,
    person,
    utc_minute,
)

# What may appear as it is in inline code and in the issue title: ids from config.
_PLAIN_ID = re.compile(r"^[A-Za-z0-9_.:/-]{1,100}$")


@dataclass(frozen=True)
class DrillIncident:
    """What the scorecard says about the drill's incident, beyond the event's facts."""

    id: int
    severity: str
    playbook_id: str
    thread_url: str | None = None


def scorecard_title(incident_id: int, facts: Mapping[str, Any]) -> str:
    """`DRILL ssot-schema-mismatch: PASSED (incident #12)` (one line; unsafe ids replaced)."""
    scenario = _plain(facts.get("scenario")) or "scenario"
    return f"DRILL {scenario}: {_verdict(facts)} (incident #{incident_id})"


def draft_scorecard(incident: DrillIncident, facts: Mapping[str, Any]) -> str:
    """The issue body: summary, timings, steps, participants, findings, then the marker."""
    sections = [
        f"# {inline(scorecard_title(incident.id, facts))}",
        "_A recovery drill: nothing real was changed, nobody was paged, "
        "no customer or stakeholder was told._",
        _summary(incident, facts),
        _timings(facts),
        _steps(facts.get("steps")),
        _participants(facts.get("participants")),
        _findings(facts.get("findings")),
        _thread(incident.thread_url) if incident.thread_url else "",
        marker(incident.id),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _summary(incident: DrillIncident, facts: Mapping[str, Any]) -> str:
    scenario = _code(facts.get("scenario"))
    if facts.get("scenario_title"):
        scenario += f" — {inline(facts['scenario_title'])}"
    ended = {"completed": "completed", "timed_out": "timed out"}.get(
        str(facts.get("ended")), inline(facts.get("ended") or NONE)
    )
    lines = [
        f"- **Scenario:** {scenario}",
        f"- **Result:** {_verdict(facts)} ({ended})",
        f"- **Drill incident:** #{incident.id} ({inline(incident.severity)})",
        f"- **Expected playbook:** {_code(facts.get('playbook_id') or incident.playbook_id)}",
        f"- **Playbook matched:** {_matched(facts.get('matched_playbook'))}",
        f"- **Drill run:** {_number(facts.get('run_id'))}",
    ]
    return "## Summary\n\n" + "\n".join(lines)


def _timings(facts: Mapping[str, Any]) -> str:
    acknowledged_by = facts.get("acknowledged_by")
    by = f" by {person(acknowledged_by)}" if acknowledged_by else ""
    lines = [
        f"- Started: {utc_minute(_time(facts.get('started_at')))}",
        f"- Finished: {utc_minute(_time(facts.get('finished_at')))}",
        f"- Time to acknowledge: {_seconds(facts.get('time_to_acknowledge_seconds'))}{by}",
        "- Time to first remediation request: "
        f"{_seconds(facts.get('time_to_first_request_seconds'))}",
    ]
    return "## Timings (UTC)\n\n" + "\n".join(lines)


def _steps(steps: object) -> str:
    items = [s for s in steps if isinstance(s, Mapping)] if isinstance(steps, list) else []
    if not items:
        return "## Steps\n\nNo playbook step was exercised."
    return "## Steps\n\n" + "\n\n".join(_step(n, s) for n, s in enumerate(items, 1))


def _step(number: int, step: Mapping[str, Any]) -> str:
    heading = f"### {number}. {inline(step.get('title') or NONE)}"
    lines = [
        f"- Step: {_code(step.get('step_id'))}, action {_code(step.get('action'))}",
        f"- Outcome: {inline(step.get('outcome') or NONE)}",
        f"- Would it work for real: {_would_work(step.get('would_work'))}"
        + (f": {inline(step['reason'])}" if step.get("reason") else ""),
    ]
    if step.get("requested_by"):
        lines.append(
            f"- Requested by {person(step['requested_by'])} after "
            f"{_seconds(step.get('time_to_request_seconds'))}"
        )
    if step.get("approved_by"):
        lines.append(
            f"- Approved by {person(step['approved_by'])} after "
            f"{_seconds(step.get('time_to_approve_seconds'))}"
        )
    checks = _listed(step.get("checks"))
    if checks:
        lines.append("- Checks:")
        lines += [f"  - {inline(check)}" for check in checks]
    return heading + "\n\n" + "\n".join(lines)


def _participants(participants: object) -> str:
    people = [person(p) for p in _listed(participants)]
    return "## Participants\n\n" + (", ".join(people) or "Nobody took part.")


def _findings(findings: object) -> str:
    lines = [f"- [ ] {inline(f)}" for f in _listed(findings)]
    return "## Findings\n\n" + ("\n".join(lines) or "No findings.")


def _thread(url: str) -> str:
    link = f"[the drill thread]({url})" if _SAFE_URL.match(url) else inline(url)
    return f"## Slack thread\n\n{link}"


# -- reading facts defensively ---------------------------------------------------


def _verdict(facts: Mapping[str, Any]) -> str:
    return "PASSED" if facts.get("passed") is True else "FAILED"


def _plain(value: object) -> str | None:
    text = str(value) if value is not None else ""
    return text if _PLAIN_ID.match(text) else None


def _code(value: object) -> str:
    plain = _plain(value)
    if plain is not None:
        return f"`{plain}`"
    return inline(value) if value else NONE


def _matched(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return _code(value) if value else "no"


def _would_work(value: object) -> str:
    if value is True:
        return "yes"
    if value is False:
        return "no"
    return "unknown"


def _seconds(value: object) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return NONE
    return human_duration(timedelta(seconds=value))


def _time(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


def _number(value: object) -> str:
    # Not "#4": GitHub would link it to issue 4 of the repository.
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else NONE


def _listed(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []
