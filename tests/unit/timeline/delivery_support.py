"""Helpers for the delivery worker tests: a far end over real HTTP, its sender, rows."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import sqlalchemy as sa

from bot.store.models import OutboxMessage
from bot.store.repository import Repository
from bot.timeline.delivery import DeliveryWorker, pending_deliveries
from bot.timeline.queue import Failed, Result, Retry, Sender, Sent, enqueue
from tests.fakes.background import ThreadedHTTPServer

METHOD = "notify.send"
_keys = itertools.count()


@dataclass(frozen=True)
class Answer:
    """What the far end answers to one request for a given payload name."""

    status: int = 200
    retry_after: int | None = None
    report: dict[str, Any] | None = None
    hold: bool = False  # answer only once `FarEnd.release` is set (a hung far end)


@dataclass(frozen=True)
class Arrival:
    at: float  # time.monotonic()
    path: str
    name: str


class FarEnd(ThreadedHTTPServer):
    """An HTTP server on 127.0.0.1 answering each request by the script for its
    payload's ``name`` (200 once the script is used up), recording every arrival."""

    poll_interval = 0.05  # stop() quickly

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self.script: dict[str, list[Answer]] = {}
        self.arrivals: list[Arrival] = []
        self.release = threading.Event()  # lets held answers go

    def answer(self, name: str, *answers: Answer) -> None:
        with self._lock:
            self.script.setdefault(name, []).extend(answers)

    @property
    def url(self) -> str:
        host, port = self._address
        return f"http://{host}:{port}"

    def names(self) -> list[str]:
        with self._lock:
            return [a.name for a in self.arrivals]

    def times(self, name: str) -> list[float]:
        with self._lock:
            return [a.at for a in self.arrivals if a.name == name]

    def _arrive(self, path: str, name: str) -> Answer:
        with self._lock:
            self.arrivals.append(Arrival(time.monotonic(), path, name))
            queued = self.script.get(name)
            return queued.pop(0) if queued else Answer()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        far_end = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                answer = far_end._arrive(self.path, str(body["name"]))
                if answer.hold:
                    far_end.release.wait(10)
                content = json.dumps({"report": answer.report}).encode()
                self.send_response(answer.status)
                if answer.retry_after is not None:
                    self.send_header("Retry-After", str(answer.retry_after))
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep test output clean

        return Handler


class HttpSender:
    """A sender as an output would write one: JSON over HTTP, status codes to results."""

    def __init__(self, url: str, *, rate: float = 1000.0, burst: int = 1000) -> None:
        self.url, self.rate, self.burst = url, rate, burst

    def send(self, method: str, payload: Mapping[str, Any]) -> Result:
        request = urllib.request.Request(
            f"{self.url}/{method}",
            data=json.dumps(dict(payload)).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:
                return Sent(report=json.loads(response.read())["report"])
        except urllib.error.HTTPError as exc:
            report = json.loads(exc.read())["report"]
            if exc.code == 429:
                return Retry("http 429", after=float(exc.headers["Retry-After"]))
            if exc.code >= 500:
                return Retry(f"http {exc.code}")
            return Failed(f"http {exc.code}", report=report)
        except (urllib.error.URLError, TimeoutError) as exc:
            return Retry(f"network: {exc}")


def make_worker(engine: sa.Engine, senders: Mapping[str, Sender], **options: Any) -> DeliveryWorker:
    """A worker tuned for tests: fast polling and backoff."""
    tuned: dict[str, Any] = {
        "poll_interval": 0.02,
        "backoff_base": 0.05,
        "backoff_cap": 0.2,
        "lease_seconds": 10.0,
    }
    tuned.update(options)
    return DeliveryWorker(engine, senders, **tuned)


@asynccontextmanager
async def running(*workers: DeliveryWorker) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        yield
    finally:
        for worker in workers:
            await worker.stop()
        await asyncio.gather(*tasks)


def new_incident(engine: sa.Engine) -> int:
    incident, _ = Repository(engine).open_incident(
        key=f"delivery-{next(_keys)}",
        source="alertmanager",
        title="SSOT error rate",
        severity="critical",
        playbook_id="ssot-error-rate",
        labels={},
    )
    return incident.id


def add(
    engine: sa.Engine,
    name: str,
    *,
    output: str = "mail",
    key: str = "smtp",
    incident_id: int | None = None,
) -> int:
    """Enqueue one delivery whose payload is {"name": name}; its row id."""
    with sa.orm.Session(engine) as session, session.begin():
        enqueue(
            session,
            output=output,
            key=key,
            method=METHOD,
            payload={"name": name},
            incident_id=incident_id,
        )
        return int(session.execute(sa.select(sa.func.max(OutboxMessage.id))).scalar_one())


def rows(engine: sa.Engine) -> dict[str, OutboxMessage]:
    """Every outbox row, by its payload's name."""
    with sa.orm.Session(engine) as session:
        found = session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id))
        return {str(row.payload["name"]): row for row in found}


async def drain(
    worker: DeliveryWorker, engine: sa.Engine, output: str = "mail", within: float = 10
) -> None:
    """Run passes until nothing of `output` is pending (sleeping through pacing and backoff)."""
    deadline = time.monotonic() + within
    while pending_deliveries(engine, output):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{output} deliveries not drained")
        if not await worker.deliver_due():
            await asyncio.sleep(0.02)


async def wait_until(condition: Any, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)
