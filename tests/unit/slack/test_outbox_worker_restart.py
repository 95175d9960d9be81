"""Surviving a kill -9: rows pending at the kill are delivered by the next process, once.

The first worker runs in a subprocess. The fake Slack parks one of its calls
(`hold_next`) so the kill lands at a known point instead of a lucky one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from bot.slack.outbox import enqueue_root_post, enqueue_thread_reply
from bot.store.repository import Repository
from tests.fakes.slack import FakeSlack
from tests.unit.slack.outbox_support import all_done, make_worker, outbox_rows, running, section

LEASE_SECONDS = 1.5  # the killed worker's claims expire this fast

WORKER_SCRIPT = f"""
import asyncio, sys
from slack_sdk.web.async_client import AsyncWebClient
from bot.slack.outbox_worker import OutboxWorker
from bot.store.db import make_engine

database_url, api_url, token = sys.argv[1:4]

async def main() -> None:
    worker = OutboxWorker(
        make_engine(database_url),
        AsyncWebClient(token=token, base_url=api_url, timeout=5),
        rate_per_channel=50, burst=5, poll_interval=0.05,
        lease_seconds={LEASE_SECONDS}, call_timeout=1.0, backoff_base=0.05, backoff_cap=0.5,
    )
    await worker.run()

asyncio.run(main())
"""

REPLIES = [f"reply {i}" for i in range(5)]


@contextmanager
def worker_process(
    database_url: str, slack: FakeSlack, log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER_SCRIPT, database_url, slack.url, str(slack.token)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def kill_9(proc: subprocess.Popen[bytes]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def enqueue_thread(repo: Repository, incident: int) -> None:
    with repo.session() as s:
        enqueue_root_post(s, incident, "C1", "root", section("root"))
        for text in REPLIES:
            enqueue_thread_reply(s, incident, "C1", text)


async def test_rows_pending_at_a_kill_are_delivered_once_by_the_next_process(
    engine: sa.Engine,
    database_url: str,
    repo: Repository,
    slack: FakeSlack,
    new_incident: Callable[[], int],
    tmp_path: Path,
) -> None:
    slack.rate_limits = False
    enqueue_thread(repo, new_incident())
    # The 4th post reaches the fake but is parked before it takes effect.
    slack.hold_next(1, method="chat.postMessage", skip=3)

    with worker_process(database_url, slack, tmp_path / "worker.log") as proc:
        await slack.wait_for_async(lambda: slack.held_count == 1, timeout=30)
        assert slack.texts("C1") == ["root", "reply 0", "reply 1"]
        kill_9(proc)
    slack.release(drop=True)  # the parked call dies with its client: never posted

    rows = outbox_rows(engine)
    assert [r.state for r in rows] == ["sent"] * 3 + ["pending"] * 3
    assert [r.attempts for r in rows] == [1, 1, 1, 1, 0, 0]  # reply 2 claimed by the dead worker

    async with running(make_worker(engine, slack, rate_per_channel=50, burst=5)):
        await slack.wait_for_async(
            lambda: len(slack.messages("C1")) == 6 and all_done(engine), timeout=15
        )

    assert Counter(slack.texts()) == Counter(["root", *REPLIES])
    (root,) = slack.roots("C1")
    assert [m.text for m in slack.thread("C1", root.ts)] == REPLIES
    rows = outbox_rows(engine)
    assert {r.state for r in rows} == {"sent"}
    assert rows[3].attempts == 2  # claimed again once the lease ran out


async def test_kill_between_slacks_answer_and_the_commit_adopts_the_post(
    sqlite_engine: sa.Engine,
    sqlite_url: str,
    slack: FakeSlack,
    tmp_path: Path,
) -> None:
    """The window that used to send twice: Slack posted it, we died before recording it.

    Once the lease expires, the next process finds the post by its message
    metadata (conversations.replies) and records it instead of posting again.
    """
    repo = Repository(sqlite_engine)
    incident, _ = repo.open_incident(
        key="window", source="generic", title="t", severity="info", playbook_id="p", labels={}
    )
    slack.rate_limits = False
    enqueue_thread(repo, incident.id)
    # "reply 0" is posted, but its answer is parked until the worker is dead.
    slack.hold_next(1, method="chat.postMessage", skip=1, after_processing=True)

    with worker_process(sqlite_url, slack, tmp_path / "worker.log") as proc:
        await slack.wait_for_async(lambda: slack.held_count == 1, timeout=30)
        kill_9(proc)
    slack.release(drop=True)
    assert slack.texts("C1") == ["root", "reply 0"]

    async with running(make_worker(sqlite_engine, slack, rate_per_channel=50, burst=5)):
        await slack.wait_for_async(
            lambda: len(slack.messages("C1")) == 6 and all_done(sqlite_engine), timeout=15
        )

    assert Counter(slack.texts()) == Counter(["root", *REPLIES])  # "reply 0" once
    (root,) = slack.roots("C1")
    thread = slack.thread("C1", root.ts)
    assert [m.text for m in thread] == REPLIES
    rows = outbox_rows(sqlite_engine)
    assert rows[1].attempts == 2 and rows[1].result_ts == thread[0].ts  # adopted
    assert [c.params["ts"] for c in slack.calls("conversations.replies", ok=True)] == [root.ts]
