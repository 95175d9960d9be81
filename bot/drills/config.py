"""The ``drills:`` section: schedules, scenarios and how a drill is rehearsed.

The source playbook's *Recovery Testing*: weekly, test the rollback procedures
(one scenario in rotation); monthly, a full simulation (all five scenarios);
quarterly, review and update the procedures. Its five test scenarios ship as
defaults here and in config/nexus.yaml.

Cron expressions have five fields as in crontab (a sixth, leading, field of
seconds is accepted too). They are read by APScheduler's ``CronTrigger``, which
requires *every* field to match: ``0 10 1-7 * WED`` is the first Wednesday of
the month (classic cron would read it as "day 1-7 *or* any Wednesday").
Day-of-week numbers differ between cron (0 = Sunday) and APScheduler
(0 = Monday), so only names (MON…SUN) are accepted there.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import timedelta, tzinfo
from typing import Literal

from apscheduler.triggers.cron import CronTrigger
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.config_models import SLACK_ID, check_delays
from bot.durations import Duration

_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DOW_NUMBER = re.compile(r"\d")


def cron_trigger(expression: str, timezone: tzinfo) -> CronTrigger:
    """A trigger from 5 (crontab) or 6 (seconds first) fields; names only for weekdays."""
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    if len(fields) != 6:
        raise ValueError(
            f"expected 5 cron fields (minute hour day month weekday), got {expression!r}"
        )
    second, minute, hour, day, month, day_of_week = fields
    if _DOW_NUMBER.search(day_of_week):
        raise ValueError(
            f"write weekdays as names (MON…SUN), not numbers, in {expression!r}: "
            "cron and APScheduler number them differently"
        )
    try:
        return CronTrigger(
            second=second,
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=day_of_week.lower(),
            timezone=timezone,
        )
    except ValueError as exc:
        raise ValueError(f"invalid cron expression {expression!r}: {exc}") from None


class DrillAlert(BaseModel):
    """The synthetic alert a scenario raises: it goes through the inbox like a real one."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=300)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class DrillScenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1)
    playbook: str = Field(min_length=1)
    # The playbook steps the drill exercises; empty: every runnable step.
    steps: list[str] = Field(default_factory=list)
    alert: DrillAlert


class DrillSchedule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    cron: str
    # rotation: one scenario per tick, in turn; all: every scenario; review: the
    # quarterly review checklist; or one scenario's id.
    run: str = "rotation"

    @field_validator("id")
    @classmethod
    def _id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError(f"expected a lower-case id like 'weekly', got {value!r}")
        return value

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        cron_trigger(value, zoneinfo.ZoneInfo("UTC"))
        return value


def _default_schedules() -> list[DrillSchedule]:
    return [
        DrillSchedule(id="weekly", cron="0 10 * * TUE", run="rotation"),
        DrillSchedule(id="monthly", cron="0 10 1-7 * WED", run="all"),
        DrillSchedule(id="quarterly", cron="0 10 1-7 1,4,7,10 MON", run="review"),
    ]


def _scenario(
    title: str, playbook: str, steps: list[str], alert: dict[str, object]
) -> DrillScenario:
    return DrillScenario.model_validate(
        {"title": title, "playbook": playbook, "steps": steps, "alert": alert}
    )


