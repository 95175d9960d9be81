"""Bounds on HTTP connections, enforced below and around the ASGI app.

uvicorn calls the app only once a request's headers are complete, and by itself
never times out a request that is being received: a client trickling headers
(slowloris) or sending a shorter body than its Content-Length holds its
connection, and a socket that never sends a byte is never closed. Here:

- Request deadline (``request_timeout``): from the first byte of a request to
  its last (headers and body). Past it the server answers 408 and closes, or
  only closes when something else was already answered on that connection.
- Idle timeout (``keepalive_timeout``): between requests, and on a fresh
  connection that has sent nothing yet, the connection is closed silently.
- Connection cap (``max_connections``): over it, a new connection closes the
  longest-waiting connection whose request has not reached the app (idle, or
  still sending its headers) to make room; if every connection is busy in the
  app, the new one is answered 503 and closed. So idle sockets cannot use up
  the open-file limit the database and the probes need.
- Concurrency limit (``max_concurrency``, `LimitConcurrency`): requests in the
  app at once; past it 503 with Retry-After. The probes and /metrics are
  exempt: a busy bot must not be restarted for it, and its limits must be
  observable exactly when they bite.

uvicorn's own ``limit_concurrency`` is not used: it counts open connections,
idle keep-alive ones included, so a few hundred idle sockets would turn every
request, /healthz too, into a 503.

The request deadline runs while uvicorn pauses reading because the app has not
consumed 64 KiB of body yet; webhook bodies are read at once, so it does not
bite in practice.
"""

from __future__ import annotations

import asyncio
import json
import resource
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import structlog
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from bot import metrics

log = structlog.get_logger("bot.http")

# After a 408 the server stops sending, then reads and discards for this
# long before closing: closing with the client's bytes unread would send a TCP
# reset, which can destroy the answer before the client reads it.
LINGER_S = 2.0

# File descriptors kept free for everything but client sockets: the database
# pool, SQLite files, git and kubectl subprocess pipes, outgoing HTTPS, logs.
RESERVED_FILES = 128


@dataclass(frozen=True)
class HttpLimits:
    request_timeout: float = 10.0
    keepalive_timeout: float = 5.0
    max_connections: int = 1000
    max_concurrency: int = 100


def connection_cap(wanted: int, open_files_limit: int | None = None) -> int:
    """`wanted`, lowered so client sockets leave RESERVED_FILES descriptors free."""
    if open_files_limit is None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        open_files_limit = soft
    if open_files_limit == resource.RLIM_INFINITY:
        return wanted
    return max(1, min(wanted, open_files_limit - RESERVED_FILES))


