"""Run `nexus-bot serve` as a real process; talk to it as Slack, PagerDuty and Alertmanager do."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import sqlalchemy as sa
import yaml

from bot.settings import Settings
from bot.store.db import make_engine

REPO_ROOT = Path(__file__).resolve().parents[2]
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PAGERDUTY_SECRET = "pd-webhook-secret-for-tests"
ALERTMANAGER_TOKEN = "am-token-for-tests-0123456789"
CHANNEL = "C0INCIDENTS"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def config_with_contacts(folder: Path, *, slack_users: bool = False) -> Path:
    """The shipped config/nexus.yaml with `levelN@nexus.test` (and, if asked, Slack
    user `U0LEVELN`) on every escalation level, written to `folder`/nexus.yaml."""
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    for level in config["escalation"]["levels"]:
        if slack_users:
            level["slack"] = [f"U0LEVEL{level['level']}"]
        level["email"] = [f"level{level['level']}@nexus.test"]
    path = folder / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def bot_env(database_url: str, port: int, slack_url: str, slack_token: str) -> dict[str, str]:
    """This environment plus what a test bot needs: the shipped config and playbooks,
    Slack at `slack_url`, the test secrets, one incident channel, 127.0.0.1:`port`."""
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "NEXUS_CONFIG": str(REPO_ROOT / "config" / "nexus.yaml"),
        "NEXUS_PLAYBOOKS": str(REPO_ROOT / "playbooks"),
        "SLACK_BOT_TOKEN": slack_token,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_url,
        "NEXUS_INCIDENT_CHANNEL": CHANNEL,
        "PAGERDUTY_WEBHOOK_SECRETS": PAGERDUTY_SECRET,
        "ALERTMANAGER_TOKEN": ALERTMANAGER_TOKEN,
    }


# Every environment variable the bot reads (lower case), so a "defaults" bot sees none.
SETTING_NAMES = frozenset(Settings.model_fields) | {"nexus_config"}


def repository_copy(destination: Path) -> Path:
    """What a new user has after cloning: the repository's files, no venv, no database."""
    shutil.copytree(
        REPO_ROOT,
        destination,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "*.db", "*.db-*", ".nexus-work", "__pycache__", "*.egg-info"
        ),
    )
    return destination


def new_trigger_id() -> str:
    """Slack gives every command and click its own trigger_id, so two identical
    requests in one second are still two signed bodies, not a replay."""
    return f"{int(time.time())}.738474920.{uuid.uuid4().hex[:20]}"


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds the listening TCP socket on `port` (Linux /proc;
    elsewhere assumed true, as before)."""
    inodes: set[str] = set()
    for table in (Path("/proc/net/tcp"), Path("/proc/net/tcp6")):
        try:
            rows = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(inode)
    fds = Path(f"/proc/{pid}/fd")
    if not inodes or not fds.is_dir():
        return not Path("/proc/net/tcp").exists()
    for fd in fds.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            return True
    return False


class PortTaken(Exception):
    """Another process bound the free port between our check and the bot's bind."""


