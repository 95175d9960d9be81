"""Incidents: from alerts and clicks to stored state and Slack messages.

Every state change and the Slack messages it causes commit in one
transaction (the outbox is a table), so a crash loses neither. Handlers are
synchronous; the async web layer calls them in a worker thread.

One thread per incident: the first caller to claim the incident's Slack
thread (a compare-and-set on the incident row) enqueues the root message and
the playbook; everyone after it only edits the root and replies.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import structlog
from sqlalchemy.orm import Session

from bot.domain.alerts import Alert, AlertSource, AlertStatus
from bot.domain.playbooks import LoadedPlaybooks, PlaybookMatch, plan_playbook
from bot.domain.routing import classify
from bot.domain.triage import IncidentPlan, plan_incidents, plan_with_playbook
from bot.incidents.views import incident_view, root_message
from bot.settings import Settings
from bot.slack.blocks import escape, playbook_blocks, to_json
from bot.slack.outbox import enqueue_root_post, enqueue_root_update, enqueue_thread_reply
from bot.store.models import Incident, utcnow
from bot.store.repository import AlertRecord, Repository

log = structlog.get_logger("bot.incidents")

# Which statuses each transition may start from (compare-and-set guards).
TRANSITIONS: dict[str, set[str]] = {
    "acknowledged": {"triggered"},
    "resolved": {"triggered", "acknowledged"},
    "triggered": {"acknowledged", "resolved"},
}


class Ladder(Protocol):
    """The escalation ladder (bot.incidents.escalation), seen from incidents."""

    def start(self, number: int) -> None: ...

    def resume(self, number: int) -> None: ...

    def escalate_now(self, number: int, actor: str, to_level: int | None = None) -> str: ...

    def mirror_pagerduty(self, number: int) -> None: ...


class Notices(Protocol):
    """Routes beyond Slack (bot.incidents.routing), seen from incidents."""

    def opened(self, incident: Incident) -> None: ...

    def resolved(self, incident: Incident) -> None: ...


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
        wake_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.playbooks = playbooks
        self.wake_outbox = wake_outbox
        self.channel = settings.nexus_incident_channel
        self.ladder: Ladder | None = None  # set by the composition root
        self.notices: Notices | None = None  # set by the composition root

    # -- alerts ----------------------------------------------------------------

    def ingest_alerts(self, alerts: list[Alert], redelivered: bool = False) -> Outcome:
        """Apply a batch: incidents, alerts, threads, root edits, the ladder.

        `redelivered`: this batch may have been applied before by a process that
        died part-way (the inbox hands it out again). Its incidents then exist
        already, so "created" is false for them; the pages and ladder a new
        incident gets are started for any that never climbed a step.
        """
        outcome = Outcome()
        for plan in plan_incidents(alerts, self.playbooks.playbooks, self.settings):
            self._apply_plan(plan, outcome, redelivered=redelivered)
        self.wake_outbox()
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
        self._apply_plan(plan, outcome, actor=actor)
        self.wake_outbox()
        return outcome

    def _apply_plan(
        self,
        plan: IncidentPlan,
        outcome: Outcome,
        actor: str | None = None,
        redelivered: bool = False,
    ) -> None:
        lead = plan.alerts[0]
        from_pagerduty = lead.source is AlertSource.PAGERDUTY
        incident, created = self.repo.open_incident(
            key=plan.key,
            source=lead.source.value,
            title=plan.title,
            severity=plan.severity.value,
            playbook_id=plan.playbook.id,
            labels={**lead.annotations, **lead.labels},
            pagerduty_incident_id=lead.pagerduty_incident_id,
            pagerduty_url=lead.url if from_pagerduty else None,
        )
        outcome.incidents.append(incident.id)
        self.repo.record_alerts(incident.id, [self._record(a) for a in plan.alerts])
        all_resolved = False
        with self.repo.session() as s:
            if not self._open_thread(s, incident.id, plan, actor):
                all_resolved = self._follow_up(s, incident.id, from_pagerduty, lead.source.value)
        if all_resolved and self.notices is not None:
            self.notices.resolved(incident)
        if created or (redelivered and not self.repo.escalation_steps(incident.id)):
            if self.notices is not None:
                # Before the ladder's first step: once a step exists, a redelivery
                # takes the incident as announced (PagerDuty dedups a repeat anyway).
                self.notices.opened(incident)
            if self.ladder is not None:
                # After the thread exists, so level 1 is said in it. Idempotent:
                # a level fires once per incident (a unique step row).
                self.ladder.start(incident.id)

    def _follow_up(self, s: Session, number: int, from_pagerduty: bool, actor: str) -> bool:
        """More alerts for an incident that already has its thread; True if now all resolved."""
        firing = self.repo.alert_counts(number).get("firing", 0)
        resolved = False
        if not from_pagerduty and firing == 0:
            resolved = self._transition(
                s, number, "resolved", actor, ":white_check_mark: All alerts resolved."
            )
        self._refresh_root(s, number)
        return resolved

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

    def _open_thread(self, s: Session, number: int, plan: IncidentPlan, actor: str | None) -> bool:
        """Enqueue the root and the playbook, once per incident. False if already done."""
        if self.channel is None or not self.repo.claim_slack_thread(s, number, self.channel):
            return False
        incident = s.get(Incident, number)
        assert incident is not None
        view = incident_view(
            incident, self.playbooks, self.settings, self.repo.alert_summary(number)
        )
        text, blocks = root_message(view)
        enqueue_root_post(s, number, self.channel, text, blocks)
        steps = plan_playbook(plan.playbook, plan.alerts[0], self.settings.allowed_targets)
        intro = (
            f"Playbook `{plan.playbook.id}` ({escape(plan.match.explanation)}). "
            f"Severity *{plan.severity.value}*: {escape(plan.severity_reason)}. "
            f"Routes: {', '.join(r.value for r in plan.routes)}."
        )
        if actor:
            intro = f"Declared by <@{actor}>. {intro}"
        enqueue_thread_reply(s, number, self.channel, intro)
        enqueue_thread_reply(
            s,
            number,
            self.channel,
            f"Playbook: {plan.playbook.title}",
            to_json(playbook_blocks(plan.playbook, steps, number)),
        )
        return True

    # -- status changes --------------------------------------------------------

    def acknowledge(self, number: int, actor: str, note: str | None = None) -> Outcome:
        text = note or f":eyes: Acknowledged by {_who(actor)}."
        return self.change_status(number, "acknowledged", actor, text)

    def resolve(self, number: int, actor: str, note: str | None = None) -> Outcome:
        text = note or f":white_check_mark: Resolved by {_who(actor)}."
        return self.change_status(number, "resolved", actor, text)

    def change_status(self, number: int, status: str, actor: str, reply: str) -> Outcome:
        """Compare-and-set the status; on success edit the root and reply in the thread."""
        incident = self.repo.get_incident(number)
        if incident is None:
            return Outcome(message=f"There is no incident #{number}.")
        with self.repo.session() as s:
            changed = self._transition(s, number, status, actor, reply)
            if changed:
                self._refresh_root(s, number)
        self.wake_outbox()
        if changed and status == "triggered" and self.ladder is not None:
            self.ladder.resume(number)
        if changed and status == "resolved" and self.notices is not None:
            self.notices.resolved(incident)
        if not changed:
            current = self.repo.get_incident(number)
            state = current.status if current else "gone"
            return Outcome(incidents=[number], message=f"Incident #{number} is already {state}.")
        return Outcome(
            incidents=[number], changed=True, message=f"Incident #{number} is now {status}."
        )

    def escalate(self, number: int, actor: str, to_level: int | None = None) -> Outcome:
        """`/incident escalate`: one level up now, or to `to_level`."""
        if self.ladder is None:
            return Outcome(message="Escalation is not running in this process.")
        return Outcome(
            incidents=[number], message=self.ladder.escalate_now(number, actor, to_level)
        )

    def post_escalation(self, s: Session, number: int, text: str) -> None:
        """An escalation step's thread reply and root refresh, in the step's transaction."""
        self._reply(s, number, text)
        self._refresh_root(s, number)

    def note(self, number: int, text: str, refresh_root: bool = False) -> None:
        """A thread reply (and optionally a root refresh) without a status change."""
        with self.repo.session() as s:
            self._reply(s, number, text)
            if refresh_root:
                self._refresh_root(s, number)
        self.wake_outbox()

    def _transition(self, s: Session, number: int, status: str, actor: str, reply: str) -> bool:
        changed = self.repo.set_incident_status(
            number, status, actor, expected=TRANSITIONS[status], session=s
        )
        if changed:
            self._reply(s, number, reply)
        return changed

    # -- Slack helpers ---------------------------------------------------------

    def _refresh_root(self, s: Session, number: int) -> None:
        incident = s.get(Incident, number, populate_existing=True)
        if incident is None or incident.slack_channel is None:
            return
        summary = self.repo.alert_summary(number)
        text, blocks = root_message(incident_view(incident, self.playbooks, self.settings, summary))
        enqueue_root_update(s, number, incident.slack_channel, text, blocks)

    def _reply(self, s: Session, number: int, text: str) -> None:
        incident = s.get(Incident, number, populate_existing=True)
        if incident is not None and incident.slack_channel is not None:
            enqueue_thread_reply(s, number, incident.slack_channel, text)


def _who(actor: str) -> str:
    """Slack user IDs become mentions; anything else (PagerDuty names) is escaped text."""
    if actor[:1] in ("U", "W") and actor.isalnum():
        return f"<@{actor}>"
    return escape(actor)


__all__ = ["AlertStatus", "IncidentService", "Outcome"]
