"""The ``review:`` section of the configuration: where post-incident reviews are filed.

Without ``repo`` (or without GitHub credentials) nothing is published: the
review is still drafted on demand by ``nexus-bot review ID``.
"""

from __future__ import annotations

import re
from datetime import timedelta

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bot.durations import Duration

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
# Slack user IDs (U…, W…): a commander is a person, never a user group.
_SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
# GitHub logins: alphanumerics and single hyphens, at most 39 characters.
_GITHUB_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}$")
# GitHub refuses label names longer than this.
MAX_LABEL = 50


class ReviewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # "owner/name" of the repository the review issues are filed in.
    repo: str | None = None
    # The Incident Commander is reminded once if the review is still open this long
    # after the incident was resolved.
    remind_after: Duration = timedelta(days=5)
    # Slack user ID → GitHub login, to assign the review to the Incident Commander.
    github_logins: dict[str, str] = Field(default_factory=dict)
    # The label every review issue carries; the publisher finds reviews by it.
    label: str = Field("post-incident-review", min_length=1, max_length=MAX_LABEL)

    @field_validator("repo")
    @classmethod
    def _repo(cls, value: str | None) -> str | None:
        if value is not None and not _REPO.match(value):
            raise ValueError(f"expected owner/name, got {value!r}")
        return value

    @field_validator("remind_after")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @field_validator("github_logins")
    @classmethod
    def _logins(cls, value: dict[str, str]) -> dict[str, str]:
        for slack_id, login in value.items():
            if not _SLACK_USER.match(slack_id):
                raise ValueError(f"expected a Slack user ID (U…) as key, got {slack_id!r}")
            if not _GITHUB_LOGIN.match(login):
                raise ValueError(f"not a GitHub login: {login!r}")
        return value

    @field_validator("label")
    @classmethod
    def _label(cls, value: str) -> str:
        # A comma would split the label in the issue listing's `labels=` filter.
        if "," in value or value != value.strip():
            raise ValueError(f"a label without commas or outer spaces, got {value!r}")
        return value
