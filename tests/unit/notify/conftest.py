"""Fixtures for bot.notify: the fake PagerDuty over TLS, a real SMTP server (aiosmtpd)."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack
from pathlib import Path
from typing import Any, TypeVar

import pytest

from bot.notify.pagerduty import PagerDutyEvents, PagerDutyRest
from bot.settings import Settings
from tests.fakes.pagerduty import FakePagerDuty, local_ca
from tests.unit.notify.notify_support import (
    FAST,
    BoundController,
    Recorder,
    SmtpServer,
    StartSmtp,
    authenticate,
)

C = TypeVar("C", bound=AbstractContextManager[Any])


@pytest.fixture
def pd() -> Iterator[FakePagerDuty]:
    with FakePagerDuty() as fake:
        yield fake


@pytest.fixture
def rest(pd: FakePagerDuty) -> Iterator[PagerDutyRest]:
    client = PagerDutyRest(pd.token, pd.user_email, pd.url, verify=pd.ca_file, **FAST)
    yield client
    client.close()


@pytest.fixture
def events(pd: FakePagerDuty) -> Iterator[PagerDutyEvents]:
    client = PagerDutyEvents(pd.routing_key, pd.events_url, verify=pd.ca_file, **FAST)
    yield client
    client.close()


@pytest.fixture
def closing() -> Iterator[Callable[[C], C]]:
    """``rest = closing(PagerDutyRest(...))``: closed (its connections too) after the test."""
    with ExitStack() as stack:
        yield stack.enter_context


@pytest.fixture
def smtp_server() -> Iterator[StartSmtp]:
    """Start a real SMTP server on 127.0.0.1.

    ``mode``: "plain" (no TLS), "starttls" (offers STARTTLS) or "implicit"
    (TLS from the first byte). AUTH (nexus / SMTP_PASSWORD) is offered once the
    connection is encrypted, never in clear: aiosmtpd's default, and good practice.
    """
    controllers: list[Any] = []

    def start(mode: str = "plain") -> SmtpServer:
        ca = local_ca()
        recorder = Recorder()
        kwargs: dict[str, Any] = {"authenticator": authenticate, "ready_timeout": 5.0}
        if mode == "starttls":
            kwargs["tls_context"] = ca.server_context()
        elif mode == "implicit":
            kwargs["ssl_context"] = ca.server_context()
            # aiosmtpd only knows about TLS it negotiated itself (STARTTLS); this
            # connection is TLS from the first byte, so AUTH is safe to offer.
            kwargs["auth_require_tls"] = False
        elif mode != "plain":
            raise ValueError(mode)
        controller = BoundController(recorder, **kwargs)
        controller.start()
        controllers.append(controller)
        return SmtpServer(controller.port, recorder, ca)

    yield start
    for controller in controllers:
        controller.stop()


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 nobody listens on (connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting from the environment, no config/nexus.yaml in the working directory:
    ``Settings(...)`` then holds exactly what the test gives it."""
    for name in list(os.environ):
        if name.lower() in Settings.model_fields:
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
