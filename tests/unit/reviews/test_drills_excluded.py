"""Recovery drills on the composed core, with the GitHub fake over real HTTP, on SQLite
and PostgreSQL: a drill files its scorecard and nothing else; the figures, the review
follow-up and the playbook-review check ignore it while a real incident still counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.commands.report import load_incidents
from bot.core import Core, build_core
from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import load_playbooks
from bot.metrics import REGISTRY
from bot.reviews.follow_up import enqueue_due_checks
from bot.reviews.playbook_use import last_reviewed_use
from bot.settings import Settings
from bot.store.models import Incident, OutboxMessage, utcnow
from bot.timeline.delivery import DeliveryWorker
from bot.timeline.events import Kind
from bot.timeline.recorder import read_timeline
from tests.fakes.github import FakeGitHub

REPO_ROOT = Path(__file__).resolve().parents[3]
REVIEWS = "nexus/incident-reviews"
SCORECARD = {
    "run_id": 1,
    "scenario": "ssot-schema-mismatch",
    "scenario_title": "Schema mismatch after an SSOT change (drill)",
    "playbook_id": "ssot-sync-failure",
    "matched_playbook": True,
    "passed": True,
    "ended": "completed",
    "started_at": "2026-01-01T10:00:00+00:00",
    "finished_at": "2026-01-01T10:12:00+00:00",
    "time_to_acknowledge_seconds": 30,
    "acknowledged_by": "U0LEAD",
    "time_to_first_request_seconds": 120,
    "steps": [],
    "participants": ["U0LEAD"],
    "findings": [],
}


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub(token="ghp_fakefakefakefakefake") as fake:
        fake.add_repo(REVIEWS)
        yield fake


def make_core(engine: sa.Engine, github: FakeGitHub) -> Core:
    settings = Settings(
        github_token=github.token,
        github_api_url=github.url,
        review={"repo": REVIEWS, "remind_after": "1h"},
    )
    playbooks = load_playbooks([REPO_ROOT / "playbooks"], settings.allowed_targets)
    return build_core(settings, engine, playbooks)


def deliver(core: Core, engine: sa.Engine) -> int:
    worker = DeliveryWorker(engine, core.senders, on_report=core.on_delivery_report)
    return asyncio.run(worker.deliver_due())


def open_incident(core: Core, group: str, *, drill: bool = False) -> int:
    alert = Alert(
        source=AlertSource.GENERIC,
        fingerprint=f"fp-{group}",
        title="SSOT sync failed",
        labels={"severity": "critical", "service": "ssot-sync"},
        group_key=group,
    )
    number = core.incidents.ingest_alerts([alert]).incidents[0]
    if drill:
        with core.repo.session() as s:
            s.execute(sa.update(Incident).where(Incident.id == number).values(drill_run_id=1))
    return number


def review_kinds(core: Core, number: int) -> list[str]:
    with core.repo.session() as s:
        return [e.kind for e in read_timeline(s, number) if e.kind.startswith("review.")]


def test_a_drill_files_its_scorecard_and_no_review(engine: sa.Engine, github: FakeGitHub) -> None:
    core = make_core(engine, github)
    drill, real = open_incident(core, "drill", drill=True), open_incident(core, "real")
    core.incidents.resolve(drill, "U0LEAD")
    core.incidents.resolve(real, "U0LEAD")
    deliver(core, engine)
    [review] = github.issues(REVIEWS)  # the real incident's, nothing of the drill
    assert review.labels[0] == "post-incident-review"
    assert review_kinds(core, drill) == []
    assert "is a DRILL" in core.reviews.request(drill, "U0LEAD").message

    for _ in range(2):  # a finish recorded again (a retried job) files nothing more
        with core.repo.session() as s:
            core.timeline.record(s, drill, Kind.DRILL_FINISHED, "nexus-bot", **SCORECARD)
        deliver(core, engine)

    _, scorecard = github.issues(REVIEWS)
    assert scorecard.title == f"DRILL ssot-schema-mismatch: PASSED (incident #{drill})"
    assert scorecard.labels[0] == "drill"
    assert len(github.issues(REVIEWS)) == 2
    assert review_kinds(core, drill) == ["review.linked"]
    assert f"scorecard of drill #{drill}" in core.reviews.request(drill, "U0LEAD").message
    with engine.connect() as conn:
        priorities = conn.execute(
            sa.select(OutboxMessage.incident_id, OutboxMessage.priority).where(
                OutboxMessage.output == "github_review"
            )
        ).all()
    assert {(n, p) for n, p in priorities} == {(real, 0), (drill, 1)}


def test_figures_follow_up_and_playbook_reviews_ignore_drills(
    engine: sa.Engine, github: FakeGitHub
) -> None:
    core = make_core(engine, github)
    drill, real = open_incident(core, "drill", drill=True), open_incident(core, "real")
    for number in (real, drill):  # the drill resolves last: the newest use, were it counted
        core.incidents.resolve(number, "U0LEAD")
    with core.repo.session() as s:
        core.timeline.record(s, drill, Kind.DRILL_FINISHED, "nexus-bot", **SCORECARD)
    deliver(core, engine)
    assert review_kinds(core, drill) == review_kinds(core, real) == ["review.linked"]
    with engine.begin() as conn:
        conn.execute(sa.update(Incident).values(resolved_at=utcnow() - timedelta(hours=2)))

    assert enqueue_due_checks(core.repo, core.settings.review) == 1  # the real review only
    assert REGISTRY.get_sample_value("nexus_post_incident_reviews_open") == 1
    with engine.connect() as conn:
        checks = conn.execute(
            sa.select(OutboxMessage.incident_id).where(OutboxMessage.method == "review.check")
        ).all()
    assert [n for (n,) in checks] == [real]

    reported = load_incidents(engine, utcnow() - timedelta(days=1))
    assert len(reported) == 1 and reported[0].review == "open"

    uses = last_reviewed_use(engine.url.render_as_string(hide_password=False))
    assert uses is not None
    assert [use.incident_id for use in uses.values()] == [real]
