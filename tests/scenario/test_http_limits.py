"""`nexus-bot serve` bounds its connections: real sockets against a real server.

The bot runs with short limits (HTTP_REQUEST_TIMEOUT=2s, HTTP_KEEPALIVE_TIMEOUT=1s)
so each test takes a few seconds; the defaults are 10 s and 5 s.
"""

from __future__ import annotations

import json
import os
import resource
import selectors
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.http_limits import RESERVED_FILES, connection_cap
from tests.support.bot_process import ALERTMANAGER_TOKEN, BotProcess

REQUEST_TIMEOUT = 2.0
KEEPALIVE_TIMEOUT = 1.0
MAX_CONCURRENCY = 4
DATA = Path(__file__).resolve().parents[1] / "data"
NO_SLACK = ("http://127.0.0.1:9/api/", "")  # Slack off: nothing here talks to it


def start(tmp_path: Path, **env: str) -> BotProcess:
    limits = {
        "HTTP_REQUEST_TIMEOUT": f"{REQUEST_TIMEOUT}s",
        "HTTP_KEEPALIVE_TIMEOUT": f"{KEEPALIVE_TIMEOUT}s",
        "HTTP_MAX_CONCURRENCY": str(MAX_CONCURRENCY),
    }
    return BotProcess(f"sqlite:///{tmp_path / 'bot.db'}", *NO_SLACK, **{**limits, **env}).start()


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BotProcess]:
    process = start(tmp_path_factory.mktemp("http-limits"))
    try:
        yield process
    finally:
        process.stop()


def connect(bot: BotProcess) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", bot.port), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_to_close(sock: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    sock.settimeout(timeout)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def alertmanager_body() -> bytes:
    return (DATA / "alertmanager-error-rate.json").read_bytes()


def test_slowloris_headers_get_408_and_close_within_the_deadline(bot: BotProcess) -> None:
    # Twenty clients trickle their headers a byte every 0.2 s: sending keeps
    # nobody's deadline from passing, and each is answered 408 and closed.
    request = b"POST /webhooks/alertmanager HTTP/1.1\r\nHost: bot\r\nX-Padding: " + b"a" * 200
    socks = [connect(bot) for _ in range(20)]
    started = {sock: time.monotonic() for sock in socks}
    sent = dict.fromkeys(socks, 0)
    answered: dict[socket.socket, tuple[bytes, float]] = {}
    selector = selectors.DefaultSelector()
    for sock in socks:
        selector.register(sock, selectors.EVENT_READ)
    try:
        deadline = time.monotonic() + REQUEST_TIMEOUT + 5
        while len(answered) < len(socks) and time.monotonic() < deadline:
            for sock in socks:
                if sock not in answered:
                    sock.sendall(request[sent[sock] : sent[sock] + 1])
                    sent[sock] += 1
            for key, _ in selector.select(timeout=0.2):
                sock = key.fileobj  # type: ignore[assignment]
                answered[sock] = (read_to_close(sock), time.monotonic() - started[sock])
                selector.unregister(sock)
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    assert len(answered) == len(socks), f"{len(socks) - len(answered)} connections still held"
    for sock, (data, elapsed) in answered.items():
        assert data.startswith(b"HTTP/1.1 408 "), data[:200]
        assert b"connection: close" in data
        assert REQUEST_TIMEOUT - 0.1 < elapsed < REQUEST_TIMEOUT + 2.5, elapsed
        assert sent[sock] >= 8  # it kept sending until the answer came
    metrics = httpx.get(f"{bot.url}/metrics").text
    assert 'nexus_http_limited_total{reason="request_timeout"}' in metrics


def test_half_sent_body_gets_408_within_the_deadline(bot: BotProcess) -> None:
    body = alertmanager_body()
    head = (
        "POST /webhooks/alertmanager HTTP/1.1\r\nHost: bot\r\n"
        f"Authorization: Bearer {ALERTMANAGER_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body) + 100}\r\n\r\n"
    ).encode()
    with connect(bot) as sock:
        started = time.monotonic()
        sock.sendall(head + body)  # 100 bytes short of its Content-Length
        data = read_to_close(sock)
        elapsed = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert data.endswith(b'{"error": "request not received within 2 s"}')
    assert REQUEST_TIMEOUT - 0.1 < elapsed < REQUEST_TIMEOUT + 2.5, elapsed
    assert httpx.get(f"{bot.url}/healthz").status_code == 200


def test_idle_keep_alive_connection_is_closed_after_the_idle_timeout(bot: BotProcess) -> None:
    with connect(bot) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: bot\r\n\r\n")
        data = b""
        while not data.endswith(b'{"status":"ok"}'):
            data += sock.recv(65536)
        answered = time.monotonic()
        assert data.startswith(b"HTTP/1.1 200 ")
        assert b"connection: close" not in data  # kept alive...
        assert read_to_close(sock) == b""  # ...until idle for the timeout
        idle = time.monotonic() - answered
    assert KEEPALIVE_TIMEOUT - 0.1 < idle < KEEPALIVE_TIMEOUT + 2.5, idle


