"""Playbook review dates: who owns a playbook and when it must be looked at again.

The source playbook carries "Last Updated" and "Next Review" in its header and
ends with *Continuous Improvement*: regular review of the risk scenarios,
mitigations and rollback procedures. Dates in a document header are forgotten;
a date the bot checks is not. Each playbook may say:

    review:
      owner: S0PLATFORMLEADS     # Slack user (U…, W…) or user group (S…)
      last_reviewed: 2026-11-16  # YYYY-MM-DD, not in the future
      every: 90d                 # 7d … 730d; default 90d

The review is due on `last_reviewed + every` and overdue from the day after.
`nexus-bot validate` lists the due date of each playbook and warns (exit code
unchanged) about overdue ones.

Test hook: `NEXUS_TODAY=YYYY-MM-DD` replaces today's date for the overdue
check. Only `nexus-bot validate` reads it (through `review_today`), so tests can
run the real command against fixed dates; it is not a setting and the bot
ignores it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

from bot.durations import parse_duration

# The project's Slack ID pattern (bot.config_models.SLACK_ID), repeated here
# rather than imported so the domain layer does not depend on the config models.
_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")

MIN_EVERY = timedelta(days=7)
MAX_EVERY = timedelta(days=730)
DEFAULT_EVERY = timedelta(days=90)

# A reviewer east of the server's time zone may already be on tomorrow's date:
# that is not a typo, a date further ahead is.
_FUTURE_TOLERANCE = timedelta(days=1)

TODAY_ENV = "NEXUS_TODAY"


def parse_day(value: object) -> date:
    """A calendar date from YAML (already a `date`) or `YYYY-MM-DD` text.

    Pydantic would also take a number as a Unix timestamp (`20261116` is a day
    in 1970) or a datetime; a review date is neither, so both are refused.
    """
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if isinstance(value, str) and _ISO_DATE.match(value.strip()):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")


def format_every(every: timedelta) -> str:
    return f"{every.days}d"


class PlaybookReview(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    owner: str
    last_reviewed: date
    every: timedelta = DEFAULT_EVERY

    @field_validator("owner")
    @classmethod
    def _slack_id(cls, value: str) -> str:
        if not _SLACK_ID.match(value):
            raise ValueError(f"expected a Slack user (U…, W…) or user-group (S…) ID, got {value!r}")
        return value

    @field_validator("last_reviewed", mode="before")
    @classmethod
    def _calendar_date(cls, value: object) -> date:
        return parse_day(value)

    @field_validator("last_reviewed")
    @classmethod
    def _not_in_future(cls, value: date, info: ValidationInfo) -> date:
        # Tests pin "today" through the validation context; loading uses the clock.
        context = info.context if isinstance(info.context, Mapping) else {}
        today = context.get("today") or date.today()
        if value > today + _FUTURE_TOLERANCE:
            raise ValueError(f"{value.isoformat()} is in the future (today is {today.isoformat()})")
        return value

    @field_validator("every", mode="before")
    @classmethod
    def _days(cls, value: Any) -> timedelta:
        # A bare number would be read as seconds elsewhere in the config; for a
        # review cadence that is surely a mistake, so the unit is required.
        if isinstance(value, int | float) and not isinstance(value, bool):
            raise ValueError(f"expected a duration in days like 90d, got {value!r}")
        try:
            every: timedelta = parse_duration(value)
        except ValueError:
            raise ValueError(f"expected a duration in days like 90d, got {value!r}") from None
        if every % timedelta(days=1):
            raise ValueError(f"expected a whole number of days like 90d, got {value!r}")
        if not MIN_EVERY <= every <= MAX_EVERY:
            raise ValueError(
                f"expected between {format_every(MIN_EVERY)} and {format_every(MAX_EVERY)}, "
                f"got {value!r}"
            )
        return every

    @property
    def next_review(self) -> date:
        """The day the review is due."""
        return self.last_reviewed + self.every

    def overdue(self, today: date) -> bool:
        """Past the due day: on the due day itself the review is due, not late."""
        return today > self.next_review

    def days_overdue(self, today: date) -> int:
        """Whole days past the due day; 0 when not overdue."""
        return max(0, (today - self.next_review).days)

    def describe_overdue(self, today: date) -> str:
        days = self.days_overdue(today)
        return (
            f"review overdue since {self.next_review.isoformat()}, "
            f"{days} day{'s' if days != 1 else ''} "
            f"(last reviewed {self.last_reviewed.isoformat()}, "
            f"every {format_every(self.every)}; owner {self.owner})"
        )


def review_today(environ: Mapping[str, str]) -> date:
    """Today's date, or `NEXUS_TODAY` when set (a test hook; see the module docstring)."""
    raw = environ.get(TODAY_ENV, "").strip()
    if not raw:
        return date.today()
    try:
        return parse_day(raw)
    except ValueError:
        raise ValueError(
            f"environment variable {TODAY_ENV}: expected a date as YYYY-MM-DD, got {raw!r}"
        ) from None
