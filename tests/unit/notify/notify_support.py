"""SMTP test helpers: a recording aiosmtpd handler and a controller on a pre-bound port."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from typing import Any, TypedDict

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from bot.notify.email_render import IncidentView
from tests.fakes.pagerduty import LocalCA

SMTP_USER = "nexus"
SMTP_PASSWORD = "Sm7p-pa55word-do-not-leak"


class Timing(TypedDict):
    backoff: float
    timeout: float


FAST: Timing = {"backoff": 0.01, "timeout": 5.0}  # PagerDuty retries in milliseconds, not seconds


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes
    tls: bool
    login: str | None

    @property
    def message(self) -> EmailMessage:
        parsed = message_from_bytes(self.raw, policy=default_policy)
        assert isinstance(parsed, EmailMessage)  # what policy.default builds
        return parsed


@dataclass
class Recorder:
    """aiosmtpd handler: keeps every message accepted."""

    messages: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)  # address -> SMTP reply to RCPT
    refuse_data: str | None = None  # SMTP reply to DATA instead of accepting the message

    async def handle_RCPT(
        self, server: SMTP, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Any, envelope: Any) -> str:
        if self.refuse_data is not None:
            return self.refuse_data
        transport = server.transport
        tls = transport is not None and transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login.decode() if session.authenticated else None
        self.messages.append(
            Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content, tls, login)
        )
        return "250 Message accepted for delivery"


def authenticate(
    server: SMTP, session: Any, envelope: Any, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (
        auth_data.login.decode(),
        auth_data.password.decode(),
    ) == (SMTP_USER, SMTP_PASSWORD)
    # handled=False: let aiosmtpd answer 535 itself (True means "I already replied").
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


class BoundController(Controller):
    """Listens on a socket bound before start: a free port with no race."""

    def __init__(self, handler: Any, **kwargs: Any) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        super().__init__(handler, hostname="127.0.0.1", port=self._sock.getsockname()[1], **kwargs)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock, ssl=self.ssl_context)


@dataclass
class SmtpServer:
    port: int
    recorder: Recorder
    ca: LocalCA
    user: str = SMTP_USER
    password: str = SMTP_PASSWORD

    @property
    def messages(self) -> list[Received]:
        return self.recorder.messages

    def url(self, scheme: str = "smtp", *, auth: bool = False, query: str = "") -> str:
        creds = f"{SMTP_USER}:{SMTP_PASSWORD}@" if auth else ""
        return f"{scheme}://{creds}127.0.0.1:{self.port}{query}"

    def client_context(self) -> ssl.SSLContext:
        return self.ca.client_context()


StartSmtp = Callable[..., SmtpServer]


# An incident as the email renderer sees it (tests of email_render and email_output).
INCIDENT_STARTED = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
INCIDENT_VIEW = IncidentView(
    number=12,
    title="Checkout API down",
    severity="critical",
    status="acknowledged",
    public_status="investigating",
    level=2,
    level_role="Engineering manager",
    playbook_id="ssot-sync-failure",
    pagerduty_url="https://nexus.pagerduty.com/incidents/PABC123",
    slack_url="https://slack.com/archives/C0INCIDENTS/p1714979289000100",
)
