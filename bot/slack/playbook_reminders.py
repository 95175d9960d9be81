"""Playbook reviews falling due: one reminder to the owner in the incident channel.

The source playbook carries "Last Updated" and "Next Review" dates; playbooks
here carry `review: {owner, last_reviewed, every}`. On the due day (or the first
run after it, if the bot was down) the owner is mentioned once in the incident
channel. Once: a row keyed by (playbook, due date) is inserted in the same
transaction as the message, so replicas and restarts cannot post it twice.
"""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.domain.playbooks import LoadedPlaybooks
from bot.slack.blocks import escape, mention
from bot.slack.outbox import enqueue_message
from bot.store.models import PlaybookReviewReminder, utcnow
from bot.store.repository import Repository


def remind_due_playbooks(
    repo: Repository, playbooks: LoadedPlaybooks, channel: str | None, today: date | None = None
) -> int:
    """Post the reminders that fall due; returns how many were posted now."""
    if channel is None:
        return 0
    today = today or utcnow().date()
    posted = 0
    for playbook in playbooks.playbooks:
        review = playbook.review
        if review is None or review.next_review > today:
            continue
        due = review.next_review.isoformat()
        try:
            with repo.session() as s:
                s.execute(
                    sa.insert(PlaybookReviewReminder).values(
                        playbook_id=playbook.id, due_on=due, sent_at=utcnow()
                    )
                )
                every = f"{review.every.days}d"
                enqueue_message(
                    s,
                    channel,
                    f":calendar: {mention(review.owner)}: the playbook "
                    f"*{escape(playbook.title)}* (`{playbook.id}`) is due for its review "
                    f"(last reviewed {review.last_reviewed.isoformat()}, every {every}). "
                    "Update it and move `last_reviewed` in its YAML.",
                )
        except IntegrityError:
            continue  # posted already (another replica, or before a restart)
        posted += 1
    return posted
