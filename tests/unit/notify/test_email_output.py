"""The email output: timeline events → outbox rows (real databases), rows → a real SMTP server."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from bot.communication import RolesConfig
from bot.notify.email import EmailSender
from bot.notify.email_output import EmailDelivery, EmailOutput
from bot.notify.email_render import email_payload, render_update
from bot.settings import Settings
from bot.store.models import Incident, OutboxMessage, TimelineEvent, utcnow
from bot.timeline.events import Kind
from bot.timeline.queue import Failed, Result, Retry, Sent
from bot.timeline.recorder import Timeline
from tests.unit.notify.notify_support import (
    INCIDENT_STARTED,
    INCIDENT_VIEW,
    SMTP_PASSWORD,
    SmtpServer,
    StartSmtp,
)

pytestmark = pytest.mark.usefixtures("isolated_settings")

SENDER = "nexus-bot@nexus.test"
ROLES = {
    "stakeholders": {"email": ["team-leads@nexus.test", "cto@nexus.test"]},
    "commander": {"email": ["ic@nexus.test"]},
    "tech-lead": {"email": ["IC@nexus.test", "devops@nexus.test"]},  # IC twice: sent once
    "comms": {"email": ["pm@nexus.test"]},
}
LEVEL_2 = {
    "level": 2,
    "role": "Engineering manager",
    "reason": "not acknowledged for 5m",
    "slack": [],
    "email": ["level2@nexus.test"],
    "pagerduty_level": 2,
    "notify_pagerduty": True,
}


def make_settings(smtp_url: str | None, roles: dict[str, Any] = ROLES) -> Settings:
    return Settings(smtp_url=smtp_url, smtp_from=SENDER, roles=RolesConfig.model_validate(roles))


def add_incident(
    engine: sa.Engine,
    *,
    title: str = "Checkout API down",
    severity: str = "critical",
    source: str = "alertmanager",
) -> int:
    now = utcnow()
    with sessionmaker(engine).begin() as s:
        incident = Incident(
            key=f"test:{uuid.uuid4().hex}",
            source=source,
            title=title,
            severity=severity,
            status="triggered",
            playbook_id="ssot-sync-failure",
            slack_channel="C0INCIDENTS",
            slack_root_ts="1714979289.000100",
            created_at=now,
            updated_at=now,
            labels={},
        )
        s.add(incident)
        s.flush()
        return incident.id


def record(engine: sa.Engine, timeline: Timeline, number: int, kind: str, **facts: Any) -> None:
    with sessionmaker(engine).begin() as s:
        timeline.record(s, number, kind, "U0COMMS", **facts)


def email_rows(engine: sa.Engine) -> list[OutboxMessage]:
    with Session(engine) as s:
        query = sa.select(OutboxMessage).where(OutboxMessage.output == "email")
        return list(s.scalars(query.order_by(OutboxMessage.id)))


def deliver(engine: sa.Engine, delivery: EmailDelivery) -> list[Result]:
    return [delivery.send(row.method, row.payload) for row in email_rows(engine)]


# -- events → rows -------------------------------------------------------------


def test_update_is_one_row_to_every_role_address(engine: sa.Engine) -> None:
    timeline = Timeline([EmailOutput(make_settings("smtp://mail.nexus.test:587"))])
    number = add_incident(engine)

    record(engine, timeline, number, Kind.UPDATE_POSTED, status="identified", text="Found it.")

    [row] = email_rows(engine)
    assert (row.output, row.channel, row.method) == ("email", "mail.nexus.test", "email.send")
    assert row.incident_id == number
    assert row.state == "pending"
    assert row.payload["to"] == [
        "cto@nexus.test",
        "devops@nexus.test",
        "ic@nexus.test",
        "pm@nexus.test",
        "team-leads@nexus.test",
    ]
    assert row.payload["subject"] == f"[CRITICAL] #{number} Checkout API down — Identified"
    assert row.payload["from"] == SENDER
    assert set(row.payload) == {
        "from", "to", "subject", "text", "html", "message_id", "thread", "date"
    }  # fmt: skip


def test_rows_are_part_of_the_callers_transaction(engine: sa.Engine) -> None:
    timeline = Timeline([EmailOutput(make_settings("smtp://mail.nexus.test"))])
    number = add_incident(engine)

    with sessionmaker(engine)() as s:
        timeline.record(s, number, Kind.UPDATE_POSTED, "U0COMMS", status="identified", text="x")
        assert len(s.scalars(sa.select(OutboxMessage.id)).all()) == 1  # seen inside it
        s.rollback()

    assert email_rows(engine) == []
    with Session(engine) as s:
        assert s.scalars(sa.select(TimelineEvent.id)).all() == []


def test_level_is_emailed_when_the_routes_include_email(engine: sa.Engine) -> None:
    timeline = Timeline([EmailOutput(make_settings("smtp://mail.nexus.test"))])
    cases = {
        ("critical", "alertmanager"): True,
        ("warning", "alertmanager"): True,
        ("critical", "pagerduty"): True,  # only PagerDuty itself is left out
        ("info", "alertmanager"): False,  # info goes to Slack only
    }
    numbers = {case: add_incident(engine, severity=case[0], source=case[1]) for case in cases}
    for number in numbers.values():
        record(engine, timeline, number, Kind.LEVEL_REACHED, **LEVEL_2)

    rows = {row.incident_id: row for row in email_rows(engine)}
    assert set(rows) == {numbers[case] for case, emailed in cases.items() if emailed}
    for (severity, _), number in numbers.items():
        if number in rows:
            assert rows[number].payload["to"] == ["level2@nexus.test"]
            assert rows[number].payload["subject"] == (
                f"[{severity.upper()}] Level 2 — Engineering manager: #{number} Checkout API down"
            )


def test_nothing_without_smtp_addresses_or_an_emailed_kind(engine: sa.Engine) -> None:
    number = add_incident(engine)
    without_smtp = Timeline([EmailOutput(make_settings(None))])
    record(engine, without_smtp, number, Kind.UPDATE_POSTED, status="identified", text="x")
    record(engine, without_smtp, number, Kind.LEVEL_REACHED, **LEVEL_2)

    nobody = Timeline([EmailOutput(make_settings("smtp://mail.nexus.test", roles={}))])
    record(engine, nobody, number, Kind.UPDATE_POSTED, status="identified", text="x")
    record(engine, nobody, number, Kind.LEVEL_REACHED, **{**LEVEL_2, "email": []})
    for kind in (Kind.ACKNOWLEDGED, Kind.NOTE_ADDED, Kind.RESOLVED, Kind.OPENED):
        record(engine, nobody, number, kind, text="internal", via="slack")

    assert email_rows(engine) == []


# -- rows → SMTP -----------------------------------------------------------------


@pytest.fixture
def server(smtp_server: StartSmtp) -> SmtpServer:
    return smtp_server("plain")


def test_threads_per_incident_with_a_message_id_per_event(
    engine: sa.Engine, server: SmtpServer
) -> None:
    timeline = Timeline([EmailOutput(make_settings(server.url()))])
    first, second = add_incident(engine), add_incident(engine, title="Search slow")
    record(engine, timeline, first, Kind.UPDATE_POSTED, status="investigating", text="Looking.")
    record(engine, timeline, first, Kind.UPDATE_POSTED, status="identified", text="Found it.")
    record(engine, timeline, second, Kind.UPDATE_POSTED, status="investigating", text="Hm.")
    delivery = EmailDelivery(EmailSender(server.url(), SENDER))

    assert deliver(engine, delivery) == [Sent(), Sent(), Sent()]
    assert delivery.send("email.send", email_rows(engine)[0].payload) == Sent()  # a retry

    one, two, other, retried = (m.message for m in server.messages)
    assert one["References"] == two["References"] == one["In-Reply-To"] == two["In-Reply-To"]
    assert one["References"].startswith(f"<nexus-incident-{first}.")
    assert one["References"].endswith("@nexus.test>")
    assert other["References"] != one["References"]
    assert other["References"].startswith(f"<nexus-incident-{second}.")
    ids = [m["Message-ID"] for m in (one, two, other)]
    assert len(set(ids)) == 3
    assert all(i.startswith("<nexus-incident-") and ".event-" in i for i in ids)
    assert retried["Message-ID"] == one["Message-ID"]
    assert retried["Date"] == one["Date"]
    assert server.messages[0].rcpt_tos == email_rows(engine)[0].payload["to"]


def test_level_email_arrives_with_todays_subject(engine: sa.Engine, server: SmtpServer) -> None:
    timeline = Timeline([EmailOutput(make_settings(server.url()))])
    number = add_incident(engine)
    record(engine, timeline, number, Kind.LEVEL_REACHED, **LEVEL_2)

    assert deliver(engine, EmailDelivery(EmailSender(server.url(), SENDER))) == [Sent()]

    [got] = server.messages
    assert got.rcpt_tos == ["level2@nexus.test"]
    assert got.message["Subject"] == (
        f"[CRITICAL] Level 2 — Engineering manager: #{number} Checkout API down"
    )
    text = got.message.get_body(("plain",))
    assert text is not None
    assert f"with `/incident ack {number}` to stop the escalation" in str(text.get_content())


def test_hostile_title_cannot_add_headers_or_recipients(
    engine: sa.Engine, server: SmtpServer
) -> None:
    timeline = Timeline([EmailOutput(make_settings(server.url()))])
    number = add_incident(engine, title="Down\r\nBcc: evil@example.com\r\n\r\n<script>x</script>")
    record(engine, timeline, number, Kind.UPDATE_POSTED, status="identified", text="<b>hi</b>")

    assert deliver(engine, EmailDelivery(EmailSender(server.url(), SENDER))) == [Sent()]

    [got] = server.messages
    assert "evil@example.com" not in got.rcpt_tos
    assert got.message["Bcc"] is None
    header_block = got.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in header_block.split(b"\r\n"))
    html = got.message.get_body(("html",))
    assert html is not None
    assert "<script>" not in str(html.get_content())
    assert "&lt;b&gt;hi&lt;/b&gt;" in str(html.get_content())


def _payload(to: list[str]) -> dict[str, Any]:
    return email_payload(
        sender=SENDER,
        to=to,
        content=render_update(INCIDENT_VIEW, "identified", "<script>alert(1)</script>"),
        message_id="<nexus-incident-12.event-7@nexus.test>",
        thread="<nexus-incident-12.20240506070809@nexus.test>",
        date=INCIDENT_STARTED,
    )


def test_delivered_as_multipart_alternative(server: SmtpServer) -> None:
    delivery = EmailDelivery(EmailSender(server.url(), SENDER))

    assert delivery.send("email.send", _payload(["a@nexus.test", "b@nexus.test"])) == Sent()

    [got] = server.messages
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["a@nexus.test", "b@nexus.test"]
    msg = got.message
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text, html = msg.get_body(("plain",)), msg.get_body(("html",))
    assert text is not None and html is not None
    assert "<script>alert(1)</script>" in str(text.get_content())
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in str(html.get_content())
    assert "<script>" not in str(html.get_content())


def test_some_recipients_refused_is_sent_with_a_report(server: SmtpServer) -> None:
    server.recorder.refuse = {"gone@nexus.test": "550 5.1.1 No such user"}
    delivery = EmailDelivery(EmailSender(server.url(), SENDER))

    result = delivery.send("email.send", _payload(["gone@nexus.test", "lead@nexus.test"]))

    assert result == Sent(
        report={
            "output": "email",
            "problem": "refused",
            "recipients": {"gone@nexus.test": "550 5.1.1 No such user"},
            "what": "[CRITICAL] #12 Checkout API down — Identified",
        }
    )
    [got] = server.messages
    assert got.rcpt_tos == ["lead@nexus.test"]


def test_every_recipient_refused_fails_once_with_a_report(server: SmtpServer) -> None:
    server.recorder.refuse = {
        "gone@nexus.test": "550 5.1.1 No such user",
        "left@nexus.test": "553 5.1.3 Mailbox name not allowed",
    }
    delivery = EmailDelivery(EmailSender(server.url(), SENDER))

    result = delivery.send("email.send", _payload(["gone@nexus.test", "left@nexus.test"]))

    assert isinstance(result, Failed)
    assert "all recipients refused" in result.error
    assert result.report is not None
    assert result.report["recipients"] == {
        "gone@nexus.test": "550 5.1.1 No such user",
        "left@nexus.test": "553 5.1.3 Mailbox name not allowed",
    }
    assert server.messages == []


def test_message_refused_at_data_fails_for_every_recipient(server: SmtpServer) -> None:
    server.recorder.refuse_data = "554 5.7.1 Message rejected as spam"
    delivery = EmailDelivery(EmailSender(server.url(), SENDER))

    result = delivery.send("email.send", _payload(["a@nexus.test", "b@nexus.test"]))

    assert isinstance(result, Failed)
    assert result.report is not None
    assert result.report["recipients"] == {
        "a@nexus.test": "554 5.7.1 Message rejected as spam",
        "b@nexus.test": "554 5.7.1 Message rejected as spam",
    }


@pytest.mark.parametrize("where", ["rcpt", "data"])
def test_temporary_refusals_are_retried(server: SmtpServer, where: str) -> None:
    if where == "rcpt":
        server.recorder.refuse = {"lead@nexus.test": "451 4.3.0 Try again later"}
    else:
        server.recorder.refuse_data = "451 4.3.0 Try again later"
    delivery = EmailDelivery(EmailSender(server.url(), SENDER))

    result = delivery.send("email.send", _payload(["lead@nexus.test"]))

    assert isinstance(result, Retry)
    assert "451" in result.error


def test_server_down_is_retried_without_the_password(closed_port: int) -> None:
    url = f"smtp://nexus:{SMTP_PASSWORD}@127.0.0.1:{closed_port}"
    delivery = EmailDelivery(EmailSender(url, SENDER, timeout=2))

    result = delivery.send("email.send", _payload(["lead@nexus.test"]))

    assert isinstance(result, Retry)
    assert f"127.0.0.1:{closed_port}" in result.error
    assert SMTP_PASSWORD not in result.error


def test_refusal_reports_never_hold_the_password(smtp_server: StartSmtp) -> None:
    server = smtp_server("starttls")
    # A server that echoes what it was told: the report must not repeat the password.
    server.recorder.refuse = {"gone@nexus.test": f"550 unknown user after login {SMTP_PASSWORD}"}
    sender = EmailSender(server.url(auth=True), SENDER, tls_context=server.client_context())

    result = EmailDelivery(sender).send("email.send", _payload(["gone@nexus.test"]))

    assert isinstance(result, Failed)
    assert SMTP_PASSWORD not in repr(result)
    assert result.report is not None
    assert result.report["recipients"]["gone@nexus.test"].endswith("[redacted]")


def test_configuration_problems_wait_for_a_fix(server: SmtpServer) -> None:
    """No TLS on offer for the login: nothing is wrong with the message, keep it."""
    delivery = EmailDelivery(EmailSender(server.url(auth=True), SENDER))

    result = delivery.send("email.send", _payload(["lead@nexus.test"]))

    assert isinstance(result, Retry)
    assert "refusing to send credentials" in result.error
    assert SMTP_PASSWORD not in result.error


def test_unknown_methods_and_malformed_payloads_fail(server: SmtpServer) -> None:
    delivery = EmailDelivery(EmailSender(server.url(), SENDER))
    assert (delivery.rate, delivery.burst) == (2.0, 5)

    assert isinstance(delivery.send("email.fax", _payload(["a@nexus.test"])), Failed)
    assert isinstance(delivery.send("email.send", {"to": ["a@nexus.test"]}), Failed)
    bad_to = {**_payload(["a@nexus.test"]), "to": ["a@nexus.test\r\nBcc: evil@example.com"]}
    assert isinstance(delivery.send("email.send", bad_to), Failed)
    assert server.messages == []


# -- recovery drills -------------------------------------------------------------


def _make_drill(engine: sa.Engine, number: int) -> None:
    with sessionmaker(engine).begin() as s:
        s.execute(sa.update(Incident).where(Incident.id == number).values(drill_run_id=7))


def test_a_drill_emails_nobody_while_a_real_incident_still_does(
    engine: sa.Engine, server: SmtpServer
) -> None:
    timeline = Timeline([EmailOutput(make_settings(server.url()))])
    drill, real = add_incident(engine, title="Schema mismatch (drill)"), add_incident(engine)
    _make_drill(engine, drill)
    for number in (drill, real):
        record(engine, timeline, number, Kind.UPDATE_POSTED, status="identified", text="Found.")
        record(engine, timeline, number, Kind.LEVEL_REACHED, **LEVEL_2)

    assert {row.incident_id for row in email_rows(engine)} == {real}
    assert deliver(engine, EmailDelivery(EmailSender(server.url(), SENDER))) == [Sent(), Sent()]
    subjects = [m.message["Subject"] for m in server.messages]
    assert all(f"#{real} " in s and "drill" not in s.lower() for s in subjects)
    assert len(server.messages) == 2
