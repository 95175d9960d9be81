"""`nexus-bot validate` as a real process: the shipped playbooks, and every kind of broken file.

Each problem is one `file:line: message` line, the exit code is 1, and nothing
ever prints a traceback.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bot.settings import Settings
from bot.store.repository import Repository

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_IDS = [
    "configuration-drift",
    "frenly-ai-dangerous-edit",
    "lost-canonical-files",
    "performance-degradation",
    "schema-mismatch",
    "ssot-build-failure",
    "validation-failure",
]


@dataclass
class Run:
    code: int
    out: str
    err: str


def clean_env(**extra: str) -> dict[str, str]:
    """The environment minus every bot setting (CI may set some) and NEXUS_TODAY, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k.lower() not in Settings.model_fields and k != "NEXUS_TODAY"
    }
    return {**env, **extra}


def validate(*args: str, cwd: Path, **env: str) -> Run:
    proc = subprocess.run(
        [sys.executable, "-m", "bot", "validate", *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stdout, proc.stdout
    return Run(proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A copy of the repository's playbooks/ and config/nexus.yaml."""
    shutil.copytree(REPO_ROOT / "playbooks", tmp_path / "playbooks")
    (tmp_path / "config").mkdir()
    shutil.copy(REPO_ROOT / "config" / "nexus.yaml", tmp_path / "config" / "nexus.yaml")
    return tmp_path


def test_shipped_playbooks_are_valid() -> None:
    run = validate(cwd=REPO_ROOT)
    assert run.code == 0, run.out + run.err
    lines = run.out.splitlines()
    assert lines[0] == "ok: config and 7 playbooks valid"
    listed = [line.split()[0] for line in lines[1:]]
    assert sorted(listed) == SHIPPED_IDS
    assert any(
        line.split()[:3] == ["frenly-ai-dangerous-edit", "HIGH", "emergency"] for line in lines
    )
    assert any(line.split()[:3] == ["validation-failure", "LOW", "standard"] for line in lines)
    assert run.err == ""


# --- one folder holding every kind of broken playbook -------------------------

HEADER = """id: {id}
title: Broken on purpose
risk_level: HIGH
probability: Low
impact: Critical
description: A playbook with one mistake.
match:
  - labels: {{alertname: Broken}}
"""  # 8 lines; `rollback:` is line 9, its first item line 10

BROKEN: dict[str, tuple[str, str]] = {
    # file name: (content, expected `line: message`)
    "syntax.yaml": (
        "id: [unclosed\ntitle: x\n",
        "2: not valid YAML: expected ',' or ']', but got ':'",
    ),
    "top-level-list.yaml": (
        "- id: a-list\n- title: x\n",
        "1: expected a mapping (key: value) at the top level",
    ),
    "unknown-action.yaml": (
        HEADER.format(id="unknown-action")
        + "rollback:\n  - id: nuke\n    title: Nuke it\n    action: k8s.delete_namespace\n",
        "12: unknown action 'k8s.delete_namespace'; known: git.restore_archive, git.restore_path,",
    ),
    "missing-param.yaml": (
        HEADER.format(id="missing-param")
        + "rollback:\n  - id: scale\n    title: Scale\n    action: k8s.scale\n"
        + "    params: {namespace: ai, deployment: frenly-ai}\n",
        "13: missing required parameter 'replicas' for k8s.scale",
    ),
    "unknown-param.yaml": (
        HEADER.format(id="unknown-param")
        + "rollback:\n  - id: scale\n    title: Scale\n    action: k8s.scale\n    params:\n"
        + "      namespace: ai\n      deployment: frenly-ai\n      replicas: 0\n"
        + "      force: true\n",
        "17: unknown parameter 'force' for k8s.scale; known: namespace, deployment, replicas",
    ),
    "mistyped-literal.yaml": (
        HEADER.format(id="mistyped-literal")
        + "rollback:\n  - id: scale\n    title: Scale\n    action: k8s.scale\n    params:\n"
        + "      namespace: ai\n      deployment: frenly-ai\n      replicas: many\n",
        "16: parameter 'replicas': Input should be a valid integer",
    ),
    "bad-template.yaml": (
        HEADER.format(id="bad-template")
        + "rollback:\n  - id: revert\n    title: Revert\n    action: git.revert\n    params:\n"
        + '      repo: nexus/ssot\n      commit: "{{ Commit }}"\n',
        "15: bad template: column 1: {{ Commit }} is not a template",
    ),
    "bad-manual-template.yaml": (
        HEADER.format(id="bad-manual-template")
        + "rollback:\n  - id: check\n    title: Check\n    manual: echo {{ anchor\n",
        "12: bad template: column 6: '{{' is never closed with '}}'",
    ),
    "duplicate-step.yaml": (
        HEADER.format(id="duplicate-step")
        + "rollback:\n  - id: check\n    title: A\n    manual: echo a\n"
        + "  - id: check\n    title: B\n    manual: echo b\n",
        "13: duplicate step id 'check'",
    ),
    "bad-regex.yaml": (
        HEADER.format(id="bad-regex") + '  - title: "(?i)schema (mismatch"\n',
        "9: match.1: bad regular expression '(?i)schema (mismatch': missing ), unterminated",
    ),
    "action-and-manual.yaml": (
        HEADER.format(id="action-and-manual")
        + "rollback:\n  - id: both\n    title: Both\n    action: k8s.rollout_restart\n"
        + "    params: {namespace: ai, deployment: frenly-ai}\n    manual: kubectl rollout\n",
        "10: rollback.0: a step needs exactly one of `action` (the bot runs it) or `manual`",
    ),
    "outside-allow-list.yaml": (
        HEADER.format(id="outside-allow-list")
        + "rollback:\n  - id: scale-db\n    title: Scale the database\n    action: k8s.scale\n"
        + "    params: {namespace: prod, deployment: postgres, replicas: 0}\n",
        "13: target refused: deployment prod/postgres is not allow-listed "
        "(allowed_targets.deployments in the config)",
    ),
    "close-pr-outside-allow-list.yaml": (
        HEADER.format(id="close-pr-outside-allow-list")
        + "rollback:\n  - id: close\n    title: Close the PR\n    action: github.close_pr\n"
        + '    params: {repo: attacker/ssot, pr: "{{ pr }}"}\n',
        "13: target refused: repository attacker/ssot is not allow-listed "
        "(allowed_targets.repositories in the config)",
    ),
    "unknown-key.yaml": (
        HEADER.format(id="unknown-key") + "owner: platform-team\n",
        "9: owner: unknown key 'owner'",
    ),
    "wrong-risk.yaml": (
        HEADER.format(id="wrong-risk").replace("risk_level: HIGH", "risk_level: EXTREME"),
        "3: risk_level: Input should be 'HIGH', 'MEDIUM' or 'LOW'",
    ),
    "missing-key.yaml": (
        HEADER.format(id="missing-key").replace("description: A playbook with one mistake.\n", ""),
        "1: description: missing required key 'description'",
    ),
    "dup-a.yaml": (HEADER.format(id="same-id"), ""),
    "dup-b.yaml": (HEADER.format(id="same-id"), "1: duplicate playbook id 'same-id' (also in "),
}


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """One `validate` over a folder of broken files (one subprocess for all of them)."""
    root = tmp_path_factory.mktemp("broken")
    shutil.copytree(REPO_ROOT / "config", root / "config")
    folder = root / "broken"
    folder.mkdir()
    for name, (text, _) in BROKEN.items():
        (folder / name).write_text(text, encoding="utf-8")
    return root, validate("broken", cwd=root)


def test_broken_folder_fails_with_one_line_per_problem(broken_run: tuple[Path, Run]) -> None:
    _, run = broken_run
    assert run.code == 1
    lines = run.out.splitlines()
    problems = [line for line in lines if line.startswith("broken/")]
    expected = [name for name, (_, message) in BROKEN.items() if message]
    assert sorted({line.split(":")[0] for line in problems}) == sorted(
        f"broken/{name}" for name in expected
    )
    assert lines[-1] == f"{len(lines) - 1} error(s)"
    assert "ok:" not in run.out


@pytest.mark.parametrize("name", [name for name, (_, message) in BROKEN.items() if message])
def test_each_kind_of_mistake_has_its_own_located_message(
    broken_run: tuple[Path, Run], name: str
) -> None:
    _, run = broken_run
    expected = f"broken/{name}:{BROKEN[name][1]}"
    assert any(line.startswith(expected) for line in run.out.splitlines()), run.out


def test_duplicate_id_names_the_other_file(broken_run: tuple[Path, Run]) -> None:
    _, run = broken_run
    assert (
        "broken/dup-b.yaml:1: duplicate playbook id 'same-id' (also in broken/dup-a.yaml:1)"
        in run.out.splitlines()
    )


def test_single_broken_file_and_a_missing_path(workdir: Path) -> None:
    bad = workdir / "one.yaml"
    bad.write_text(BROKEN["mistyped-literal.yaml"][0], encoding="utf-8")
    run = validate("one.yaml", "nowhere.yaml", cwd=workdir)
    assert run.code == 1
    assert run.out.splitlines() == [
        "one.yaml:16: parameter 'replicas': Input should be a valid integer, unable to parse "
        "string as an integer",
        "nowhere.yaml:1: no such file or folder",
        "2 error(s)",
    ]


def test_empty_folder(workdir: Path) -> None:
    (workdir / "empty").mkdir()
    run = validate("empty", cwd=workdir)
    assert run.code == 1
    assert run.out.splitlines() == ["empty: no playbook files (*.yaml) found", "1 error(s)"]


# --- config -------------------------------------------------------------------


def test_broken_config_file(workdir: Path) -> None:
    config = workdir / "config" / "nexus.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace("port: 3000\n", "port: three thousand\n").replace(
            "  error_rate_percent: 5\n", "  error_rate_percent: 5\n  erorr_rate: 7\n"
        ),
        encoding="utf-8",
    )
    port_line = text.splitlines().index("port: 3000") + 1
    run = validate(cwd=workdir)
    assert run.code == 1
    lines = run.out.splitlines()
    assert (
        f"config/nexus.yaml:{port_line}: port: Input should be a valid integer, unable to parse "
        "string as an integer (got 'three thousand')"
    ) in lines
    assert any(
        line.startswith("config/nexus.yaml:") and "severity_thresholds.erorr_rate: unknown" in line
        for line in lines
    )
    assert lines[-1] == "2 error(s)"


def test_config_yaml_syntax_error_and_playbooks_are_still_checked(workdir: Path) -> None:
    (workdir / "config" / "nexus.yaml").write_text("port: 3000\nhost: [\n", encoding="utf-8")
    (workdir / "playbooks" / "broken.yaml").write_text("- not a mapping\n", encoding="utf-8")
    run = validate(cwd=workdir)
    assert run.code == 1
    assert run.out.splitlines() == [
        "config/nexus.yaml:3: not valid YAML: expected the node content, but found '<stream end>'",
        "playbooks/broken.yaml:1: expected a mapping (key: value) at the top level",
        "2 error(s)",
    ]


def test_nexus_config_pointing_nowhere(workdir: Path) -> None:
    run = validate(cwd=workdir, NEXUS_CONFIG="missing/nexus.yaml")
    assert run.code == 1
    assert run.out.splitlines() == [
        "missing/nexus.yaml: config file not found (NEXUS_CONFIG)",
        "1 error(s)",
    ]


def test_bad_environment_value(workdir: Path) -> None:
    run = validate(cwd=workdir, NEXUS_APPROVERS="U0AAA,alice", SMTP_URL="http://u:s3cr3t@mail")
    assert run.code == 1
    assert (
        "environment variable NEXUS_APPROVERS: expected Slack user (U…) or user-group (S…) IDs, "
        "got 'alice'" in run.out
    )
    assert "environment variable SMTP_URL: expected smtp://" in run.out
    assert "s3cr3t" not in run.out + run.err


def test_playbooks_folder_from_config(workdir: Path) -> None:
    shutil.move(workdir / "playbooks", workdir / "elsewhere")
    run = validate(cwd=workdir, NEXUS_PLAYBOOKS="elsewhere")
    assert run.code == 0, run.out
    assert "(elsewhere/schema-mismatch.yaml)" in run.out


def test_recursive_yaml_alias_is_an_error_not_a_crash(workdir: Path) -> None:
    (workdir / "loop.yaml").write_text(
        HEADER.format(id="loop") + "mitigations: &m [*m]\n", encoding="utf-8"
    )
    run = validate("loop.yaml", cwd=workdir)
    assert run.code == 1
    assert run.out.splitlines()[0].startswith("loop.yaml:9: mitigations.0: ")


def test_escalation_and_approval_config_errors(tmp_path: Path) -> None:
    config = tmp_path / "nexus.yaml"
    config.write_text(
        "approvals:\n"
        "  per_action: {k8s.scael: [S0LEADS]}\n"
        "escalation:\n"
        "  critical: [15m, 5m, 60m]\n"
        "  levels:\n"
        "    - {level: 1, role: Team lead, slack: [U0LEAD]}\n"
        "    - {level: 2, role: Engineering manager}\n"
        "    - {level: 3, role: CTO, email: [cto@nexus.test]}\n"
        "    - {level: 4, role: Executive, pagerduty_level: 4}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "bot", "validate", str(REPO_ROOT / "playbooks")],
        cwd=tmp_path,
        env={**os.environ, "NEXUS_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "level 2 (Engineering manager) reaches nobody" in result.stdout
    assert "increasing order" in result.stdout
    assert f"{config}:4:" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_approvers_for_an_unknown_action(tmp_path: Path) -> None:
    config = tmp_path / "nexus.yaml"
    config.write_text("approvals:\n  per_action: {k8s.scael: [S0LEADS]}\n")
    result = subprocess.run(
        [sys.executable, "-m", "bot", "validate", str(REPO_ROOT / "playbooks")],
        cwd=tmp_path,
        env={**os.environ, "NEXUS_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "unknown action 'k8s.scael'" in result.stdout


# --- review dates (warnings, never errors) ------------------------------------


def test_shipped_playbooks_are_not_overdue_and_list_their_review_date() -> None:
    run = validate(cwd=REPO_ROOT, NEXUS_TODAY="2026-11-30")
    assert run.code == 0, run.out + run.err
    listing = run.out.splitlines()[1:]
    assert len(listing) == len(SHIPPED_IDS)
    assert all("review due 20" in line and "OVERDUE" not in line for line in listing), run.out
    assert "warning:" not in run.out


def test_overdue_playbook_is_a_warning_and_exit_code_stays_0(workdir: Path) -> None:
    path = workdir / "playbooks" / "schema-mismatch.yaml"
    text = path.read_text(encoding="utf-8")
    assert "  last_reviewed: 2026-11-16\n" in text
    path.write_text(
        text.replace("  last_reviewed: 2026-11-16\n", "  last_reviewed: 2026-06-03\n"),
        encoding="utf-8",
    )
    run = validate(cwd=workdir, NEXUS_TODAY="2026-11-30")
    assert run.code == 0, run.out
    lines = run.out.splitlines()
    assert lines[0] == "ok: config and 7 playbooks valid"
    assert lines[-1] == (
        "warning: playbooks/schema-mismatch.yaml: review overdue since 2026-09-01, 90 days "
        "(last reviewed 2026-06-03, every 90d; owner S0SSOTOWNERS)"
    )
    assert [line for line in lines if line.startswith("warning:")] == [lines[-1]]
    (overdue,) = [line for line in lines if "OVERDUE" in line]
    assert overdue.split()[0] == "schema-mismatch"
    assert "REVIEW OVERDUE (due 2026-09-01)" in overdue


def test_review_due_today_is_not_yet_overdue(workdir: Path) -> None:
    run = validate(cwd=workdir, NEXUS_TODAY="2027-01-24")  # configuration-drift is due today
    assert run.code == 0, run.out
    assert "warning:" not in run.out
    run = validate(cwd=workdir, NEXUS_TODAY="2027-01-25")
    assert [line.split()[1] for line in run.out.splitlines() if line.startswith("warning:")] == [
        "playbooks/configuration-drift.yaml:",
        "playbooks/performance-degradation.yaml:",
    ]


def test_invalid_review_block_is_an_error_with_its_line(workdir: Path) -> None:
    (workdir / "reviewed.yaml").write_text(
        HEADER.format(id="reviewed")
        + "review:\n  owner: platform-leads\n  last_reviewed: 2999-01-01\n  every: 3d\n",
        encoding="utf-8",
    )
    run = validate("reviewed.yaml", cwd=workdir)
    assert run.code == 1
    assert run.out.splitlines() == [
        "reviewed.yaml:10: review.owner: expected a Slack user (U…, W…) or user-group (S…) ID, "
        "got 'platform-leads'",
        f"reviewed.yaml:11: review.last_reviewed: 2999-01-01 is in the future (today is "
        f"{date.today().isoformat()})",
        "reviewed.yaml:12: review.every: expected between 7d and 730d, got '3d'",
        "3 error(s)",
    ]


def test_bad_nexus_today_is_an_error(workdir: Path) -> None:
    run = validate(cwd=workdir, NEXUS_TODAY="30/11/2026")
    assert run.code == 1
    assert run.out.splitlines() == [
        "environment variable NEXUS_TODAY: expected a date as YYYY-MM-DD, got '30/11/2026'",
        "1 error(s)",
    ]


def test_a_playbook_used_since_its_last_review_is_flagged(
    workdir: Path, database_url: str, engine: sa.Engine
) -> None:
    """Its review lists procedures to update: flagged until `last_reviewed` moves past it."""
    repo = Repository(engine)
    incident, _ = repo.open_incident(
        key="k1",
        source="alertmanager",
        title="Frenly AI edited prod",
        severity="critical",
        playbook_id="frenly-ai-dangerous-edit",
        labels={},
    )
    resolved = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)  # after the shipped last_reviewed
    assert repo.set_incident_status(incident.id, "resolved", "U0LEAD", now=resolved)
    run = validate(cwd=workdir, DATABASE_URL=database_url, NEXUS_TODAY="2026-11-30")
    assert run.code == 0, run.out
    line = next(x for x in run.out.splitlines() if "frenly-ai-dangerous-edit " in x)
    assert f"REVIEW AFTER INCIDENT #{incident.id}" in line
    assert (
        f"warning: playbooks/frenly-ai-dangerous-edit.yaml: used in incident #{incident.id} "
        "(resolved 2026-11-20)"
    ) in run.out
    # Reviewed after the incident: no longer flagged.
    path = workdir / "playbooks" / "frenly-ai-dangerous-edit.yaml"
    path.write_text(re.sub(r"last_reviewed: \S+", "last_reviewed: 2026-11-21", path.read_text()))
    again = validate(cwd=workdir, DATABASE_URL=database_url, NEXUS_TODAY="2026-11-30")
    assert again.code == 0 and "REVIEW AFTER INCIDENT" not in again.out


def test_validate_creates_no_database(workdir: Path) -> None:
    run = validate(cwd=workdir)  # the default sqlite:///nexus-bot.db does not exist here
    assert run.code == 0 and "REVIEW AFTER INCIDENT" not in run.out
    assert not (workdir / "nexus-bot.db").exists()