def default_scenarios() -> dict[str, DrillScenario]:
    """The playbook's five test scenarios, aimed at the shipped allow-listed targets."""
    return {
        "schema-mismatch": _scenario(
            "Simulate a schema change causing runtime errors",
            "schema-mismatch",
            ["revert-commit"],
            {
                "title": "Schema mismatch after an SSOT change (drill)",
                "labels": {
                    "alertname": "SSOTSchemaMismatch",
                    "severity": "warning",
                    "service": "ssot",
                    "repo": "nexus/ssot",
                    "commit": "HEAD",
                },
            },
        ),
        "build-failure": _scenario(
            "Simulate SSOT formatting issues",
            "ssot-build-failure",
            ["remove-ssot-change", "revert-commit"],
            {
                "title": "SSOT build failure: formatting issues (drill)",
                "labels": {
                    "alertname": "SSOTBuildFailure",
                    "severity": "warning",
                    "service": "ssot-build",
                    "repo": "nexus/ssot",
                    "commit": "HEAD",
                },
            },
        ),
        "ai-malfunction": _scenario(
            "Simulate dangerous AI proposals",
            "frenly-ai-dangerous-edit",
            ["close-pr", "scale-to-zero"],
            {
                "title": "Frenly AI proposing a dangerous edit (drill)",
                "labels": {
                    "alertname": "FrenlyAIDangerousEdit",
                    "severity": "critical",
                    "service": "frenly-ai",
                    "repo": "nexus/ssot",
                    "pr": "1",
                },
            },
        ),
        "data-loss": _scenario(
            "Simulate accidental deletion of SSOT files",
            "lost-canonical-files",
            ["restore-from-git"],
            {
                "title": "Canonical SSOT files missing (drill)",
                "labels": {
                    "alertname": "SSOTCanonicalFilesMissing",
                    "severity": "critical",
                    "service": "ssot",
                    "repo": "nexus/ssot",
                    "commit": "HEAD~1",
                },
            },
        ),
        "performance-issues": _scenario(
            "Simulate performance degradation",
            "performance-degradation",
            ["disable-ssot-integration", "rollout-undo"],
            {
                "title": "Latency degradation after an SSOT change (drill)",
                "labels": {
                    "alertname": "LatencyDegradation",
                    "severity": "warning",
                    "service": "frenly-ai",
                    "namespace": "ai",
                    "deployment": "frenly-ai",
                },
            },
        ),
    }


class DrillsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # false: no scheduled drills (manual ones still run)
    timezone: str = "UTC"
    # The Slack channel drill threads open in; NEXUS_DRILL_CHANNEL wins, then the
    # incident channel.
    channel: str | None = None
    timeout: Duration = Field(default_factory=lambda: timedelta(minutes=30))
    misfire_grace: Duration = Field(default_factory=lambda: timedelta(hours=1))
    # The compressed ladder of a drill: when levels 2, 3 and 4 start.
    escalation: list[Duration] = Field(
        default_factory=lambda: [timedelta(minutes=m) for m in (2, 4, 6)]
    )
    # Slack user / user-group IDs the drill's ladder mentions (nobody else).
    participants: list[str] = Field(default_factory=list)
    # Rehearsed git steps push to drill/<incident>-<step> and delete it; true also
    # opens (and closes) a pull request from it.
    open_pull_requests: bool = False
    schedules: list[DrillSchedule] = Field(default_factory=_default_schedules)
    scenarios: dict[str, DrillScenario] = Field(default_factory=default_scenarios)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (e.g. UTC, Europe/Berlin)") from None
        return value

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[CGD][A-Z0-9]{2,}", value):
            raise ValueError(f"expected a Slack channel ID like C0123ABCD, got {value!r}")
        return value

    @field_validator("escalation")
    @classmethod
    def _ladder(cls, delays: list[timedelta]) -> list[timedelta]:
        return check_delays(delays)

    @field_validator("participants")
    @classmethod
    def _ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if not SLACK_ID.fullmatch(value):
                raise ValueError(f"expected a Slack user (U…) or group (S…) ID, got {value!r}")
        return values

    @field_validator("timeout", "misfire_grace")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("expected a duration greater than zero")
        return value

    @model_validator(mode="after")
    def _references(self) -> DrillsConfig:
        for scenario_id in self.scenarios:
            if not _ID.fullmatch(scenario_id):
                raise ValueError(
                    f"scenario id {scenario_id!r}: expected lower-case letters, digits, -"
                )
        seen: set[str] = set()
        for schedule in self.schedules:
            if schedule.id in seen:
                raise ValueError(f"schedule {schedule.id!r} is listed twice")
            seen.add(schedule.id)
            if (
                schedule.run not in ("rotation", "all", "review")
                and schedule.run not in self.scenarios
            ):
                raise ValueError(
                    f"schedule {schedule.id!r}: run must be rotation, all, review or a scenario "
                    f"id ({', '.join(sorted(self.scenarios))}), got {schedule.run!r}"
                )
        return self

    def zone(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    def trigger(self, schedule: DrillSchedule) -> CronTrigger:
        return cron_trigger(schedule.cron, self.zone())


RunKind = Literal["rotation", "all", "review"]
