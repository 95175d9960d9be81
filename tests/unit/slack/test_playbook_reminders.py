"""Playbook review reminders: once per playbook and due date, across replicas and
restarts, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa

from bot.domain.playbooks import load_playbooks
from bot.settings import Settings
from bot.slack.playbook_reminders import remind_due_playbooks
from bot.store.models import OutboxMessage
from bot.store.repository import Repository

REPO_ROOT = Path(__file__).resolve().parents[3]
PLAYBOOKS = load_playbooks([REPO_ROOT / "playbooks"], Settings().allowed_targets)


def texts(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.select(OutboxMessage.channel, OutboxMessage.payload)).all()
    return [f"{channel} {payload['text']}" for channel, payload in rows]


def test_each_due_review_is_posted_once(engine: sa.Engine) -> None:
    replicas = [Repository(engine), Repository(engine)]
    reviewed = [p for p in PLAYBOOKS.playbooks if p.review is not None]
    assert reviewed, "the shipped playbooks carry review dates"
    first_due = min(p.review.next_review for p in reviewed if p.review)
    assert remind_due_playbooks(replicas[0], PLAYBOOKS, "C0X", first_due.replace(day=1)) == 0
    later = date(first_due.year + 1, 1, 1)
    assert remind_due_playbooks(replicas[0], PLAYBOOKS, "C0X", later) == len(reviewed)
    assert remind_due_playbooks(replicas[1], PLAYBOOKS, "C0X", later) == 0  # another replica
    assert remind_due_playbooks(replicas[0], PLAYBOOKS, "C0X", later) == 0  # a restart
    posted = texts(engine)
    assert len(posted) == len(reviewed)
    schema = next(p for p in reviewed if p.id == "schema-mismatch")
    assert schema.review is not None
    line = next(t for t in posted if "`schema-mismatch`" in t)
    assert line.startswith("C0X :calendar: <!subteam^")
    assert f"last reviewed {schema.review.last_reviewed.isoformat()}" in line


def test_nothing_without_an_incident_channel(engine: sa.Engine) -> None:
    assert remind_due_playbooks(Repository(engine), PLAYBOOKS, None, date(2099, 1, 1)) == 0
    assert texts(engine) == []