class BotProcess:
    """A `nexus-bot serve` subprocess on a free port."""

    def __init__(
        self,
        database_url: str,
        slack_url: str,
        slack_token: str,
        *,
        cwd: Path = REPO_ROOT,
        **env: str,
    ) -> None:
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cwd = cwd
        self.env = {
            **bot_env(database_url, self.port, slack_url, slack_token),
            # Two secrets as during a rotation; requests are signed with the second.
            "PAGERDUTY_WEBHOOK_SECRETS": f"old-rotated-secret,{PAGERDUTY_SECRET}",
            **env,
        }
        self.proc: subprocess.Popen[str] | None = None
        self.stderr = ""

    @classmethod
    def with_defaults(cls, cwd: Path, **env: str) -> BotProcess:
        """`nexus-bot serve` as a new user starts it: from `cwd` (a copy of the
        repository), with no setting of ours in the environment but `env`, a
        port and the loopback address. The database is the default file in `cwd`."""
        bot = cls(f"sqlite:///{cwd / 'nexus-bot.db'}", "", "", cwd=cwd)
        bot.env = {
            **{k: v for k, v in os.environ.items() if k.lower() not in SETTING_NAMES},
            "PORT": str(bot.port),
            "HOST": "127.0.0.1",
            **env,
        }
        return bot

    def start(self, attempts: int = 3) -> BotProcess:
        """Start and wait until healthy; a port taken meanwhile is retried on another."""
        for _ in range(attempts - 1):
            try:
                return self._start()
            except PortTaken:
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
                self.env["PORT"] = str(self.port)
        return self._start()

    def _start(self) -> BotProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            cwd=self.cwd,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Generous: on a busy 2-core CI machine, imports alone have taken 8 s.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.communicate()[1]
                if "address already in use" in err:
                    raise PortTaken(err)
                raise AssertionError(f"bot exited: {err}")
            try:
                healthy = httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
            except httpx.TransportError:
                healthy = False
            # Another test's bot may hold the port we picked (taken between free_port()
            # and our bind): its answer is not ours, and ours is about to exit.
            if healthy and listens_on(self.proc.pid, self.port):
                return self
            time.sleep(0.1)
        self.stop()
        raise AssertionError("bot did not become healthy")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            _, self.stderr = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, self.stderr = self.proc.communicate()
        return self.proc.returncode

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.communicate(timeout=10)

    # -- the bot's database, read directly ----------------------------------

    def scalar(self, query: str) -> Any:
        engine = make_engine(self.database_url)
        try:
            with engine.connect() as conn:
                return conn.execute(sa.text(query)).scalar_one()
        finally:
            engine.dispose()

    def wait_applied(self, timeout: float = 30) -> None:
        """Until every accepted webhook body has been applied (the inbox holds none pending)."""
        deadline = time.monotonic() + timeout
        while self.scalar("SELECT count(*) FROM inbox WHERE state = 'pending'") > 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"inbox not drained within {timeout} s")
            time.sleep(0.05)

    # -- senders -------------------------------------------------------------

    def pagerduty(
        self,
        payload: dict[str, Any] | bytes,
        *,
        webhook_id: str | None = None,
        secret: str = PAGERDUTY_SECRET,
        signature: str | None = None,
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers = {
            "content-type": "application/json",
            # Two signatures as during a rotation: one stale, one good.
            "x-pagerduty-signature": (
                signature if signature is not None else f"v1={'0' * 64},v1={digest}"
            ),
        }
        if webhook_id:
            headers["x-webhook-id"] = webhook_id
        return httpx.post(
            f"{self.url}/webhooks/pagerduty", content=body, headers=headers, timeout=10
        )

    def alertmanager(
        self, payload: dict[str, Any] | bytes, *, token: str | None = ALERTMANAGER_TOKEN
    ) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return httpx.post(
            f"{self.url}/webhooks/alertmanager", content=body, headers=headers, timeout=10
        )

    def slack(
        self,
        form: dict[str, str] | None = None,
        *,
        json_body: dict[str, Any] | None = None,
        raw: bytes | None = None,
        content_type: str | None = None,
        timestamp: int | None = None,
        secret: str = SIGNING_SECRET,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        if raw is not None:
            body = raw
        elif json_body is not None:
            body = json.dumps(json_body).encode()
        else:
            body = urlencode(form or {}).encode()
        ctype = content_type or (
            "application/json" if json_body is not None else "application/x-www-form-urlencoded"
        )
        ts = str(timestamp if timestamp is not None else int(time.time()))
        base = f"v0:{ts}:".encode() + body
        signature = "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
        all_headers = {
            "content-type": ctype,
            "x-slack-request-timestamp": ts,
            "x-slack-signature": signature,
            **(headers or {}),
        }
        return httpx.post(f"{self.url}/slack/events", content=body, headers=all_headers, timeout=10)

    def command(
        self, text: str, *, user: str = "U0ALICE", response_url: str = "", **extra: str
    ) -> httpx.Response:
        return self.slack(
            {
                "command": "/incident",
                "text": text,
                "user_id": user,
                "user_name": user.lower(),
                "channel_id": CHANNEL,
                "team_id": "T0FAKE000",
                "response_url": response_url,
                "trigger_id": new_trigger_id(),
                **extra,
            }
        )

    def click(
        self,
        action_id: str,
        value: str,
        *,
        user: str = "U0ALICE",
        message_ts: str = "1.1",
        response_url: str = "",
    ) -> httpx.Response:
        payload = {
            "type": "block_actions",
            "user": {"id": user, "username": user.lower(), "team_id": "T0FAKE000"},
            "team": {"id": "T0FAKE000", "domain": "nexus"},
            "api_app_id": "A0NEXUS",
            "token": "legacy-verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": CHANNEL},
            "trigger_id": new_trigger_id(),
            "channel": {"id": CHANNEL, "name": "incidents"},
            "message": {"ts": message_ts, "text": "incident"},
            "response_url": response_url,
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "b1",
                    "value": value,
                    "action_ts": str(time.time()),
                }
            ],
        }
        return self.slack({"payload": json.dumps(payload)})
