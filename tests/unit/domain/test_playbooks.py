"""The seven shipped playbooks: loading, matching alerts to them, procedures, step planning."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from bot.actions.registry import REGISTRY
from bot.domain.alerts import Alert, AlertSource, parse_alertmanager, parse_pagerduty
from bot.domain.playbooks import (
    GENERIC_TRIAGE,
    LoadedPlaybooks,
    MatchRule,
    Playbook,
    RiskLevel,
    RollbackStep,
    incident_key,
    load_playbooks,
    match_playbook,
    plan_playbook,
    plan_step,
    template_values,
)
from bot.domain.procedures import ProcedureKind
from bot.settings import AllowedTargets

Payload = Callable[[str], Any]

SHIPPED_IDS = {
    "configuration-drift",
    "frenly-ai-dangerous-edit",
    "lost-canonical-files",
    "performance-degradation",
    "schema-mismatch",
    "ssot-build-failure",
    "validation-failure",
}

# playbook id → (alertname, incident_key, a PagerDuty-style title)
SCENARIOS = {
    "configuration-drift": (
        "SSOTConfigDrift",
        "ssot-drift/billing-api",
        "Configuration drift detected on billing-api",
    ),
    "frenly-ai-dangerous-edit": (
        "FrenlyAIDangerousEdit",
        "frenly-ai/pr-318",
        "Frenly AI proposal is dangerous: rewrites anchors",
    ),
    "lost-canonical-files": (
        "SSOTCanonicalFilesMissing",
        "ssot-lost-canonical/manifest",
        "Canonical file ssot_manifest_proposal.yaml deleted",
    ),
    "performance-degradation": (
        "LatencyDegradation",
        "ssot-performance/orders-api",
        "Latency degradation on orders-api after SSOT rollout",
    ),
    "schema-mismatch": (
        "SSOTSchemaMismatch",
        "ssot-schema-mismatch/orders-api",
        "Schema mismatch: orders-api rejects anchor v37",
    ),
    "ssot-build-failure": (
        "SSOTBuildFailure",
        "ssot-build-failure/web",
        "SSOT build failure in web pipeline",
    ),
    "validation-failure": (
        "SSOTValidationFailure",
        "ssot-validation/manifest",
        "SSOT validation failed on the manifest",
    ),
}


def alert(
    labels: dict[str, str] | None = None,
    title: str = "Something happened",
    source: AlertSource = AlertSource.ALERTMANAGER,
    annotations: dict[str, str] | None = None,
) -> Alert:
    return Alert(
        source=source,
        fingerprint="fp",
        title=title,
        labels=labels or {},
        annotations=annotations or {},
        group_key="gk",
    )


def pagerduty(title: str, key: str | None = None) -> Alert:
    data: dict[str, Any] = {"id": "PINC9", "type": "incident", "title": title, "urgency": "high"}
    if key is not None:
        data["incident_key"] = key
    return parse_pagerduty(
        {"event": {"event_type": "incident.triggered", "resource_type": "incident", "data": data}}
    )


# --- loading ------------------------------------------------------------------


def test_the_seven_shipped_playbooks_load_without_problems(shipped: LoadedPlaybooks) -> None:
    assert shipped.problems == []
    assert {p.id for p in shipped.playbooks} == SHIPPED_IDS
    assert set(shipped.sources) == SHIPPED_IDS
    for playbook_id, path in shipped.sources.items():
        assert path.name == f"{playbook_id}.yaml"


def test_shipped_playbooks_are_complete(shipped: LoadedPlaybooks) -> None:
    for playbook in shipped.playbooks:
        assert playbook.match, playbook.id
        assert playbook.rollback, playbook.id
        assert playbook.mitigations, playbook.id
        assert playbook.description.strip(), playbook.id


def test_shipped_risk_levels_follow_the_source_playbook(shipped: LoadedPlaybooks) -> None:
    risks = {p.id: p.risk_level for p in shipped.playbooks}
    assert risks == {
        "schema-mismatch": RiskLevel.HIGH,
        "ssot-build-failure": RiskLevel.MEDIUM,
        "frenly-ai-dangerous-edit": RiskLevel.HIGH,
        "lost-canonical-files": RiskLevel.HIGH,
        "configuration-drift": RiskLevel.MEDIUM,
        "performance-degradation": RiskLevel.MEDIUM,
        "validation-failure": RiskLevel.LOW,
    }


def test_get_finds_playbooks_and_generic_triage(shipped: LoadedPlaybooks) -> None:
    found = shipped.get("schema-mismatch")
    assert found is not None
    assert found.id == "schema-mismatch"
    assert shipped.get("generic-triage") is GENERIC_TRIAGE
    assert shipped.get("nope") is None


def test_step_lookup(shipped: LoadedPlaybooks) -> None:
    playbook = shipped.get("frenly-ai-dangerous-edit")
    assert playbook is not None
    step = playbook.step("scale-to-zero")
    assert step is not None
    assert step.action == "k8s.scale"
    assert playbook.step("nope") is None


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


HEADER = """id: {id}
title: T
risk_level: LOW
probability: Low
impact: Low
description: d
"""


def test_a_literal_target_outside_the_allow_list_is_a_problem(
    tmp_path: Path, shipped_allowed: AllowedTargets
) -> None:
    path = _write(
        tmp_path,
        "p.yaml",
        HEADER.format(id="scale-prod")
        + "rollback:\n  - id: s1\n    title: S\n    action: k8s.scale\n"
        + "    params: {namespace: prod, deployment: db, replicas: 0}\n",
    )
    loaded = load_playbooks([path], shipped_allowed)
    assert loaded.playbooks == []
    assert [str(p) for p in loaded.problems] == [
        f"{path}:11: target refused: deployment prod/db is not allow-listed "
        "(allowed_targets.deployments in the config)"
    ]
    # Without an allow-list (a broken config), the target is not judged.
    assert load_playbooks([path], None).problems == []


def test_a_templated_default_target_outside_the_allow_list_is_a_problem(
    tmp_path: Path, shipped_allowed: AllowedTargets
) -> None:
    path = _write(
        tmp_path,
        "p.yaml",
        HEADER.format(id="restart")
        + "rollback:\n  - id: s1\n    title: S\n    action: k8s.rollout_restart\n"
        + "    params: {namespace: \"{{ namespace | default('kube-system') }}\", "
        + "deployment: \"{{ deployment | default('coredns') }}\"}\n",
    )
    (problem,) = load_playbooks([path], shipped_allowed).problems
    assert "target refused: deployment kube-system/coredns" in problem.message


@pytest.mark.parametrize(
    ("params", "refused"),
    [
        # A literal repository outside the list, the PR number from the alert.
        ('{repo: attacker/ssot, pr: "{{ pr }}"}', "repository attacker/ssot"),
        # Every parameter literal.
        ("{repo: attacker/ssot, pr: 7}", "repository attacker/ssot"),
        # Allow-listed repository: nothing to say.
        ('{repo: nexus/ssot, pr: "{{ pr }}"}', None),
        # The repository itself comes from the alert: judged when the alert arrives.
        ('{repo: "{{ repo }}", pr: "{{ pr }}"}', None),
    ],
)
def test_close_pr_literal_targets_are_checked_against_the_allow_list(
    tmp_path: Path, shipped_allowed: AllowedTargets, params: str, refused: str | None
) -> None:
    path = _write(
        tmp_path,
        "p.yaml",
        HEADER.format(id="close-pr")
        + "rollback:\n  - id: s1\n    title: S\n    action: github.close_pr\n"
        + f"    params: {params}\n",
    )
    problems = [str(p) for p in load_playbooks([path], shipped_allowed).problems]
    if refused is None:
        assert problems == []
    else:
        assert problems == [
            f"{path}:11: target refused: {refused} is not allow-listed "
            "(allowed_targets.repositories in the config)"
        ]


def test_literal_targets_are_checked_for_every_action(
    tmp_path: Path, shipped_allowed: AllowedTargets
) -> None:
    """Each registered action with a literal target outside the list and every other
    parameter templated is refused at load time."""
    literal_targets = {
        "git.revert": 'repo: attacker/ssot, commit: "{{ commit }}"',
        "git.restore_path": 'repo: attacker/ssot, commit: "{{ commit }}"',
        "github.close_pr": 'repo: attacker/ssot, pr: "{{ pr }}"',
        "k8s.scale": 'namespace: prod, deployment: db, replicas: "{{ replicas }}"',
        "k8s.rollout_restart": "namespace: prod, deployment: db",
        "k8s.rollout_undo": 'namespace: prod, deployment: db, to_revision: "{{ rev }}"',
        "k8s.configmap_patch": 'namespace: prod, name: cfg, data: {a: "{{ a }}"}',
        "k8s.run_job": 'namespace: prod, cronjob: wipe, args: ["{{ a }}"]',
        "git.restore_archive": "repo: attacker/ssot",
        "s3.restore_snapshot": 'repo: nexus/ssot, bucket: attacker-bucket, snapshot: "{{ s }}"',
    }
    assert set(literal_targets) == set(REGISTRY.names())
    for name, params in literal_targets.items():
        path = _write(
            tmp_path,
            f"{name}.yaml",
            HEADER.format(id=name.replace(".", "-").replace("_", "-"))
            + f"rollback:\n  - id: s1\n    title: S\n    action: {name}\n"
            + f"    params: {{{params}}}\n",
        )
        problems = [p.message for p in load_playbooks([path], shipped_allowed).problems]
        assert len(problems) == 1 and "is not allow-listed" in problems[0], (name, problems)


def test_missing_paths_and_duplicates_are_problems(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", HEADER.format(id="same"))
    _write(tmp_path, "b.yml", HEADER.format(id="same"))
    _write(tmp_path, "notes.txt", "not a playbook")
    loaded = load_playbooks([tmp_path, tmp_path / "gone.yaml"])
    assert [p.id for p in loaded.playbooks] == ["same"]
    messages = [str(p) for p in loaded.problems]
    assert messages == [
        f"{tmp_path / 'b.yml'}:1: duplicate playbook id 'same' (also in {tmp_path / 'a.yaml'}:1)",
        f"{tmp_path / 'gone.yaml'}:1: no such file or folder",
    ]


def test_playbooks_are_ordered_by_priority_then_id(tmp_path: Path) -> None:
    _write(tmp_path, "a.yaml", HEADER.format(id="bbb") + "priority: 5\n")
    _write(tmp_path, "b.yaml", HEADER.format(id="aaa"))
    _write(tmp_path, "c.yaml", HEADER.format(id="ccc") + "priority: 5\n")
    assert [p.id for p in load_playbooks([tmp_path]).playbooks] == ["bbb", "ccc", "aaa"]


def test_a_match_rule_needs_labels_or_title() -> None:
    with pytest.raises(ValidationError, match="a match rule needs `labels` or `title`"):
        MatchRule()
    with pytest.raises(ValidationError, match="bad regular expression"):
        MatchRule(labels={"alertname": "~(["})


def test_a_step_needs_exactly_one_kind() -> None:
    with pytest.raises(ValidationError, match="exactly one of `action`"):
        RollbackStep(id="s1", title="S")
    with pytest.raises(ValidationError, match="exactly one of `action`"):
        RollbackStep(id="s1", title="S", action="k8s.scale", manual="echo")
    with pytest.raises(ValidationError, match="`params` belong to an `action` step"):
        RollbackStep(id="s1", title="S", manual="echo", params={"a": 1})


# --- matching -----------------------------------------------------------------


@pytest.mark.parametrize("playbook_id", sorted(SCENARIOS))
def test_match_by_alertname(shipped: LoadedPlaybooks, playbook_id: str) -> None:
    alertname = SCENARIOS[playbook_id][0]
    result = match_playbook(alert({"alertname": alertname}), shipped.playbooks)
    assert result.playbook.id == playbook_id
    assert result.explanation == f"matched `{playbook_id}` on alertname={alertname}"


@pytest.mark.parametrize("playbook_id", sorted(SCENARIOS))
def test_match_by_scenario_label(shipped: LoadedPlaybooks, playbook_id: str) -> None:
    result = match_playbook(alert({"scenario": playbook_id}), shipped.playbooks)
    assert result.playbook.id == playbook_id
    assert result.explanation == f"matched `{playbook_id}` on scenario={playbook_id}"


@pytest.mark.parametrize("playbook_id", sorted(SCENARIOS))
def test_match_pagerduty_by_incident_key(shipped: LoadedPlaybooks, playbook_id: str) -> None:
    key = SCENARIOS[playbook_id][1]
    result = match_playbook(pagerduty("Incident 42", key), shipped.playbooks)
    assert result.playbook.id == playbook_id
    assert result.explanation.startswith(f"matched `{playbook_id}` on incident_key~/^")


@pytest.mark.parametrize("playbook_id", sorted(SCENARIOS))
def test_match_pagerduty_by_title(shipped: LoadedPlaybooks, playbook_id: str) -> None:
    title = SCENARIOS[playbook_id][2]
    result = match_playbook(pagerduty(title), shipped.playbooks)
    assert result.playbook.id == playbook_id
    assert result.explanation.startswith(f"matched `{playbook_id}` on title~/")


def test_sample_explanations(shipped: LoadedPlaybooks, payload: Payload) -> None:
    (am,) = parse_alertmanager(payload("alertmanager-frenly-ai.json"))
    result = match_playbook(am, shipped.playbooks)
    assert result.explanation == (
        "matched `frenly-ai-dangerous-edit` on alertname=FrenlyAIDangerousEdit"
    )
    pd = parse_pagerduty(payload("pagerduty-incident-triggered.json"))
    result = match_playbook(pd, shipped.playbooks)
    assert result.playbook.id == "schema-mismatch"
    assert result.explanation == (
        "matched `schema-mismatch` on incident_key~/^ssot-schema-mismatch//"
    )


def test_ssot_sync_failure_is_configuration_drift(shipped: LoadedPlaybooks) -> None:
    result = match_playbook(alert({"alertname": "SSOTSyncFailure"}), shipped.playbooks)
    assert result.playbook.id == "configuration-drift"


@pytest.mark.parametrize(
    "unmatched",
    [
        alert({"alertname": "HighCPU"}),
        alert({"alertname": "frenlyaidangerousedit"}),  # exact, case-sensitive
        alert({"scenario": "unknown-scenario"}),
        alert({"incident_key": "prefix-ssot-schema-mismatch/x"}),  # anchored at ^
        alert(title="Disk almost full on db-1"),
        alert(title="Schema mismatched nothing", annotations={"alertname": "SSOTSchemaMismatch"}),
    ],
)
def test_generic_triage_fallback(shipped: LoadedPlaybooks, unmatched: Alert) -> None:
    result = match_playbook(unmatched, shipped.playbooks)
    assert result.playbook is GENERIC_TRIAGE
    assert result.explanation == "no playbook matched: generic triage"


def test_generic_triage_playbook() -> None:
    assert GENERIC_TRIAGE.procedure_kind is ProcedureKind.STANDARD
    assert [s.manual for s in GENERIC_TRIAGE.rollback] == ["git log --oneline -n 20 -- ssot_plan/"]


def test_all_conditions_of_a_rule_must_hold() -> None:
    rule = MatchRule(labels={"alertname": "X", "env": "~^prod"}, title="(?i)urgent")
    ok = alert({"alertname": "X", "env": "production"}, title="URGENT: thing")
    assert rule.explain(ok) == "alertname=X and env~/^prod/ and title~/(?i)urgent/"
    assert rule.explain(alert({"alertname": "X", "env": "staging"}, title="urgent")) is None
    assert rule.explain(alert({"alertname": "X", "env": "prod"}, title="calm")) is None
    assert rule.explain(alert({"env": "prod"}, title="urgent")) is None


def test_higher_priority_playbook_wins(tmp_path: Path) -> None:
    rule = "match:\n  - labels: {alertname: Both}\n"
    _write(tmp_path, "a.yaml", HEADER.format(id="aaa") + rule)
    _write(tmp_path, "b.yaml", HEADER.format(id="zzz") + "priority: 10\n" + rule)
    playbooks = load_playbooks([tmp_path]).playbooks
    assert match_playbook(alert({"alertname": "Both"}), playbooks).playbook.id == "zzz"


# --- procedures ---------------------------------------------------------------


@pytest.mark.parametrize("playbook_id", sorted(SHIPPED_IDS))
def test_high_risk_uses_the_emergency_procedure(shipped: LoadedPlaybooks, playbook_id: str) -> None:
    playbook = shipped.get(playbook_id)
    assert playbook is not None
    procedure = playbook.procedure_steps
    windows = [(p.start_minute, p.end_minute) for p in procedure.phases]
    if playbook.risk_level is RiskLevel.HIGH:
        assert playbook.procedure_kind is ProcedureKind.EMERGENCY
        assert procedure.title == "Emergency rollback (critical issues)"
        assert windows == [(0, 5), (5, 15), (15, 60)]
        assert [p.name for p in procedure.phases] == [
            "Immediate response",
            "Assessment",
            "Recovery",
        ]
    else:
        assert playbook.procedure_kind is ProcedureKind.STANDARD
        assert procedure.title == "Standard rollback (non-critical issues)"
        assert windows == [(0, 5), (5, 30), (30, 60)]
        assert [p.name for p in procedure.phases] == ["Preparation", "Execution", "Verification"]


def test_phase_window_text(shipped: LoadedPlaybooks) -> None:
    playbook = shipped.get("schema-mismatch")
    assert playbook is not None
    assert [p.window for p in playbook.procedure_steps.phases] == [
        "0–5 min",
        "5–15 min",
        "15–60 min",
    ]


def test_a_playbook_may_choose_its_procedure() -> None:
    playbook = Playbook(
        id="custom",
        title="T",
        risk_level=RiskLevel.HIGH,
        probability="Low",
        impact="Low",
        description="d",
        procedure=ProcedureKind.STANDARD,
    )
    assert playbook.procedure_kind is ProcedureKind.STANDARD


# --- planning steps -----------------------------------------------------------


def _planned(
    shipped: LoadedPlaybooks, allowed: AllowedTargets, playbook_id: str, labels: dict[str, str]
) -> dict[str, Any]:
    playbook = shipped.get(playbook_id)
    assert playbook is not None
    return {p.step.id: p for p in plan_playbook(playbook, alert(labels), allowed)}


def test_frenly_sample_plan(
    shipped: LoadedPlaybooks, shipped_allowed: AllowedTargets, payload: Payload
) -> None:
    (am,) = parse_alertmanager(payload("alertmanager-frenly-ai.json"))
    playbook = shipped.get("frenly-ai-dangerous-edit")
    assert playbook is not None
    close, revert, scale = plan_playbook(playbook, am, shipped_allowed)
    assert close.params == {
        "repo": "nexus/ssot",
        "pr": 318,
        "comment": "Rejected: Dangerous change detected",
    }
    assert close.runnable and not close.needs_input and close.refusal is None
    assert close.description == (
        'close nexus/ssot#318 with the comment "Rejected: Dangerous change detected"'
    )
    assert str(close.target) == "repository nexus/ssot"
    assert revert.missing == ("commit",)
    assert revert.needs_input and revert.description is None
    assert scale.params == {"namespace": "ai", "deployment": "frenly-ai", "replicas": 0}
    assert scale.description == "scale deployment ai/frenly-ai to 0 replicas"
    assert scale.runnable


def test_defaults_fill_in_when_labels_are_absent(
    shipped: LoadedPlaybooks, shipped_allowed: AllowedTargets
) -> None:
    steps = _planned(shipped, shipped_allowed, "frenly-ai-dangerous-edit", {"commit": "9fceb02"})
    assert steps["revert-ai-commit"].params == {
        "repo": "nexus/ssot",
        "commit": "9fceb02",
        "branch": "main",
        "mode": "push",
    }
    assert steps["revert-ai-commit"].runnable
    assert steps["close-pr"].missing == ("pr",)


@pytest.mark.parametrize(
    ("labels", "step_id", "invalid_field", "reason"),
    [
        ({"pr": "abc"}, "close-pr", "pr", "valid integer"),
        ({"pr": "0"}, "close-pr", "pr", "greater than or equal to 1"),
        ({"pr": "-3"}, "close-pr", "pr", "greater than or equal to 1"),
        ({"commit": "--upload-pack=evil"}, "revert-ai-commit", "commit", "a commit SHA"),
        ({"commit": "abc; rm -rf /"}, "revert-ai-commit", "commit", "a commit SHA"),
        ({"commit": "9fceb02", "branch": "-f"}, "revert-ai-commit", "branch", "a branch name"),
        (
            {"commit": "9fceb02", "branch": "main..evil"},
            "revert-ai-commit",
            "branch",
            "a branch name",
        ),
        ({"repo": "../../etc"}, "close-pr", "repo", "owner/name"),
        ({"deployment": "Evil Deploy"}, "scale-to-zero", "deployment", "a Kubernetes name"),
        ({"namespace": "ns/../x"}, "scale-to-zero", "namespace", "a Kubernetes namespace"),
    ],
)
def test_invalid_label_values_are_marked_invalid(
    shipped: LoadedPlaybooks,
    shipped_allowed: AllowedTargets,
    labels: dict[str, str],
    step_id: str,
    invalid_field: str,
    reason: str,
) -> None:
    planned = _planned(shipped, shipped_allowed, "frenly-ai-dangerous-edit", {"pr": "1", **labels})
    step = planned[step_id]
    assert step.needs_input
    assert not step.missing
    assert step.description is None and step.target is None
    assert len(step.invalid) == 1
    assert step.invalid[0].startswith(f"{invalid_field}: ")
    assert reason in step.invalid[0]


@pytest.mark.parametrize(
    ("labels", "step_id", "refusal"),
    [
        (
            {"deployment": "evil"},
            "scale-to-zero",
            "deployment ai/evil is not allow-listed (allowed_targets.deployments in the config)",
        ),
        (
            {"namespace": "kube-system"},
            "scale-to-zero",
            "deployment kube-system/frenly-ai is not allow-listed",
        ),
        (
            {"repo": "attacker/ssot"},
            "close-pr",
            "repository attacker/ssot is not allow-listed (allowed_targets.repositories",
        ),
        ({"repo": "attacker/ssot"}, "revert-ai-commit", "repository attacker/ssot"),
    ],
)
def test_targets_outside_the_allow_list_are_refused(
    shipped: LoadedPlaybooks,
    shipped_allowed: AllowedTargets,
    labels: dict[str, str],
    step_id: str,
    refusal: str,
) -> None:
    base = {"pr": "318", "commit": "9fceb02"}
    step = _planned(shipped, shipped_allowed, "frenly-ai-dangerous-edit", {**base, **labels})[
        step_id
    ]
    assert step.refusal is not None
    assert refusal in step.refusal
    assert not step.runnable
    assert step.description  # what it would have done is still shown


def test_an_empty_allow_list_refuses_everything(shipped: LoadedPlaybooks) -> None:
    steps = _planned(
        shipped, AllowedTargets(), "frenly-ai-dangerous-edit", {"pr": "1", "commit": "9fceb02"}
    )
    assert all(s.refusal for s in steps.values())


def test_performance_plan_patches_the_allow_listed_configmap(
    shipped: LoadedPlaybooks, shipped_allowed: AllowedTargets
) -> None:
    steps = _planned(shipped, shipped_allowed, "performance-degradation", {})
    patch = steps["disable-ssot-integration"]
    assert patch.runnable
    assert patch.description == "patch ConfigMap nexus/ssot-config: enabled=false"
    assert steps["rollout-undo"].missing == ("deployment",)


def test_manual_commands_are_filled(tmp_path: Path, shipped_allowed: AllowedTargets) -> None:
    path = _write(
        tmp_path,
        "by-hand.yaml",
        HEADER.format(id="by-hand")
        + "rollback:\n  - id: database-rollback\n    title: Database rollback\n"
        + "    manual: kubectl exec -it {{ postgres_pod }} -- psql -U {{ db_user }} "
        + "-d {{ database }} -f /backup/rollback.sql\n",
    )
    loaded = load_playbooks([path], shipped_allowed)
    labels = {"postgres_pod": "pg-0", "db_user": "ssot", "database": "orders"}
    rollback = _planned(loaded, shipped_allowed, "by-hand", labels)["database-rollback"]
    assert rollback.command == (
        "kubectl exec -it pg-0 -- psql -U ssot -d orders -f /backup/rollback.sql"
    )
    assert rollback.missing == ()
    assert not rollback.runnable  # humans run manual steps
    partial = _planned(loaded, shipped_allowed, "by-hand", {"db_user": "ssot"})
    assert partial["database-rollback"].command == (
        "kubectl exec -it <postgres_pod> -- psql -U ssot -d <database> -f /backup/rollback.sql"
    )
    assert partial["database-rollback"].missing == ("postgres_pod", "database")


def test_job_args_are_filled_from_the_alert(
    shipped: LoadedPlaybooks, shipped_allowed: AllowedTargets
) -> None:
    drift = _planned(shipped, shipped_allowed, "configuration-drift", {"anchor": "v37"})
    assert drift["reset-to-baseline"].params["args"] == ["--anchor", "v37"]
    assert drift["reset-to-baseline"].runnable
    assert drift["force-sync"].params["args"] == ["--force"]
    # Without the label a form asks for the variable (anchor), not the parameter (args).
    asked = _planned(shipped, shipped_allowed, "configuration-drift", {})["reset-to-baseline"]
    assert asked.missing == ("anchor",)
    hostile = _planned(shipped, shipped_allowed, "configuration-drift", {"anchor": "v1; rm -rf /"})
    assert hostile["reset-to-baseline"].invalid and hostile["reset-to-baseline"].needs_input


def test_labels_beat_annotations_in_templates() -> None:
    a = alert({"pr": "1"}, annotations={"pr": "2", "commit": "abc1234"})
    assert template_values(a) == {"pr": "1", "commit": "abc1234"}


def test_plan_step_with_a_literal_template_free_param(shipped_allowed: AllowedTargets) -> None:
    step = RollbackStep(
        id="s1",
        title="S",
        action="k8s.scale",
        params={"namespace": "ai", "deployment": "frenly-ai", "replicas": "{{ replicas }}"},
    )
    assert plan_step(step, {"replicas": "3"}, shipped_allowed).params["replicas"] == 3
    bad = plan_step(step, {"replicas": "many"}, shipped_allowed)
    assert bad.invalid and bad.invalid[0].startswith("replicas: ")


# --- incident keys ------------------------------------------------------------


def test_incident_key_defaults_to_source_and_group(
    shipped: LoadedPlaybooks, payload: Payload
) -> None:
    playbook = shipped.get("schema-mismatch")
    assert playbook is not None
    pd = parse_pagerduty(payload("pagerduty-incident-triggered.json"))
    assert incident_key(pd, playbook) == "pagerduty:Q1NEXUS7SCHEMA"
    no_group = Alert(source=AlertSource.GENERIC, fingerprint="abc", title="t")
    assert incident_key(no_group, playbook) == "generic:abc"


def test_playbook_incident_key_groups_across_sources() -> None:
    playbook = Playbook(
        id="keyed",
        title="T",
        risk_level=RiskLevel.LOW,
        probability="Low",
        impact="Low",
        description="d",
        incident_key="{{ service }}",
    )
    am = alert({"service": "orders-api"})
    pd = alert({"service": "orders-api"}, source=AlertSource.PAGERDUTY)
    assert incident_key(am, playbook) == incident_key(pd, playbook) == "keyed/orders-api"
    # Without the label, Alertmanager alerts fall back to the group key, split by playbook.
    assert incident_key(alert({}), playbook) == "alertmanager:gk#keyed"
    with pytest.raises(ValidationError, match="is not a template"):
        Playbook.model_validate({**playbook.model_dump(), "incident_key": "{{ Bad }}"})
