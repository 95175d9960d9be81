"""The structured parts of the configuration, which live only in the YAML file.

Severity thresholds, the allow-listed remediation targets, the two-person rule
(approvals) and the escalation ladder: `bot.settings.Settings` holds one of each
(``severity_thresholds``, ``allowed_targets``, ``approvals``, ``escalation``),
and `bot.settings` re-exports these models.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bot.durations import Duration

# Slack user (U…, W…) and user-group (S…) IDs.
SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}\Z")  # \Z: "$" would let a trailing newline in
_NAMESPACED = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?/[a-z0-9]([-.a-z0-9]*[a-z0-9])?$")
_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


class SeverityThresholds(BaseModel):
    """The source playbook's alert thresholds (warning fires strictly above)."""

    model_config = ConfigDict(extra="forbid")

    performance_degradation_percent: float = Field(20.0, ge=0)
    error_rate_percent: float = Field(5.0, ge=0, le=100)
    # "Any service down or SSOT sync failure" is critical: these alert names mean that.
    critical_alertnames: list[str] = Field(
        default_factory=lambda: ["ServiceDown", "SSOTSyncFailure"]
    )


class AllowedTargets(BaseModel):
    """What remediations may touch. Alert labels come from outside; this does not."""

    model_config = ConfigDict(extra="forbid")

    repositories: list[str] = Field(default_factory=list)
    deployments: list[str] = Field(default_factory=list, description="namespace/name")
    configmaps: list[str] = Field(default_factory=list, description="namespace/name")
    cronjobs: list[str] = Field(default_factory=list, description="namespace/name")
    buckets: list[str] = Field(default_factory=list, description="S3 bucket names")

    @field_validator("repositories")
    @classmethod
    def _repos(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _REPO.match(value):
                raise ValueError(f"expected owner/name, got {value!r}")
        return values

    @field_validator("buckets")
    @classmethod
    def _buckets(cls, values: list[str]) -> list[str]:
        for value in values:
            if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", value):
                raise ValueError(f"expected an S3 bucket name, got {value!r}")
        return values

    @field_validator("deployments", "configmaps", "cronjobs")
    @classmethod
    def _namespaced(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _NAMESPACED.match(value):
                raise ValueError(f"expected namespace/name, got {value!r}")
        return values


def _check_slack_ids(values: list[str]) -> list[str]:
    for value in values:
        if not SLACK_ID.match(value):
            raise ValueError(f"expected a Slack user (U…) or user-group (S…) ID, got {value!r}")
    return values


class ApprovalConfig(BaseModel):
    """The two-person rule: who may approve a remediation, and for how long a request waits."""

    model_config = ConfigDict(extra="forbid")

    # Slack user (U…) and user-group (S…) IDs; NEXUS_APPROVERS replaces this list.
    approvers: list[str] = Field(default_factory=list)
    # Stricter lists for some actions, e.g. {"k8s.scale": ["S0PLATFORMLEADS"]}.
    per_action: dict[str, list[str]] = Field(default_factory=dict)
    expire_after: Duration = Field(default_factory=lambda: timedelta(minutes=15))

    @field_validator("approvers")
    @classmethod
    def _ids(cls, values: list[str]) -> list[str]:
        return _check_slack_ids(values)

    @field_validator("per_action")
    @classmethod
    def _per_action_ids(cls, values: dict[str, list[str]]) -> dict[str, list[str]]:
        for ids in values.values():
            _check_slack_ids(ids)
        return values

    @field_validator("expire_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=10) or value > timedelta(days=1):
            raise ValueError("expected between 10s and 24h")
        return value


class EscalationLevel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    level: int = Field(ge=1, le=4)
    role: str = Field(min_length=1)
    slack: list[str] = Field(default_factory=list, description="Slack user or user-group IDs")
    email: list[str] = Field(default_factory=list)
    pagerduty_level: int | None = Field(None, ge=1)

    @field_validator("slack")
    @classmethod
    def _slack_ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if not SLACK_ID.match(value):
                raise ValueError(f"expected a Slack user (U…) or group (S…) ID, got {value!r}")
        return values

    @model_validator(mode="after")
    def _reaches_someone(self) -> EscalationLevel:
        if not self.slack and not self.email and self.pagerduty_level is None:
            raise ValueError(
                f"level {self.level} ({self.role}) reaches nobody: "
                "give it slack IDs, email addresses or a pagerduty_level"
            )
        return self


def _default_levels() -> list[EscalationLevel]:
    roles = ["Team lead", "Engineering manager", "CTO", "Executive"]
    return [
        EscalationLevel(level=n, role=role, pagerduty_level=n) for n, role in enumerate(roles, 1)
    ]


class EscalationConfig(BaseModel):
    """When levels 2, 3 and 4 start, counted from the incident's start, per severity."""

    model_config = ConfigDict(extra="forbid")

    levels: list[EscalationLevel] = Field(default_factory=_default_levels)
    critical: list[Duration] = Field(
        default_factory=lambda: [timedelta(minutes=m) for m in (5, 15, 60)]
    )
    warning: list[Duration] = Field(
        default_factory=lambda: [timedelta(minutes=m) for m in (15, 45, 120)]
    )

    @field_validator("levels")
    @classmethod
    def _four_levels(cls, levels: list[EscalationLevel]) -> list[EscalationLevel]:
        if [lvl.level for lvl in levels] != [1, 2, 3, 4]:
            raise ValueError("expected exactly the levels 1, 2, 3, 4 in order")
        return levels

    @field_validator("critical", "warning")
    @classmethod
    def _ordered(cls, delays: list[timedelta]) -> list[timedelta]:
        return check_delays(delays)


def check_delays(delays: list[timedelta]) -> list[timedelta]:
    if len(delays) != 3:
        raise ValueError("expected three delays: when levels 2, 3 and 4 start")
    if any(d <= timedelta(0) for d in delays):
        raise ValueError("expected delays greater than zero")
    if sorted(delays) != delays or len(set(delays)) != 3:
        raise ValueError("expected delays in increasing order (level 2 < level 3 < level 4)")
    return delays
