"""Email content for timeline events: subjects, both parts, escaping, threading headers."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy

import pytest

from bot.notify.email_render import (
    EmailContent,
    compose,
    email_payload,
    event_message_id,
    mail_domain,
    render_level,
    render_update,
    slack_thread_url,
    thread_id,
)
from tests.unit.notify.notify_support import INCIDENT_STARTED, INCIDENT_VIEW

STARTED = INCIDENT_STARTED
INCIDENT = INCIDENT_VIEW


def _parts(msg: EmailMessage) -> tuple[str, str]:
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return str(text.get_content()), str(html.get_content())


def _message(content: EmailContent, to: list[str] | None = None) -> EmailMessage:
    payload = email_payload(
        sender="nexus-bot@nexus.test",
        to=to or ["lead@nexus.test"],
        content=content,
        message_id=event_message_id(12, 7, "nexus.test"),
        thread=thread_id(12, STARTED, "nexus.test"),
        date=STARTED,
    )
    # Through bytes and back, as a mail server and a mail client see it.
    parsed = message_from_bytes(compose(payload).as_bytes(), policy=default_policy)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_update_subject_and_facts() -> None:
    content = render_update(INCIDENT, "identified", "The bad commit is found.\nRollback next.")

    assert content.subject == "[CRITICAL] #12 Checkout API down — Identified"
    assert content.text.splitlines() == [
        "Incident #12: Checkout API down",
        "Public status: Identified",
        "Severity: critical",
        "Incident status: acknowledged",
        "Escalation: level 2 — Engineering manager",
        "",
        "The bad commit is found.",
        "Rollback next.",
        "",
        "Slack thread: https://slack.com/archives/C0INCIDENTS/p1714979289000100",
    ]
    assert "<th" in content.html and ">Identified</td>" in content.html
    assert "The bad commit is found.<br>\nRollback next." in content.html
    assert 'href="https://slack.com/archives/C0INCIDENTS/p1714979289000100"' in content.html


def test_level_keeps_todays_subject_and_body_facts() -> None:
    content = render_level(INCIDENT, 2, "Engineering manager", "not acknowledged for 5m")

    assert content.subject == "[CRITICAL] Level 2 — Engineering manager: #12 Checkout API down"
    lines = content.text.splitlines()
    assert lines[0] == "Incident #12: Checkout API down"
    for line in [
        "Severity: critical",
        "Status: acknowledged",
        "Escalation: level 2 — Engineering manager (not acknowledged for 5m).",
        "Playbook: ssot-sync-failure",
        "Public status: Investigating",
        "PagerDuty: https://nexus.pagerduty.com/incidents/PABC123",
        "Acknowledge in the Slack thread or with `/incident ack 12` to stop the escalation.",
        "Slack thread: https://slack.com/archives/C0INCIDENTS/p1714979289000100",
    ]:
        assert line in lines
    assert "level 2 — Engineering manager (not acknowledged for 5m)." in content.html


def test_without_a_slack_thread_a_line_says_where_to_follow() -> None:
    quiet = replace(INCIDENT, slack_url=None, pagerduty_url=None, public_status=None)

    for content in (
        render_update(quiet, "investigating", "Looking."),
        render_level(quiet, 1, "Team lead", "opened"),
    ):
        assert "Slack thread:" not in content.text
        assert "Follow incident #12 in the incident channel" in content.text
        assert "/incident timeline 12" in content.html
        assert "href=" not in content.html
    level_text = render_level(quiet, 1, "Team lead", "opened").text
    assert "PagerDuty:" not in level_text
    assert "Public status:" not in level_text


def test_html_part_escapes_what_users_and_alerts_wrote() -> None:
    hostile = replace(INCIDENT, title='<img src=x onerror="alert(1)"> & co')
    content = render_update(hostile, "monitoring", "<script>alert('x')</script> fixed?")

    assert "<script>" not in content.html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; fixed?" in content.html
    assert "<img" not in content.html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; &amp; co" in content.html
    # The text part shows it as written: plain text cannot run anything.
    assert "<script>alert('x')</script> fixed?" in content.text

    escalated = render_level(hostile, 3, "CTO", "<b>manual</b>")
    assert "<b>" not in escalated.html
    assert "&lt;b&gt;manual&lt;/b&gt;" in escalated.html


def test_message_is_multipart_alternative_with_both_parts() -> None:
    msg = _message(render_update(INCIDENT, "identified", "<script>x</script>"))

    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    text, html = _parts(msg)
    assert "<script>x</script>" in text
    assert "&lt;script&gt;x&lt;/script&gt;" in html and "<script>" not in html
    assert msg["Subject"] == "[CRITICAL] #12 Checkout API down — Identified"
    assert msg["From"] == "nexus-bot@nexus.test"
    assert msg["To"] == "lead@nexus.test"
    assert msg["Auto-Submitted"] == "auto-generated"


def test_threading_headers_and_date_come_from_the_incident_and_event() -> None:
    msg = _message(render_update(INCIDENT, "identified", "x"))

    assert msg["Message-ID"] == "<nexus-incident-12.event-7@nexus.test>"
    assert msg["In-Reply-To"] == "<nexus-incident-12.20240506070809@nexus.test>"
    assert msg["References"] == "<nexus-incident-12.20240506070809@nexus.test>"
    assert msg["Date"].datetime == STARTED


def test_non_ascii_title_survives_the_round_trip() -> None:
    msg = _message(
        render_update(replace(INCIDENT, title="Zahlungsdienst gestört ✗"), "resolved", "ok")
    )
    assert msg["Subject"] == "[CRITICAL] #12 Zahlungsdienst gestört ✗ — Resolved"
    text, _ = _parts(msg)
    assert "Incident #12: Zahlungsdienst gestört ✗" in text


def test_cr_lf_in_a_title_cannot_inject_a_header() -> None:
    hostile = replace(INCIDENT, title="Down\r\nBcc: evil@example.com\r\n\r\nfake body")
    raw = compose(
        email_payload(
            sender="nexus-bot@nexus.test",
            to=["lead@nexus.test"],
            content=render_update(hostile, "identified\r\nX-Evil: 1", "x"),
            message_id="<m@nexus.test>",
            thread="<t@nexus.test>",
            date=STARTED,
        )
    ).as_bytes()

    headers = raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]
    names = [
        line.split(b":", 1)[0].lower() for line in headers.splitlines() if line[:1] not in b" \t"
    ]
    assert b"bcc" not in names
    assert b"x-evil" not in names
    parsed = message_from_bytes(raw, policy=default_policy)
    assert parsed["Bcc"] is None
    assert parsed["Subject"].startswith("[CRITICAL] #12 Down Bcc: evil@example.com fake body — ")


@pytest.mark.parametrize(
    "to", [["lead@nexus.test\r\nBcc: evil@example.com"], ["a@x.test, b@x.test"], []]
)
def test_compose_refuses_addresses_that_are_not_plain(to: list[str]) -> None:
    content = render_update(INCIDENT, "identified", "x")
    payload = email_payload(
        sender="nexus-bot@nexus.test",
        to=to,
        content=content,
        message_id="<m@nexus.test>",
        thread="<t@nexus.test>",
        date=STARTED,
    )
    with pytest.raises(ValueError):
        compose(payload)


def test_ids_and_links() -> None:
    assert mail_domain("nexus-bot@mail.nexus.test") == "mail.nexus.test"
    assert mail_domain("no-domain") == "localhost"
    assert mail_domain("bot@evil>\r\n.test") == "evil.test"
    naive = datetime(2024, 5, 6, 7, 8, 9)  # SQLite may hand times back without a zone
    assert thread_id(3, naive, "d.test") == thread_id(3, STARTED, "d.test")
    assert thread_id(3, STARTED, "d.test") != thread_id(4, STARTED, "d.test")
    assert event_message_id(3, 99, "d.test") == "<nexus-incident-3.event-99@d.test>"
    assert slack_thread_url("C0ABC", "1714979289.000100") == (
        "https://slack.com/archives/C0ABC/p1714979289000100"
    )
    assert slack_thread_url("C0/../x", "1.2") == "https://slack.com/archives/C0%2F..%2Fx/p12"


def test_a_drill_says_drill_in_every_subject() -> None:
    drill = replace(INCIDENT, drill=True)

    update = render_update(drill, "identified", "Found it.")
    level = render_level(drill, 2, "Engineering manager", "not acknowledged for 5m")

    assert update.subject == "[DRILL] [CRITICAL] #12 Checkout API down — Identified"
    assert level.subject.startswith("[DRILL] [CRITICAL] Level 2 — Engineering manager: #12 ")
    assert not render_update(INCIDENT, "identified", "x").subject.startswith("[DRILL]")
