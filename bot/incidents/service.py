"""Incident use cases: alerts in, status changes, roles, public updates.

Each use case is one transaction: the state change, its timeline events and
every delivery the outputs enqueue for them (Slack thread, email, PagerDuty)
commit together, so a crash loses none of them and a retry repeats none.
Handlers are synchronous; the async web layer calls them in a worker thread.
This package never renders text for an audience: it records what happened
(`bot.timeline`) and the outputs say it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy.orm import Session

from bot.communication import ASSIGNABLE_ROLES, PUBLIC_STATUSES
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import LoadedPlaybooks, PlaybookMatch
from bot.domain.routing import classify
from bot.domain.triage import IncidentPlan, plan_incidents, plan_with_playbook
from bot.incidents.escalation import EscalationService
from bot.settings import Settings
from bot.store import communication
from bot.store.models import Incident, utcnow
from bot.store.repository import AlertRecord, Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline

log = structlog.get_logger("bot.incidents")

# Which statuses each transition may start from (compare-and-set guards).
TRANSITIONS: dict[str, set[str]] = {
    "acknowledged": {"triggered"},
    "resolved": {"triggered", "acknowledged"},
    "triggered": {"acknowledged", "resolved"},
}


@dataclass
class Outcome:
    """What a handler did: for the command reply and the tests."""

    incidents: list[int] = field(default_factory=list)
    changed: bool = False
    message: str = ""


class IncidentService:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        playbooks: LoadedPlaybooks,
        timeline: Timeline,
        ladder: EscalationService,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.playbooks = playbooks
        self.timeline = timeline
        self.ladder = ladder

    # -- alerts ----------------------------------------------------------------

    def ingest_alerts(self, alerts: list[Alert], redelivered: bool = False) -> Outcome:
        """Apply a batch in one transaction: incidents, alerts, events, the ladder.

        `redelivered`: the inbox hands out again a batch whose process died; the
        batch committed entirely or not at all, so it is simply applied again
        (alerts are upserts; an incident that exists is not opened twice).
        """
        with self.repo.session() as s:
            return self.apply_alerts(s, alerts)

    def apply_alerts(self, s: Session, alerts: list[Alert]) -> Outcome:
        """`ingest_alerts` in the caller's transaction: the inbox worker applies
        several Alertmanager batches, and deletes their inbox rows, in one."""
        outcome = Outcome()
        for plan in plan_incidents(alerts, self.playbooks.playbooks, self.settings):
            self._apply_plan(s, plan, outcome)
        return outcome

    def declare(self, title: str, actor: str, playbook_id: str | None = None) -> Outcome:
        """`/incident declare`: open an incident and its thread exactly as an alert would."""
        alert = Alert(
            source=AlertSource.SLACK,
            fingerprint=uuid.uuid4().hex[:16],
            title=title,
            labels={"declared_by": actor},
            group_key=f"declared-{uuid.uuid4().hex[:12]}",
            starts_at=utcnow(),
        )
        if playbook_id is None:
            plan = plan_incidents([alert], self.playbooks.playbooks, self.settings)[0]
        else:
            playbook = self.playbooks.get(playbook_id)
            if playbook is None:
                known = ", ".join(p.id for p in self.playbooks.playbooks)
                return Outcome(message=f"Unknown playbook `{playbook_id}`. Known: {known}")
            match = PlaybookMatch(playbook, f"declared with --playbook {playbook_id}")
            plan = plan_with_playbook([alert], match, self.settings)
        outcome = Outcome()
        with self.repo.session() as s:
            self._apply_plan(s, plan, outcome, actor=actor)
        return outcome

    def open_drill(
        self, s: Session, plan: IncidentPlan, run_id: int, scenario: str, actor: str
    ) -> int:
        """A drill's synthetic alert, in the caller's transaction: its incident's number.

        The plan's key is the drill run's own, so a drill never joins a real
        incident's thread (nor a real alert a drill's).
        """
        outcome = Outcome()
        self._apply_plan(s, plan, outcome, actor=actor, drill=(run_id, scenario))
        return outcome.incidents[0]

    def _apply_plan(
        self,
        s: Session,
        plan: IncidentPlan,
        outcome: Outcome,
        actor: str | None = None,
        drill: tuple[int, str] | None = None,
    ) -> None:
        lead = plan.alerts[0]
        from_pagerduty = lead.source is AlertSource.PAGERDUTY
        incident, how = self.repo.open_or_reopen(
            s,
            key=plan.key,
            source=lead.source.value,
            title=plan.title,
            severity=plan.severity.value,
            playbook_id=plan.playbook.id,
            labels={**lead.annotations, **lead.labels},
            pagerduty_incident_id=lead.pagerduty_incident_id,
            pagerduty_url=lead.url if from_pagerduty else None,
            roles=self.settings.roles.defaults(),
            drill_run_id=drill[0] if drill else None,
        )
        outcome.incidents.append(incident.id)
        new = self.repo.record_alerts(
            incident.id, [self._record(a) for a in plan.alerts], session=s
        )
        counts = self.repo.alert_counts(incident.id, s)
        if how == "created":
            self.timeline.record(
                s,
                incident.id,
                Kind.OPENED,
                actor or lead.source.value,
                title=plan.title,
                severity=plan.severity.value,
                source=lead.source.value,
                playbook_id=plan.playbook.id,
                playbook_title=plan.playbook.title,
                service=plan.service,
                routes=[r.value for r in plan.routes],
                match=plan.match.explanation,
                severity_reason=plan.severity_reason,
                declared_by=actor if drill is None else None,
                firing=counts.get("firing", 0),
                **_drill_facts(drill),
            )
            self.ladder.start(s, incident)
            public = self.settings.status_page
            # A drill is never public: no automatic status page entry for it.
            if plan.severity.value == "critical" and public.auto_publish_critical and not drill:
                self._publish(
                    s,
                    incident.id,
                    "investigating",
                    public.auto_publish_text,
                    "nexus-bot",
                    via="auto",
                )
            return
        if how == "reopened":
            self.timeline.record(
                s,
                incident.id,
                Kind.REOPENED,
                lead.source.value,
                via="alerts",
                firing=counts.get("firing", 0),
            )
            self.ladder.restart(s, incident)
            return
        self.timeline.record(
            s,
            incident.id,
            Kind.ALERTS_ADDED,
            lead.source.value,
            new=new,
            firing=counts.get("firing", 0),
            resolved=counts.get("resolved", 0),
        )
        if not from_pagerduty and counts.get("firing", 0) == 0:
            self._transition(s, incident.id, "resolved", lead.source.value, reason="alerts")

    def _record(self, alert: Alert) -> AlertRecord:
        return AlertRecord(
            source=alert.source.value,
            fingerprint=alert.fingerprint,
            status=alert.status.value,
            severity=classify(alert, self.settings.severity_thresholds).severity.value,
            title=alert.title,
            labels=dict(alert.labels),
            annotations=dict(alert.annotations),
            starts_at=alert.starts_at or utcnow(),
            ends_at=alert.ends_at,
        )

    # -- status changes --------------------------------------------------------

    def acknowledge(self, number: int, actor: str, via: str = "slack") -> Outcome:
        return self.change_status(number, "acknowledged", actor, via=via)

    def resolve(self, number: int, actor: str, via: str = "slack") -> Outcome:
        return self.change_status(number, "resolved", actor, via=via)

    def change_status(
        self, number: int, status: str, actor: str, via: str = "slack", **facts: Any
    ) -> Outcome:
        """Compare-and-set the status and record it, in one transaction."""
        with self.repo.session() as s:
            incident = s.get(Incident, number)
            if incident is None:
                return Outcome(message=f"There is no incident #{number}.")
            changed = self._transition(s, number, status, actor, via=via, **facts)
            current = s.get(Incident, number, populate_existing=True)
        if not changed:
            state = current.status if current else "gone"
            return Outcome(incidents=[number], message=f"Incident #{number} is already {state}.")
        return Outcome(
            incidents=[number], changed=True, message=f"Incident #{number} is now {status}."
        )

    def resolve_in(self, s: Session, number: int, actor: str, **facts: Any) -> bool:
        """Resolve in the caller's transaction (a drill that finished); False if it was."""
        return self._transition(s, number, "resolved", actor, **facts)

    def _transition(self, s: Session, number: int, status: str, actor: str, **facts: Any) -> bool:
        before = s.get(Incident, number, populate_existing=True)
        previous = before.status if before is not None else None
        changed = self.repo.set_incident_status(
            number, status, actor, expected=TRANSITIONS[status], session=s
        )
        if not changed:
            return False
        if status == "acknowledged":
            self.timeline.record(s, number, Kind.ACKNOWLEDGED, actor, **facts)
        elif status == "resolved":
            facts.setdefault("reason", "manual")
            self.timeline.record(s, number, Kind.RESOLVED, actor, **facts)
        elif previous == "resolved":
            self.timeline.record(s, number, Kind.REOPENED, actor, **facts)
            incident = s.get(Incident, number, populate_existing=True)
            assert incident is not None
            self.ladder.restart(s, incident)
        else:
            self.timeline.record(s, number, Kind.UNACKNOWLEDGED, actor, **facts)
            self.ladder.resume(s, number)
        return True

    def escalate(self, number: int, actor: str, to_level: int | None = None) -> Outcome:
        """`/incident escalate`: one level up now, or to `to_level`."""
        return Outcome(
            incidents=[number], message=self.ladder.escalate_now(number, actor, to_level)
        )

    def pagerduty_note(self, number: int, event_type: str, facts: dict[str, Any]) -> Outcome:
        """A PagerDuty event that changes no status (escalated, reassigned, annotated...)."""
        with self.repo.session() as s:
            if s.get(Incident, number) is None:
                return Outcome(message=f"There is no incident #{number}.")
            if event_type == "incident.escalated":
                self.ladder.mirror_pagerduty(s, number)
            self.timeline.record(
                s, number, Kind.PAGERDUTY_NOTE, "pagerduty", event_type=event_type, **facts
            )
        return Outcome(incidents=[number], changed=True)

    # -- communication plan ------------------------------------------------------

    def assign_role(self, number: int, role: str, holders: list[str], actor: str) -> Outcome:
        if role not in ASSIGNABLE_ROLES:
            return Outcome(message=f"Unknown role `{role}`: one of {', '.join(ASSIGNABLE_ROLES)}.")
        with self.repo.session() as s:
            if s.get(Incident, number) is None:
                return Outcome(message=f"There is no incident #{number}.")
            previous = communication.assign_role(s, number, role, holders, utcnow())
            if previous is None:
                return Outcome(incidents=[number], message="Nothing changed.")
            self.timeline.record(
                s, number, Kind.ROLE_ASSIGNED, actor, role=role, holders=holders, previous=previous
            )
        return Outcome(incidents=[number], changed=True, message=f"Role {role} reassigned.")

    def post_update(
        self, number: int, status: str, text: str, actor: str, via: str = "slack"
    ) -> Outcome:
        """A public status update (thread, stakeholder email, status page); `resolved` resolves."""
        if status not in PUBLIC_STATUSES:
            return Outcome(
                message=f"Unknown status `{status}`: one of {', '.join(PUBLIC_STATUSES)}."
            )
        text = text.strip()
        if not text:
            return Outcome(message="An update needs a text.")
        with self.repo.session() as s:
            incident = s.get(Incident, number)
            if incident is None:
                return Outcome(message=f"There is no incident #{number}.")
            self._publish(s, number, status, text, actor, via)
            if status == "resolved":
                self._transition(s, number, "resolved", actor, via=via, reason="update")
        return Outcome(
            incidents=[number],
            changed=True,
            message=f"Incident #{number}: update posted ({status}).",
        )

    def _publish(
        self, s: Session, number: int, status: str, text: str, actor: str, via: str
    ) -> None:
        now = utcnow()
        communication.record_public_update(s, number, status, now)
        self.timeline.record(
            s, number, Kind.UPDATE_POSTED, actor, at=now, status=status, text=text, via=via
        )

    def add_note(self, number: int, text: str, actor: str, via: str = "slack") -> Outcome:
        """An internal note: on the timeline and in the thread, never public."""
        text = text.strip()
        if not text:
            return Outcome(message="A note needs a text.")
        with self.repo.session() as s:
            if s.get(Incident, number) is None:
                return Outcome(message=f"There is no incident #{number}.")
            self.timeline.record(s, number, Kind.NOTE_ADDED, actor, text=text, via=via)
        return Outcome(incidents=[number], changed=True, message="Note added.")

    def remind_updates(self) -> int:
        """Remind Communications of critical incidents without a recent public update."""
        every = self.settings.updates.remind_after
        now = utcnow()
        reminded = 0
        with self.repo.session() as s:
            due = communication.due_update_reminders(s, now, every)
        for incident in due:
            with self.repo.session() as s:
                if not communication.claim_update_reminder(
                    s, incident.id, incident.update_reminded_at, now
                ):
                    continue  # another replica reminded it
                since = incident.last_public_update_at or incident.created_at
                self.timeline.record(
                    s,
                    incident.id,
                    Kind.UPDATE_REMINDER,
                    "scheduler",
                    holders=list((incident.roles or {}).get("comms") or []),
                    since=since.isoformat(),
                    interval_seconds=every.total_seconds(),
                )
                reminded += 1
        return reminded


def _drill_facts(drill: tuple[int, str] | None) -> dict[str, Any]:
    return {"drill_run_id": drill[0], "drill_scenario": drill[1]} if drill else {}


__all__ = ["IncidentService", "Outcome"]
