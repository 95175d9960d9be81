"""The Prometheus alerting rules: promtool accepts them and their unit tests pass,
and every alert carries what the bot needs to route it to a playbook."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_DIR = REPO_ROOT / "config" / "prometheus"
PLAYBOOKS_DIR = REPO_ROOT / "playbooks"
RULES_FILE = PROMETHEUS_DIR / "nexus-alerts.rules.yaml"
# bot-health.test.yaml tests the bot's own rules (tests/unit/test_bot_health_rules.py).
PROMTOOL_TESTS = sorted(
    path
    for path in (PROMETHEUS_DIR / "tests").glob("*.yaml")
    if path.name != "bot-health.test.yaml"
)
# promtool reports duplicate rules (same name and labels, so Alertmanager
# cannot tell their alerts apart) but still exits 0 unless asked not to.
CHECK_FLAGS = ("--lint=all", "--lint-fatal")

# The playbook ids of the SSOT Risk Assessment & Rollback Playbook; an alert
# with any other scenario would reach the bot and match no playbook.
PLAYBOOK_IDS = {
    "schema-mismatch",
    "ssot-build-failure",
    "frenly-ai-dangerous-edit",
    "lost-canonical-files",
    "configuration-drift",
    "performance-degradation",
    "validation-failure",
}

# alertname -> (severity, scenario); the playbook's threshold policy.
EXPECTED_ALERTS: dict[str, tuple[str, str | None]] = {
    "ServiceDown": ("critical", None),
    "SSOTSyncFailure": ("critical", "configuration-drift"),
    "HighErrorRate": ("warning", None),
    "LatencyDegradation": ("warning", "performance-degradation"),
    "SSOTSchemaMismatch": ("critical", "schema-mismatch"),
    "SSOTBuildFailure": ("warning", "ssot-build-failure"),
    "FrenlyAIDangerousEdit": ("critical", "frenly-ai-dangerous-edit"),
    "SSOTCanonicalFilesMissing": ("critical", "lost-canonical-files"),
    "SSOTConfigDrift": ("warning", "configuration-drift"),
    "SSOTValidationFailure": ("info", "validation-failure"),
}


def run_promtool(promtool: str, *args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def load_rules(path: Path = RULES_FILE) -> dict[str, Any]:
    with path.open() as fh:
        data: dict[str, Any] = yaml.safe_load(fh)
    return data


def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in load_rules()["groups"] for rule in group["rules"] if "alert" in rule]


# --- promtool ---------------------------------------------------------------


@pytest.mark.promtool
def test_promtool_check_rules_accepts_the_rules(promtool: str) -> None:
    result = run_promtool(promtool, "check", "rules", *CHECK_FLAGS, RULES_FILE)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.promtool
def test_promtool_unit_tests_pass(promtool: str) -> None:
    assert PROMTOOL_TESTS, "no promtool unit tests found"
    result = run_promtool(promtool, "test", "rules", *PROMTOOL_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(PROMTOOL_TESTS), result.stdout


def _break_promql(data: dict[str, Any]) -> None:
    data["groups"][0]["rules"][1]["expr"] = "up =="


def _break_template(data: dict[str, Any]) -> None:
    data["groups"][0]["rules"][1]["annotations"]["summary"] = "{{ $labels.job "


def _duplicate_alert(data: dict[str, Any]) -> None:
    rules = data["groups"][0]["rules"]
    rules.append(dict(rules[1]))


def _unknown_field(data: dict[str, Any]) -> None:
    data["groups"][0]["rules"][1]["severity"] = "critical"


@pytest.mark.promtool
@pytest.mark.parametrize(
    "breakage", [_break_promql, _break_template, _duplicate_alert, _unknown_field]
)
def test_promtool_check_rules_rejects_a_broken_file(
    promtool: str, tmp_path: Path, breakage: Callable[[dict[str, Any]], None]
) -> None:
    # Start from the real file so this shows the check above can fail for it.
    data = load_rules()
    breakage(data)
    broken = tmp_path / "broken.rules.yaml"
    broken.write_text(yaml.safe_dump(data, sort_keys=False))

    result = run_promtool(promtool, "check", "rules", *CHECK_FLAGS, broken)

    assert result.returncode != 0, result.stdout + result.stderr


@pytest.mark.promtool
def test_promtool_unit_tests_fail_on_a_wrong_expectation(promtool: str, tmp_path: Path) -> None:
    # Guards against unit tests that cannot fail, e.g. if promtool ignored
    # exp_labels: the same test with one expected label changed must fail.
    test_file = PROMETHEUS_DIR / "tests" / "ssot.test.yaml"
    text = test_file.read_text()
    assert "scenario: schema-mismatch" in text
    text = text.replace("scenario: schema-mismatch", "scenario: configuration-drift")
    assert_promtool_test_fails(promtool, tmp_path, text, RULES_FILE, "SSOTSchemaMismatch")


def assert_promtool_test_fails(
    promtool: str, tmp_path: Path, text: str, rules_file: Path, alert: str
) -> None:
    """A promtool test file's `text`, its rules file made absolute, fails on `alert`."""
    text = text.replace(f"../{rules_file.name}", str(rules_file))
    wrong = tmp_path / "wrong.test.yaml"
    wrong.write_text(text)

    result = run_promtool(promtool, "test", "rules", wrong)

    assert result.returncode != 0, result.stdout + result.stderr
    assert alert in result.stdout + result.stderr


