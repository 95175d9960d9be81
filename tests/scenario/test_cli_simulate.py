"""`nexus-bot simulate` as a real process: what the bot would do with a payload.

Good payloads give severity, routes, playbook, buttons, escalation and Block Kit;
malformed ones give one `error:` line and exit 1 (exit 2 for a bad command line
or config). Nothing ever prints a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "tests" / "data"
PLAN_KEYS = {
    "key",
    "title",
    "severity",
    "severity_reason",
    "routes",
    "playbook",
    "playbook_reason",
    "procedure",
    "alerts",
    "buttons",
    "manual",
    "escalation",
    "blocks",
}


@dataclass
class Run:
    code: int
    out: str
    err: str

    def plans(self) -> list[dict[str, Any]]:
        assert self.code == 0, self.err
        plans = json.loads(self.out)
        assert isinstance(plans, list)
        for plan in plans:
            assert set(plan) == PLAN_KEYS
        return plans


def simulate(*args: str, cwd: Path = REPO_ROOT, stdin: bytes | None = None, **env: str) -> Run:
    environ = {k: v for k, v in os.environ.items() if k.lower() not in Settings.model_fields}
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "simulate", *args],
        cwd=cwd,
        env={**environ, **env},
        input=stdin,
        capture_output=True,
        timeout=60,
    )
    out = proc.stdout.decode("utf-8")
    err = proc.stderr.decode("utf-8")
    assert "Traceback" not in out + err, err
    return Run(proc.returncode, out, err)


def data(name: str) -> str:
    return str(DATA / name)


# --- the two samples ----------------------------------------------------------


def test_alertmanager_sample_as_text() -> None:
    run = simulate(data("alertmanager-frenly-ai.json"))
    assert run.code == 0, run.err
    assert run.err == ""
    lines = [line.strip() for line in run.out.splitlines()]
    assert "severity:   critical (severity label 'critical')" in lines
    assert "routes:     pagerduty, slack, email" in lines
    assert (
        "playbook:   frenly-ai-dangerous-edit (matched `frenly-ai-dangerous-edit` on "
        "alertname=FrenlyAIDangerousEdit)"
    ) in lines
    assert "procedure:  Emergency rollback (critical issues)" in lines
    assert (
        '[close-pr] github.close_pr: close nexus/ssot#318 with the comment "Rejected: '
        'Dangerous change detected"'
    ) in lines
    assert "[revert-ai-commit] git.revert: will ask for commit" in lines
    assert "[scale-to-zero] k8s.scale: scale deployment ai/frenly-ai to 0 replicas" in lines
    assert "Level 2 — Engineering manager: after 5m" in lines
    assert "Block Kit:" in lines


def test_alertmanager_sample_as_json() -> None:
    (plan,) = simulate(data("alertmanager-frenly-ai.json"), "--json").plans()
    assert plan["severity"] == "critical"
    assert plan["routes"] == ["pagerduty", "slack", "email"]
    assert plan["playbook"] == "frenly-ai-dangerous-edit"
    assert plan["procedure"] == "emergency"
    assert [b["step"] for b in plan["buttons"]] == ["close-pr", "revert-ai-commit", "scale-to-zero"]
    close, revert, scale = plan["buttons"]
    assert close["params"] == {
        "repo": "nexus/ssot",
        "pr": 318,
        "comment": "Rejected: Dangerous change detected",
    }
    assert close["refused"] is None and close["ask_for"] == []
    assert revert["ask_for"] == ["commit"]
    assert scale["action"] == "k8s.scale" and scale["refused"] is None
    assert [e["after_seconds"] for e in plan["escalation"]] == [0, 300, 900, 3600]
    assert plan["alerts"] == {"total": 1, "firing": 1, "resolved": 0}
    root, thread = plan["blocks"]["root"], plan["blocks"]["thread"]
    assert root[0]["type"] == "header"
    assert root[0]["text"]["text"].startswith("CRITICAL: Frenly AI opened a PR")
    actions = [e["action_id"] for block in thread for e in [block.get("accessory") or {}] if e]
    assert actions == [
        "remediation.request.close-pr",
        "remediation.request.revert-ai-commit",
        "remediation.request.scale-to-zero",
    ]


def test_pagerduty_sample_is_never_routed_back_to_pagerduty() -> None:
    (plan,) = simulate(data("pagerduty-incident-triggered.json"), "--json").plans()
    assert plan["severity"] == "critical"
    assert plan["severity_reason"] == "PagerDuty urgency 'high'"
    assert plan["routes"] == ["slack", "email"]
    assert plan["playbook"] == "schema-mismatch"
    assert plan["key"] == "pagerduty:Q1NEXUS7SCHEMA"
    assert [b["step"] for b in plan["buttons"]] == [
        "revert-commit",
        "restart-service",
        "database-rollback",  # a Job from the ssot-db-rollback CronJob
    ]
    assert plan["manual"] == []
    fields = [f["text"] for f in plan["blocks"]["root"][1]["fields"]]
    assert (
        "*PagerDuty*\n<https://nexus.pagerduty.com/incidents/Q1NEXUS7SCHEMA|open incident>"
        in fields
    )


def test_pagerduty_sample_as_text() -> None:
    run = simulate(data("pagerduty-incident-triggered.json"), "--source", "pagerduty")
    assert run.code == 0, run.err
    assert "  routes:     slack, email\n" in run.out
    assert "  playbook:   schema-mismatch (matched `schema-mismatch` on incident_key~/" in run.out


# --- our own cases ------------------------------------------------------------


def test_error_rate_of_seven_percent_is_a_warning() -> None:
    (plan,) = simulate(data("alertmanager-error-rate.json"), "--json").plans()
    assert plan["severity"] == "warning"
    assert plan["severity_reason"] == "error rate 7% > 5%"
    assert plan["routes"] == ["slack", "email"]
    # no SSOT playbook for an orders-api error rate: generic triage
    assert plan["playbook"] == "generic-triage"
    assert plan["playbook_reason"] == "no playbook matched: generic triage"
    assert plan["procedure"] == "standard"
    assert plan["buttons"] == []
    assert plan["manual"] == [
        {
            "step": "recent-ssot-commits",
            "command": "git log --oneline -n 20 -- ssot_plan/",
            "fill_in": [],
            "why_manual": (
                "Reading the history is triage for a human; the bot acts only through playbooks."
            ),
        }
    ]
    assert [e["after_seconds"] for e in plan["escalation"]] == [0, 900, 2700, 7200]


def test_info_change_goes_to_slack_only_and_never_escalates() -> None:
    run = simulate(data("generic-info.json"))
    assert run.code == 0, run.err
    assert "  severity:   info (no threshold crossed: normal operational change)\n" in run.out
    assert "  routes:     slack\n" in run.out
    assert "  playbook:   generic-triage (no playbook matched: generic triage)\n" in run.out
    assert "    none (info incidents do not escalate)\n" in run.out


def test_performance_degradation_and_escalation_override() -> None:
    (plan,) = simulate(
        data("alertmanager-latency.json"), "--json", NEXUS_ESCALATION_DELAYS="1m,2m,3m"
    ).plans()
    assert plan["severity"] == "warning"
    assert plan["severity_reason"] == "performance degradation 35.5% > 20%"
    assert plan["playbook"] == "performance-degradation"
    patch, undo = plan["buttons"]
    assert patch["does"] == "patch ConfigMap nexus/ssot-config: enabled=false"
    assert undo["refused"] == (
        "deployment nexus/ssot-sync is not allow-listed (allowed_targets.deployments in the config)"
    )
    assert [e["after_seconds"] for e in plan["escalation"]] == [0, 60, 120, 180]


def test_batch_with_two_groups_gives_two_incidents() -> None:
    plans = simulate(data("generic-batch.json"), "--json").plans()
    assert [p["key"] for p in plans] == [
        "generic:ssot-validation/manifest",
        "generic:ssot-drift/billing-api",
    ]
    assert [p["playbook"] for p in plans] == ["validation-failure", "configuration-drift"]
    assert [p["severity"] for p in plans] == ["warning", "info"]
    assert plans[1]["alerts"] == {"total": 2, "firing": 1, "resolved": 1}


def test_alertmanager_group_with_resolved_alerts_is_one_incident() -> None:
    (plan,) = simulate(data("alertmanager-ssot-group.json"), "--json").plans()
    assert plan["alerts"] == {"total": 3, "firing": 2, "resolved": 1}
    assert plan["playbook"] == "lost-canonical-files"
    fields = [f["text"] for f in plan["blocks"]["root"][1]["fields"]]
    assert "*Alerts*\n2 firing, 1 resolved" in fields
    buttons = {b["step"]: b for b in plan["buttons"]}
    assert list(buttons) == ["restore-from-snapshot", "restore-from-git", "verify-integrity"]
    restore = buttons["restore-from-git"]
    assert restore["params"]["commit"] == "9fceb02"  # from the first alert's labels
    assert restore["refused"] is None
    assert buttons["restore-from-snapshot"]["params"]["snapshot"] == "latest"


def test_pagerduty_resolved_event() -> None:
    (plan,) = simulate(data("pagerduty-incident-resolved.json"), "--json").plans()
    assert plan["alerts"] == {"total": 1, "firing": 0, "resolved": 1}
    assert plan["routes"] == ["slack", "email"]


def test_standard_input() -> None:
    body = (DATA / "alertmanager-frenly-ai.json").read_bytes()
    (plan,) = simulate("-", "--json", stdin=body).plans()
    assert plan["playbook"] == "frenly-ai-dangerous-edit"


def test_hostile_title_is_escaped_in_blocks(tmp_path: Path) -> None:
    path = tmp_path / "hostile.json"
    path.write_text(
        json.dumps(
            {"title": "<!channel> SSOT sync failed <@U123>", "labels": {"service": "<!here>"}}
        ),
        encoding="utf-8",
    )
    (plan,) = simulate(str(path), "--json").plans()
    fields = [f["text"] for f in plan["blocks"]["root"][1]["fields"]]
    assert "*Service*\n&lt;!here&gt;" in fields
    serialised = json.dumps(plan["blocks"]["thread"])
    assert "<!" not in serialised and "<@" not in serialised


# --- malformed input ----------------------------------------------------------


def write(tmp_path: Path, name: str, content: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content)
    return str(path)


def test_not_json_gives_file_line_column(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.json", b'{\n  "alerts": [\n    {"labels": {,}}\n  ]\n}\n')
    run = simulate(path)
    assert run.code == 1
    assert run.out == ""
    assert run.err == (
        f"error: {path}:3:17: not valid JSON: Expecting property name enclosed in double quotes\n"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "{path}:1:1: not valid JSON: Expecting value"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe", "{path}: not UTF-8 text"),
        (b"[]", "{path}: payload holds no alerts"),
        (b'{"version": "4", "alerts": {}}', "{path}: Alertmanager payload needs an 'alerts' list"),
        (
            b'"just a string"',
            "{path}: alert.body: Input should be a valid dictionary or instance of GenericAlert",
        ),
        (
            b'{"event": {"event_type": "service.updated", "resource_type": "service"}}',
            "{path}: PagerDuty event resource_type 'service' is not 'incident'",
        ),
        (b"[" * 5000 + b"]" * 5000, "{path}: JSON nested too deeply"),
    ],
    ids=["empty", "binary", "empty-list", "wrong-shape", "string", "pd-service", "deep"],
)
def test_malformed_payloads(tmp_path: Path, content: bytes, message: str) -> None:
    path = write(tmp_path, "payload.json", content)
    run = simulate(path, "--json")
    assert run.code == 1
    assert run.out == ""
    assert run.err == f"error: {message.format(path=path)}\n"


def test_payload_over_ten_mebibytes_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.json"
    with path.open("wb") as handle:
        handle.write(b'{"title": "x", "annotations": {"pad": "')
        handle.write(b"x" * (11 * 1024 * 1024))
        handle.write(b'"}}')
    run = simulate(str(path))
    assert run.code == 1
    assert run.err == f"error: {path}: more than the 10485760 bytes accepted\n"


def test_wrong_source_for_the_payload() -> None:
    run = simulate(data("alertmanager-frenly-ai.json"), "--source", "pagerduty")
    assert run.code == 1
    assert run.err.endswith("PagerDuty payload 'event' must be a JSON object\n")


def test_missing_file() -> None:
    run = simulate("no-such-payload.json")
    assert run.code == 1
    assert run.err == "error: no-such-payload.json: cannot read: No such file or directory\n"


def test_unknown_source_is_a_command_line_error() -> None:
    run = simulate(data("alertmanager-frenly-ai.json"), "--source", "nagios")
    assert run.code == 2
    assert "argument --source: invalid choice: 'nagios'" in run.err
    assert run.out == ""


def test_broken_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "nexus.yaml"
    config.write_text("port: 3000\nlog_level: chatty\n", encoding="utf-8")
    run = simulate(data("generic-info.json"), NEXUS_CONFIG=str(config))
    assert run.code == 2
    assert run.err.startswith(f"config error: {config}:2: log_level: Input should be 'debug'")


def test_broken_playbooks_are_reported(tmp_path: Path) -> None:
    shutil.copytree(REPO_ROOT / "playbooks", tmp_path / "playbooks")
    (tmp_path / "playbooks" / "zz-broken.yaml").write_text("id: [\n", encoding="utf-8")
    run = simulate(
        data("generic-info.json"),
        cwd=tmp_path,
        NEXUS_CONFIG=str(REPO_ROOT / "config" / "nexus.yaml"),
    )
    assert run.code == 1
    assert run.err.splitlines() == [
        "playbooks/zz-broken.yaml:2: not valid YAML: expected the node content, but found "
        "'<stream end>'",
        "error: playbooks are invalid: run `nexus-bot validate`",
    ]


def test_no_step_of_the_source_playbook_is_left_manual_without_a_reason() -> None:
    """Every command of the SSOT playbook is a button, or a manual step that says why."""
    from bot.domain.playbooks import load_playbooks

    shipped = load_playbooks([REPO_ROOT / "playbooks"], None)
    assert not shipped.problems
    for playbook in shipped.playbooks:
        for step in playbook.rollback:
            assert step.action is not None or step.note, (playbook.id, step.id)
    # And as simulate shows it (one process: the field is the same for every plan).
    for sample in [DATA / "alertmanager-error-rate.json"]:
        run = simulate(str(sample), "--json")
        assert run.code == 0, run.err
        for plan in run.plans():
            for step in plan["manual"]:
                assert step["why_manual"], (sample.name, step)
