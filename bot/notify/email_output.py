"""The email output: timeline events in, queued emails out.

`EmailOutput` is registered with the `Timeline`: for a public status update
(``update.posted``) it enqueues one email to the communication plan's
addresses (stakeholders, commander, tech lead, comms); for an escalation level
(``level.reached``) one email to the level's addresses when the incident's
severity routes include email. A recovery drill's incident gets no email at
all. It renders the message when the event happens, so the email says what
was true then, and enqueues it in the caller's transaction. `EmailDelivery` is
the queue's `Sender`: it composes the message from the row's payload and hands
it to the SMTP server.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from sqlalchemy.orm import Session

from bot.domain.alerts import AlertSource, Severity
from bot.domain.routing import Route, routes_for
from bot.notify.email import EmailSender, NotifyError, check_address
from bot.notify.email_render import (
    EmailContent,
    IncidentView,
    compose,
    email_payload,
    event_message_id,
    mail_domain,
    render_level,
    render_update,
    slack_thread_url,
    thread_id,
)
from bot.settings import Settings
from bot.store.models import Incident
from bot.timeline.events import Event, Kind
from bot.timeline.queue import Failed, Result, Retry, Sent, enqueue

log = structlog.get_logger("bot.notify.email")

OUTPUT_NAME = "email"
SEND_METHOD = "email.send"
# Who reads public status updates by email: the playbook's "External: Email to
# stakeholders", plus the incident roles so they see what stakeholders were told.
UPDATE_ROLES = ("stakeholders", "commander", "tech-lead", "comms")


class EmailOutput:
    """Renders ``update.posted`` and ``level.reached`` as emails and enqueues them."""

    name = OUTPUT_NAME

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # The pacing key: one SMTP server, one token bucket. None: email is off.
        self.smtp_host = (
            urlsplit(settings.smtp_url.get_secret_value()).hostname
            if settings.smtp_url is not None
            else None
        )
        self.domain = mail_domain(settings.smtp_from)

    def on_event(self, session: Session, event: Event) -> None:
        if self.smtp_host is None or event.kind not in (Kind.UPDATE_POSTED, Kind.LEVEL_REACHED):
            return
        incident = session.get(Incident, event.incident_id)
        # A drill changes nothing real: no stakeholder update, no escalation email.
        if incident is None or incident.drill_run_id is not None:
            return
        view = self.incident_view(incident)
        if event.kind == Kind.UPDATE_POSTED:
            recipients = self.update_recipients()
            content = render_update(
                view, str(event.fact("status", "")), str(event.fact("text", ""))
            )
        else:
            if Route.EMAIL not in routes_for(
                Severity(incident.severity), AlertSource(incident.source)
            ):
                return
            recipients = usable_addresses(event.fact("email") or [])
            level = int(event.fact("level", incident.escalation_level))
            role = str(event.fact("role") or self._level_role(level))
            content = render_level(view, level, role, str(event.fact("reason", "")))
        if recipients:
            self._enqueue(session, incident, event, recipients, content)

    def update_recipients(self) -> list[str]:
        """The configured addresses of `UPDATE_ROLES`, each once, sorted."""
        roles = self.settings.roles
        return usable_addresses(a for role in UPDATE_ROLES for a in roles.get(role).email)

    def incident_view(self, incident: Incident) -> IncidentView:
        slack_url = (
            slack_thread_url(incident.slack_channel, incident.slack_root_ts)
            if incident.slack_channel and incident.slack_root_ts
            else None
        )
        return IncidentView(
            number=incident.id,
            title=incident.title,
            severity=incident.severity,
            status=incident.status,
            public_status=incident.public_status,
            level=incident.escalation_level,
            level_role=self._level_role(incident.escalation_level),
            playbook_id=incident.playbook_id,
            pagerduty_url=incident.pagerduty_url,
            slack_url=slack_url,
            drill=incident.drill_run_id is not None,
        )

    def _level_role(self, level: int) -> str:
        levels = self.settings.escalation.levels
        return levels[level - 1].role if 1 <= level <= len(levels) else f"level {level}"

    def _enqueue(
        self,
        session: Session,
        incident: Incident,
        event: Event,
        recipients: list[str],
        content: EmailContent,
    ) -> None:
        assert self.smtp_host is not None  # on_event returned early otherwise
        payload = email_payload(
            sender=self.settings.smtp_from,
            to=recipients,
            content=content,
            message_id=event_message_id(incident.id, event.id, self.domain),
            thread=thread_id(incident.id, incident.created_at, self.domain),
            date=event.at,
        )
        enqueue(
            session,
            output=self.name,
            key=self.smtp_host,
            method=SEND_METHOD,
            payload=payload,
            incident_id=incident.id,
        )


def usable_addresses(addresses: Iterable[str]) -> list[str]:
    """Each plain address once (case-insensitively), sorted; others are dropped and logged.

    Config validation already refuses most bad addresses; one that slips
    through must not cost the other recipients their email.
    """
    kept: dict[str, str] = {}
    for address in addresses:
        try:
            clean = check_address(str(address))
        except ValueError:
            log.warning("email address skipped", address=str(address)[:100])
            continue
        kept.setdefault(clean.casefold(), clean)
    return sorted(kept.values(), key=str.casefold)


class EmailDelivery:
    """The delivery queue's `Sender` for ``email.send`` rows, through one SMTP server."""

    rate = 2.0  # messages per second to one SMTP server; relays throttle bursts
    burst = 5

    def __init__(self, sender: EmailSender) -> None:
        self.sender = sender

    def send(self, method: str, payload: Mapping[str, Any]) -> Result:
        if method != SEND_METHOD:
            return Failed(f"email: unknown method {method!r}")
        try:
            msg = compose(payload)
        except (KeyError, TypeError, ValueError) as exc:
            return Failed(f"email not sent: malformed payload: {exc}")
        subject = str(msg["Subject"])
        try:
            refused = self.sender.send_message(msg, list(payload["to"]))
        except NotifyError as err:
            if err.retryable:
                return Retry(str(err))
            if err.refused:
                # Bounced at SMTP level: report it once, never retry it forever.
                return Failed(str(err), report=refusal_report(err.refused, subject))
            # Refused login, untrusted certificate, no STARTTLS: our configuration,
            # not this message, is wrong; it goes out once the configuration is fixed.
            return Retry(str(err))
        if refused:
            # The others have it: a retry would send it to them twice.
            return Sent(report=refusal_report(self.sender.refusal_replies(refused), subject))
        return Sent()


def refusal_report(recipients: Mapping[str, str], subject: str) -> dict[str, Any]:
    """Facts for a ``delivery.problem`` timeline event."""
    return {
        "output": OUTPUT_NAME,
        "problem": "refused",
        "recipients": dict(recipients),
        "what": subject,
    }
