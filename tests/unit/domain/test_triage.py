"""The incident plans built from alerts: grouping, severity, routes, playbooks (no I/O)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bot.domain.alerts import Severity, parse_alertmanager, parse_generic, parse_pagerduty
from bot.domain.playbooks import LoadedPlaybooks
from bot.domain.routing import Route
from bot.domain.triage import plan_incidents
from bot.settings import Settings

Payload = Callable[[str], Any]
MakeSettings = Callable[..., Settings]


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
