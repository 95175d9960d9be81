"""A fake Slack Socket Mode endpoint: ``apps.connections.open`` and the WebSocket behind it.

Like `tests.fakes.slack.FakeSlack`, it is a real aiohttp server on 127.0.0.1,
on its own event loop in a background thread. Point ``SLACK_API_URL`` at its
`url` and the bot reaches both Slacks through one base URL::

    with FakeSlack() as slack, FakeSlackSocket(slack, app_token="xapp-1-…") as sock:
        # SLACK_API_URL=sock.url, SLACK_APP_TOKEN=sock.app_token
        sock.wait_for_connection()
        envelope_id = sock.slash_command("help")
        ack = sock.wait_for_ack(envelope_id)

What it models (https://docs.slack.dev/apis/events-api/using-socket-mode/):

* ``POST /api/apps.connections.open``: needs an app-level token (``xapp-…``) as
  ``Authorization: Bearer`` (or a ``token`` parameter); answers
  ``{"ok": true, "url": "ws://127.0.0.1:PORT/link/?ticket=…&app_id=…"}``, or, as
  Slack does with HTTP 200, ``not_authed`` / ``not_allowed_token_type`` (a bot
  token) / ``invalid_auth`` (another app token). Every call is recorded (`opens`).
* every other path (``/api/<method>``, ``/response/<id>``) is forwarded as is to
  the wrapped `FakeSlack`, which records and answers it (faults included).
* ``GET /link/?ticket=…``: the WebSocket. A ticket is good for one connection
  (an unknown or reused one is refused with HTTP 401 before the upgrade). On
  connecting the server sends ``{"type": "hello", …}``; it answers the client's
  pings with pongs (recorded), and can ping the client (`ping`) and ask it to
  reconnect (`disconnect`, ``{"type": "disconnect", "reason": …}``).
* envelopes pushed by the test (`send`, `slash_command`, `block_action`,
  `event`) have Slack's shape: ``envelope_id``, ``type``, ``payload``,
  ``accepts_response_payload`` and, for ``events_api``, ``retry_attempt`` and
  ``retry_reason``. They go to the newest open connection.
* acknowledgements (``{"envelope_id": …, "payload"?: …}``) are recorded (`acks`)
  with the time from sending the envelope to receiving its ack.

All state is guarded by one lock: tests read it from their own thread while the
server thread mutates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import aiohttp
from aiohttp import WSMsgType, web

from tests.fakes.background import BackgroundServer
from tests.fakes.slack import FakeSlack

T = TypeVar("T")

DEFAULT_APP_TOKEN = "xapp-1-A0NEXUS-1000000000001-fakeslacksocketmodeapptoken"
DEFAULT_APP_ID = "A0NEXUS"
DEFAULT_TEAM_ID = "T0FAKE000"
# Not forwarded by the proxy in either direction.
_HOP_HEADERS = frozenset(
    {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade"}
)


@dataclass
class ConnectionsOpen:
    """One ``apps.connections.open`` call."""

    token: str | None
    authorization: str | None  # the raw Authorization header, if any
    response: dict[str, Any]
    at: float  # time.monotonic()

    @property
    def ok(self) -> bool:
        return bool(self.response.get("ok"))


@dataclass
class SocketConnection:
    """One WebSocket connection from the client, numbered from 1."""

    number: int
    ticket: str
    opened_at: float
    hello: dict[str, Any] | None = None  # what the server sent, once sent
    closed_at: float | None = None
    close_code: int | None = None
    pings: list[bytes] = field(default_factory=list)  # ping frames from the client
    pongs: list[bytes] = field(default_factory=list)  # pong frames from the client
    received: list[Any] = field(default_factory=list)  # text frames, JSON-decoded if possible

    @property
    def open(self) -> bool:
        return self.hello is not None and self.closed_at is None


@dataclass
class Envelope:
    """What the server pushed: ``body`` is the exact JSON object sent."""

    envelope_id: str
    type: str
    body: dict[str, Any]
    connection: int
    sent_at: float


@dataclass
class Ack:
    """A client message carrying an ``envelope_id``."""

    envelope_id: str
    message: dict[str, Any]  # as received: {"envelope_id": …, "payload"?: …}
    connection: int
    at: float
    latency: float | None  # seconds since the envelope was sent; None if never sent

    @property
    def payload(self) -> dict[str, Any] | None:
        payload = self.message.get("payload")
        return payload if isinstance(payload, dict) else None

    @property
    def has_payload(self) -> bool:
        return "payload" in self.message


class FakeSlackSocket(BackgroundServer):
    thread_name = "fake-slack-socket"

    def __init__(
        self,
        slack: FakeSlack,
        *,
        app_token: str | None = DEFAULT_APP_TOKEN,
        app_id: str = DEFAULT_APP_ID,
        team_id: str = DEFAULT_TEAM_ID,
    ) -> None:
        """``app_token=None`` accepts any ``xapp-`` token; a string must match exactly."""
        self.slack = slack
        self.app_token = app_token
        self.app_id = app_id
        self.team_id = team_id

        self._lock = threading.RLock()
        self._opens: list[ConnectionsOpen] = []
        self._tickets: set[str] = set()
        self._refused_tickets: list[str] = []
        self._connections: list[SocketConnection] = []
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._envelopes: dict[str, Envelope] = {}
        self._acks: list[Ack] = []

        self._session: aiohttp.ClientSession | None = None
        super().__init__()

    # -- lifecycle -----------------------------------------------------------

    def _build_app(self) -> web.Application:
        # No timeout: FakeSlack may hold a call on purpose (hold_next).
        self._session = aiohttp.ClientSession(
            auto_decompress=False, timeout=aiohttp.ClientTimeout(total=None)
        )
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/api/apps.connections.open", self._handle_connections_open)
        app.router.add_get("/link", self._handle_link)
        app.router.add_get("/link/", self._handle_link)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        return app

    async def _on_stop(self) -> None:
        with self._lock:
            sockets = list(self._sockets.values())
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close(code=aiohttp.WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def base(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeSlackSocket not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The Web API base URL for SLACK_API_URL: Socket Mode here, the rest forwarded."""
        return f"{self.base}/api/"

    # -- inspection ------------------------------------------------------------

    def opens(self, *, ok: bool | None = None) -> list[ConnectionsOpen]:
        """``apps.connections.open`` calls in arrival order."""
        with self._lock:
            return [o for o in self._opens if ok is None or o.ok == ok]

    def connections(self) -> list[SocketConnection]:
        with self._lock:
            return list(self._connections)

    @property
    def current(self) -> SocketConnection | None:
        """The newest open connection (the one envelopes go to)."""
        with self._lock:
            for conn in reversed(self._connections):
                if conn.open:
                    return conn
        return None

    @property
    def refused_tickets(self) -> list[str]:
        with self._lock:
            return list(self._refused_tickets)

    def envelopes(self) -> list[Envelope]:
        with self._lock:
            return list(self._envelopes.values())

    def acks(self, envelope_id: str | None = None) -> list[Ack]:
        with self._lock:
            return [a for a in self._acks if envelope_id is None or a.envelope_id == envelope_id]

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01
    ) -> T:
        """Poll ``predicate()`` until truthy and return it; TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    def wait_for_connection(self, number: int = 1, timeout: float = 10.0) -> SocketConnection:
        """Wait until connection ``number`` (1 = the first) has been sent its hello."""

        def connected() -> SocketConnection | None:
            conns = self.connections()
            if len(conns) >= number and conns[number - 1].hello is not None:
                return conns[number - 1]
            return None

        found = self.wait_for(connected, timeout)
        assert found is not None
        return found

    def wait_for_ack(self, envelope_id: str, timeout: float = 5.0) -> Ack:
        return self.wait_for(lambda: self.acks(envelope_id), timeout)[0]

    # -- pushing to the client ---------------------------------------------------

    def send(
        self,
        type: str,  # Slack's field name
        payload: dict[str, Any],
        *,
        accepts_response_payload: bool = False,
        retry_attempt: int | None = None,
        retry_reason: str | None = None,
        envelope_id: str | None = None,
    ) -> str:
        """Push an envelope to the newest open connection; returns its envelope_id."""
        envelope_id = envelope_id or str(uuid.uuid4())
        body: dict[str, Any] = {
            "envelope_id": envelope_id,
            "payload": payload,
            "type": type,
            "accepts_response_payload": accepts_response_payload,
        }
        if retry_attempt is not None:
            body["retry_attempt"] = retry_attempt
        if retry_reason is not None:
            body["retry_reason"] = retry_reason
        self._run(self._send_envelope(envelope_id, type, body))
        return envelope_id

    def slash_command(
        self,
        text: str,
        *,
        command: str = "/incident",
        user: str = "U0ALICE",
        channel: str = "C0INCIDENTS",
        response_url: str = "",
    ) -> str:
        """A ``slash_commands`` envelope (the client may answer with a payload)."""
        payload = {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "team_domain": "nexus",
            "channel_id": channel,
            "channel_name": "incidents",
            "user_id": user,
            "user_name": user.lower(),
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": response_url,
            "trigger_id": _trigger_id(),
        }
        return self.send("slash_commands", payload, accepts_response_payload=True)

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "U0ALICE",
        channel: str = "C0INCIDENTS",
        message_ts: str = "1.1",
        response_url: str = "",
    ) -> str:
        """An ``interactive`` envelope holding a ``block_actions`` button click."""
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": self.team_id},
            "api_app_id": self.app_id,
            "token": "legacy-verification-token",
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel,
                "is_ephemeral": False,
            },
            "trigger_id": _trigger_id(),
            "team": {"id": self.team_id, "domain": "nexus"},
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "incidents"},
            "message": {"type": "message", "ts": message_ts, "text": "incident"},
            "response_url": response_url,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b1",
                    "text": {"type": "plain_text", "text": action_id},
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
        }
        return self.send("interactive", payload, accepts_response_payload=False)

    def event(
        self,
        event: dict[str, Any],
        *,
        event_id: str | None = None,
        retry_attempt: int = 0,
        retry_reason: str = "",
    ) -> str:
        """An ``events_api`` envelope wrapping ``event`` in an ``event_callback``."""
        payload = {
            "token": "legacy-verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": event,
            "type": "event_callback",
            "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
            "event_time": int(time.time()),
            "authorizations": [
                {
                    "enterprise_id": None,
                    "team_id": self.team_id,
                    "user_id": self.slack.bot_user_id,
                    "is_bot": True,
                    "is_enterprise_install": False,
                }
            ],
            "is_ext_shared_channel": False,
            "event_context": f"4-{uuid.uuid4().hex}",
        }
        return self.send(
            "events_api",
            payload,
            accepts_response_payload=False,
            retry_attempt=retry_attempt,
            retry_reason=retry_reason,
        )

    def disconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to reconnect, as Slack does before recycling a connection."""
        message = {
            "type": "disconnect",
            "reason": reason,
            "debug_info": {"host": "applink-fake-0"},
        }
        self._run(self._send_text(json.dumps(message)))

    def ping(self, data: bytes = b"fake-slack-ping") -> None:
        """Send a ping frame; the client's pong lands in ``current.pongs``."""
        self._run(self._ping(data))

    # -- server side -------------------------------------------------------------

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            coro.close()
            raise RuntimeError("FakeSlackSocket not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    def _current_socket(self) -> tuple[SocketConnection, web.WebSocketResponse]:
        with self._lock:
            for conn in reversed(self._connections):
                ws = self._sockets.get(conn.number)
                if conn.open and ws is not None and not ws.closed:
                    return conn, ws
        raise RuntimeError("no open Socket Mode connection")

    async def _send_envelope(self, envelope_id: str, type_: str, body: dict[str, Any]) -> None:
        conn, ws = self._current_socket()
        with self._lock:
            self._envelopes[envelope_id] = Envelope(
                envelope_id, type_, body, conn.number, time.monotonic()
            )
        await ws.send_str(json.dumps(body))

    async def _send_text(self, text: str) -> None:
        _, ws = self._current_socket()
        await ws.send_str(text)

    async def _ping(self, data: bytes) -> None:
        _, ws = self._current_socket()
        await ws.ping(data)

    async def _handle_connections_open(self, request: web.Request) -> web.Response:
        params = await _form_params(request)
        authorization = request.headers.get("Authorization")
        token: str | None = None
        if authorization and authorization.startswith("Bearer "):
            token = authorization[len("Bearer ") :]
        elif params.get("token"):
            token = params["token"]
        if request.method != "POST":
            response: dict[str, Any] = {"ok": False, "error": "method_not_supported"}
        elif not token:
            response = {"ok": False, "error": "not_authed"}
        elif not token.startswith("xapp-"):
            response = {"ok": False, "error": "not_allowed_token_type"}
        elif self.app_token is not None and token != self.app_token:
            response = {"ok": False, "error": "invalid_auth"}
        else:
            ticket = uuid.uuid4().hex
            with self._lock:
                self._tickets.add(ticket)
            url = f"ws://127.0.0.1:{self._port}/link/?ticket={ticket}&app_id={self.app_id}"
            response = {"ok": True, "url": url}
        with self._lock:
            self._opens.append(ConnectionsOpen(token, authorization, response, time.monotonic()))
        return web.json_response(response)

    async def _handle_link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            valid = ticket in self._tickets
            self._tickets.discard(ticket)
            if not valid:
                self._refused_tickets.append(ticket)
        if not valid:
            return web.json_response({"ok": False, "error": "invalid_ticket"}, status=401)

        # autoping off: pings and pongs are seen (and recorded) here, not swallowed.
        ws = web.WebSocketResponse(autoping=False)
        await ws.prepare(request)
        with self._lock:
            conn = SocketConnection(len(self._connections) + 1, ticket, time.monotonic())
            self._connections.append(conn)
            self._sockets[conn.number] = ws
        hello = {
            "type": "hello",
            "num_connections": 1,
            "debug_info": {
                "host": "applink-fake-0",
                "build_number": 1,
                "approximate_connection_time": 18060,
            },
            "connection_info": {"app_id": self.app_id},
        }
        try:
            await ws.send_str(json.dumps(hello))
            with self._lock:
                conn.hello = hello
            async for msg in ws:  # ends on CLOSE (answered by aiohttp) or a closed socket
                if msg.type == WSMsgType.TEXT:
                    self._received(conn, msg.data)
                elif msg.type == WSMsgType.PING:
                    with self._lock:
                        conn.pings.append(msg.data)
                    await ws.pong(msg.data)
                elif msg.type == WSMsgType.PONG:
                    with self._lock:
                        conn.pongs.append(msg.data)
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            with self._lock:
                conn.closed_at = time.monotonic()
                conn.close_code = ws.close_code
                self._sockets.pop(conn.number, None)
        return ws

    def _received(self, conn: SocketConnection, data: str) -> None:
        try:
            message: Any = json.loads(data)
        except ValueError:
            message = data
        now = time.monotonic()
        with self._lock:
            conn.received.append(message)
            if isinstance(message, dict) and isinstance(message.get("envelope_id"), str):
                envelope = self._envelopes.get(message["envelope_id"])
                latency = now - envelope.sent_at if envelope else None
                self._acks.append(Ack(message["envelope_id"], message, conn.number, now, latency))

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        """Everything but Socket Mode goes to the wrapped FakeSlack, unchanged."""
        assert self._session is not None
        body = await request.read()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        try:
            async with self._session.request(
                request.method,
                self.slack.base + request.path_qs,
                data=body,
                headers=headers,
                allow_redirects=False,
            ) as upstream:
                content = await upstream.read()
                out = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
                return web.Response(status=upstream.status, body=content, headers=out)
        except aiohttp.ClientError:
            # FakeSlack dropped the connection on purpose: so do we.
            if request.transport is not None:
                request.transport.abort()
            raise asyncio.CancelledError from None


def _trigger_id() -> str:
    return f"{int(time.time())}.{uuid.uuid4().int % 10**12}.{uuid.uuid4().hex[:32]}"


async def _form_params(request: web.Request) -> dict[str, str]:
    params = dict(request.query)
    if request.content_type == "application/x-www-form-urlencoded":
        raw = await request.read()
        params.update(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    elif request.content_type == "application/json":
        with contextlib.suppress(ValueError):
            body = json.loads(await request.read() or b"{}")
            if isinstance(body, dict):
                params.update({k: str(v) for k, v in body.items()})
    return params


@contextlib.contextmanager
def running_fake_slack_socket(slack: FakeSlack, **kwargs: Any) -> Iterator[FakeSlackSocket]:
    """``with running_fake_slack_socket(slack) as sock: ...``"""
    fake = FakeSlackSocket(slack, **kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
