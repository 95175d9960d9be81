"""`nexus-bot validate`: config and playbooks, every problem as `file:line: message`."""

from __future__ import annotations

from pathlib import Path

from bot.actions.registry import REGISTRY
from bot.domain.playbooks import load_playbooks
from bot.settings import SettingsError, load_settings


def run_validate(paths: list[Path]) -> int:
    problems: list[str] = []
    try:
        settings = load_settings()
    except SettingsError as exc:
        problems += exc.problems
        settings = None
    if settings is not None:
        problems += [
            f"{settings.nexus_config}: approvals.per_action: unknown action {name!r}; "
            f"known: {', '.join(REGISTRY.names())}"
            for name in settings.approvals.per_action
            if name not in REGISTRY
        ]
    folders = paths or [settings.nexus_playbooks if settings else Path("playbooks")]
    loaded = load_playbooks(folders, settings.allowed_targets if settings else None)
    problems += [str(p) for p in loaded.problems]
    if not loaded.playbooks and not loaded.problems:
        problems.append(f"{', '.join(map(str, folders))}: no playbook files (*.yaml) found")
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} error(s)")
        return 1
    print(f"ok: config and {len(loaded.playbooks)} playbooks valid")
    for playbook in loaded.playbooks:
        runnable = sum(1 for s in playbook.rollback if s.action)
        print(
            f"  {playbook.id:<26} {playbook.risk_level.value:<6} {playbook.procedure_kind.value:<9}"
            f" {runnable} action(s), {len(playbook.rollback) - runnable} manual  "
            f"({loaded.sources[playbook.id]})"
        )
    return 0
