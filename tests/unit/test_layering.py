"""The core records what happened; only bot/slack knows Slack (ARCHITECTURE.md).

`bot/incidents`, `bot/remediation`, `bot/timeline` and `bot/drills` must import
nothing from `bot.slack`, neither directly (checked in the source) nor through
another module (checked by importing them in a fresh interpreter and looking at
what got loaded).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
CORE_PACKAGES = ("incidents", "remediation", "timeline", "drills")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def slack_imports(package_dir: Path, root: Path = REPO_ROOT) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for path in sorted(package_dir.rglob("*.py")):
        bad = sorted(n for n in _imports(path) if n == "bot.slack" or n.startswith("bot.slack."))
        if bad:
            found[str(path.relative_to(root))] = bad
    return found


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_core_packages_do_not_import_slack_directly(package: str) -> None:
    assert slack_imports(REPO_ROOT / "bot" / package) == {}


def test_the_check_catches_a_slack_import(tmp_path: Path) -> None:
    """The rule above would fail if such an import came back."""
    (tmp_path / "service.py").write_text(
        "from bot.slack.outbox import enqueue_thread_reply\nimport bot.slack.blocks\n"
    )
    (tmp_path / "fine.py").write_text("from bot.timeline.events import Kind\n")
    assert slack_imports(tmp_path, root=tmp_path) == {
        "service.py": [
            "bot.slack.blocks",
            "bot.slack.outbox",
            "bot.slack.outbox.enqueue_thread_reply",
        ]
    }


def test_core_packages_do_not_load_slack_transitively() -> None:
    modules = [
        f"bot.{package}.{path.stem}"
        for package in CORE_PACKAGES
        for path in sorted((REPO_ROOT / "bot" / package).glob("*.py"))
        if path.stem != "__init__"
    ]
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('bot.slack'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert len(modules) >= 8
    assert json.loads(result.stdout) == []
