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
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.actions.base import Executor
from bot.domain.playbooks import LoadedPlaybooks
from bot.incidents.escalation import EscalationService
from bot.incidents.service import IncidentService
from bot.notify.email import EmailSender
from bot.notify.email_output import EmailDelivery, EmailOutput
from bot.notify.pagerduty_output import pagerduty_output_from_settings
from bot.notify.statuspage_output import statuspage_output_from_settings
from bot.remediation.flow import RemediationFlow
from bot.settings import Settings
from bot.slack.thread_output import SlackThreadOutput
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
    # Senders of the outputs delivered by bot.timeline.delivery (not Slack's).
    senders: dict[str, Sender] = field(default_factory=dict)

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
        outputs.append(SlackThreadOutput(settings, repo, playbooks))
    if settings.smtp_url is not None:
        outputs.append(EmailOutput(settings))
        mailer = EmailSender(settings.smtp_url.get_secret_value(), settings.smtp_from)
        senders[EmailOutput.name] = EmailDelivery(mailer)
    pagerduty, pagerduty_sender = pagerduty_output_from_settings(settings)
    outputs.append(pagerduty)
    senders[pagerduty.name] = pagerduty_sender
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
) -> Core:
    repo = Repository(engine)
    outputs, senders = build_outputs(settings, repo, playbooks)
    timeline = Timeline(outputs)
    ladder = EscalationService(settings, repo, timeline)
    incidents = IncidentService(settings, repo, playbooks, timeline, ladder)
    flow = RemediationFlow(settings, repo, playbooks, timeline, executors or {})
    components = StatusComponents(settings, repo)
    return Core(settings, repo, timeline, ladder, incidents, flow, components, senders)
