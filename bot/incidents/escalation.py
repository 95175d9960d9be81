"""The escalation ladder over time: level 1 → 4 while nobody acknowledges.

The database holds each incident's level and the time its next level is due;
it is the truth. A sweep (run every second by the scheduler in every replica)
takes due levels with a compare-and-set, so a level is posted once whatever
the number of replicas, and levels that fell due while the bot was down fire
once each after a restart.

Each level: a thread reply naming the level as the source playbook does
("Level 2 — Engineering manager") with its people and why, the root message
showing the level, an email to the level's addresses (when the severity's
routes include email), and for incidents with a PagerDuty counterpart the
PagerDuty escalation level plus a note.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from bot.domain.alerts import AlertSource, Severity
from bot.domain.routing import Route, routes_for
from bot.durations import format_duration
from bot.incidents.service import IncidentService, _who
from bot.settings import EscalationLevel
from bot.slack.blocks import escape
from bot.store.models import Incident, utcnow

log = structlog.get_logger("bot.escalation")

# An `incident.escalated` webhook this soon after we set the level is our own echo.
ECHO_WINDOW = timedelta(seconds=120)


class PagerDutyLevels(Protocol):
    def set_escalation_level(self, incident_id: str, level: int) -> object: ...

    def add_note(self, incident_id: str, content: str) -> object: ...


class Mailer(Protocol):
    def send(self, to: list[str], subject: str, body: str) -> object: ...


class EscalationService:
    def __init__(
        self,
        service: IncidentService,
        pagerduty: PagerDutyLevels | None = None,
        mailer: Mailer | None = None,
        clock: Callable[[], datetime] = utcnow,
        background: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.service = service
        self.repo = service.repo
        self.settings = service.settings
        self.pagerduty = pagerduty
        self.mailer = mailer
        self.clock = clock
        # Email and PagerDuty calls leave the caller's path (a webhook, the sweep)
        # when a background runner is given; tests may run them inline.
        self.background = background or (lambda task: task())

    # -- schedule ---------------------------------------------------------------

    def _delays(self, incident: Incident) -> list[timedelta] | None:
        return self.settings.escalation_delays(incident.severity)

    def scheduled_at(self, incident: Incident, level: int) -> datetime | None:
        """When `level` starts by the ladder, counted from the incident's start."""
        delays = self._delays(incident)
        if delays is None or level < 2 or level > 4:
            return None
        return incident.created_at + delays[level - 2]

    def _resume_at(self, incident: Incident, level: int, now: datetime) -> datetime | None:
        """After a manual step or a resume: the ladder's time, or one full gap from now."""
        delays = self._delays(incident)
        if delays is None or level >= 4:
            return None
        scheduled = incident.created_at + delays[level - 1]
        if scheduled > now:
            return scheduled
        gap = delays[level - 1] - (delays[level - 2] if level >= 2 else timedelta(0))
        return now + gap

    # -- entry points -------------------------------------------------------------

    def start(self, number: int) -> None:
        """Level 1 at once for a new incident, and the time level 2 is due."""
        incident = self.repo.get_incident(number)
        if incident is None or self._delays(incident) is None:
            return
        self._climb(incident, 1, "scheduler", "the incident opened", self.scheduled_at(incident, 2))

    def sweep(self) -> int:
        """Fire every due level once; returns how many fired."""
        now = self.clock()
        fired = 0
        for incident in self.repo.due_escalations(now):
            level = incident.escalation_level + 1
            if level > 4:
                continue
            elapsed = format_duration(now - incident.created_at)
            if self._climb(
                incident,
                level,
                "scheduler",
                f"not acknowledged for {elapsed}",
                self.scheduled_at(incident, level + 1),
            ):
                fired += 1
        return fired

    def escalate_now(self, number: int, actor: str, to_level: int | None = None) -> str:
        incident = self.repo.get_incident(number)
        if incident is None:
            return f"There is no incident #{number}."
        if incident.status == "resolved":
            return f"Incident #{number} is resolved; nothing to escalate."
        target = to_level if to_level is not None else incident.escalation_level + 1
        if target > 4:
            return f"Incident #{number} is already at level 4 (Executive)."
        epoch = self.repo.escalation_epoch(number)
        if target <= incident.escalation_level:
            epoch += 1  # climbing again from a lower level is a new round of the ladder
        next_at = self._resume_at(incident, target, self.clock())
        if not self._climb(
            incident,
            target,
            actor,
            f"escalated by {_who(actor)}",
            next_at,
            epoch=epoch,
            require_triggered=False,
        ):
            return f"Level {target} was just reached; nothing more to do."
        return f"Incident #{number} escalated to level {target} ({self._level(target).role})."

    def resume(self, number: int) -> None:
        """Unacknowledged or reopened: climb again from the current level."""
        incident = self.repo.get_incident(number)
        if incident is None or incident.status != "triggered":
            return
        next_at = self._resume_at(incident, incident.escalation_level, self.clock())
        with self.repo.session() as s:
            self.repo.set_next_escalation(s, number, next_at)

    def mirror_pagerduty(self, number: int) -> None:
        """PagerDuty escalated on its own: take the next level here without paging again."""
        incident = self.repo.get_incident(number)
        if incident is None or incident.escalation_level >= 4:
            return
        steps = self.repo.escalation_steps(number)
        last = steps[-1] if steps else None
        if (
            last is not None
            and last.level > 1  # level 1 is PagerDuty's own; we never set it there
            and last.actor != "pagerduty"
            and self.clock() - last.fired_at < ECHO_WINDOW
        ):
            return  # the echo of a level we just set in PagerDuty
        level = incident.escalation_level + 1
        self._climb(
            incident,
            level,
            "pagerduty",
            "escalated in PagerDuty",
            self.scheduled_at(incident, level + 1),
            require_triggered=False,
            notify_pagerduty=False,
        )

    # -- one step ---------------------------------------------------------------

    def _level(self, level: int) -> EscalationLevel:
        return self.settings.escalation.levels[level - 1]

    def _climb(
        self,
        incident: Incident,
        level: int,
        actor: str,
        reason: str,
        next_at: datetime | None,
        epoch: int = 0,
        require_triggered: bool = True,
        notify_pagerduty: bool = True,
    ) -> bool:
        config = self._level(level)
        now = self.clock()
        with self.repo.session() as s:
            taken = self.repo.claim_escalation(
                s,
                incident.id,
                incident.escalation_level,
                level,
                incident.next_escalation_at,
                next_at,
                actor,
                reason,
                epoch=epoch,
                now=now,
                require_triggered=require_triggered,
            )
            if not taken:
                return False
            text = f":rotating_light: *Level {level} — {escape(config.role)}*: {reason}."
            people = " ".join(_mention(p) for p in config.slack)
            self.service.post_escalation(s, incident.id, f"{text} {people}".strip())
        self.service.wake_outbox()
        log.info("escalated", incident=incident.id, ladder_level=level, actor=actor)
        self.background(lambda: self._notify(incident, level, config, reason, notify_pagerduty))
        return True

    def _notify(
        self,
        incident: Incident,
        level: int,
        config: EscalationLevel,
        reason: str,
        to_pagerduty: bool,
    ) -> None:
        """Email and PagerDuty, after the level is durably taken; failures are audited."""
        routes = routes_for(Severity(incident.severity), AlertSource(incident.source))
        subject = (
            f"[{incident.severity.upper()}] Level {level} — {config.role}: "
            f"#{incident.id} {incident.title}"
        )
        body = (
            f"Incident #{incident.id}: {incident.title}\nSeverity: {incident.severity}\n"
            f"Escalation: level {level} — {config.role} ({reason}).\n"
            f"Playbook: {incident.playbook_id}\n"
            + (f"PagerDuty: {incident.pagerduty_url}\n" if incident.pagerduty_url else "")
            + "Acknowledge in the Slack thread or with `/incident ack "
            + f"{incident.id}` to stop the escalation.\n"
        )
        mailer = self.mailer
        if Route.EMAIL in routes and config.email and mailer is not None:
            self._attempt(incident.id, "email", lambda: mailer.send(config.email, subject, body))
        pd_id = incident.pagerduty_incident_id
        # Level 1 is where PagerDuty starts by itself: only later levels are pushed.
        if to_pagerduty and level > 1 and pd_id and config.pagerduty_level and self.pagerduty:
            pd = self.pagerduty
            pd_level = config.pagerduty_level

            def set_level() -> None:
                pd.set_escalation_level(pd_id, pd_level)
                pd.add_note(pd_id, f"NEXUS bot: level {level} — {config.role} ({reason}).")

            self._attempt(incident.id, "pagerduty", set_level)

    def _attempt(self, number: int, channel: str, send: Callable[[], object]) -> None:
        try:
            send()
        except Exception as exc:  # an adapter failure must not stop the ladder
            log.warning(
                "escalation notice failed", incident=number, channel=channel, error=str(exc)[:300]
            )
            self.repo.audit(
                "nexus-bot", f"escalation.{channel}_failed", number, {"error": str(exc)[:300]}
            )
        else:
            self.repo.audit("nexus-bot", f"escalation.{channel}_sent", number, {})


def _mention(entry: str) -> str:
    return f"<!subteam^{entry}>" if entry.startswith("S") else f"<@{entry}>"
