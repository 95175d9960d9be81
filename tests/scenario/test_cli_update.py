"""`nexus-bot update ID STATUS TEXT` as a real process on real databases.

The update is the same timeline event `/incident update` records, with the
same outputs: a Slack thread reply (enqueued on the outbox for the running
bot) and the stakeholders' email (enqueued on the delivery queue).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from bot.store.repository import Repository
from tests.support.bot_process import REPO_ROOT

CHANNEL = "C0INCIDENTS"


def run_update(
    database_url: str, *args: str, config: Path | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    settings = {
        "DATABASE_URL": database_url,
        "NEXUS_CONFIG": str(config or REPO_ROOT / "config" / "nexus.yaml"),
        **env,
    }
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "SMTP_", "NEXUS_"))}
    return subprocess.run(
        [sys.executable, "-m", "bot", "update", *args],
        cwd=REPO_ROOT,
        env={**clean, **settings},
        capture_output=True,
        text=True,
        timeout=60,
    )


def stakeholder_config(folder: Path) -> Path:
    config = yaml.safe_load((REPO_ROOT / "config" / "nexus.yaml").read_text())
    config["roles"]["stakeholders"]["email"] = ["team-leads@nexus.test"]
    config["roles"]["comms"]["email"] = ["product@nexus.test"]
    path = folder / "nexus.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def open_incident(engine: sa.Engine, *, thread: bool = True) -> int:
    repo = Repository(engine)
    incident, created = repo.open_incident(
        key="test:update",
        source="alertmanager",
        title="Schema mismatch on orders",
        severity="critical",
        playbook_id="schema-mismatch",
        labels={"service": "ssot"},
    )
    assert created
    if thread:
        assert repo.set_slack_root(incident.id, CHANNEL, "1714555815.000100")
    return incident.id


def rows(engine: sa.Engine, query: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(query), params))


def test_posts_a_public_update_to_the_timeline_thread_and_email(
    database_url: str, engine: sa.Engine, tmp_path: Path
) -> None:
    number = open_incident(engine)
    done = run_update(
        database_url,
        str(number),
        "identified",
        "Bad anchor v37 reverted <script>",
        config=stakeholder_config(tmp_path),
        NEXUS_INCIDENT_CHANNEL=CHANNEL,
        SMTP_URL="smtp://127.0.0.1:9",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"Incident #{number}: update posted (identified).\n"
    events = rows(
        engine,
        "SELECT kind, actor, public FROM timeline_events WHERE incident_id = :n ORDER BY id",
        n=number,
    )
    assert [(e.kind, bool(e.public)) for e in events] == [("update.posted", True)]
    assert events[0].actor.startswith("cli:")
    status = rows(engine, "SELECT public_status FROM incidents WHERE id = :n", n=number)
    assert status[0].public_status == "identified"
    slack = [r.payload for r in rows(engine, "SELECT payload FROM outbox WHERE output = 'slack'")]
    texts = [str((json.loads(p) if isinstance(p, str) else p)["text"]) for p in slack]
    assert any("Public update — Identified" in t and "&lt;script&gt;" in t for t in texts)
    emails = rows(engine, "SELECT channel, method FROM outbox WHERE output = 'email'")
    assert [(e.channel, e.method) for e in emails] == [("127.0.0.1", "email.send")]


def test_resolved_resolves_and_a_second_resolve_is_refused(
    database_url: str, engine: sa.Engine
) -> None:
    number = open_incident(engine, thread=False)
    first = run_update(database_url, f"#{number}", "resolved", "Fixed", "for", "good")
    assert first.returncode == 0, first.stderr
    status = rows(engine, "SELECT status FROM incidents WHERE id = :n", n=number)
    assert status[0].status == "resolved"
    kinds = rows(engine, "SELECT kind FROM timeline_events WHERE incident_id = :n", n=number)
    assert [k.kind for k in kinds] == ["update.posted", "resolved"]
    # Running it again posts another update (a CLI call is a new request, not a
    # replay), but resolves nothing twice.
    again = run_update(database_url, str(number), "resolved", "Still fixed")
    assert again.returncode == 0
    kinds = rows(engine, "SELECT kind FROM timeline_events WHERE incident_id = :n", n=number)
    assert [k.kind for k in kinds] == ["update.posted", "resolved", "update.posted"]


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["99", "identified", "text"], 1, "There is no incident #99"),
        (["1", "fixed", "text"], 1, "investigating"),
        (["1", "identified", "   "], 1, "say what changed"),
        (["1", "identified", "x" * 1001], 1, "1000"),
        (["1", "identified", "bell\x07ring"], 1, "control"),
        (["1", "identified", "text", "#2"], 1, "#2"),
        (["abc", "identified", "text"], 2, "incident number"),
        (["0", "identified", "text"], 2, "incident number"),
        (["#1234567890", "identified", "text"], 2, "incident number"),
        (["1", "identified"], 2, "TEXT"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    database_url: str, engine: sa.Engine, args: list[str], code: int, message: str
) -> None:
    open_incident(engine, thread=False)
    result = run_update(database_url, *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    assert message.lower() in result.stderr.lower()
    assert result.stdout == ""
    assert rows(engine, "SELECT id FROM timeline_events") == []


def test_an_unreachable_database_is_a_clear_error() -> None:
    result = run_update(
        "postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2", "1", "identified", "x"
    )
    assert result.returncode == 2
    assert "database unavailable" in result.stderr and "Traceback" not in result.stderr
