"""`nexus-bot serve` as a real process: health, readiness, metrics, SIGTERM, config errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.support.bot_process import PortTaken, free_port
from tests.support.postgres import drop_database

REPO_ROOT = Path(__file__).resolve().parents[2]
SLACK_TOKEN = "xoxb-1111-2222-serveTestSecretToken"


class Bot:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc, self.port = proc, port
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        return self.proc.returncode, err


def start_bot(database_url: str, **env: str) -> Bot:
    """Start `nexus-bot serve`; a port another process took meanwhile is retried."""
    for _ in range(2):
        try:
            return _start_bot(database_url, **env)
        except PortTaken:
            continue
    return _start_bot(database_url, **env)


def _start_bot(database_url: str, **env: str) -> Bot:
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEXUS_CONFIG": str(REPO_ROOT / "config" / "nexus.yaml"),
        "NEXUS_PLAYBOOKS": str(REPO_ROOT / "playbooks"),
        **env,
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "bot", "serve"],
        cwd=REPO_ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    bot = Bot(proc, port)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            code, err = bot.stop()
            if "address already in use" in err:
                raise PortTaken(err)
            raise AssertionError(f"bot exited early with {code}: {err}")
        try:
            if httpx.get(f"{bot.url}/healthz", timeout=1).status_code == 200:
                return bot
        except httpx.TransportError:
            time.sleep(0.1)
    bot.stop()
    raise AssertionError("bot did not become healthy within 30 s")


@pytest.fixture
def running_bot(database_url: str) -> Iterator[Bot]:
    bot = start_bot(database_url, SLACK_BOT_TOKEN=SLACK_TOKEN)
    try:
        yield bot
    finally:
        bot.stop()


def test_health_readiness_metrics_and_clean_sigterm(running_bot: Bot) -> None:
    assert httpx.get(f"{running_bot.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{running_bot.url}/readyz")
    assert ready.status_code == 200 and ready.json()["database"] == "ok"
    metrics = httpx.get(f"{running_bot.url}/metrics")
    assert metrics.status_code == 200
    assert 'nexus_http_requests_total{route="/readyz",status="200"} 1.0' in metrics.text
    assert "nexus_database_up 1.0" in metrics.text
    assert httpx.get(f"{running_bot.url}/nope").status_code == 404
    assert httpx.post(f"{running_bot.url}/healthz", content=b"x").status_code == 405

    code, err = running_bot.stop()
    assert code == 0, err
    assert "stopped" in err
    # Start-up says once which features are off, and never prints a credential.
    assert err.count("Alertmanager webhook disabled") == 1
    assert SLACK_TOKEN not in err


def test_migrations_are_applied_on_start(running_bot: Bot, database_url: str) -> None:
    engine = sa.create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert {"incidents", "alerts", "audit_log", "outbox", "remediation_requests"} <= tables


@pytest.mark.postgres
def test_readyz_is_503_when_the_database_goes_away(postgres_url: str, postgres_server: str) -> None:
    bot = start_bot(postgres_url)
    try:
        assert httpx.get(f"{bot.url}/readyz").status_code == 200
        name = postgres_url.rsplit("/", 1)[1]
        admin = sa.create_engine(postgres_server, isolation_level="AUTOCOMMIT")
        drop_database(admin, name)
        admin.dispose()
        answer = httpx.get(f"{bot.url}/readyz", timeout=15)
        assert answer.status_code == 503
        assert answer.json() == {"status": "unavailable", "database": "unreachable"}
        assert httpx.get(f"{bot.url}/healthz").status_code == 200
    finally:
        bot.stop()


def test_bad_setting_exits_2_naming_the_variable(sqlite_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        cwd=REPO_ROOT,
        env={**os.environ, "DATABASE_URL": sqlite_url, "PORT": "not-a-port"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "environment variable PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_unreachable_database_at_start_exits_1_with_reason() -> None:
    port = free_port()  # nothing listens there
    result = subprocess.run(
        [sys.executable, "-m", "bot", "serve"],
        cwd=REPO_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": f"postgresql://nobody@127.0.0.1:{port}/none",
            "PORT": str(free_port()),
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "database unavailable at start-up" in result.stderr
    assert "Traceback" not in result.stderr
