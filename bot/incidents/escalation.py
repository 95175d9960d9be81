"""The escalation ladder over time: level 1 → 4 while nobody acknowledges.

The database holds each incident's level and the time its next level is due;
it is the truth. A sweep (run every second by the scheduler in every replica)
takes due levels with a compare-and-set, so a level is reached once whatever
the number of replicas, and levels that fell due while the bot was down fire
once each after a restart.

Each level is a `level.reached` timeline event, written in the transaction
that takes the step, naming the level as the source playbook does (level,
role, its people and addresses, why). The outputs say it: a thread reply and
the root message (Slack), an email to the level's addresses (when the
severity's routes include email), the PagerDuty escalation level plus a note.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import structlog
from sqlalchemy.orm import Session

from bot.durations import format_duration
from bot.settings import EscalationLevel, Settings
from bot.store.models import Incident, utcnow
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline

log = structlog.get_logger("bot.escalation")

# An `incident.escalated` webhook this soon after we set the level is our own echo.
ECHO_WINDOW = timedelta(seconds=120)


class EscalationService:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        timeline: Timeline,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.timeline = timeline
        self.clock = clock

    # -- schedule ---------------------------------------------------------------

    def _delays(self, incident: Incident) -> list[timedelta] | None:
        if incident.drill_run_id is not None:  # a drill climbs its compressed ladder
            return list(self.settings.drills.escalation)
        return self.settings.escalation_delays(incident.severity)

    def scheduled_at(
        self, incident: Incident, level: int, since: datetime | None = None
    ) -> datetime | None:
        """When `level` starts by the ladder, counted from `since` (the incident's start)."""
        delays = self._delays(incident)
        if delays is None or level < 2 or level > 4:
            return None
        return (since or incident.created_at) + delays[level - 2]

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

    # -- entry points (each in the caller's transaction, or its own) -------------

    def start(self, s: Session, incident: Incident) -> None:
        """Level 1 at once for a new incident, and the time level 2 is due."""
        if self._delays(incident) is None:
            return
        self._climb(
            s, incident, 1, "scheduler", "the incident opened", self.scheduled_at(incident, 2)
        )

    def restart(self, s: Session, incident: Incident) -> None:
        """A resolved incident fired again: a new round of the ladder from level 1."""
        if self._delays(incident) is None:
            return
        now = self.clock()
        epoch = self.repo.escalation_epoch(incident.id, s) + 1
        self._climb(
            s,
            incident,
            1,
            "scheduler",
            "the incident reopened",
            self.scheduled_at(incident, 2, since=now),
            epoch=epoch,
            from_level=incident.escalation_level,
        )

    def sweep(self) -> int:
        """Fire every due level once (one transaction each); returns how many fired."""
        now = self.clock()
        fired = 0
        for incident in self.repo.due_escalations(now):
            level = incident.escalation_level + 1
            if level > 4:
                continue
            elapsed = format_duration(now - incident.created_at)
            with self.repo.session() as s:
                if self._climb(
                    s,
                    incident,
                    level,
                    "scheduler",
                    f"not acknowledged for {elapsed}",
                    self.scheduled_at(incident, level + 1),
                    epoch=self.repo.escalation_epoch(incident.id, s),
                ):
                    fired += 1
        return fired

    def escalate_now(self, number: int, actor: str, to_level: int | None = None) -> str:
        with self.repo.session() as s:
            incident = s.get(Incident, number)
            if incident is None:
                return f"There is no incident #{number}."
            if incident.status == "resolved":
                return f"Incident #{number} is resolved; nothing to escalate."
            target = to_level if to_level is not None else incident.escalation_level + 1
            if target > 4:
                return f"Incident #{number} is already at level 4 (Executive)."
            epoch = self.repo.escalation_epoch(number, s)
            if target <= incident.escalation_level:
                epoch += 1  # climbing again from a lower level is a new round of the ladder
            next_at = self._resume_at(incident, target, self.clock())
            if not self._climb(
                s,
                incident,
                target,
                actor,
                "escalated by hand",
                next_at,
                epoch=epoch,
                require_triggered=False,
            ):
                return f"Level {target} was just reached; nothing more to do."
        return f"Incident #{number} escalated to level {target} ({self._level(target).role})."

    def resume(self, s: Session, number: int) -> None:
        """Unacknowledged: climb again from the current level."""
        incident = s.get(Incident, number, populate_existing=True)
        if incident is None or incident.status != "triggered":
            return
        next_at = self._resume_at(incident, incident.escalation_level, self.clock())
        self.repo.set_next_escalation(s, number, next_at)

    def mirror_pagerduty(self, s: Session, number: int) -> None:
        """PagerDuty escalated on its own: take the next level here without paging again."""
        incident = s.get(Incident, number, populate_existing=True)
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
            s,
            incident,
            level,
            "pagerduty",
            "escalated in PagerDuty",
            self.scheduled_at(incident, level + 1),
            epoch=self.repo.escalation_epoch(number, s),
            require_triggered=False,
            notify_pagerduty=False,
        )

    # -- one step ---------------------------------------------------------------

    def _level(self, level: int) -> EscalationLevel:
        return self.settings.escalation.levels[level - 1]

    def _climb(
        self,
        s: Session,
        incident: Incident,
        level: int,
        actor: str,
        reason: str,
        next_at: datetime | None,
        epoch: int = 0,
        require_triggered: bool = True,
        notify_pagerduty: bool = True,
        from_level: int | None = None,
    ) -> bool:
        config = self._level(level)
        now = self.clock()
        taken = self.repo.claim_escalation(
            s,
            incident.id,
            incident.escalation_level if from_level is None else from_level,
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
        drill = incident.drill_run_id is not None
        # A drill's ladder mentions only its participants: it pages and mails nobody.
        self.timeline.record(
            s,
            incident.id,
            Kind.LEVEL_REACHED,
            actor,
            at=now,
            level=level,
            role=config.role,
            reason=reason,
            slack=list(self.settings.drills.participants if drill else config.slack),
            email=[] if drill else list(config.email),
            pagerduty_level=None if drill else config.pagerduty_level,
            notify_pagerduty=notify_pagerduty and not drill,
            **({"drill": True} if drill else {}),
        )
        log.info("escalated", incident=incident.id, ladder_level=level, actor=actor)
        return True