def _answer(status: int, reason: str, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A whole HTTP/1.1 response with a JSON error body; the connection closes after it."""
    body = json.dumps({"error": reason}).encode()
    lines = [
        STATUS_LINE[status],
        *(name + b": " + value + b"\r\n" for name, value in headers),
        b"content-type: application/json\r\n",
        b"content-length: " + str(len(body)).encode() + b"\r\n",
        b"connection: close\r\n",
    ]
    return b"".join([*lines, b"\r\n", body])


Phase = Literal["waiting", "headers", "body"]


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a request deadline, an idle timeout on
    fresh connections and a connection cap. `protocol_class` sets the limits."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limit_concurrency = None  # see the module docstring; LimitConcurrency instead
        self.timeout_keep_alive = self.limits.keepalive_timeout  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._phase: Phase = "waiting"
        self._waiting_since = 0.0
        self._linger: asyncio.TimerHandle | None = None

    # -- connection cap ------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._waiting_since = self.loop.time()
        if len(self.connections) > self.limits.max_connections and not self._make_room():
            metrics.HTTP_LIMITED.labels("connection_refused").inc()
            # Closed at once (no lingering: that would hold a descriptor per refusal).
            headers = [*self.server_state.default_headers, (b"retry-after", b"1")]
            transport.write(_answer(503, "too many connections, retry shortly", headers))
            transport.close()
            return
        # uvicorn arms the idle timer only after a response; a fresh connection
        # that never sends a byte would otherwise stay open for ever.
        self.timeout_keep_alive_task = self.loop.call_later(
            self.timeout_keep_alive, self.timeout_keep_alive_handler
        )

    def _make_room(self) -> bool:
        """Close the longest-waiting connection not busy in the app; False if none."""
        open_ones = [c for c in self.connections if not c.transport.is_closing()]
        if len(open_ones) <= self.limits.max_connections:
            return True  # the surplus is already closing
        idle = [
            c
            for c in open_ones
            if c is not self and isinstance(c, LimitedHttpToolsProtocol) and not c._in_app()
        ]
        if not idle:
            return False
        victim = min(idle, key=lambda c: c._waiting_since)
        metrics.HTTP_LIMITED.labels("connection_evicted").inc()
        victim.transport.close()
        return True

    def _in_app(self) -> bool:
        """A request of this connection has reached the app and is not answered yet."""
        if self._linger is not None:
            return False
        return bool(self.pipeline) or (self.cycle is not None and not self.cycle.response_complete)

    def _close_after(self, answer: bytes | None) -> None:
        """Send `answer`, stop sending, discard what still comes for LINGER_S, close."""
        if answer:
            self.transport.write(answer)
        self._unset_keepalive_if_required()
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._linger = self.loop.call_later(LINGER_S, self.transport.close)

    # -- request deadline ----------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._linger is not None:
            return  # answered and closing: discarded
        if self._deadline is None:
            self._arm_deadline()
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._phase = "headers"
        if self._deadline is None:  # a request following another in the same read
            self._arm_deadline()

    def on_headers_complete(self) -> None:
        self._phase = "body"
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._phase = "waiting"
        self._cancel_deadline()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        self._waiting_since = self.loop.time()
        super().on_response_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_deadline()
        if self._linger is not None:
            self._linger.cancel()
        super().connection_lost(exc)

    def _arm_deadline(self) -> None:
        self._deadline = self.loop.call_later(self.limits.request_timeout, self._timed_out)

    def _cancel_deadline(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        if self.transport.is_closing() or self._linger is not None:
            return
        phase = "body" if self._phase == "body" else "headers"
        if phase == "body":
            # The app is waiting for this body: nothing answered yet, unless it answered early.
            answer = (
                not self.pipeline and self.cycle is not None and not self.cycle.response_started
            )
        else:
            # Headers pending: answer only if no earlier response is still to be written.
            answer = not self.pipeline and (self.cycle is None or self.cycle.response_complete)
        if phase == "body" and self.cycle is not None:
            # The app's receive() now reports a disconnect and its send() writes nothing.
            self.cycle.disconnected = True
            self.cycle.keep_alive = False
            self.cycle.message_event.set()
        metrics.HTTP_LIMITED.labels("request_timeout").inc()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        log.info("request not received in time", phase=phase, client=client, answered=answer)
        if not answer:
            self.transport.close()
            return
        reason = f"request not received within {self.limits.request_timeout:g} s"
        self._close_after(_answer(408, reason, self.server_state.default_headers))


def protocol_class(limits: HttpLimits) -> type[LimitedHttpToolsProtocol]:
    """The protocol class to hand to ``uvicorn.Config(http=...)``."""
    return type("LimitedHttpToolsProtocol", (LimitedHttpToolsProtocol,), {"limits": limits})


EXEMPT = frozenset({"/healthz", "/readyz", "/metrics"})


class LimitConcurrency:
    """ASGI wrapper: at most `limit` HTTP requests in the app at once, else 503."""

    def __init__(self, app: ASGIApp, limit: int, exempt: frozenset[str] = EXEMPT):
        self.app = app
        self.limit = limit
        self.exempt = exempt
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.exempt:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:
            metrics.HTTP_LIMITED.labels("over_concurrency").inc()
            body = json.dumps({"error": "too many requests in progress, retry shortly"}).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"retry-after", b"1"),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
