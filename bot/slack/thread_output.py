"""The Slack output: each timeline event becomes thread replies and root edits.

One thread per incident. `opened` claims the incident's thread (a
compare-and-set on the incident row), so exactly one root message and one
playbook are posted whatever the number of replicas; later events reply in
that thread and re-render the root from the incident's state. Everything is
enqueued on the durable, paced Slack outbox in the event's own transaction.

A recovery drill's incident (``incidents.drill_run_id`` set) opens its thread
in the drill channel, says DRILL in its root and every reply, renders
rehearsed remediations as "would (not) work", ends with the drill's
scorecard, and is enqueued at `PRIORITY_DRILL` so that real incidents'
messages go first (`bot.slack.drill_text` has the wording).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.communication import ROLE_TITLES
from bot.domain.playbooks import LoadedPlaybooks, plan_step
from bot.durations import format_duration
from bot.settings import Settings
from bot.slack.blocks import escape, mention, playbook_blocks, to_json, who
from bot.slack.cards import approval_card, decided_card, expired_card, undo_blocks
from bot.slack.drill_text import (
    DRILL_NOTICE,
    DRILL_TITLE_PREFIX,
    DrillStatus,
    drill_context_block,
    drill_reply,
    rehearsal_done,
    rehearsal_failed,
    scorecard_blocks,
    scorecard_text,
)
from bot.slack.outbox import (
    enqueue_reply_edit,
    enqueue_root_post,
    enqueue_root_refresh,
    enqueue_thread_reply,
)
from bot.slack.outbox_rows import PRIORITY_DRILL, PRIORITY_REAL
from bot.slack.root_view import incident_view, root_message
from bot.store.models import Incident, TimelineEvent
from bot.store.repository import Repository
from bot.timeline.events import Event, Kind

PAGERDUTY_NOTES = {
    "incident.escalated": ":arrow_up: Escalated in PagerDuty; now assigned to {assignees}.",
    "incident.reassigned": ":busts_in_silhouette: Reassigned in PagerDuty to {assignees}.",
    "incident.delegated": ":busts_in_silhouette: Delegated in PagerDuty to {assignees}.",
    "incident.priority_updated": ":label: Priority set to {priority} by {agent}.",
    "incident.annotated": ":memo: Note from {agent} in PagerDuty: {content}",
    "incident.responder.added": ":raising_hand: Responder added in PagerDuty: {responder}.",
    "incident.responder.replied": ":speech_balloon: Responder replied in PagerDuty: {responder}.",
    "incident.status_update_published": ":mega: Status update published: {content}",
}
# Events that change what the root message shows.
ROOT_CHANGES = frozenset(
    {
        Kind.ALERTS_ADDED,
        Kind.ACKNOWLEDGED,
        Kind.UNACKNOWLEDGED,
        Kind.RESOLVED,
        Kind.REOPENED,
        Kind.LEVEL_REACHED,
        Kind.PAGERDUTY_NOTE,
        Kind.ROLE_ASSIGNED,
        Kind.UPDATE_POSTED,
        Kind.REVIEW_LINKED,
        Kind.DRILL_FINISHED,
    }
)
# Slack refuses a message of more than 50 blocks.
MAX_BLOCKS = 50


def card_key(request_id: int) -> str:
    return f"remediation:{request_id}:card"


def _is_drill(incident: Incident) -> bool:
    return incident.drill_run_id is not None


def _priority(incident: Incident) -> int:
    return PRIORITY_DRILL if _is_drill(incident) else PRIORITY_REAL


class SlackThreadOutput:
    name = "slack"

    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        playbooks: LoadedPlaybooks,
        reviews_filed_in: str | None = None,
    ) -> None:
        self.settings = settings
        # Where post-incident reviews are filed (a GitHub repo), or None: `nexus-bot review`.
        self.reviews_filed_in = reviews_filed_in
        self.repo = repo
        self.playbooks = playbooks
        self.channel = settings.nexus_incident_channel
        self._replies: dict[str, Callable[[Event], str | None]] = {
            Kind.ACKNOWLEDGED: self._acknowledged,
            Kind.UNACKNOWLEDGED: lambda e: (
                ":rotating_light: Unacknowledged in PagerDuty: nobody owns it."
            ),
            Kind.RESOLVED: self._resolved,
            Kind.REOPENED: self._reopened,
            Kind.LEVEL_REACHED: self._level,
            Kind.PAGERDUTY_NOTE: self._pagerduty_note,
            Kind.REMEDIATION_REFUSED: self._refused,
            Kind.REMEDIATION_DENIED: lambda e: (
                f":x: Remediation #{e.fact('request_id')} ({escape(e.fact('title', ''))}) "
                f"denied by {who(e.actor)}: {escape(e.fact('reason', ''))}"
            ),
            Kind.REMEDIATION_EXPIRED: lambda e: (
                f":hourglass: Remediation #{e.fact('request_id')} ({escape(e.fact('title', ''))}) "
                "expired: nobody approved it in time. Request it again if it is still needed."
            ),
            Kind.REMEDIATION_DONE: self._done,
            Kind.REMEDIATION_FAILED: lambda e: (
                f":warning: Remediation #{e.fact('request_id')} ({escape(e.fact('title', ''))}) "
                f"{escape(e.fact('message', ''))}" + printed_block(e.fact("details", []))
            ),
            Kind.ROLE_ASSIGNED: self._role,
            Kind.UPDATE_POSTED: self._update,
            Kind.NOTE_ADDED: lambda e: (
                f":memo: Note from {who(e.actor)}: {escape(e.fact('text', ''))}"
            ),
            Kind.UPDATE_REMINDER: self._reminder,
            Kind.DELIVERY_PROBLEM: self._delivery_problem,
            Kind.REVIEW_LINKED: lambda e: f":clipboard: Post-incident review: <{e.fact('url')}>",
            Kind.REVIEW_REQUESTED: lambda e: (
                f":clipboard: {who(e.actor)} asked for the post-incident review; "
                "its link follows here."
            ),
            Kind.REVIEW_REMINDER: lambda e: (
                (
                    " ".join(mention(h) for h in e.fact("holders", [])) + " "
                    if e.fact("holders")
                    else ""
                )
                + f":hourglass: the post-incident review <{e.fact('url')}> is still open after "
                f"{e.fact('open_days')} days."
            ),
            Kind.REVIEW_CLOSED: lambda e: f":white_check_mark: Review <{e.fact('url')}> closed.",
        }
        # A drill's remediations are rehearsed and its ladder mentions only the
        # participants: these say so; every other reply reads as in a real incident.
        self._drill_replies: dict[str, Callable[[Event], str | None]] = {
            **self._replies,
            Kind.LEVEL_REACHED: lambda e: self._level(e, drill=True),
            Kind.REMEDIATION_DONE: rehearsal_done,
            Kind.REMEDIATION_FAILED: rehearsal_failed,
        }

    def on_event(self, session: Session, event: Event) -> None:
        if event.kind == Kind.OPENED:
            self._open_thread(session, event)
            return
        incident = session.get(Incident, event.incident_id, populate_existing=True)
        if incident is None or incident.slack_channel is None:
            return  # no thread (no channel configured when it opened)
        drill, priority = _is_drill(incident), _priority(incident)
        if event.kind == Kind.DRILL_FINISHED:
            facts = event.facts
            enqueue_thread_reply(
                session,
                event.incident_id,
                incident.slack_channel,
                scorecard_text(facts),
                scorecard_blocks(facts),
                priority=priority,
            )
        render = (self._drill_replies if drill else self._replies).get(event.kind)
        text = render(event) if render is not None else None
        # A drill is scored by its scorecard, not reviewed like an outage.
        reviewed = incident.severity in ("critical", "warning") and not drill
        if event.kind == Kind.RESOLVED and reviewed:
            text = f"{text}\n{self._review_hint(event.incident_id)}"
        if event.kind == Kind.REMEDIATION_REQUESTED:
            self._approval_card(session, event, drill)
        elif text:
            enqueue_thread_reply(
                session,
                event.incident_id,
                incident.slack_channel,
                drill_reply(text) if drill else text,
                priority=priority,
            )
        if event.kind == Kind.REMEDIATION_EXPIRED:
            expired = f"Remediation #{event.fact('request_id')} expired"
            enqueue_reply_edit(
                session,
                event.incident_id,
                card_key(int(event.fact("request_id"))),
                drill_reply(expired) if drill else expired,
                expired_card(
                    int(event.fact("request_id")),
                    str(event.fact("title", "")),
                    str(event.fact("requested_by", "")),
                ),
                priority=priority,
            )
        # A rehearsal changed nothing, so it offers nothing to undo.
        if event.kind == Kind.REMEDIATION_DONE and event.fact("undo_title") and not drill:
            title = str(event.fact("undo_title"))
            enqueue_thread_reply(
                session,
                event.incident_id,
                incident.slack_channel,
                title,
                undo_blocks(int(event.fact("request_id")), title),
            )
        if event.kind in ROOT_CHANGES:
            self._refresh_root(session, incident)

    # -- the thread ------------------------------------------------------------

    def _open_thread(self, s: Session, event: Event) -> None:
        """Enqueue the root and the playbook, once per incident."""
        incident = s.get(Incident, event.incident_id, populate_existing=True)
        if incident is None:
            return
        drill, priority = _is_drill(incident), _priority(incident)
        # Drills rehearse in their own channel, away from real incidents.
        channel = self.settings.drill_channel() if drill else self.channel
        if channel is None or not self.repo.claim_slack_thread(s, event.incident_id, channel):
            return
        incident = s.get(Incident, event.incident_id, populate_existing=True)
        assert incident is not None
        # Rendered when sent: the alerts of the batches applied meanwhile count too.
        enqueue_root_post(
            s, incident.id, channel, _root_fallback(incident), None, priority=priority
        )
        routes = ", ".join(event.fact("routes", []))
        intro = (
            f"Playbook `{event.fact('playbook_id')}` ({escape(event.fact('match', ''))}). "
            f"Severity *{event.fact('severity')}*: {escape(event.fact('severity_reason', ''))}. "
            f"Routes: {routes}."
        )
        if event.fact("declared_by"):
            intro = f"Declared by <@{event.fact('declared_by')}>. {intro}"
        if drill:
            scenario = escape(str(event.fact("drill_scenario") or "?"))
            intro = drill_reply(f":test_tube: Scenario `{scenario}`: {DRILL_NOTICE}. {intro}")
        enqueue_thread_reply(s, incident.id, channel, intro, priority=priority)
        playbook = self.playbooks.get(incident.playbook_id)
        if playbook is None:
            return
        values = {str(k): str(v) for k, v in (incident.labels or {}).items()}
        steps = [
            plan_step(step, values, self.settings.allowed_targets) for step in playbook.rollback
        ]
        title = f"Playbook: {playbook.title}"
        playbook_json = to_json(playbook_blocks(playbook, steps, incident.id))
        if drill:
            # The blocks hide the text: they say DRILL themselves (a step may
            # give way at the 50-block limit, only in a drill).
            title = drill_reply(title)
            playbook_json = [drill_context_block(), *playbook_json][:MAX_BLOCKS]
        enqueue_thread_reply(s, incident.id, channel, title, playbook_json, priority=priority)

    def _drill_status(self, s: Session, incident: Incident) -> DrillStatus | None:
        """None for a real incident; a drill is running until its scorecard is recorded."""
        if not _is_drill(incident):
            return None
        scorecard = _latest_facts(s, incident.id, Kind.DRILL_FINISHED)
        if not isinstance(scorecard, dict):
            return "running"
        return "passed" if scorecard.get("passed") else "failed"

    def _refresh_root(self, s: Session, incident: Incident) -> None:
        enqueue_root_refresh(
            s,
            incident.id,
            incident.slack_channel,
            _root_fallback(incident),
            priority=_priority(incident),
        )

    def render_root(
        self, conn: sa.Connection, incident_id: int
    ) -> tuple[str, list[dict[str, Any]]] | None:
        """The root's text and blocks as the incident is now (`RENDER_ROOT`): the
        delivery worker's claim calls this, in its own transaction."""
        with Session(bind=conn) as s:
            incident = s.get(Incident, incident_id)
            if incident is None:
                return None
            summary = self.repo.alert_summary(incident.id, session=s)
            review = _latest_facts(s, incident.id, Kind.REVIEW_LINKED)
            url = str(review.get("url")) if isinstance(review, dict) and review.get("url") else None
            view = incident_view(incident, self.playbooks, self.settings, summary, review_url=url)
            return root_message(view, self._drill_status(s, incident))

    def _approval_card(self, s: Session, e: Event, drill: bool = False) -> None:
        request_id = int(e.fact("request_id"))
        card = approval_card(
            request_id=request_id,
            requested_by=str(e.fact("requested_by")),
            title=str(e.fact("title", "")),
            summary=str(e.fact("summary", "")),
            details=[str(d) for d in e.fact("details", [])],
            expires_at=datetime.fromisoformat(str(e.fact("expires_at"))),
            approvers=[str(a) for a in e.fact("approvers", [])],
            rehearsal=drill,
        )
        text = f"Remediation #{request_id} needs approval: {e.fact('title', '')}"
        if drill:
            text = drill_reply(
                f"Remediation #{request_id} needs approval (rehearsal): {e.fact('title', '')}"
            )
        enqueue_thread_reply(
            s,
            e.incident_id,
            None,
            text,
            card,
            key=card_key(request_id),
            priority=PRIORITY_DRILL if drill else PRIORITY_REAL,
        )

    # -- replies -----------------------------------------------------------------

    @staticmethod
    def _acknowledged(e: Event) -> str:
        if e.fact("via") == "pagerduty":
            return f":eyes: Acknowledged in PagerDuty by {escape(e.fact('agent', 'PagerDuty'))}."
        return f":eyes: Acknowledged by {who(e.actor)}."

    def _review_hint(self, number: int) -> str:
        if self.reviews_filed_in:
            return f":clipboard: Filing the post-incident review in {self.reviews_filed_in}…"
        return (
            f":clipboard: Post-incident review: `nexus-bot review {number}` prints the draft "
            "(set `review.repo` and a GitHub token to file it as an issue)."
        )

    @staticmethod
    def _resolved(e: Event) -> str:
        if e.fact("reason") == "alerts":
            return ":white_check_mark: All alerts resolved."
        if e.fact("via") == "pagerduty":
            agent = escape(e.fact("agent", "PagerDuty"))
            return f":white_check_mark: Resolved in PagerDuty by {agent}."
        return f":white_check_mark: Resolved by {who(e.actor)}."

    @staticmethod
    def _reopened(e: Event) -> str:
        if e.fact("via") == "pagerduty":
            return (
                f":rotating_light: Reopened in PagerDuty by {escape(e.fact('agent', 'PagerDuty'))}."
            )
        firing = int(e.fact("firing", 0) or 0)
        cause = f"{firing} alert(s) firing again" if firing else f"reopened by {who(e.actor)}"
        return (
            f":rotating_light: *Reopened*: {cause}. "
            "The escalation ladder starts again from level 1."
        )

    @staticmethod
    def _level(e: Event, drill: bool = False) -> str:
        reason = escape(str(e.fact("reason", "")))
        if e.fact("reason") == "escalated by hand":
            reason = f"escalated by {who(e.actor)}"
        role = escape(e.fact("role", ""))
        # In a drill `slack` is the participants (the core puts them there): no one else.
        ladder = " (drill ladder)" if drill else ""
        text = f":rotating_light: *Level {e.fact('level')} — {role}*{ladder}: {reason}."
        people = " ".join(mention(p) for p in e.fact("slack", []))
        return f"{text} {people}".strip()

    @staticmethod
    def _pagerduty_note(e: Event) -> str | None:
        template = PAGERDUTY_NOTES.get(str(e.fact("event_type")))
        if template is None:
            return None
        fields = ("agent", "assignees", "priority", "content", "responder")
        return template.format(**{f: escape(str(e.fact(f, ""))) for f in fields})

    @staticmethod
    def _refused(e: Event) -> str:
        stage, reason = e.fact("stage"), str(e.fact("reason", ""))
        if stage == "executor":
            return f":no_entry: Remediation #{e.fact('request_id')}: {escape(reason)}."
        if stage == "preview":
            return f":warning: Remediation #{e.fact('request_id')}: {escape(reason)}"
        return (
            f":no_entry: {who(e.actor)} asked for *{escape(e.fact('title', ''))}*: "
            f"refused, {escape(reason)}."
        )

    @staticmethod
    def _done(e: Event) -> str:
        lines = [
            f"Approved by <@{e.fact('approved_by')}> at {e.fact('approved_at')} UTC "
            f"(requested by <@{e.fact('requested_by')}>).",
            f":white_check_mark: {escape(e.fact('summary', ''))}",
            *(escape(str(d)) for d in e.fact("details", [])),
            *(f"<{link}>" for link in e.fact("links", [])),
            *verification_lines(e.fact("verify")),
        ]
        title = escape(e.fact("title", ""))
        return f"Remediation #{e.fact('request_id')} ({title}) done.\n" + "\n".join(lines)

    @staticmethod
    def _role(e: Event) -> str:
        title = ROLE_TITLES.get(str(e.fact("role")), str(e.fact("role")))
        holders = ", ".join(mention(h) for h in e.fact("holders", [])) or "nobody"
        return f":busts_in_silhouette: {who(e.actor)} made {holders} *{escape(title)}*."

    @staticmethod
    def _update(e: Event) -> str:
        status = str(e.fact("status", "")).capitalize()
        return (
            f":mega: *Public update — {status}* (by {who(e.actor)}; emailed to stakeholders)\n"
            f"{escape(e.fact('text', ''))}"
        )

    @staticmethod
    def _reminder(e: Event) -> str:
        holders = " ".join(mention(h) for h in e.fact("holders", [])) or "*Communications*"
        since = datetime.fromisoformat(str(e.fact("since")))
        interval = format_duration(e.at - since) if e.at >= since else "a while"
        return (
            f":alarm_clock: {holders}: no public update for {interval}. "
            "Post one with `@nexus update <investigating|identified|monitoring|resolved> <text>`."
        )

    @staticmethod
    def _delivery_problem(e: Event) -> str:
        output = escape(str(e.fact("output", "delivery")))
        what = escape(str(e.fact("what", "a message")))
        recipients: dict[str, Any] = dict(e.fact("recipients", {}) or {})
        if not recipients:  # an API that refused the request (Statuspage, ...)
            error = escape(str(e.fact("error", "")))[:300]
            return f":warning: {output}: {what} was rejected and will not be retried: {error}"
        listed = "; ".join(f"{escape(a)} ({escape(str(r))[:120]})" for a, r in recipients.items())
        return (
            f":warning: {output}: {what} was refused for {listed}. "
            "Not retried: check the addresses in the config."
        )


