"""Component states and the banner, derived from published incidents (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.web.config import ComponentConfig, StatusPageConfig
from bot.web.model import (
    PublicIncident,
    PublicUpdate,
    StatusSnapshot,
    component_states,
    overall,
)

SSOT = ComponentConfig(id="ssot", name="Configuration", services=["ssot-sync"])
AI = ComponentConfig(id="ai", name="AI", services=["frenly-ai"], warning_state="partial_outage")
T0 = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("incidents", "expected"),
    [
        ([], {"ssot": "operational", "ai": "operational"}),
        ([("warning", ["ssot"])], {"ssot": "degraded_performance", "ai": "operational"}),
        ([("warning", ["ai"])], {"ssot": "operational", "ai": "partial_outage"}),
        (
            [("critical", ["ssot"]), ("warning", ["ssot"])],
            {"ssot": "major_outage", "ai": "operational"},
        ),
        ([("info", ["ssot", "ai"])], {"ssot": "operational", "ai": "operational"}),
        ([("critical", ["elsewhere"])], {"ssot": "operational", "ai": "operational"}),
    ],
)
def test_the_worst_open_incident_sets_the_component(
    incidents: list[tuple[str, list[str]]], expected: dict[str, str]
) -> None:
    views = component_states([SSOT, AI], incidents, {})
    assert {v.id: v.status for v in views} == expected


def test_an_override_wins_until_cleared() -> None:
    views = component_states([SSOT, AI], [("critical", ["ssot"])], {"ssot": "operational"})
    assert [(v.id, v.status, v.overridden) for v in views] == [
        ("ssot", "operational", True),
        ("ai", "operational", False),
    ]
    bogus = component_states([SSOT], [], {"ssot": "on-fire"})
    assert (bogus[0].status, bogus[0].overridden) == ("operational", False)


@pytest.mark.parametrize(
    ("states", "impacts", "indicator"),
    [
        ([], [], "none"),
        (["operational", "degraded_performance"], [], "minor"),
        (["partial_outage", "degraded_performance"], [], "major"),
        (["major_outage", "operational"], [], "critical"),
        (["operational"], ["critical"], "minor"),  # an incident on no component
        (["operational"], ["none"], "none"),
    ],
)
def test_the_banner_is_the_worst_component(
    states: list[str], impacts: list[str], indicator: str
) -> None:
    views = component_states(
        [ComponentConfig(id=f"c{i}", name=f"C{i}") for i in range(len(states))],
        [],
        {f"c{i}": state for i, state in enumerate(states)},
    )
    assert overall(views, impacts) == indicator


def test_a_snapshot_survives_storage() -> None:
    update = PublicUpdate(7, "identified", "Bad anchor <v37> reverted", T0)
    incident = PublicIncident(
        3, "Service disruption", "identified", "critical", T0, T0, None, ("ssot",), (update,)
    )
    snapshot = StatusSnapshot(
        "NEXUS", None, T0, "critical", "Major outage",
        tuple(component_states([SSOT], [("critical", ["ssot"])], {})), (incident,), (), 14, 60,
    )  # fmt: skip
    assert StatusSnapshot.from_dict(snapshot.to_dict()) == snapshot


def test_config_refuses_a_service_in_two_components() -> None:
    with pytest.raises(ValueError, match="both"):
        StatusPageConfig(
            components=[SSOT, ComponentConfig(id="x", name="X", services=["ssot-sync"])]
        )
    with pytest.raises(ValueError, match="unique"):
        StatusPageConfig(components=[SSOT, SSOT])
    with pytest.raises(ValueError, match="slug"):
        ComponentConfig(id="Not A Slug", name="x")
