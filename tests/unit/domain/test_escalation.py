"""The escalation ladder: when each level starts, per severity and configuration (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from bot.domain.alerts import Severity
from bot.domain.escalation import escalation_ladder
from bot.settings import Settings

MakeSettings = Callable[..., Settings]


def minutes(*values: float) -> list[timedelta]:
    return [timedelta(minutes=m) for m in values]


def test_critical_ladder_by_default(make_settings: MakeSettings) -> None:
    ladder = escalation_ladder(Severity.CRITICAL, make_settings())
    assert [step.starts_after for step in ladder] == minutes(0, 5, 15, 60)
    assert [step.level for step in ladder] == [1, 2, 3, 4]
    assert [step.role for step in ladder] == [
        "Team lead",
        "Engineering manager",
        "CTO",
        "Executive",
    ]
    assert [step.pagerduty_level for step in ladder] == [1, 2, 3, 4]
    assert [step.label for step in ladder] == [
        "Level 1 — Team lead",
        "Level 2 — Engineering manager",
        "Level 3 — CTO",
        "Level 4 — Executive",
    ]
    assert [step.when for step in ladder] == ["at once", "after 5m", "after 15m", "after 1h"]


def test_warning_ladder_is_slower(make_settings: MakeSettings) -> None:
    settings = make_settings()
    warning = escalation_ladder(Severity.WARNING, settings)
    critical = escalation_ladder(Severity.CRITICAL, settings)
    assert [step.starts_after for step in warning] == minutes(0, 15, 45, 120)
    for slow, fast in zip(warning[1:], critical[1:], strict=True):
        assert slow.starts_after > fast.starts_after


def test_info_never_escalates(make_settings: MakeSettings) -> None:
    assert escalation_ladder(Severity.INFO, make_settings()) == []
    assert escalation_ladder(Severity.INFO, make_settings(NEXUS_ESCALATION_DELAYS="1s,2s,3s")) == []


def test_environment_overrides_both_ladders(make_settings: MakeSettings) -> None:
    settings = make_settings(NEXUS_ESCALATION_DELAYS="10s, 20s ,1.5m")
    expected = [timedelta(0), timedelta(seconds=10), timedelta(seconds=20), timedelta(seconds=90)]
    for severity in (Severity.CRITICAL, Severity.WARNING):
        assert [step.starts_after for step in escalation_ladder(severity, settings)] == expected
    assert [s.when for s in escalation_ladder(Severity.CRITICAL, settings)] == [
        "at once",
        "after 10s",
        "after 20s",
        "after 90s",
    ]


def test_yaml_ladder_and_contacts(make_settings: MakeSettings) -> None:
    settings = make_settings(
        """
escalation:
  critical: [1m, 2m, 3m]
  warning: [1h, 2h, 1d]
  levels:
    - {level: 1, role: On-call, slack: [U0TEAMLEAD, S0PLATFORM], email: [lead@example.com]}
    - {level: 2, role: EM, email: [em@example.com]}
    - {level: 3, role: CTO, slack: [U0CTO]}
    - {level: 4, role: CEO, pagerduty_level: 9}
"""
    )
    critical = escalation_ladder(Severity.CRITICAL, settings)
    assert [s.starts_after for s in critical] == minutes(0, 1, 2, 3)
    assert critical[0].slack == ("U0TEAMLEAD", "S0PLATFORM")
    assert critical[0].email == ("lead@example.com",)
    assert critical[3].role == "CEO" and critical[3].pagerduty_level == 9
    assert critical[1].pagerduty_level is None
    warning = escalation_ladder(Severity.WARNING, settings)
    assert [s.starts_after for s in warning] == minutes(0, 60, 120, 1440)
