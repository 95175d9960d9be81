"""`nexus-bot inbox status|retry` as real processes on real databases."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from bot.ingest.inbox import Inbox
from tests.fakes.slack import FakeSlack
from tests.support.bot_process import CHANNEL, BotProcess
from tests.support.cli import nexus_bot

DATA = Path(__file__).resolve().parents[1] / "data"


def metrics(bot: BotProcess) -> str:
    return httpx.get(f"{bot.url}/metrics", timeout=5).text


def failed_row(engine: sa.Engine, body: str, error: str) -> int:
    """A row as the worker leaves it after its last attempt."""
    Inbox(engine).put("alertmanager", body, 1)
    with engine.begin() as conn:
        row_id = int(conn.execute(sa.text("SELECT max(id) FROM inbox")).scalar_one())
        conn.execute(
            sa.text(
                "UPDATE inbox SET state = 'failed', attempts = 8, last_error = :e WHERE id = :i"
            ),
            {"e": error, "i": row_id},
        )
    return row_id


def test_status_of_an_empty_inbox(database_url: str) -> None:
    result = nexus_bot(database_url, "inbox", "status")
    assert result.returncode == 0, result.stderr
    assert "inbox: 0 pending, 0 failed" in result.stdout


def test_status_lists_failed_rows_and_retry_requeues_them(
    database_url: str, engine: sa.Engine
) -> None:
    hostile = "ValueError: boom \x1b[31mred\nforged second line"
    first = failed_row(engine, "{}", hostile)
    second = failed_row(engine, "{}", "KeyError: 'x'")
    Inbox(engine).put("alertmanager", "{}", 1)  # one still pending, not failed

    status = nexus_bot(database_url, "inbox", "status")
    assert status.returncode == 0
    assert "inbox: 1 pending, 2 failed" in status.stdout
    assert f"#{first} alertmanager" in status.stdout and "ValueError: boom" in status.stdout
    assert "forged second line" not in status.stdout  # only an error's first line is shown
    assert "\x1b" not in status.stdout and "boom ?[31mred" in status.stdout

    retried = nexus_bot(database_url, "inbox", "retry", f"#{first}")
    assert retried.returncode == 0, retried.stdout
    assert f"requeued 1: #{first}" in retried.stdout
    assert "inbox: 2 pending, 1 failed" in nexus_bot(database_url, "inbox", "status").stdout

    everything = nexus_bot(database_url, "inbox", "retry", "--all")
    assert f"requeued 1: #{second}" in everything.stdout
    again = nexus_bot(database_url, "inbox", "retry", "--all")
    assert again.returncode == 0 and "no failed rows to retry" in again.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["retry"], 2, "name the failed rows"),
        (["retry", "abc"], 2, "invalid"),
        (["retry", "0"], 2, "invalid"),
        (["retry", "-5"], 2, ""),
        (["retry", "999999"], 1, "not failed rows"),
        (["bogus"], 2, "invalid choice"),
        ([], 2, "required"),
    ],
)
def test_bad_retry_arguments_are_clear_errors(
    database_url: str, args: list[str], code: int, says: str
) -> None:
    result = nexus_bot(database_url, "inbox", *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert says in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_an_unreachable_database_is_a_clear_error() -> None:
    for args in (["status"], ["retry", "--all"]):
        result = nexus_bot("postgresql://nobody@127.0.0.1:9/none", "inbox", *args)
        assert result.returncode == 1
        assert "database unavailable" in result.stdout
        assert "Traceback" not in result.stderr


def test_a_requeued_batch_is_applied_by_the_running_bot(
    database_url: str, engine: sa.Engine
) -> None:
    body = (DATA / "alertmanager-frenly-ai.json").read_text()
    row_id = failed_row(engine, json.dumps(json.loads(body)), "OperationalError: disk full")
    with FakeSlack() as slack:
        bot = BotProcess(database_url, slack.url, slack.token or "").start()
        try:
            assert bot.scalar("SELECT count(*) FROM incidents") == 0  # failed rows wait
            slack.wait_for(
                lambda: 'nexus_inbox_rows{state="failed"} 1.0' in metrics(bot), interval=0.1
            )
            assert nexus_bot(database_url, "inbox", "retry", str(row_id)).returncode == 0
            root = slack.wait_for(lambda: slack.roots(CHANNEL), timeout=15)[0]
            assert "frenly-ai-dangerous-edit" in json.dumps(root.blocks)
            bot.wait_applied()
            assert bot.scalar("SELECT count(*) FROM inbox") == 0
            slack.wait_for(
                lambda: 'nexus_inbox_rows{state="failed"} 0.0' in metrics(bot), interval=0.1
            )
            assert 'nexus_inbox_applied_total{source="alertmanager"} 1.0' in metrics(bot)
        finally:
            bot.stop()
