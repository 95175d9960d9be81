"""The escalation ladder: who is reached at which level, and when each level starts.

Source playbook, "Escalation Procedures": level 1 team lead, level 2
engineering manager, level 3 CTO, level 4 executive. Level 1 starts with the
incident; the later levels start at the configured delays while nobody
acknowledges. Info incidents never escalate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from bot.domain.alerts import Severity
from bot.durations import format_duration
from bot.settings import Settings


@dataclass(frozen=True)
class LadderStep:
    level: int
    role: str
    starts_after: timedelta
    slack: tuple[str, ...]
    email: tuple[str, ...]
    pagerduty_level: int | None

    @property
    def label(self) -> str:
        return f"Level {self.level} — {self.role}"

    @property
    def when(self) -> str:
        return "at once" if not self.starts_after else f"after {format_duration(self.starts_after)}"


def escalation_ladder(severity: Severity, settings: Settings) -> list[LadderStep]:
    """The levels an incident of this severity climbs; empty for info."""
    delays = settings.escalation_delays(severity.value)
    if delays is None:
        return []
    starts = [timedelta(0), *delays]
    return [
        LadderStep(
            level=level.level,
            role=level.role,
            starts_after=start,
            slack=tuple(level.slack),
            email=tuple(level.email),
            pagerduty_level=level.pagerduty_level,
        )
        for level, start in zip(settings.escalation.levels, starts, strict=True)
    ]
