"""The quarterly review checklist: per playbook, what happened since its last review.

The source playbook's *Recovery Testing* ends with "quarterly: review and
update procedures". A reminder alone says *that* a review is due; the owners
also need *what to look at*: the real incidents their playbook handled, the
drills that rehearsed it and the steps that would not have worked. This module
gathers those facts (the queries in `collect`, the rest pure); the Slack
wording lives in `bot.slack.drill_notices`, since the core knows no Slack.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, tzinfo
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.domain.playbooks import LoadedPlaybooks, Playbook
from bot.store.models import DrillRun, Incident


@dataclass(frozen=True)
class FailedStep:
    """A step a drill found would not have worked, and why."""

    title: str
    reason: str
    run_id: int
    scenario: str


@dataclass(frozen=True)
class PlaybookFacts:
    playbook_id: str
    title: str
    owner: str | None  # None: the playbook has no `review:` section
    last_reviewed: date | None
    incidents_since: int
    drills_since: int
    failed_steps: list[FailedStep] = field(default_factory=list)


@dataclass(frozen=True)
class ReviewChecklist:
    scheduled_for: datetime  # the tick, in the schedule's time zone
    playbooks: list[PlaybookFacts]


def since(playbook: Playbook, zone: tzinfo) -> datetime | None:
    """The start of the playbook's last review day in `zone`; None: count everything."""
    if playbook.review is None:
        return None
    return datetime.combine(playbook.review.last_reviewed, time.min, tzinfo=zone)


def failed_steps(runs: Iterable[tuple[int, str, Mapping[str, Any] | None]]) -> list[FailedStep]:
    """Steps with ``would_work`` false in finished runs' scorecards (run id, scenario, card).

    A running drill's scorecard holds no ``steps`` yet: it is skipped, not
    counted as a failure.
    """
    found: list[FailedStep] = []
    for run_id, scenario, card in runs:
        steps = (card or {}).get("steps")
        if not isinstance(steps, list):
            continue
        for step in steps:
            if isinstance(step, Mapping) and step.get("would_work") is False:
                title = str(step.get("title") or step.get("step_id") or "?")
                reason = str(step.get("reason") or "no reason recorded")
                found.append(FailedStep(title, reason, run_id, scenario))
    return found


def collect(
    session: Session, playbooks: LoadedPlaybooks, scheduled_for: datetime, zone: tzinfo
) -> ReviewChecklist:
    """The checklist from the database, in the caller's transaction."""
    facts = []
    for playbook in playbooks.playbooks:
        start = since(playbook, zone)
        incidents = sa.select(sa.func.count()).where(
            Incident.playbook_id == playbook.id,
            # Drill incidents are rehearsals: they count as drills, not incidents.
            Incident.drill_run_id.is_(None),
        )
        runs = (
            sa.select(DrillRun.id, DrillRun.scenario, DrillRun.scorecard)
            .where(DrillRun.playbook_id == playbook.id)
            .order_by(DrillRun.id)
        )
        if start is not None:
            incidents = incidents.where(Incident.created_at >= start)
            runs = runs.where(DrillRun.started_at >= start)
        rows = [(r.id, r.scenario, r.scorecard) for r in session.execute(runs)]
        review = playbook.review
        facts.append(
            PlaybookFacts(
                playbook_id=playbook.id,
                title=playbook.title,
                owner=review.owner if review else None,
                last_reviewed=review.last_reviewed if review else None,
                incidents_since=int(session.scalar(incidents) or 0),
                drills_since=len(rows),
                failed_steps=failed_steps(rows),
            )
        )
    return ReviewChecklist(scheduled_for, facts)
