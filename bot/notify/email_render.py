"""Email content for timeline events: pure functions, no I/O.

Two messages exist: a public status update for the stakeholders
(``update.posted``) and an escalation level for the level's people
(``level.reached``). Each is multipart/alternative, text/plain then text/html;
everything that came from a person or an alert (titles, update text, reasons)
is HTML-escaped in the HTML part and can never break a header line.

Threading: every email of one incident names the same thread id in
``In-Reply-To`` and ``References`` (a message that never exists; mail clients
group by it), and carries a Message-ID derived from its timeline event, so a
retried delivery is recognisably the same message.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote

from bot.notify.email import check_address

_DOMAIN_JUNK = re.compile(r"[^A-Za-z0-9.-]")


@dataclass(frozen=True)
class IncidentView:
    """What an email says about its incident, read from the incident row and settings."""

    number: int
    title: str
    severity: str
    status: str  # the incident's own status: triggered, acknowledged, resolved
    public_status: str | None  # the last public update's status, if any
    level: int
    level_role: str
    playbook_id: str
    pagerduty_url: str | None = None
    slack_url: str | None = None
    # A recovery drill's incident: the output sends it nothing, but should a
    # message ever be rendered for one, its subject must say DRILL.
    drill: bool = False


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Body:
    heading: str
    facts: Sequence[tuple[str, str]]
    message: str | None  # the update text, shown as written
    closing: Sequence[str]  # instructions, one line each
    slack_url: str | None  # the incident's thread; else a line says where to follow it
    number: int


# -- threading ---------------------------------------------------------------


def mail_domain(address: str) -> str:
    """The domain of `address` (SMTP_FROM), fit for a Message-ID's right-hand side."""
    _, at, host = address.rpartition("@")
    domain = _DOMAIN_JUNK.sub("", host) if at else ""
    return domain or "localhost"


def thread_id(incident_number: int, created_at: datetime, domain: str) -> str:
    """The id every email of one incident refers to; the start time tells reused numbers apart
    (a database restored or rebuilt numbers incidents again from 1)."""
    started = _utc(created_at).strftime("%Y%m%d%H%M%S")
    return f"<nexus-incident-{incident_number}.{started}@{domain}>"


def event_message_id(incident_number: int, event_id: int, domain: str) -> str:
    return f"<nexus-incident-{incident_number}.event-{event_id}@{domain}>"


def slack_thread_url(channel: str, ts: str) -> str:
    """Slack's permalink form: the thread's ts without its dot."""
    path = f"{quote(channel, safe='')}/p{quote(ts.replace('.', ''), safe='')}"
    return f"https://slack.com/archives/{path}"


# -- content -----------------------------------------------------------------


def render_update(incident: IncidentView, status: str, text: str) -> EmailContent:
    """A public status update (``update.posted``) for the stakeholders and the incident roles."""
    shown = _status_word(status)
    subject = _subject(incident, f"#{incident.number} {incident.title} — {shown}")
    facts = [
        ("Public status", shown),
        ("Severity", incident.severity),
        ("Incident status", incident.status),
        ("Escalation", f"level {incident.level} — {incident.level_role}"),
    ]
    body = _Body(
        heading=f"Incident #{incident.number}: {incident.title}",
        facts=facts,
        message=text,
        closing=[],
        slack_url=incident.slack_url,
        number=incident.number,
    )
    return _content(subject, body)


def render_level(incident: IncidentView, level: int, role: str, reason: str) -> EmailContent:
    """An escalation level (``level.reached``) for the level's addresses."""
    subject = _subject(incident, f"Level {level} — {role}: #{incident.number} {incident.title}")
    facts = [
        ("Severity", incident.severity),
        ("Status", incident.status),
        ("Escalation", f"level {level} — {role} ({reason})."),
        ("Playbook", incident.playbook_id),
    ]
    if incident.public_status:
        facts.append(("Public status", _status_word(incident.public_status)))
    if incident.pagerduty_url:
        facts.append(("PagerDuty", incident.pagerduty_url))
    closing = [
        "Acknowledge in the Slack thread or with `/incident ack "
        f"{incident.number}` to stop the escalation."
    ]
    body = _Body(
        heading=f"Incident #{incident.number}: {incident.title}",
        facts=facts,
        message=None,
        closing=closing,
        slack_url=incident.slack_url,
        number=incident.number,
    )
    return _content(subject, body)


