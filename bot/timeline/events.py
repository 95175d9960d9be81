"""Timeline event kinds and the facts each one carries.

An event records what happened, never how to say it: outputs (Slack, email,
PagerDuty, next the status page and GitHub) render events for their own
audience. Facts are JSON-serialisable and keyed as listed per kind below;
`public` events may reach customers (status page, stakeholder email), all
others stay internal.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    # facts: title, severity, source, playbook_id, playbook_title, service, routes,
    #        match, severity_reason, declared_by (or None)                      [public]
    OPENED = "opened"
    # facts: new (alerts first seen), firing, resolved (counts after the batch)
    ALERTS_ADDED = "alerts.added"
    # facts: note (optional), via ("slack", "pagerduty", "cli")
    ACKNOWLEDGED = "acknowledged"
    # facts: via ("pagerduty"), agent
    UNACKNOWLEDGED = "unacknowledged"
    # facts: reason ("manual", "alerts", "update"), via, agent (PagerDuty)        [public]
    RESOLVED = "resolved"
    # facts: via ("alerts", "pagerduty", "slack"), firing (count)                 [public]
    REOPENED = "reopened"
    # facts: level, role, reason, slack (IDs), email (addresses), pagerduty_level,
    #        notify_pagerduty (bool)
    LEVEL_REACHED = "level.reached"
    # facts: event_type (PagerDuty's), agent, assignees, priority, content, responder
    PAGERDUTY_NOTE = "pagerduty.note"
    # facts: request_id, title, action, summary, details, expires_at (ISO), approvers,
    #        requested_by, step_id
    REMEDIATION_REQUESTED = "remediation.requested"
    # facts: title, reason, request_id (or None: refused before a request existed),
    #        stage, step_id
    REMEDIATION_REFUSED = "remediation.refused"
    # facts: request_id, title, requested_by
    REMEDIATION_APPROVED = "remediation.approved"
    # facts: request_id, title, reason
    REMEDIATION_DENIED = "remediation.denied"
    # facts: request_id, title
    REMEDIATION_EXPIRED = "remediation.expired"
    # facts: request_id, title, requested_by, approved_by, summary, details, links,
    #        undo_title (or None), undoes (the request id it undid, or None);
    #        in a drill also rehearsal (True), checks (what the rehearsal verified)
    REMEDIATION_DONE = "remediation.done"
    # facts: request_id, title, requested_by, approved_by, outcome ("failed"/"aborted"),
    #        message
    REMEDIATION_FAILED = "remediation.failed"
    # facts: role, holders (IDs), previous (IDs)
    ROLE_ASSIGNED = "role.assigned"
    # facts: status (investigating/identified/monitoring/resolved), text, via   [public]
    UPDATE_POSTED = "update.posted"
    # facts: text, via
    NOTE_ADDED = "note.added"
    # facts: holders (comms IDs), since (ISO of the last public update or the start),
    #        interval_seconds
    UPDATE_REMINDER = "update.reminder"
    # facts: output, problem ("refused"), recipients ({address: reason}), what
    DELIVERY_PROBLEM = "delivery.problem"
    # facts: requested_by (or "resolve"), published (bool: a GitHub issue is on its way)
    REVIEW_REQUESTED = "review.requested"
    # facts: url, number
    REVIEW_LINKED = "review.linked"
    # facts: url, number, holders (Incident Commander IDs), open_days
    REVIEW_REMINDER = "review.reminder"
    # facts: url, number
    REVIEW_CLOSED = "review.closed"
    # A recovery drill's scorecard (bot.drills.scorecard.Scorecard.facts()): run_id,
    # scenario, scenario_title, playbook_id, matched_playbook, passed (bool), ended
    # ("completed"/"timed_out"), started_at, finished_at (ISO),
    # time_to_acknowledge_seconds, acknowledged_by, time_to_first_request_seconds,
    # steps [{step_id, title, action, outcome, would_work, reason, requested_by,
    # approved_by, time_to_request_seconds, time_to_approve_seconds, checks}],
    # participants, findings
    DRILL_FINISHED = "drill.finished"


# Kinds that may be shown outside the company (status page, stakeholder email).
PUBLIC_KINDS = frozenset({Kind.OPENED, Kind.RESOLVED, Kind.REOPENED, Kind.UPDATE_POSTED})


@dataclass(frozen=True)
class Event:
    incident_id: int
    kind: str
    actor: str
    at: datetime
    facts: Mapping[str, Any] = field(default_factory=dict)
    public: bool = False
    id: int = 0

    def fact(self, name: str, default: Any = None) -> Any:
        return self.facts.get(name, default)