__all__ = ["SlackThreadOutput", "card_key", "decided_card"]


def _latest_facts(s: Session, incident_id: int, kind: Kind) -> Any:
    """The facts of the incident's latest event of `kind`, or None."""
    return s.execute(
        sa.select(TimelineEvent.facts)
        .where(TimelineEvent.incident_id == incident_id, TimelineEvent.kind == kind.value)
        .order_by(TimelineEvent.id.desc())
        .limit(1)
    ).scalar_one_or_none()


def verification_lines(verify: Any) -> list[str]:
    """The verify step's result, under the step's own (`verify:` in the playbook)."""
    if not isinstance(verify, dict):
        return []
    mark = ":white_check_mark:" if verify.get("ok") else ":x:"
    verdict = "passed" if verify.get("ok") else "FAILED"
    lines = [f"{mark} Verification ({escape(str(verify.get('title', '')))}) {verdict}: "]
    lines[0] += escape(str(verify.get("summary", "")))
    details = [str(d) for d in verify.get("details") or []]
    return lines + ([printed_block(details).strip()] if details else [])


def printed_block(lines: Any) -> str:
    """What an action printed (a Job's log tail), as a code block; empty when nothing."""
    if not isinstance(lines, list) or not lines:
        return ""
    body = "\n".join(escape(str(line)).replace("```", "ˋˋˋ") for line in lines[-45:])
    return f"\n```\n{body[-2800:]}\n```"


def _root_fallback(incident: Incident) -> str:
    """The root's text should it not be rendered when sent (see `render_root`)."""
    mark = DRILL_TITLE_PREFIX if _is_drill(incident) else ""
    return f"Incident #{incident.id}: {mark}{escape(incident.title)}"
