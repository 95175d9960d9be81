"""The review follow-up: a filed review still open `review.remind_after` after the
incident resolved gets its Incident Commander reminded in the thread, once.

A periodic job (every replica) enqueues a `review.check` delivery per due
review; the GitHub output looks at the issue and reports its state, which
`Core.on_delivery_report` turns into a `review.reminder` (open) or a
`review.closed` (closed) timeline event, once each. The check is coalesced per
incident, so replicas sweeping together queue one.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from prometheus_client import Gauge

from bot.metrics import REGISTRY
from bot.notify.github_review_output import enqueue_review_check
from bot.reviews.config import ReviewConfig
from bot.store.models import Incident, TimelineEvent, utcnow
from bot.store.repository import Repository
from bot.timeline.events import Kind

_SETTLED = (Kind.REVIEW_REMINDER.value, Kind.REVIEW_CLOSED.value)
# A drill's issue (linked like a review) is its scorecard: nobody owes a review of it.
_NOT_A_DRILL = Incident.drill_run_id.is_(None)

REVIEWS_OPEN = Gauge(
    "nexus_post_incident_reviews_open",
    "Post-incident review issues filed and not known to be closed (as of the last follow-up).",
    registry=REGISTRY,
)


def enqueue_due_checks(repo: Repository, review: ReviewConfig, now: datetime | None = None) -> int:
    """Queue a look at each review that is due and not settled; returns how many."""
    if review.repo is None:
        return 0
    now = now or utcnow()
    queued = 0
    with repo.session() as s:
        closed = sa.select(TimelineEvent.incident_id).where(
            TimelineEvent.kind == Kind.REVIEW_CLOSED.value
        )
        REVIEWS_OPEN.set(
            s.execute(
                sa.select(sa.func.count(sa.distinct(TimelineEvent.incident_id)))
                .join(Incident, Incident.id == TimelineEvent.incident_id)
                .where(
                    TimelineEvent.kind == Kind.REVIEW_LINKED.value,
                    TimelineEvent.incident_id.not_in(closed),
                    _NOT_A_DRILL,
                )
            ).scalar_one()
        )
        settled = sa.select(TimelineEvent.incident_id).where(TimelineEvent.kind.in_(_SETTLED))
        rows = s.execute(
            sa.select(TimelineEvent.incident_id, TimelineEvent.facts)
            .join(Incident, Incident.id == TimelineEvent.incident_id)
            .where(
                TimelineEvent.kind == Kind.REVIEW_LINKED.value,
                Incident.status == "resolved",
                Incident.resolved_at <= now - review.remind_after,
                _NOT_A_DRILL,
                TimelineEvent.incident_id.not_in(settled),
            )
        ).all()
        for incident_id, facts in rows:
            number = (facts or {}).get("number")
            if isinstance(number, int) and enqueue_review_check(s, review, incident_id, number):
                queued += 1
    return queued
