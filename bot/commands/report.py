"""`nexus-bot report [--since 30d] [--json]`: incident figures per playbook and per severity.

Counts the incidents *created* in the window (the last 30 days unless `--since`
says otherwise; recovery drills never count) and, for each playbook, each
severity and all of them together: how many there were, how long they took to
be acknowledged and resolved, what happened to the remediations requested for
them, how far they escalated. A remediation counts with its incident (so with
the incident's playbook and severity), even when it was requested after the
window began.

Time to acknowledge is `acknowledged_at - created_at` over the incidents that
are acknowledged now; time to resolve is `resolved_at - created_at` over those
resolved now (an incident resolved without an acknowledgement counts in the
second only). A reopened incident keeps its first `created_at`, so its times
include the first resolution and the quiet spell after it. p90 is the nearest
rank: the smallest time that at least 90% of the incidents took no longer than.

Text is for people: two aligned tables with human durations (`12m 05s`,
`2h 10m`) and `-` where there is nothing to show. `--json` is for scripts and
keeps this shape (`schema` changes if it ever has to break):

    {
      "schema": 1,
      "since": "2025-05-01T09:30:00Z",      # window start (UTC); incidents created at or after
      "until": "2025-05-31T09:30:00Z",      # when the report was made (UTC)
      "window_seconds": 2592000,
      "totals": FIGURES,                    # every incident in the window
      "by_playbook": {"<playbook id>": FIGURES, ...},   # playbooks with incidents, by id
      "by_severity": {"critical": FIGURES, "warning": FIGURES, "info": FIGURES}  # always all 3
    }

    FIGURES = {
      "incidents": 3,
      "time_to_acknowledge": {"count": 2, "mean_seconds": 390.0, "p90_seconds": 480.0},
      "time_to_resolve": {"count": 1, "mean_seconds": 5400.0, "p90_seconds": 5400.0},
      "remediations": {
        "requested": 4,   # every request, whatever became of it (refused by the bot included)
        "approved": 2,    # reached approved or later: approved, executing, succeeded, failed
        "denied": 1, "expired": 1, "failed": 0
      },
      "highest_escalation_level": 2,        # null without incidents
      "reviews": {"open": 1, "closed": 0}
    }

Seconds are numbers (milliseconds kept); `mean_seconds` and `p90_seconds` are
null when `count` is 0. `reviews` counts the post-incident review issues filed
for the incidents by their last known state (`review.linked`, `review.closed`
timeline events; closed is noted by the review follow-up).

Exit 0 (also when there are no incidents), 2 when the database cannot be
reached (reason on stderr: with `--json`, stdout holds JSON or nothing).
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.commands.database import migrated_database
from bot.settings import Settings
from bot.store.db import READ_ONLY_OPTIONS
from bot.store.models import (
    SEVERITIES,
    EscalationStep,
    Incident,
    RemediationRequest,
    TimelineEvent,
    utcnow,
)

REPORT_SCHEMA = 1
# Like `incidents`: a report of nothing must not be mistaken for a quiet month.
EXIT_UNAVAILABLE = 2
REMEDIATION_OUTCOMES = ("requested", "approved", "denied", "expired", "failed")
# A request that was approved stays "approved" in the figures whatever came after.
_APPROVED_OR_LATER = frozenset({"approved", "executing", "succeeded", "failed"})
_TOTAL_ROW = "(all)"  # parenthesised: cannot be mistaken for a playbook id


@dataclass
class ReportedIncident:
    """What the report needs of one incident, its remediations and its escalations."""

    severity: str
    playbook: str
    created_at: datetime
    acknowledged_at: datetime | None
    resolved_at: datetime | None
    highest_level: int
    remediations: Counter[str] = field(default_factory=Counter)
    # The post-incident review issue: None (not filed), "open" or "closed".
    review: str | None = None


def run_report(settings: Settings, since: timedelta, as_json: bool) -> int:
    until = utcnow()
    try:
        with migrated_database(settings) as engine:
            incidents = load_incidents(engine, until - since)
    except sa.exc.SQLAlchemyError as exc:
        print(f"error: database unavailable: {str(exc).splitlines()[0]}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    report = build_report(incidents, until - since, until)
    print(json.dumps(report, indent=2) if as_json else render_text(report, since))
    return 0


def load_incidents(engine: sa.Engine, cutoff: datetime) -> list[ReportedIncident]:
    """Incidents created at or after `cutoff`, with their remediation states and top level."""
    # Drills rehearse; their figures are their scorecards', not the service's.
    in_window = sa.and_(Incident.created_at >= cutoff, Incident.drill_run_id.is_(None))
    reader = engine.execution_options(**READ_ONLY_OPTIONS)
    # One read transaction: incidents, remediations and escalations from one snapshot.
    with Session(reader) as session, session.begin():
        rows = session.execute(
            sa.select(
                Incident.id,
                Incident.severity,
                Incident.playbook_id,
                Incident.created_at,
                Incident.acknowledged_at,
                Incident.resolved_at,
                Incident.escalation_level,
            ).where(in_window)
        ).all()
        states = session.execute(
            sa.select(RemediationRequest.incident_id, RemediationRequest.state, sa.func.count())
            .join(Incident, Incident.id == RemediationRequest.incident_id)
            .where(in_window)
            .group_by(RemediationRequest.incident_id, RemediationRequest.state)
        ).all()
        # The ladder restarts at level 1 on reopening: the steps remember how high it went.
        fired = session.execute(
            sa.select(EscalationStep.incident_id, sa.func.max(EscalationStep.level))
            .join(Incident, Incident.id == EscalationStep.incident_id)
            .where(in_window)
            .group_by(EscalationStep.incident_id)
        ).all()
        reviews = session.execute(
            sa.select(TimelineEvent.incident_id, TimelineEvent.kind)
            .join(Incident, Incident.id == TimelineEvent.incident_id)
            .where(in_window, TimelineEvent.kind.in_(["review.linked", "review.closed"]))
        ).all()
    highest_fired = {incident_id: int(level) for incident_id, level in fired}
    incidents = {
        row.id: ReportedIncident(
            severity=row.severity,
            playbook=row.playbook_id,
            created_at=row.created_at,
            acknowledged_at=row.acknowledged_at,
            resolved_at=row.resolved_at,
            highest_level=max(row.escalation_level, highest_fired.get(row.id, 0)),
        )
        for row in rows
    }
    for incident_id, state, count in states:
        incidents[incident_id].remediations[state] += int(count)
    for incident_id, kind in reviews:
        closed = kind == "review.closed" or incidents[incident_id].review == "closed"
        incidents[incident_id].review = "closed" if closed else "open"
    return list(incidents.values())


def build_report(
    incidents: Sequence[ReportedIncident], since: datetime, until: datetime
) -> dict[str, Any]:
    """The report in its JSON shape (see the module docstring)."""
    playbooks = sorted({incident.playbook for incident in incidents})
    return {
        "schema": REPORT_SCHEMA,
        "since": _iso(since),
        "until": _iso(until),
        "window_seconds": round((until - since).total_seconds()),
        "totals": figures(incidents),
        "by_playbook": {
            playbook: figures(i for i in incidents if i.playbook == playbook)
            for playbook in playbooks
        },
        "by_severity": {
            severity: figures(i for i in incidents if i.severity == severity)
            for severity in SEVERITIES
        },
    }


def figures(incidents: Iterable[ReportedIncident]) -> dict[str, Any]:
    chosen = list(incidents)
    to_acknowledge = [
        (i.acknowledged_at - i.created_at).total_seconds()
        for i in chosen
        if i.acknowledged_at is not None
    ]
    to_resolve = [
        (i.resolved_at - i.created_at).total_seconds() for i in chosen if i.resolved_at is not None
    ]
    states: Counter[str] = Counter()
    for incident in chosen:
        states.update(incident.remediations)
    return {
        "incidents": len(chosen),
        "time_to_acknowledge": duration_summary(to_acknowledge),
        "time_to_resolve": duration_summary(to_resolve),
        "remediations": {
            "requested": states.total(),
            "approved": sum(states[state] for state in _APPROVED_OR_LATER),
            "denied": states["denied"],
            "expired": states["expired"],
            "failed": states["failed"],
        },
        "highest_escalation_level": max((i.highest_level for i in chosen), default=None),
        # Post-incident review issues filed for these incidents, by their last known state.
        "reviews": {
            "open": sum(1 for i in chosen if i.review == "open"),
            "closed": sum(1 for i in chosen if i.review == "closed"),
        },
    }


def duration_summary(seconds: Sequence[float]) -> dict[str, Any]:
    """Count, mean and nearest-rank p90 of some durations; null figures when there are none."""
    if not seconds:
        return {"count": 0, "mean_seconds": None, "p90_seconds": None}
    ordered = sorted(seconds)
    p90 = ordered[math.ceil(0.9 * len(ordered)) - 1]
    return {
        "count": len(ordered),
        "mean_seconds": round(sum(ordered) / len(ordered), 3),
        "p90_seconds": round(p90, 3),
    }


# -- text ---------------------------------------------------------------------

_COLUMNS = (
    "INCIDENTS",
    "ACK MEAN",
    "ACK P90",
    "RESOLVE MEAN",
    "RESOLVE P90",
    "REQUESTED",
    "APPROVED",
    "DENIED",
    "EXPIRED",
    "FAILED",
    "MAX LEVEL",
    "REVIEWS OPEN/CLOSED",
)


def render_text(report: Mapping[str, Any], window: timedelta) -> str:
    since = datetime.fromisoformat(report["since"]).strftime("%Y-%m-%d %H:%M")
    count = report["totals"]["incidents"]
    if not count:
        return f"No incidents created since {since}Z (last {window_label(window)})."
    heading = f"Incidents created since {since}Z (last {window_label(window)}): {count}"
    by_playbook = [*report["by_playbook"].items(), (_TOTAL_ROW, report["totals"])]
    by_severity = [*report["by_severity"].items(), (_TOTAL_ROW, report["totals"])]
    return "\n".join(
        [
            heading,
            "",
            "By playbook",
            *_table("PLAYBOOK", by_playbook),
            "",
            "By severity",
            *_table("SEVERITY", by_severity),
            "",
            "ACK: created to acknowledged; RESOLVE: created to resolved; "
            "APPROVED counts requests approved, run or not.",
            "Reviews: post-incident review issues filed, open/closed.",
        ]
    )


def _table(first_column: str, rows: Sequence[tuple[str, Mapping[str, Any]]]) -> list[str]:
    """Left-aligned names, right-aligned figures, two spaces between columns."""
    header = [first_column, *_COLUMNS]
    cells = [[_printable(name), *_figure_cells(figures)] for name, figures in rows]
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        first = row[0].ljust(widths[0])
        rest = (cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True))
        return "  ".join([first, *rest]).rstrip()

    return [line(header), *(line(row) for row in cells)]


def _figure_cells(figures: Mapping[str, Any]) -> list[str]:
    acknowledge, resolve = figures["time_to_acknowledge"], figures["time_to_resolve"]
    remediations, reviews = figures["remediations"], figures["reviews"]
    return [
        str(figures["incidents"]),
        human_duration(acknowledge["mean_seconds"]),
        human_duration(acknowledge["p90_seconds"]),
        human_duration(resolve["mean_seconds"]),
        human_duration(resolve["p90_seconds"]),
        *(str(remediations[outcome]) for outcome in REMEDIATION_OUTCOMES),
        _or_dash(figures["highest_escalation_level"]),
        f"{_or_dash(reviews['open'])}/{_or_dash(reviews['closed'])}",
    ]


def human_duration(seconds: float | None) -> str:
    """`45s`, `12m 05s`, `2h 10m`, `3d 04h` (two units, rounded to the second); `-` for None."""
    if seconds is None:
        return "-"
    total = round(seconds)
    sign, total = ("-", -total) if total < 0 else ("", total)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours:02d}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"


def window_label(window: timedelta) -> str:
    """The window as `--since` takes it: `30d`, `12h`, `90m`."""
    seconds = round(window.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds // 60}m"


def _or_dash(value: int | None) -> str:
    return "-" if value is None else str(value)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _printable(text: str) -> str:
    """Playbook ids on an operator's terminal: no escape sequences, no forged lines."""
    return "".join(c if c.isprintable() else "?" for c in text)