# --- the rules as data -----------------------------------------------------


def test_group_is_named_nexus_ssot() -> None:
    assert [group["name"] for group in load_rules()["groups"]] == ["nexus-ssot"]


def test_every_alert_has_a_known_severity_and_both_annotations() -> None:
    rules = alert_rules()
    assert rules
    for rule in rules:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_every_scenario_is_a_playbook_id() -> None:
    scenarios = {rule["alert"]: rule["labels"].get("scenario") for rule in alert_rules()}
    for name, scenario in scenarios.items():
        assert scenario is None or scenario in PLAYBOOK_IDS, (name, scenario)


def test_playbook_ids_are_the_playbooks_the_bot_loads() -> None:
    ids = set()
    for path in PLAYBOOKS_DIR.glob("*.yaml"):
        with path.open() as fh:
            ids.add(yaml.safe_load(fh)["id"])
    assert ids == PLAYBOOK_IDS


def test_every_alert_with_a_scenario_is_matched_by_that_playbook() -> None:
    # A scenario label alone does not route: the playbook's `match` list must
    # select the alert by its name or by that label.
    for rule in alert_rules():
        scenario = rule["labels"].get("scenario")
        if scenario is None:
            continue
        with (PLAYBOOKS_DIR / f"{scenario}.yaml").open() as fh:
            matchers = [m.get("labels") for m in yaml.safe_load(fh)["match"]]
        assert {"alertname": rule["alert"]} in matchers or {"scenario": scenario} in matchers, (
            rule["alert"],
            scenario,
        )


def test_alerts_match_the_playbook_policy() -> None:
    seen: dict[str, set[tuple[str, str | None]]] = {}
    for rule in alert_rules():
        labels = rule["labels"]
        seen.setdefault(rule["alert"], set()).add((labels["severity"], labels.get("scenario")))

    assert set(seen) == set(EXPECTED_ALERTS)
    for name, expected in EXPECTED_ALERTS.items():
        assert seen[name] == {expected}, name


def test_threshold_values_are_exposed_for_the_bot() -> None:
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    assert "error_rate_percent" in by_name["HighErrorRate"]["annotations"]
    assert "performance_degradation_percent" in by_name["LatencyDegradation"]["annotations"]


def test_frenly_ai_alert_targets_the_deployment_scaled_to_zero() -> None:
    (rule,) = [rule for rule in alert_rules() if rule["alert"] == "FrenlyAIDangerousEdit"]
    labels = rule["labels"]
    assert (labels["service"], labels["namespace"], labels["deployment"]) == (
        "frenly-ai",
        "ai",
        "frenly-ai",
    )


def _parse_minutes(duration: str) -> int:
    units = {"m": 1, "h": 60, "d": 1440}
    parts = re.findall(r"(\d+)([mhd])", duration)
    assert "".join(n + u for n, u in parts) == duration, duration
    return sum(int(n) * units[u] for n, u in parts)


def test_every_alert_has_promtool_tests_for_firing_and_not_firing() -> None:
    fires: set[str] = set()
    silent: set[str] = set()
    for path in PROMTOOL_TESTS:
        with path.open() as fh:
            suite = yaml.safe_load(fh)
        assert suite["rule_files"] == ["../nexus-alerts.rules.yaml"], path
        for test in suite["tests"]:
            for case in test.get("alert_rule_test", []):
                _parse_minutes(case["eval_time"])
                (fires if case["exp_alerts"] else silent).add(case["alertname"])

    assert fires == set(EXPECTED_ALERTS)
    assert silent == set(EXPECTED_ALERTS)
