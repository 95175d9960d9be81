"""`status_page:` in config: the page's name, its components and what is published."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_COMPONENT_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

WarningState = Literal["degraded_performance", "partial_outage"]


class ComponentConfig(BaseModel):
    """A part of the platform as customers know it, and the alert `service` labels behind it."""

    model_config = ConfigDict(extra="forbid")

    id: str
    name: str = Field(min_length=1, max_length=100)
    description: str = Field("", max_length=500)
    services: list[str] = Field(default_factory=list)
    # What a warning incident on these services shows (critical is always major_outage).
    warning_state: WarningState = "degraded_performance"
    # The component's id on Atlassian Statuspage, when the page is mirrored there.
    statuspage_id: str | None = None

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _COMPONENT_ID.match(value):
            raise ValueError(f"expected a lower-case slug like `ssot-sync`, got {value!r}")
        return value


def _default_components() -> list[ComponentConfig]:
    return [
        ComponentConfig(
            id="ssot",
            name="Configuration (SSOT)",
            description="The platform's single source of truth and its sync.",
            services=["ssot", "ssot-sync", "ssot-validate", "ssot-build"],
        ),
        ComponentConfig(
            id="frenly-ai",
            name="Frenly AI assistant",
            description="AI-proposed configuration changes.",
            services=["frenly-ai"],
            warning_state="partial_outage",
        ),
        ComponentConfig(
            id="apis",
            name="Platform APIs",
            description="Orders, billing and the other services built on the SSOT.",
            services=["orders-api", "billing-api"],
        ),
    ]


class StatusPageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("NEXUS platform", min_length=1, max_length=100)
    # Where customers read it (links in the JSON and the feed); None: the request's own URL.
    url: str | None = None
    components: list[ComponentConfig] = Field(default_factory=_default_components)
    history_days: int = Field(14, ge=1, le=90)
    refresh_seconds: int = Field(60, ge=10, le=3600)
    # Critical incidents appear at once with `auto_publish_text`, before anyone writes.
    auto_publish_critical: bool = False
    auto_publish_text: str = Field(
        "We are investigating reports of a problem and will post an update shortly.",
        min_length=1,
        max_length=1000,
    )
    # The public name of an incident (its title comes from alerts and stays internal).
    incident_name: str = Field("Service disruption", min_length=1, max_length=200)

    @model_validator(mode="after")
    def _unique_components(self) -> StatusPageConfig:
        ids = [c.id for c in self.components]
        if len(ids) != len(set(ids)):
            raise ValueError("component ids must be unique")
        owners: dict[str, str] = {}
        for component in self.components:
            for service in component.services:
                if service in owners:
                    raise ValueError(
                        f"service {service!r} is in both {owners[service]!r} and {component.id!r}"
                    )
                owners[service] = component.id
        return self

    def component_for(self, service: str | None) -> ComponentConfig | None:
        if not service:
            return None
        return next((c for c in self.components if service in c.services), None)
