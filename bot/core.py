"""The synchronous core, composed once: store, timeline with its outputs, use cases.

`serve` wraps it in the ASGI app and its workers (bot/app.py); one-shot
commands (`nexus-bot update`) use it directly, so a status update posted from
a script records the same timeline event and enqueues the same Slack, email
and PagerDuty deliveries as one posted in Slack. A running bot delivers them.

Outputs are registered here, one line each: an output is a module with an
`on_event(session, event)` that enqueues deliveries, plus (unless it is Slack,
whose thread ordering has its own worker) a `Sender` for the delivery worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.actions.base import Executor
from bot.domain.playbooks import LoadedPlaybooks
from bot.drills.service import DrillService
from bot.incidents.escalation import EscalationService
from bot.incidents.service import IncidentService
from bot.notify.email import EmailSender
from bot.notify.email_output import EmailDelivery, EmailOutput
from bot.notify.github_review_output import (
    OUTPUT_NAME,
    GitHubReviewDelivery,
    GitHubReviewOutput,
    github_configured,
)
from bot.notify.pagerduty_output import pagerduty_output_from_settings
from bot.notify.statuspage_output import statuspage_output_from_settings
from bot.remediation.flow import RemediationFlow
from bot.reviews.service import ReviewService
from bot.settings import Settings
from bot.slack.thread_output import SlackThreadOutput
from bot.store.models import Incident, utcnow
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.metrics_output import IncidentDurationMetrics
from bot.timeline.queue import Sender
from bot.timeline.recorder import Output, Timeline, read_timeline
from bot.web.components import StatusComponents
from bot.web.snapshot import StatusPageOutput


@dataclass
class Core:
    settings: Settings
    repo: Repository
    timeline: Timeline
    ladder: EscalationService
    incidents: IncidentService
    flow: RemediationFlow
    components: StatusComponents
    reviews: ReviewService
    drills: DrillService
    # Senders of the outputs delivered by bot.timeline.delivery (not Slack's).
    senders: dict[str, Sender] = field(default_factory=dict)

    @cached_property
    def _slack_thread(self) -> SlackThreadOutput:
        """The registered Slack output, or one for rendering only (no incident channel
        configured, yet rows to deliver, e.g. a drill channel's): looked up once."""
        return next(
            (o for o in self.timeline.outputs if isinstance(o, SlackThreadOutput)), None
        ) or SlackThreadOutput(self.settings, self.repo, self.incidents.playbooks)

    def render_root(
        self, conn: sa.Connection, incident_id: int
    ) -> tuple[str, list[dict[str, Any]]] | None:
        """An incident's Slack root as it is now, for the Slack delivery worker."""
        return self._slack_thread.render_root(conn, incident_id)

    def on_delivery_report(
        self, session: Session, incident_id: int | None, output: str, report: Mapping[str, Any]
    ) -> None:
        """What a delivery learnt, recorded with the row's fate (the settling transaction)."""
        if incident_id is None:
            return
        kind = report.get("kind")
        if kind == "review.linked":
            linked = {"url": report.get("url"), "number": report.get("number")}
            self._once(session, incident_id, Kind.REVIEW_LINKED, **linked)
        elif kind == "review.state":
            self._review_state(session, incident_id, report)
        else:
            self.report_delivery_problem(session, incident_id, output, report)

    def _review_state(self, session: Session, incident_id: int, report: Mapping[str, Any]) -> None:
        facts = {"url": report.get("url"), "number": report.get("number")}
        if report.get("state") == "closed":
            self._once(session, incident_id, Kind.REVIEW_CLOSED, **facts)
            return
        incident = session.get(Incident, incident_id)
        if incident is None or incident.resolved_at is None:
            return
        open_days = max(0, (utcnow() - incident.resolved_at).days)
        holders = list((incident.roles or {}).get("commander") or [])
        self._once(
            session,
            incident_id,
            Kind.REVIEW_REMINDER,
            holders=holders,
            open_days=open_days,
            **facts,
        )

    def _once(self, session: Session, incident_id: int, kind: Kind, **facts: Any) -> None:
        """Record `kind` unless the incident has it already (a redelivered report)."""
        if any(e.kind == kind for e in read_timeline(session, incident_id)):
            return
        self.timeline.record(session, incident_id, kind, "nexus-bot", **facts)

    def report_delivery_problem(
        self, session: Session, incident_id: int | None, output: str, report: Mapping[str, Any]
    ) -> None:
        """A refused email (and the like) becomes a timeline event with the row's fate.

        Each refused address is reported once per incident: the second update
        to a dead mailbox must not add a second warning to the thread.
        """
        if incident_id is None:
            return
        facts = {k: v for k, v in report.items() if k != "output"}
        recipients = dict(facts.get("recipients") or {})
        if recipients:
            for earlier in read_timeline(session, incident_id):
                if earlier.kind == Kind.DELIVERY_PROBLEM and earlier.fact("output") == output:
                    for address in earlier.fact("recipients", {}) or {}:
                        recipients.pop(address, None)
            if not recipients:
                return
            facts["recipients"] = recipients
        self.timeline.record(
            session, incident_id, Kind.DELIVERY_PROBLEM, "nexus-bot", output=output, **facts
        )


def build_outputs(
    settings: Settings, repo: Repository, playbooks: LoadedPlaybooks
) -> tuple[list[Output], dict[str, Sender]]:
    """Every output this configuration can serve, and the senders that deliver them."""
    outputs: list[Output] = []
    senders: dict[str, Sender] = {}
    # The public status page and the incident duration metrics need no credentials.
    outputs.append(StatusPageOutput(settings))
    outputs.append(IncidentDurationMetrics())
    if settings.nexus_incident_channel:
        outputs.append(
            SlackThreadOutput(settings, repo, playbooks, reviews_filed_in=reviews_repo(settings))
        )
    if settings.smtp_url is not None:
        outputs.append(EmailOutput(settings))
        mailer = EmailSender(settings.smtp_url.get_secret_value(), settings.smtp_from)
        senders[EmailOutput.name] = EmailDelivery(mailer)
    pagerduty, pagerduty_sender = pagerduty_output_from_settings(settings)
    outputs.append(pagerduty)
    senders[pagerduty.name] = pagerduty_sender
    if reviews_repo(settings) is not None:
        outputs.append(GitHubReviewOutput(settings, playbooks, settings.review))
        senders[OUTPUT_NAME] = GitHubReviewDelivery.from_settings(settings)
    statuspage, statuspage_sender = statuspage_output_from_settings(settings)
    if statuspage_sender is not None:
        outputs.append(statuspage)
        senders[statuspage.name] = statuspage_sender
    return outputs, senders


def build_core(
    settings: Settings,
    engine: sa.Engine,
    playbooks: LoadedPlaybooks,
    executors: Mapping[str, Executor] | None = None,
    rehearsals: Mapping[str, Executor] | None = None,
) -> Core:
    repo = Repository(engine)
    outputs, senders = build_outputs(settings, repo, playbooks)
    timeline = Timeline(outputs)
    ladder = EscalationService(settings, repo, timeline)
    incidents = IncidentService(settings, repo, playbooks, timeline, ladder)
    flow = RemediationFlow(settings, repo, playbooks, timeline, executors or {}, rehearsals)
    components = StatusComponents(settings, repo)
    reviews = ReviewService(repo, timeline, reviews_repo(settings))
    drills = DrillService(settings, repo, playbooks, timeline, incidents)
    return Core(
        settings, repo, timeline, ladder, incidents, flow, components, reviews, drills, senders
    )


def reviews_repo(settings: Settings) -> str | None:
    """The GitHub repository post-incident reviews are filed in, when they can be."""
    return settings.review.repo if settings.review.repo and github_configured(settings) else None
