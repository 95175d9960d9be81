"""The escalation ladder and the incident plans built from alerts (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from bot.domain.alerts import Severity, parse_alertmanager, parse_generic, parse_pagerduty
from bot.domain.escalation import escalation_ladder
from bot.domain.playbooks import LoadedPlaybooks
from bot.domain.routing import Route
from bot.domain.triage import plan_incidents
from bot.settings import Settings

Payload = Callable[[str], Any]
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


# --- incident plans -----------------------------------------------------------


def test_plan_for_the_alertmanager_sample(
    make_settings: MakeSettings, shipped: LoadedPlaybooks, payload: Payload
) -> None:
    settings = make_settings()
    (plan,) = plan_incidents(
        parse_alertmanager(payload("alertmanager-frenly-ai.json")), shipped.playbooks, settings
    )
    assert plan.severity is Severity.CRITICAL
    assert plan.routes == [Route.PAGERDUTY, Route.SLACK, Route.EMAIL]
    assert plan.playbook.id == "frenly-ai-dangerous-edit"
    assert [s.step.id for s in plan.steps] == ["close-pr", "revert-ai-commit", "scale-to-zero"]
    assert plan.service == "frenly-ai"
    assert len(plan.ladder) == 4
    # make_settings runs outside the repo: an empty allow-list refuses every target.
    assert all(s.refusal for s in plan.steps if not s.missing)


def test_plan_for_the_pagerduty_sample(
    make_settings: MakeSettings, shipped: LoadedPlaybooks, payload: Payload
) -> None:
    alert = parse_pagerduty(payload("pagerduty-incident-triggered.json"))
    (plan,) = plan_incidents([alert], shipped.playbooks, make_settings())
    assert plan.severity is Severity.CRITICAL
    assert plan.severity_reason == "PagerDuty urgency 'high'"
    assert plan.routes == [Route.SLACK, Route.EMAIL]
    assert plan.playbook.id == "schema-mismatch"
    assert plan.key == "pagerduty:Q1NEXUS7SCHEMA"
    assert plan.service == "SSOT Sync"


def test_alerts_of_one_group_become_one_incident(
    make_settings: MakeSettings, shipped: LoadedPlaybooks, payload: Payload
) -> None:
    alerts = parse_alertmanager(payload("alertmanager-ssot-group.json"))
    (plan,) = plan_incidents(alerts, shipped.playbooks, make_settings())
    assert (plan.firing, plan.resolved, len(plan.alerts)) == (2, 1, 3)
    assert plan.playbook.id == "lost-canonical-files"
    assert plan.title == "Canonical SSOT file ssot_plan/ssot_manifest_proposal.yaml is missing"


def test_generic_batch_becomes_one_incident_per_key(
    make_settings: MakeSettings, shipped: LoadedPlaybooks, payload: Payload
) -> None:
    plans = plan_incidents(
        parse_generic(payload("generic-batch.json")), shipped.playbooks, make_settings()
    )
    assert [p.key for p in plans] == [
        "generic:ssot-validation/manifest",
        "generic:ssot-drift/billing-api",
    ]
    validation, drift = plans
    assert validation.severity is Severity.WARNING
    assert validation.playbook.id == "validation-failure"
    assert drift.severity is Severity.INFO
    assert drift.routes == [Route.SLACK]
    assert drift.ladder == []
    assert (drift.firing, drift.resolved) == (1, 1)


def test_incident_takes_its_most_severe_alert(
    make_settings: MakeSettings, shipped: LoadedPlaybooks
) -> None:
    alerts = parse_generic(
        [
            {"title": "a", "key": "k", "labels": {"error_rate_percent": "1"}},
            {"title": "b", "key": "k", "labels": {"error_rate_percent": "6"}},
            {"title": "c", "key": "k", "severity": "critical"},
        ]
    )
    (plan,) = plan_incidents(alerts, shipped.playbooks, make_settings())
    assert plan.severity is Severity.CRITICAL
    assert plan.severity_reason == "severity label 'critical'"
    assert plan.title == "a"  # the first alert leads
    assert plan.routes == [Route.PAGERDUTY, Route.SLACK, Route.EMAIL]


@pytest.mark.parametrize(
    ("rate", "severity"),
    [("7%", Severity.INFO), ("10", Severity.INFO), ("10.5", Severity.WARNING)],
)
def test_thresholds_from_the_config_file_are_used(
    make_settings: MakeSettings, shipped: LoadedPlaybooks, rate: str, severity: Severity
) -> None:
    settings = make_settings("severity_thresholds:\n  error_rate_percent: 10\n")
    alerts = parse_generic({"title": "x", "labels": {"error_rate_percent": rate}})
    (plan,) = plan_incidents(alerts, shipped.playbooks, settings)
    assert plan.severity is severity