def test_connection_that_sends_nothing_is_closed(bot: BotProcess) -> None:
    with connect(bot) as sock:
        started = time.monotonic()
        assert read_to_close(sock) == b""  # closed, and silently
        elapsed = time.monotonic() - started
    assert KEEPALIVE_TIMEOUT - 0.1 < elapsed < KEEPALIVE_TIMEOUT + 2.5, elapsed


def test_over_the_concurrency_limit_is_503_and_recovers(bot: BotProcess) -> None:
    # MAX_CONCURRENCY requests held in the app, each waiting for the rest of its body.
    body = alertmanager_body()
    head = (
        "POST /webhooks/alertmanager HTTP/1.1\r\nHost: bot\r\nConnection: close\r\n"
        f"Authorization: Bearer {ALERTMANAGER_TOKEN}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    held = [connect(bot) for _ in range(MAX_CONCURRENCY)]
    try:
        for sock in held:
            sock.sendall(head + body[:10])
        probe = f"{bot.url}/webhooks/alertmanager"  # GET: 405 from the app, unless refused
        over = httpx.get(probe, timeout=5)
        deadline = time.monotonic() + 1
        while over.status_code != 503 and time.monotonic() < deadline:  # all in the app yet?
            over = httpx.get(probe, timeout=5)
        assert over.status_code == 503
        assert over.headers["retry-after"] == "1"
        assert over.headers["connection"] == "close"
        assert over.json() == {"error": "too many requests in progress, retry shortly"}
        refused = httpx.post(
            f"{bot.url}/webhooks/alertmanager",
            content=body,
            headers={"authorization": f"Bearer {ALERTMANAGER_TOKEN}"},
            timeout=5,
        )
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        for exempt in ("/healthz", "/readyz", "/metrics"):  # probes and metrics still answer
            assert httpx.get(f"{bot.url}{exempt}", timeout=5).status_code == 200, exempt
        for sock in held:  # the load goes: each held request completes
            sock.sendall(body[10:])
        answers = [read_to_close(sock) for sock in held]
    finally:
        for sock in held:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 202 ") for a in answers), [a[:40] for a in answers]
    assert bot.alertmanager(json.loads(body)).status_code == 202
    assert httpx.get(probe).status_code == 405
    metrics = httpx.get(f"{bot.url}/metrics").text
    assert 'nexus_http_limited_total{reason="over_concurrency"} 2.0' in metrics


def closed_by_server(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False


def _open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_many_idle_sockets_leave_room_for_healthz_and_webhooks(tmp_path: Path) -> None:
    # 300 sockets that never send a byte, against a bot allowed 100 client
    # connections and few more open files than that: without the cap the idle
    # sockets take every descriptor and /healthz is never accepted. The idle
    # timeout is long here so that only the cap can make room.
    bot = start(tmp_path, HTTP_MAX_CONNECTIONS="100", HTTP_KEEPALIVE_TIMEOUT="60s")
    socks: list[socket.socket] = []
    try:
        assert bot.proc is not None
        limit = _open_files(bot.proc.pid) + 100 + 40
        resource.prlimit(bot.proc.pid, resource.RLIMIT_NOFILE, (limit, limit))
        socks = [connect(bot) for _ in range(300)]
        time.sleep(0.5)  # let the server accept them all
        started = time.monotonic()
        health = httpx.get(f"{bot.url}/healthz", timeout=3)
        took = time.monotonic() - started
        assert health.status_code == 200
        assert took < 1, took
        assert bot.alertmanager(json.loads(alertmanager_body())).status_code == 202
        assert httpx.get(f"{bot.url}/readyz", timeout=3).status_code == 200
        assert _open_files(bot.proc.pid) <= limit
        closed = sum(closed_by_server(sock) for sock in socks)
        assert closed >= 190, closed  # the oldest idle ones made room
        metrics = httpx.get(f"{bot.url}/metrics").text
        assert 'nexus_http_limited_total{reason="connection_evicted"}' in metrics
    finally:
        for sock in socks:
            sock.close()
        code = bot.stop()
        print(bot.stderr[-5000:])  # shown if the test fails
    assert code == 0


def test_connection_cap_leaves_files_for_everything_else() -> None:
    assert connection_cap(1000, 20000) == 1000
    assert connection_cap(1000, 1024) == 1024 - RESERVED_FILES
    assert connection_cap(1000, 100) == 1
    assert connection_cap(1000, resource.RLIM_INFINITY) == 1000
