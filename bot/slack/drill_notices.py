"""Slack messages of the drill schedule: missed ticks and the quarterly review checklist.

The scheduler (bot.drills.schedule, core: no Slack) decides; this module words
it and enqueues the message in the scheduler's transaction, the one holding the
tick row, so a message is posted once however many replicas sweep.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.drills.checklist import PlaybookFacts, ReviewChecklist
from bot.drills.schedule import MAX_FIRES_PER_SWEEP, MissedTicks
from bot.slack.blocks import escape, mention
from bot.slack.outbox import enqueue_message

# Failed steps listed per playbook; a drill batch that failed everything would
# otherwise push the other playbooks out of sight.
MAX_FAILED_STEPS = 10


def local_time(moment: datetime) -> str:
    """`Tue 24 Nov 2026 10:00 CET`: the moment in the zone it carries."""
    seconds = ":%S" if moment.second else ""
    return moment.strftime(f"%a %d %b %Y %H:%M{seconds} %Z").strip()


def missed_text(notice: MissedTicks) -> str:
    schedule = f"`{escape(notice.schedule_id)}`"
    if notice.count == 1:
        what = f"Scheduled drill {schedule} of {local_time(notice.first)} was missed"
    else:
        count = f"More than {MAX_FIRES_PER_SWEEP}" if notice.count is None else str(notice.count)
        what = (
            f"{count} ticks of scheduled drill {schedule}, from {local_time(notice.first)} "
            f"to {local_time(notice.last)}, were missed"
        )
    upcoming = local_time(notice.next_run) if notice.next_run else "none"
    return f":warning: {what} (the bot was down); next: {upcoming}."


def _playbook_lines(item: PlaybookFacts) -> list[str]:
    owner = mention(item.owner) if item.owner else "no owner (add a `review:` section)"
    reviewed = item.last_reviewed.isoformat() if item.last_reviewed else "never"
    since = "since then" if item.last_reviewed else "so far"
    incidents = f"{item.incidents_since} incident{'s' if item.incidents_since != 1 else ''}"
    drills = f"{item.drills_since} drill{'s' if item.drills_since != 1 else ''}"
    lines = [
        f"• *{escape(item.title)}* (`{escape(item.playbook_id)}`): owner {owner}, "
        f"last reviewed {reviewed}; {incidents} and {drills} {since}."
    ]
    for step in item.failed_steps[:MAX_FAILED_STEPS]:
        lines.append(
            f"    ◦ failed in drill #{step.run_id} ({escape(step.scenario)}): "
            f"_{escape(step.title)}_ — {escape(step.reason)}"
        )
    hidden = len(item.failed_steps) - MAX_FAILED_STEPS
    if hidden > 0:
        lines.append(f"    ◦ and {hidden} more failed step{'s' if hidden != 1 else ''}")
    return lines


def checklist_text(checklist: ReviewChecklist) -> str:
    lines = [
        ":clipboard: *Quarterly review of the recovery playbooks* "
        f"({local_time(checklist.scheduled_for)})",
        "Review each procedure against what happened since its last review:",
    ]
    for item in checklist.playbooks:
        lines.extend(_playbook_lines(item))
    if not checklist.playbooks:
        lines.append("• No playbook is loaded.")
    lines.append(
        "Owners: please update your playbook (steps that failed first), then set "
        "`review.last_reviewed` in its YAML to the day you reviewed it."
    )
    return "\n".join(lines)


class SlackDrillNotices:
    """The scheduler's `Notifier`: posts to the drill channel (nothing when none is set)."""

    def __init__(self, channel: str | None) -> None:
        self.channel = channel

    def missed(self, session: Session, notice: MissedTicks) -> None:
        if self.channel is not None:
            enqueue_message(session, self.channel, missed_text(notice))

    def review(self, session: Session, checklist: ReviewChecklist) -> None:
        if self.channel is not None:
            enqueue_message(session, self.channel, checklist_text(checklist))
