"""A fake Slack Web API: a real HTTP server on 127.0.0.1 for tests.

The server runs aiohttp.web on its own event loop in a background thread, so
synchronous tests, async tests (whose loop must stay free to run the code under
test) and bots started as subprocesses can all talk to it over a socket::

    with FakeSlack() as slack:
        client = AsyncWebClient(token=slack.token, base_url=slack.url)
        ...
        slack.wait_for(lambda: len(slack.messages("C1")) == 3)

What it models:

* every call is recorded (`calls`), including ones answered with a fault;
* answers shaped like Slack's for the methods the bot uses (``auth.test``,
  ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``, ``views.open``,
  ``views.update``, ``usergroups.users.list``, ``users.info``,
  ``conversations.info``, ``conversations.history``, ``conversations.replies``);
  anything else is ``unknown_method``;
* the token (``invalid_auth`` when missing or different from ``token``);
* posted messages per channel, with threads, edits and message metadata
  (`messages`, `thread`); ``ts`` is the wall-clock time of posting (unique,
  increasing), so ``oldest``/``latest`` work as on Slack; the history methods
  page with ``limit``/``cursor`` and return ``metadata`` only with
  ``include_all_metadata``;
* Slack's per-channel pacing: a token bucket per (method, channel) for
  ``chat.postMessage`` and ``chat.update``, answering HTTP 429 with a
  ``Retry-After`` header when exceeded (`ratelimited_count`);
* faults on demand: `fail_next` (5xx with an HTML body), `rate_limit_next`,
  `drop_connections_next`, `inject_error` (``ok: false``), `hold_next`/`release`
  (park requests to kill a client at a precise moment), `delay` (before
  processing) and `answer_slowly` (after processing: the message is posted,
  the answer comes late, so a client times out or is killed meanwhile);
* ``response_url`` endpoints (``POST /response/<id>``), as Bolt's ``respond()`` uses.

All state is guarded by one lock: tests read it from their own thread while the
server thread mutates it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.background import BackgroundServer

T = TypeVar("T")

DEFAULT_TOKEN = "xoxb-fake-slack-token"
RATE_LIMITED_METHODS = ("chat.postMessage", "chat.update")
# Parameters Slack accepts as JSON-encoded strings in form bodies.
_JSON_PARAMS = frozenset({"blocks", "attachments", "view", "metadata"})


@dataclass
class FakeCall:
    """One HTTP request to ``/api/<method>``."""

    method: str
    params: dict[str, Any]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival
    wall_time: float  # time.time() on arrival
    status: int | None = None  # HTTP status answered; None while in flight or dropped
    response: dict[str, Any] | None = None
    outcome: str = "pending"  # ok | error:<code> | http_<status> | ratelimited | dropped

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            return auth[len("Bearer ") :]
        token = self.params.get("token")
        return str(token) if token is not None else None


@dataclass
class FakeMessage:
    """A message as Slack stores it; ``edits`` holds previous versions, oldest first."""

    channel: str
    ts: str
    text: str | None
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    user: str
    posted_at: float
    edits: list[dict[str, Any]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts

    @property
    def edit_count(self) -> int:
        return len(self.edits)


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _Fault:
    kind: str  # fail | ratelimit | drop | drop_after | hold | hold_after | error
    remaining: int | None  # None = forever
    method: str | None = None
    channel: str | None = None
    status: int = 500
    body: str = ""
    retry_after: float = 1.0
    error: str = ""
    skip: int = 0  # matching calls to let through first

    def matches(self, method: str, params: Mapping[str, Any]) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return self.channel is None or params.get("channel") == self.channel

    def consume(self) -> None:
        if self.remaining is not None:
            self.remaining -= 1


class _Drop(Exception):
    """Close the connection without answering."""


class FakeSlack(BackgroundServer):
    thread_name = "fake-slack"

    def __init__(
        self,
        *,
        token: str | None = DEFAULT_TOKEN,
        post_rate: float = 1.0,
        post_burst: int = 3,
        update_rate: float = 1.0,
        update_burst: int = 3,
        rate_limits: bool = True,
        delay: float = 0.0,
        usergroups: Mapping[str, list[str]] | None = None,
        users: Mapping[str, Mapping[str, Any]] | None = None,
        team: str = "NEXUS Test",
        team_id: str = "T0FAKE000",
        bot_user_id: str = "U0FAKEBOT",
        bot_id: str = "B0FAKEBOT",
    ) -> None:
        """``token=None`` accepts any non-empty token; a string must match exactly."""
        self.token = token
        self.post_rate = post_rate
        self.post_burst = post_burst
        self.update_rate = update_rate
        self.update_burst = update_burst
        self.rate_limits = rate_limits
        self.delay = delay
        self.usergroups: dict[str, list[str]] = {k: list(v) for k, v in (usergroups or {}).items()}
        self.users: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (users or {}).items()}
        self.team = team
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id

        self._lock = threading.RLock()
        self._calls: list[FakeCall] = []
        self._messages: dict[str, list[FakeMessage]] = {}
        self._by_ts: dict[tuple[str, str], FakeMessage] = {}
        self._ephemeral: list[dict[str, Any]] = []
        self._views: dict[str, dict[str, Any]] = {}
        self._responses: list[tuple[str, Any]] = []
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._faults: list[_Fault] = []
        self._held: list[asyncio.Future[bool]] = []
        self._last_ts_us = 0
        self._view_seq = 0
        self._answer_delay = 0.0
        self._answer_delay_method: str | None = None
        self.ratelimited_count = 0

        super().__init__()

    # -- lifecycle -----------------------------------------------------------

    def _before_stop(self) -> None:
        self.release(drop=True)

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=10 * 1024 * 1024)
        app.router.add_route("*", "/api/{method}", self._handle_api)
        app.router.add_post("/response/{id}", self._handle_response_url)
        return app

    @property
    def base(self) -> str:
        if self._port is None:
            raise RuntimeError("FakeSlack not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def url(self) -> str:
        """The Web API base URL: ``AsyncWebClient(base_url=...)`` / SLACK_API_URL."""
        return f"{self.base}/api/"

    def response_url(self, response_id: str) -> str:
        return f"{self.base}/response/{response_id}"

    # -- inspection ------------------------------------------------------------

    def calls(self, method: str | None = None, *, ok: bool | None = None) -> list[FakeCall]:
        """Recorded calls in arrival order, optionally of one method / outcome."""
        with self._lock:
            return [
                c
                for c in self._calls
                if (method is None or c.method == method) and (ok is None or c.ok == ok)
            ]

    def messages(self, channel: str | None = None) -> list[FakeMessage]:
        """Messages in posting order (roots and replies), of one channel or all."""
        with self._lock:
            if channel is not None:
                return list(self._messages.get(channel, []))
            return sorted((m for msgs in self._messages.values() for m in msgs), key=lambda m: m.ts)

    def roots(self, channel: str) -> list[FakeMessage]:
        return [m for m in self.messages(channel) if not m.is_reply]

    def thread(self, channel: str, thread_ts: str) -> list[FakeMessage]:
        """Replies in the thread of ``thread_ts``, oldest first (the root excluded)."""
        return [m for m in self.messages(channel) if m.is_reply and m.thread_ts == thread_ts]

    def message(self, channel: str, ts: str) -> FakeMessage | None:
        with self._lock:
            return self._by_ts.get((channel, ts))

    def texts(self, channel: str | None = None) -> list[str | None]:
        """The current text of every message posted, in posting order."""
        return [m.text for m in self.messages(channel)]

    def ephemeral(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._ephemeral)

    def views(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return dict(self._views)

    def responses(self, response_id: str | None = None) -> list[Any]:
        """JSON bodies POSTed to response URLs (all, or those of one id)."""
        with self._lock:
            return [b for rid, b in self._responses if response_id is None or rid == response_id]

    @property
    def held_count(self) -> int:
        with self._lock:
            return sum(1 for f in self._held if not f.done())

    def wait_for(
        self, predicate: Callable[[], T], timeout: float = 5.0, interval: float = 0.01
    ) -> T:
        """Poll ``predicate()`` until truthy and return it; TimeoutError otherwise.

        Blocks the calling thread: from async tests use `wait_for_async`.
        """
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            time.sleep(interval)

    async def wait_for_async(
        self,
        predicate: Callable[[], T],
        timeout: float = 5.0,  # noqa: ASYNC109 - mirrors wait_for; polls, never blocks the loop
        interval: float = 0.01,
    ) -> T:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() >= deadline:
                raise TimeoutError(f"condition not met within {timeout}s")
            await asyncio.sleep(interval)

    # -- fault injection -------------------------------------------------------

    def fail_next(
        self,
        n: int = 1,
        status: int = 500,
        *,
        body: str = "<html><body><h1>500 Internal Server Error</h1></body></html>",
        method: str | None = None,
        skip: int = 0,
    ) -> None:
        """Answer the next ``n`` API calls with HTTP ``status`` and a non-JSON body.

        Every fault helper takes ``method`` (only calls of that method count)
        and ``skip`` (let that many matching calls through first).
        """
        self._add_fault(_Fault("fail", n, method=method, status=status, body=body, skip=skip))

    def rate_limit_next(
        self, n: int = 1, retry_after: float = 1, *, method: str | None = None, skip: int = 0
    ) -> None:
        """Answer the next ``n`` API calls with HTTP 429 and ``Retry-After``."""
        self._add_fault(_Fault("ratelimit", n, method=method, retry_after=retry_after, skip=skip))

    def drop_connections_next(
        self,
        n: int = 1,
        *,
        method: str | None = None,
        after_processing: bool = False,
        skip: int = 0,
    ) -> None:
        """Close the socket of the next ``n`` API calls without answering.

        ``after_processing=True`` first performs the call (the message is
        posted), then drops: the client cannot know it succeeded.
        """
        kind = "drop_after" if after_processing else "drop"
        self._add_fault(_Fault(kind, n, method=method, skip=skip))

    def inject_error(
        self,
        error: str,
        *,
        method: str | None = None,
        channel: str | None = None,
        times: int | None = None,
    ) -> None:
        """Answer matching calls with ``{"ok": false, "error": error}`` (HTTP 200).

        ``times=None`` keeps doing so forever (e.g. a ``channel_not_found``).
        """
        self._add_fault(_Fault("error", times, method=method, channel=channel, error=error))

    def hold_next(
        self,
        n: int = 1,
        *,
        method: str | None = None,
        after_processing: bool = False,
        skip: int = 0,
    ) -> None:
        """Park the next ``n`` API calls until `release`.

        Before processing (default) a held call has had no effect yet; with
        ``after_processing=True`` it has been performed and only the answer waits.
        """
        kind = "hold_after" if after_processing else "hold"
        self._add_fault(_Fault(kind, n, method=method, skip=skip))

    def answer_slowly(self, seconds: float, *, method: str | None = None) -> None:
        """Answer calls (of ``method``) ``seconds`` late, after performing them.

        The message is stored at once; only the answer waits. ``0`` turns it off.
        """
        with self._lock:
            self._answer_delay, self._answer_delay_method = seconds, method

    def release(self, *, drop: bool = False) -> None:
        """Let held calls continue, or (``drop=True``) close their connections.

        A call held before processing and dropped never takes effect.
        """
        loop = self._loop
        with self._lock:
            held, self._held = self._held, []
        if loop is None:
            return
        for fut in held:
            loop.call_soon_threadsafe(_resolve, fut, not drop)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(
        self, kinds: tuple[str, ...], method: str, params: dict[str, Any]
    ) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.matches(method, params):
                    if fault.skip > 0:
                        fault.skip -= 1
                        continue
                    fault.consume()
                    return fault
        return None

    # -- HTTP handlers ---------------------------------------------------------

    async def _handle_response_url(self, request: web.Request) -> web.Response:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        with self._lock:
            self._responses.append((request.match_info["id"], body))
        return web.Response(text="ok", content_type="text/html")

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        params = await _parse_params(request)
        call = FakeCall(
            method=method,
            params=params,
            headers=dict(request.headers),
            at=time.monotonic(),
            wall_time=time.time(),
        )
        with self._lock:
            self._calls.append(call)
        try:
            return await self._answer(call)
        except _Drop:
            call.outcome = "dropped"
            transport = request.transport
            if transport is not None:
                transport.abort()
            # aiohttp treats a cancelled handler as "nothing to send".
            raise asyncio.CancelledError from None

    async def _answer(self, call: FakeCall) -> web.StreamResponse:
        method, params = call.method, call.params
        if self.delay > 0:
            await asyncio.sleep(self.delay)
        if self._take_fault(("drop",), method, params):
            raise _Drop
        fault = self._take_fault(("fail",), method, params)
        if fault:
            call.status, call.outcome = fault.status, f"http_{fault.status}"
            return web.Response(status=fault.status, text=fault.body, content_type="text/html")
        fault = self._take_fault(("ratelimit",), method, params)
        if fault:
            return self._ratelimited(call, fault.retry_after)
        if self._take_fault(("hold",), method, params) and not await self._hold():
            raise _Drop

        if not self._authorized(call):
            body: dict[str, Any] = {"ok": False, "error": "invalid_auth"}
        else:
            fault = self._take_fault(("error",), method, params)
            if fault:
                body = {"ok": False, "error": fault.error}
            else:
                retry_after = self._consume_rate(method, params)
                if retry_after is not None:
                    return self._ratelimited(call, retry_after)
                body = self._dispatch(method, params)

        if self._take_fault(("hold_after",), method, params) and not await self._hold():
            raise _Drop
        if self._take_fault(("drop_after",), method, params):
            raise _Drop
        with self._lock:
            slow = self._answer_delay
            if self._answer_delay_method not in (None, method):
                slow = 0.0
        if slow > 0:
            await asyncio.sleep(slow)
        call.status, call.response = 200, body
        call.outcome = "ok" if body.get("ok") else f"error:{body.get('error')}"
        return web.json_response(body)

    async def _hold(self) -> bool:
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._held.append(fut)
        return await fut

    def _ratelimited(self, call: FakeCall, retry_after: float) -> web.Response:
        header = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        body = {"ok": False, "error": "ratelimited"}
        with self._lock:
            self.ratelimited_count += 1
        call.status, call.response, call.outcome = 429, body, "ratelimited"
        return web.json_response(body, status=429, headers={"Retry-After": header})

    def _authorized(self, call: FakeCall) -> bool:
        token = call.token
        if not token:
            return False
        return self.token is None or token == self.token

    def _consume_rate(self, method: str, params: Mapping[str, Any]) -> float | None:
        """Take a token from the (method, channel) bucket; seconds to wait if empty."""
        if not self.rate_limits or method not in RATE_LIMITED_METHODS:
            return None
        if method == "chat.postMessage":
            rate, burst = self.post_rate, self.post_burst
        else:
            rate, burst = self.update_rate, self.update_burst
        key = (method, str(params.get("channel")))
        now = time.monotonic()
        with self._lock:
            bucket = self._buckets.setdefault(key, _Bucket(tokens=float(burst), updated=now))
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return float(max(1, math.ceil((1.0 - bucket.tokens) / rate)))

    # -- methods ---------------------------------------------------------------

    def _dispatch(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        handler = _METHODS.get(method)
        if handler is None:
            return {"ok": False, "error": "unknown_method"}
        return handler(self, params)

    def _next_ts(self) -> str:
        """Now, in microseconds: Slack's ts is the time of posting, unique per channel."""
        with self._lock:
            n = self._last_ts_us = max(int(time.time() * 1_000_000), self._last_ts_us + 1)
        return f"{n // 1_000_000}.{n % 1_000_000:06d}"

    def _auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://nexus-test.slack.com/",
            "team": self.team,
            "team_id": self.team_id,
            "user": "nexus",
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
        }

    def _post_message(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        text, blocks = params.get("text"), params.get("blocks")
        if not text and not blocks:
            return {"ok": False, "error": "no_text"}
        thread_ts = params.get("thread_ts") or None
        metadata = params.get("metadata")
        if metadata is not None and not _valid_metadata(metadata):
            return {"ok": False, "error": "invalid_metadata_format"}
        msg = FakeMessage(
            channel=str(channel),
            ts=self._next_ts(),
            text=text,
            blocks=blocks,
            thread_ts=str(thread_ts) if thread_ts else None,
            user=self.bot_user_id,
            posted_at=time.monotonic(),
            metadata=metadata,
        )
        with self._lock:
            self._messages.setdefault(msg.channel, []).append(msg)
            self._by_ts[(msg.channel, msg.ts)] = msg
        return {"ok": True, "channel": msg.channel, "ts": msg.ts, "message": _message_json(msg)}

    def _update(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, ts = str(params.get("channel")), str(params.get("ts"))
        with self._lock:
            msg = self._by_ts.get((channel, ts))
            if msg is None:
                return {"ok": False, "error": "message_not_found"}
            msg.edits.append({"text": msg.text, "blocks": msg.blocks})
            if "text" in params:
                msg.text = params["text"]
            if "blocks" in params:
                msg.blocks = params["blocks"]
            if params.get("metadata") is not None:  # absent: left as it was
                if not _valid_metadata(params["metadata"]):
                    return {"ok": False, "error": "invalid_metadata_format"}
                msg.metadata = params["metadata"]
            return {
                "ok": True,
                "channel": channel,
                "ts": ts,
                "text": msg.text,
                "message": _message_json(msg),
            }

    def _post_ephemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        if not params.get("channel"):
            return {"ok": False, "error": "channel_not_found"}
        if not params.get("user"):
            return {"ok": False, "error": "user_not_in_channel"}
        ts = self._next_ts()
        with self._lock:
            self._ephemeral.append({**params, "message_ts": ts})
        return {"ok": True, "message_ts": ts}

    def _views_open(self, params: dict[str, Any]) -> dict[str, Any]:
        view = params.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            self._view_seq += 1
            view_id = f"V{self._view_seq:08d}"
            stored = {**view, "id": view_id, "team_id": self.team_id}
            self._views[view_id] = stored
        return {"ok": True, "view": stored}

    def _views_update(self, params: dict[str, Any]) -> dict[str, Any]:
        view_id, view = params.get("view_id"), params.get("view")
        if not isinstance(view, dict):
            return {"ok": False, "error": "invalid_arguments"}
        with self._lock:
            if view_id not in self._views:
                return {"ok": False, "error": "not_found"}
            stored = {**view, "id": view_id, "team_id": self.team_id}
            self._views[str(view_id)] = stored
        return {"ok": True, "view": stored}

    def _usergroup_users(self, params: dict[str, Any]) -> dict[str, Any]:
        group = params.get("usergroup")
        with self._lock:
            users = self.usergroups.get(str(group))
        if users is None:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(users)}

    def _users_info(self, params: dict[str, Any]) -> dict[str, Any]:
        user_id = params.get("user")
        if not user_id:
            return {"ok": False, "error": "user_not_found"}
        with self._lock:
            extra = dict(self.users.get(str(user_id), {}))
        name = str(extra.get("name", str(user_id).lower()))
        user = {
            "id": user_id,
            "team_id": self.team_id,
            "name": name,
            "real_name": extra.get("real_name", name),
            "deleted": False,
            "is_bot": False,
            "tz": "Etc/UTC",
            "profile": {"display_name": name, "real_name": extra.get("real_name", name)},
        }
        user.update(extra)
        return {"ok": True, "user": user}

    def _conversations_info(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        return {
            "ok": True,
            "channel": {
                "id": channel,
                "name": str(channel).lower(),
                "is_channel": True,
                "is_private": False,
                "is_archived": False,
                "is_member": True,
            },
        }

    def _conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Top-level messages (and thread roots), newest first."""
        channel = params.get("channel")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        with self._lock:
            tops = [m for m in self._messages.get(str(channel), []) if not m.is_reply]
        return _page(list(reversed(_between(tops, params))), params)

    def _conversations_replies(self, params: dict[str, Any]) -> dict[str, Any]:
        """The thread's root first (always, as on Slack), then replies, oldest first."""
        channel, ts = str(params.get("channel")), str(params.get("ts"))
        with self._lock:
            root = self._by_ts.get((channel, ts))
            if root is None:
                return {"ok": False, "error": "thread_not_found"}
            replies = [
                m for m in self._messages.get(channel, []) if m.thread_ts == ts and m.is_reply
            ]
        return _page([root, *_between(replies, params)], params)


_METHODS: dict[str, Callable[[FakeSlack, dict[str, Any]], dict[str, Any]]] = {
    "auth.test": FakeSlack._auth_test,
    "chat.postMessage": FakeSlack._post_message,
    "chat.update": FakeSlack._update,
    "chat.postEphemeral": FakeSlack._post_ephemeral,
    "views.open": FakeSlack._views_open,
    "views.update": FakeSlack._views_update,
    "usergroups.users.list": FakeSlack._usergroup_users,
    "users.info": FakeSlack._users_info,
    "conversations.info": FakeSlack._conversations_info,
    "conversations.history": FakeSlack._conversations_history,
    "conversations.replies": FakeSlack._conversations_replies,
}


def _resolve(fut: asyncio.Future[bool], value: bool) -> None:
    if not fut.done():
        fut.set_result(value)


def _valid_metadata(metadata: Any) -> bool:
    return (
        isinstance(metadata, dict)
        and isinstance(metadata.get("event_type"), str)
        and isinstance(metadata.get("event_payload"), dict)
    )


def _truthy(value: Any) -> bool:
    return str(value).lower() in ("1", "true")


def _ts_value(ts: Any) -> Decimal | None:
    try:
        return Decimal(str(ts))
    except (InvalidOperation, ValueError):
        return None


def _between(messages: list[FakeMessage], params: Mapping[str, Any]) -> list[FakeMessage]:
    """Those after ``oldest`` and before ``latest`` (``inclusive`` includes both ends)."""
    oldest, latest = _ts_value(params.get("oldest")), _ts_value(params.get("latest"))
    inclusive = _truthy(params.get("inclusive"))
    kept = []
    for msg in messages:
        ts = Decimal(msg.ts)
        if oldest is not None and (ts < oldest or (ts == oldest and not inclusive)):
            continue
        if latest is not None and (ts > latest or (ts == latest and not inclusive)):
            continue
        kept.append(msg)
    return kept


def _page(messages: list[FakeMessage], params: Mapping[str, Any]) -> dict[str, Any]:
    """One page of ``limit`` (default 100) from ``cursor`` (an offset, opaque to clients)."""
    try:
        limit = max(1, min(999, int(params.get("limit") or 100)))
        start = int(str(params.get("cursor") or "0").removeprefix("offset:"))
    except ValueError:
        return {"ok": False, "error": "invalid_cursor"}
    metadata = _truthy(params.get("include_all_metadata"))
    with_metadata = [_message_json(m, metadata=metadata) for m in messages[start : start + limit]]
    more = start + limit < len(messages)
    return {
        "ok": True,
        "messages": with_metadata,
        "has_more": more,
        "response_metadata": {"next_cursor": f"offset:{start + limit}" if more else ""},
    }


def _message_json(msg: FakeMessage, *, metadata: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": "message",
        "user": msg.user,
        "ts": msg.ts,
        "text": msg.text or "",
    }
    if msg.blocks is not None:
        out["blocks"] = msg.blocks
    if msg.thread_ts is not None:
        out["thread_ts"] = msg.thread_ts
    if msg.edits:
        out["edited"] = {"user": msg.user, "ts": msg.ts}
    if metadata and msg.metadata is not None:
        out["metadata"] = msg.metadata
    return out


def _decode(key: str, value: str) -> Any:
    if key in _JSON_PARAMS and value[:1] in ("[", "{"):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


async def _parse_params(request: web.Request) -> dict[str, Any]:
    """Query string, then form or JSON body, merged (the body wins)."""
    params: dict[str, Any] = {k: _decode(k, v) for k, v in request.query.items()}
    raw = await request.read()
    if not raw:
        return params
    if request.content_type == "application/json":
        with contextlib.suppress(ValueError):
            body = json.loads(raw)
            if isinstance(body, dict):
                params.update(body)
    elif request.content_type == "application/x-www-form-urlencoded":
        for key, value in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
            params[key] = _decode(key, value)
    return params


@contextlib.contextmanager
def running_fake_slack(**kwargs: Any) -> Iterator[FakeSlack]:
    """``with running_fake_slack(post_rate=10) as slack: ...``"""
    fake = FakeSlack(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
