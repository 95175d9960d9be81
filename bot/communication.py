"""The source playbook's communication plan as configuration: roles and update cadence.

Roles (the playbook's "Communication Plan"): the Incident Commander (Platform
Team Lead), the Technical Lead (Senior DevOps Engineer), Communications
(Product Manager) and the Stakeholders (all team leads). Each new incident
gets the configured defaults; `/incident role` reassigns one.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.durations import Duration

# Config key -> the name people read. Order is the order shown on the root message.
ROLE_TITLES: dict[str, str] = {
    "commander": "Incident Commander",
    "tech-lead": "Technical Lead",
    "comms": "Communications",
    "stakeholders": "Stakeholders",
}
# Roles that `/incident role` may reassign (stakeholders are a list kept in config).
ASSIGNABLE_ROLES = ("commander", "tech-lead", "comms")
PUBLIC_STATUSES = ("investigating", "identified", "monitoring", "resolved")

_SLACK_ID = re.compile(r"^[UWS][A-Z0-9]{2,}\Z")
_EMAIL = re.compile(r"^[^@\s<>,;\"']+@[^@\s<>,;\"']+\.[^@\s<>,;\"']+$")


class RoleDefaults(BaseModel):
    """Who holds a role on a new incident: Slack users/groups, and where its email goes."""

    model_config = ConfigDict(extra="forbid")

    slack: list[str] = Field(default_factory=list)
    email: list[str] = Field(default_factory=list)

    @field_validator("slack")
    @classmethod
    def _slack_ids(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _SLACK_ID.match(value):
                raise ValueError(f"expected a Slack user (U…) or group (S…) ID, got {value!r}")
        return values

    @field_validator("email")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            if not _EMAIL.match(value):
                raise ValueError(f"expected an email address, got {value!r}")
        return values


class RolesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    commander: RoleDefaults = Field(default_factory=RoleDefaults)
    tech_lead: RoleDefaults = Field(default_factory=RoleDefaults, alias="tech-lead")
    comms: RoleDefaults = Field(default_factory=RoleDefaults)
    stakeholders: RoleDefaults = Field(default_factory=RoleDefaults)

    def get(self, role: str) -> RoleDefaults:
        return {
            "commander": self.commander,
            "tech-lead": self.tech_lead,
            "comms": self.comms,
            "stakeholders": self.stakeholders,
        }[role]

    def defaults(self) -> dict[str, list[str]]:
        """A new incident's role holders (Slack IDs), as stored on the incident."""
        return {role: list(self.get(role).slack) for role in ROLE_TITLES}


class UpdatesConfig(BaseModel):
    """Public status updates: how long a critical incident may go without one."""

    model_config = ConfigDict(extra="forbid")

    remind_after: Duration = Field(default_factory=lambda: timedelta(minutes=30))

    @field_validator("remind_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value < timedelta(seconds=1) or value > timedelta(days=7):
            raise ValueError("expected between 1s and 7d")
        return value
