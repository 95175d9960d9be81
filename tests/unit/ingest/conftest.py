"""A real `nexus-bot serve` per test module and database, and what became of each webhook.

The bot runs as a subprocess (tests/support/bot_process.py) talking to a fake
Slack. Starting one takes seconds, so a module shares it: tests use their own
group keys, fingerprints and incident ids, and read the bot's inbox table
directly, as an operator would. Its log is read as it is written, so a test can
look at it and a chatty bot never blocks on a full pipe.

The inbox tests (test_inbox.py) use the migrated `engine` (tests/conftest.py)
and `race`, as the store tests do.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
import sqlalchemy as sa

from bot.store.db import make_engine
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import BotProcess
from tests.support.postgres import drop_database

T = TypeVar("T")


def _race(workers: int, fn: Callable[[int], T]) -> list[T]:
    """Run fn(i) in `workers` threads released at the same instant; re-raise any error."""
    barrier = threading.Barrier(workers)

    def run(i: int) -> T:
        barrier.wait()
        return fn(i)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(run, i) for i in range(workers)]
        return [f.result() for f in futures]


@pytest.fixture
def race() -> Callable[[int, Callable[[int], T]], list[T]]:
    """``race(n, fn)``: call fn(0..n-1) concurrently, all released together."""
    return _race


@dataclass
class Bot:
    process: BotProcess
    engine: sa.Engine
    lines: list[str] = field(default_factory=list)

    def settled(self, timeout: float = 20.0) -> list[str]:
        """Wait until the inbox holds nothing pending; the errors of rows that failed.

        A row with an error is reported at once: the worker records one only
        when applying it raised, which is what must never happen to a body the
        webhook acknowledged. It is then deleted, so it does not hold up the
        rows of its group that later tests (or Hypothesis, shrinking) send.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self.engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT id, state, last_error FROM inbox")).all()
            failed = [r for r in rows if r.last_error or r.state != "pending"]
            if failed:
                with self.engine.begin() as conn:
                    ids = [r.id for r in failed]
                    conn.execute(
                        sa.text("DELETE FROM inbox WHERE id IN :ids").bindparams(
                            sa.bindparam("ids", expanding=True)
                        ),
                        {"ids": ids},
                    )
                return [f"{r.state}: {r.last_error}" for r in failed]
            if not rows:
                return []
            if time.monotonic() > deadline:
                return [f"{len(rows)} rows still pending after {timeout} s"]
            time.sleep(0.005)

    def scalar(self, query: str, **params: object) -> object:
        with self.engine.connect() as conn:
            return conn.execute(sa.text(query), params).scalar_one()

    def log(self) -> str:
        return "".join(list(self.lines))

    def __repr__(self) -> str:  # Hypothesis prints it with every failing example
        return f"Bot({self.process.url}, {self.engine.dialect.name})"


def _drain(bot: Bot) -> None:
    stream = bot.process.proc.stderr if bot.process.proc else None
    if stream is None:
        return
    try:
        for line in stream:
            bot.lines.append(line)
    except (ValueError, OSError):  # closed by BotProcess.stop's communicate()
        return


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
)
def module_database_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database of each kind for one test module (cf. `database_url`)."""
    if request.param == "sqlite":
        folder: Path = tmp_path_factory.mktemp("ingest")
        yield f"sqlite:///{folder / 'nexus-test.db'}"
        return
    server = str(request.getfixturevalue("postgres_server"))  # fails, not skips, when CI=true
    name = f"nexus_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.rsplit("/", 1)[0] + f"/{name}"
    finally:
        drop_database(admin, name)
        admin.dispose()


@pytest.fixture(scope="module")
def bot(module_database_url: str) -> Iterator[Bot]:
    with FakeSlack(rate_limits=False) as slack:
        process = BotProcess(module_database_url, slack.url, slack.token or "xoxb-test").start()
        engine = make_engine(module_database_url)
        running = Bot(process, engine)
        reader = threading.Thread(target=_drain, args=(running,), daemon=True)
        reader.start()
        try:
            yield running
        finally:
            engine.dispose()
            process.stop()
            reader.join(timeout=10)
            print((running.log() + process.stderr)[-20000:])  # shown when a test fails
