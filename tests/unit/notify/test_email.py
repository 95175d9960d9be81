"""EmailSender against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import traceback
from email.message import EmailMessage

import pytest

from bot.notify.email import EmailSender, NotifyError
from tests.unit.notify.notify_support import SMTP_PASSWORD, StartSmtp

SENDER = "nexus-bot@example.com"


def _full_text(err: BaseException) -> str:
    return "".join(traceback.format_exception(err)) + repr(err)


def test_plain_smtp_delivers_to_subject_and_body(smtp_server: StartSmtp) -> None:
    server = smtp_server("plain")
    sender = EmailSender(server.url(), SENDER)

    message_id = sender.send(
        ["lead@example.com", "cto@example.com"],
        "[NEXUS] critical: SSOT sync failure",
        "Incident #42 escalated to level 2.\n.\nA line that is only a dot survives.\n",
    )

    [got] = server.messages
    assert got.mail_from == SENDER
    assert got.rcpt_tos == ["lead@example.com", "cto@example.com"]
    assert not got.tls
    msg = got.message
    assert msg["From"] == SENDER
    assert msg["To"] == "lead@example.com, cto@example.com"
    assert msg["Subject"] == "[NEXUS] critical: SSOT sync failure"
    assert msg["Message-ID"] == message_id
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"]
    assert msg.get_content().replace("\r\n", "\n") == (
        "Incident #42 escalated to level 2.\n.\nA line that is only a dot survives.\n"
    )


def test_subject_cannot_inject_a_header(smtp_server: StartSmtp) -> None:
    server = smtp_server("plain")
    sender = EmailSender(server.url(), SENDER)

    sender.send(["lead@example.com"], "Alert\r\nBcc: evil@example.com", "body")

    [got] = server.messages
    assert got.rcpt_tos == ["lead@example.com"]
    assert got.message["Bcc"] is None
    assert got.message["Subject"] == "Alert Bcc: evil@example.com"
    headers = got.raw.split(b"\r\n\r\n", 1)[0]
    assert not any(line.lower().startswith(b"bcc:") for line in headers.split(b"\r\n"))


@pytest.mark.parametrize(
    "to",
    [
        [],
        ["lead@example.com\r\nBcc: evil@example.com"],
        ["a@example.com, evil@example.com"],
        ["Lead <lead@example.com>"],
        ["no-at-sign"],
    ],
)
def test_recipients_must_be_plain_addresses(smtp_server: StartSmtp, to: list[str]) -> None:
    server = smtp_server("plain")
    with pytest.raises(NotifyError, match="email not sent"):
        EmailSender(server.url(), SENDER).send(to, "s", "b")
    assert server.messages == []


def test_starttls_and_login(smtp_server: StartSmtp) -> None:
    server = smtp_server("starttls")
    sender = EmailSender(
        server.url(auth=True), SENDER, tls_context=server.client_context(), timeout=5
    )

    sender.send(["lead@example.com"], "over STARTTLS", "hello")

    [got] = server.messages
    assert got.tls
    assert got.login == server.user
    assert got.message["Subject"] == "over STARTTLS"


def test_implicit_tls_smtps_and_login(smtp_server: StartSmtp) -> None:
    server = smtp_server("implicit")
    sender = EmailSender(
        server.url("smtps", auth=True), SENDER, tls_context=server.client_context()
    )

    sender.send(["lead@example.com"], "over smtps", "hello")

    [got] = server.messages
    assert got.tls
    assert got.login == server.user


def test_starttls_never_stays_in_clear(smtp_server: StartSmtp) -> None:
    server = smtp_server("starttls")
    sender = EmailSender(server.url(query="?starttls=never"), SENDER)
    sender.send(["lead@example.com"], "s", "b")
    [got] = server.messages
    assert not got.tls


def test_starttls_required_but_not_offered(smtp_server: StartSmtp) -> None:
    server = smtp_server("plain")
    sender = EmailSender(server.url(), SENDER, starttls="require")
    with pytest.raises(NotifyError, match="does not offer STARTTLS"):
        sender.send(["lead@example.com"], "s", "b")
    assert server.messages == []


def test_credentials_are_never_sent_in_clear(smtp_server: StartSmtp) -> None:
    """Without TLS on offer, auto mode refuses to log in rather than leak the password."""
    server = smtp_server("plain")
    sender = EmailSender(server.url(auth=True), SENDER)

    with pytest.raises(NotifyError, match="refusing to send credentials") as caught:
        sender.send(["lead@example.com"], "s", "b")

    assert SMTP_PASSWORD not in _full_text(caught.value)
    assert server.messages == []


def test_wrong_password_is_reported_without_it(smtp_server: StartSmtp) -> None:
    server = smtp_server("implicit")
    url = server.url("smtps", auth=True).replace(SMTP_PASSWORD, "wr0ng-Passw0rd-xyz")
    sender = EmailSender(url, SENDER, tls_context=server.client_context())

    with pytest.raises(NotifyError) as caught:
        sender.send(["lead@example.com"], "s", "b")

    assert caught.value.status == 535
    assert not caught.value.retryable
    assert f"127.0.0.1:{server.port}" in str(caught.value)
    assert "wr0ng-Passw0rd-xyz" not in _full_text(caught.value)


def test_untrusted_certificate(smtp_server: StartSmtp) -> None:
    server = smtp_server("implicit")
    sender = EmailSender(server.url("smtps", auth=True), SENDER)  # system trust store

    with pytest.raises(NotifyError, match="certificate not trusted") as caught:
        sender.send(["lead@example.com"], "s", "b")

    assert not caught.value.retryable
    assert SMTP_PASSWORD not in _full_text(caught.value)


def test_unreachable_server_names_host_and_port_not_password(closed_port: int) -> None:
    sender = EmailSender(
        f"smtps://nexus:{SMTP_PASSWORD}@127.0.0.1:{closed_port}", SENDER, timeout=2
    )

    with pytest.raises(NotifyError) as caught:
        sender.send(["lead@example.com"], "s", "b")

    err = caught.value
    assert f"127.0.0.1:{closed_port}" in str(err)
    assert "ConnectionRefusedError" in str(err)
    assert err.retryable
    assert err.status is None
    assert SMTP_PASSWORD not in _full_text(err)
    assert SMTP_PASSWORD not in repr(sender)


def test_message_id_from_key_is_stable(smtp_server: StartSmtp) -> None:
    server = smtp_server("plain")
    sender = EmailSender(server.url(), SENDER)

    first = sender.send(["lead@example.com"], "s", "b", message_id_key="incident-42-level-2")
    again = sender.send(["lead@example.com"], "s", "b", message_id_key="incident-42-level-2")
    other = sender.send(["lead@example.com"], "s", "b", message_id_key="incident-42-level-3")
    random_one = sender.send(["lead@example.com"], "s", "b")

    assert first == again != other
    assert first.endswith("@example.com>")
    assert random_one not in (first, other)
    assert [m.message["Message-ID"] for m in server.messages] == [first, again, other, random_one]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (f"http://u:{SMTP_PASSWORD}@host", "expected smtp://"),
        (f"smtp://u:{SMTP_PASSWORD}@", "expected smtp://"),
        ("smtp://host?starttls=sometimes", "starttls must be one of"),
        ("smtp://host?tls=1", "unknown parameter"),
    ],
)
def test_bad_urls(url: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as caught:
        EmailSender(url, SENDER)
    assert SMTP_PASSWORD not in str(caught.value)


def test_url_defaults_and_escaped_credentials() -> None:
    sender = EmailSender("smtps://us%40er:p%40ss%2Fw@mail.example.com", SENDER)
    assert (sender.host, sender.port, sender.implicit_tls) == ("mail.example.com", 465, True)
    assert EmailSender("smtp://mail.example.com", SENDER).port == 25
    assert "p@ss/w" not in repr(sender)
    assert "us@er" in repr(sender)


def test_refused_recipients(smtp_server: StartSmtp) -> None:
    server = smtp_server("plain")
    server.recorder.refuse = {"gone@example.com": "550 5.1.1 No such user"}
    sender = EmailSender(server.url(), SENDER)

    with pytest.raises(NotifyError, match=r"all recipients refused: gone@example\.com: 550") as c:
        sender.send(["gone@example.com"], "s", "b")
    assert not c.value.retryable

    # Partly delivered: an error, but not one to retry (lead@ would get it twice).
    with pytest.raises(NotifyError, match=r"some recipients refused: gone@example\.com") as c:
        sender.send(["lead@example.com", "gone@example.com"], "s", "b")
    assert not c.value.retryable
    [got] = server.messages
    assert got.rcpt_tos == ["lead@example.com"]


def _prepared(to: list[str]) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = ", ".join(to)
    msg["Subject"] = "prepared elsewhere"
    msg["Message-ID"] = "<nexus-incident-1.event-1@example.com>"
    msg.set_content("text")
    msg.add_alternative("<p>html</p>", subtype="html")
    return msg


def test_send_message_returns_the_recipients_refused_while_others_got_it(
    smtp_server: StartSmtp,
) -> None:
    server = smtp_server("plain")
    server.recorder.refuse = {"gone@example.com": "550 5.1.1 No such user"}
    sender = EmailSender(server.url(), SENDER)
    to = ["lead@example.com", "gone@example.com"]

    refused = sender.send_message(_prepared(to), to)

    assert refused == {"gone@example.com": (550, b"5.1.1 No such user")}
    assert sender.refusal_replies(refused) == {"gone@example.com": "550 5.1.1 No such user"}
    [got] = server.messages
    assert got.rcpt_tos == ["lead@example.com"]
    assert got.message["Message-ID"] == "<nexus-incident-1.event-1@example.com>"
    assert got.message.get_content_type() == "multipart/alternative"


def test_send_message_envelope_comes_from_the_caller_not_the_headers(
    smtp_server: StartSmtp,
) -> None:
    server = smtp_server("plain")
    msg = _prepared(["lead@example.com"])
    msg["Cc"] = "someone-else@example.com"

    assert EmailSender(server.url(), SENDER).send_message(msg, ["lead@example.com"]) == {}

    [got] = server.messages
    assert got.rcpt_tos == ["lead@example.com"]
    with pytest.raises(NotifyError, match="no recipients"):
        EmailSender(server.url(), SENDER).send_message(msg, [])


@pytest.mark.parametrize(
    ("reply", "retryable", "refused"),
    [
        ("554 5.7.1 Rejected as spam", False, {"a@example.com": "554 5.7.1 Rejected as spam"}),
        ("451 4.3.0 Try again later", True, {}),
    ],
)
def test_a_refused_message_names_every_recipient_when_permanent(
    smtp_server: StartSmtp, reply: str, retryable: bool, refused: dict[str, str]
) -> None:
    server = smtp_server("plain")
    server.recorder.refuse_data = reply

    with pytest.raises(NotifyError) as caught:
        EmailSender(server.url(), SENDER).send_message(
            _prepared(["a@example.com"]), ["a@example.com"]
        )

    assert caught.value.status == int(reply[:3])
    assert caught.value.retryable is retryable
    assert caught.value.refused == refused
