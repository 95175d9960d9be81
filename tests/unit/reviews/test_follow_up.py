"""The review follow-up on the composed core, with the GitHub fake over real HTTP:
an open review past `remind_after` reminds the Incident Commander once; a closed
one is noted on the timeline once; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.core import Core, build_core
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import load_playbooks
from bot.metrics import REGISTRY
from bot.notify.github_review_output import enqueue_review_check
from bot.reviews.follow_up import enqueue_due_checks
from bot.settings import Settings
from bot.store.models import Incident, OutboxMessage, utcnow
from bot.timeline.delivery import DeliveryWorker
from bot.timeline.recorder import read_timeline
from tests.fakes.github import FakeGitHub

REPO_ROOT = Path(__file__).resolve().parents[3]
REVIEWS = "nexus/incident-reviews"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token="ghp_fakefakefakefakefake") as fake:
        fake.add_repo(REVIEWS)
        yield fake


def make_core(engine: sa.Engine, github: FakeGitHub) -> Core:
    settings = Settings(
        nexus_incident_channel="C0INCIDENTS",
        github_token=github.token,
        github_api_url=github.url,
        roles={"commander": {"slack": ["U0LEAD"]}},
        review={"repo": REVIEWS, "remind_after": "1h"},
    )
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    return build_core(settings, engine, playbooks)


def deliver(core: Core, engine: sa.Engine) -> int:
    worker = DeliveryWorker(engine, core.senders, on_report=core.on_delivery_report)
    return asyncio.run(worker.deliver_due())


def kinds(core: Core, number: int) -> list[str]:
    with core.repo.session() as s:
        return [e.kind for e in read_timeline(s, number) if e.kind.startswith("review.")]


def test_an_open_review_reminds_once_and_a_closed_one_is_noted(
    engine: sa.Engine, github: FakeGitHub
) -> None:
    core = make_core(engine, github)
    alert = Alert(
        source=AlertSource.GENERIC,
        fingerprint="fp",
        title="SSOT sync failed",
        labels={"severity": "critical", "service": "ssot-sync"},
        group_key="g",
    )
    number = core.incidents.ingest_alerts([alert]).incidents[0]
    core.incidents.resolve(number, "U0LEAD")
    assert deliver(core, engine) == 1  # the review issue is filed
    [issue] = github.issues(REVIEWS)
    assert kinds(core, number) == ["review.linked"]
    assert enqueue_due_checks(core.repo, core.settings.review) == 0  # not due yet
    with engine.begin() as conn:
        conn.execute(
            sa.update(Incident)
            .where(Incident.id == number)
            .values(resolved_at=utcnow() - timedelta(hours=2))
        )
    assert enqueue_due_checks(core.repo, core.settings.review) == 1
    assert REGISTRY.get_sample_value("nexus_post_incident_reviews_open") == 1
    assert enqueue_due_checks(core.repo, core.settings.review) == 0  # one pending check
    deliver(core, engine)
    assert kinds(core, number) == ["review.linked", "review.reminder"]
    assert enqueue_due_checks(core.repo, core.settings.review) == 0  # reminded: settled
    with engine.connect() as conn:
        texts = [
            str(p.get("text"))
            for p in conn.execute(
                sa.select(OutboxMessage.payload).where(OutboxMessage.output == "slack")
            ).scalars()
        ]
    reminders = [t for t in texts if "still open after" in t]
    assert len(reminders) == 1 and reminders[0].startswith("<@U0LEAD>")
    # Closed later: a check (as after a restart) notes it once.
    github.close_issue(REVIEWS, issue.number)
    with core.repo.session() as s:
        assert enqueue_review_check(s, core.settings.review, number, issue.number)
    deliver(core, engine)
    assert kinds(core, number) == ["review.linked", "review.reminder", "review.closed"]
    enqueue_due_checks(core.repo, core.settings.review)
    assert REGISTRY.get_sample_value("nexus_post_incident_reviews_open") == 0
