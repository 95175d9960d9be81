"""The README is the front door: its two set-up commands must stay true."""

from __future__ import annotations

import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    quick_start = readme.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quick_start, flags=re.S)
    return [line for block in blocks for line in block.splitlines() if not line.startswith("#")]


def test_quick_start_has_exactly_two_commands() -> None:
    commands = _commands()
    assert len(commands) == 2, commands
    assert commands[0].endswith("nexus-bot serve")
    assert "pytest" in commands[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert _commands()[1] in ci.splitlines()


def test_ci_refuses_pytest_exit_5() -> None:
    ci = (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert '"$status" -eq 5' in ci


def test_procfile_runs_serve() -> None:
    assert (REPO_ROOT / "Procfile").read_text().strip() == "web: nexus-bot serve"


def test_every_environment_setting_is_documented() -> None:
    """A setting the README does not name is one a user cannot find."""
    from bot.settings import Settings

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    structured = {
        "approvals",
        "severity_thresholds",
        "allowed_targets",
        "escalation",
        "roles",
        "updates",
        "status_page",
        "review",
        "drills",
    }
    missing = [
        name.upper()
        for name in Settings.model_fields
        if name not in structured and f"`{name.upper()}`" not in readme
    ]
    assert missing == []


def test_the_rbac_table_is_the_generated_one() -> None:
    """The README's least-privilege table is what bot/actions/permissions.py declares."""
    from bot.actions.permissions import markdown_table

    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    assert markdown_table().strip() in readme