def _subject(incident: IncidentView, rest: str) -> str:
    severity = f"[{incident.severity.upper()}]"
    return f"[DRILL] {severity} {rest}" if incident.drill else f"{severity} {rest}"


def _status_word(status: str) -> str:
    return status.strip().capitalize()


def _no_thread_line(number: int) -> str:
    return (
        f"Follow incident #{number} in the incident channel in Slack "
        f"(`/incident timeline {number}`); its updates also come to this email thread."
    )


def _content(subject: str, body: _Body) -> EmailContent:
    return EmailContent(one_line(subject), _text(body), _html(body))


def one_line(text: str) -> str:
    """Every run of whitespace (CR and LF included) as one space: header-safe."""
    return " ".join(text.split())


def _text(body: _Body) -> str:
    lines = [one_line(body.heading)]
    lines += [f"{label}: {one_line(value)}" for label, value in body.facts]
    if body.message is not None:
        lines += ["", body.message.strip(), ""]
    lines += list(body.closing)
    if body.slack_url:
        lines.append(f"Slack thread: {body.slack_url}")
    else:
        lines.append(_no_thread_line(body.number))
    return "\n".join(lines) + "\n"


def _html(body: _Body) -> str:
    e = html.escape
    rows = "".join(
        f'<tr><th align="left" style="padding-right:1em">{e(label)}</th><td>{e(value)}</td></tr>'
        for label, value in body.facts
    )
    parts = [
        "<!DOCTYPE html>",
        '<html><body style="font-family:sans-serif">',
        f"<h2>{e(one_line(body.heading))}</h2>",
        f"<table>{rows}</table>",
    ]
    if body.message is not None:
        paragraphs = e(body.message.strip()).replace("\n", "<br>\n")
        parts.append(f"<p>{paragraphs}</p>")
    parts += [f"<p>{e(line)}</p>" for line in body.closing]
    if body.slack_url:
        parts.append(f'<p><a href="{e(body.slack_url)}">Open the Slack thread</a></p>')
    else:
        parts.append(f"<p>{e(_no_thread_line(body.number))}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


# -- the message -------------------------------------------------------------


def email_payload(
    *,
    sender: str,
    to: Sequence[str],
    content: EmailContent,
    message_id: str,
    thread: str,
    date: datetime,
) -> dict[str, Any]:
    """The outbox payload (JSON) that `compose` turns back into the message."""
    return {
        "from": sender,
        "to": list(to),
        "subject": content.subject,
        "text": content.text,
        "html": content.html,
        "message_id": message_id,
        "thread": thread,
        "date": _utc(date).isoformat(),
    }


def compose(payload: Mapping[str, Any]) -> EmailMessage:
    """The multipart message of an `email_payload`; ValueError/KeyError if it is malformed."""
    # Checked here too: a header built from a bad address could smuggle a recipient.
    to = [check_address(str(address)) for address in payload["to"]]
    if not to:
        raise ValueError("no recipients")
    msg = EmailMessage()
    msg["From"] = check_address(str(payload["from"]))
    msg["To"] = ", ".join(to)
    msg["Subject"] = one_line(str(payload["subject"]))
    # The event's time, not the send's: a retried message is the same message.
    msg["Date"] = format_datetime(_utc(datetime.fromisoformat(str(payload["date"]))))
    msg["Message-ID"] = one_line(str(payload["message_id"]))
    thread = one_line(str(payload["thread"]))
    msg["In-Reply-To"] = thread
    msg["References"] = thread
    # RFC 3834: out-of-office robots must not answer the bot.
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(str(payload["text"]))
    msg.add_alternative(str(payload["html"]), subtype="html")
    return msg


def _utc(moment: datetime) -> datetime:
    # Rows read back from SQLite may be naive; they are UTC like every time we store.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
