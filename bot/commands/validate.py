"""`nexus-bot validate`: config and playbooks, every problem as `file:line: message`.

Playbooks past their review date (bot.domain.playbook_review) are warnings, not
errors: each gets a `warning:` line after the listing and the exit code stays 0,
so an overdue review never blocks a deploy. `NEXUS_TODAY=YYYY-MM-DD` replaces
today's date for that check (a test hook, read only here).
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

from bot.actions.registry import REGISTRY
from bot.domain.playbook_review import review_today
from bot.domain.playbooks import Playbook, load_playbooks
from bot.reviews.playbook_use import LastUse, last_reviewed_use
from bot.settings import Settings, SettingsError, load_settings


def run_validate(paths: list[Path]) -> int:
    problems: list[str] = []
    try:
        today = review_today(os.environ)
    except ValueError as exc:
        problems.append(str(exc))
        today = date.today()
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
    # Drill scenarios name the configured playbooks: judged against those only.
    if settings is not None and loaded.playbooks and folders == [settings.nexus_playbooks]:
        problems += drill_problems(settings, loaded.playbooks)
    if not loaded.playbooks and not loaded.problems:
        problems.append(f"{', '.join(map(str, folders))}: no playbook files (*.yaml) found")
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} error(s)")
        return 1
    print(f"ok: config and {len(loaded.playbooks)} playbooks valid")
    uses = last_reviewed_use(settings.database_url) if settings is not None else None
    stale = {
        playbook.id: uses[playbook.id]
        for playbook in loaded.playbooks
        if uses is not None
        and playbook.id in uses
        and (
            playbook.review is None or playbook.review.last_reviewed < uses[playbook.id].resolved_on
        )
    }
    for playbook in loaded.playbooks:
        runnable = sum(1 for s in playbook.rollback if s.action)
        print(
            f"  {playbook.id:<26} {playbook.risk_level.value:<6} {playbook.procedure_kind.value:<9}"
            f" {runnable} action(s), {len(playbook.rollback) - runnable} manual  "
            f"{_review_column(playbook, today, stale.get(playbook.id)):<31}"
            f"  ({loaded.sources[playbook.id]})"
        )
    for playbook in loaded.playbooks:
        review = playbook.review
        if review is not None and review.overdue(today):
            print(f"warning: {loaded.sources[playbook.id]}: {review.describe_overdue(today)}")
    for playbook_id, use in stale.items():
        print(
            f"warning: {loaded.sources[playbook_id]}: used in incident #{use.incident_id} "
            f"(resolved {use.resolved_on.isoformat()}), whose review lists procedures to update; "
            "review the playbook and move `last_reviewed` past that date"
        )
    return 0


def drill_problems(settings: Settings, playbooks: list[Playbook]) -> list[str]:
    """Each drill scenario names a loaded playbook and runnable steps of it."""
    by_id = {p.id: p for p in playbooks}
    found = []
    where = f"{settings.nexus_config}: drills.scenarios"
    for scenario_id, scenario in settings.drills.scenarios.items():
        playbook = by_id.get(scenario.playbook)
        if playbook is None:
            found.append(f"{where}.{scenario_id}: unknown playbook {scenario.playbook!r}")
            continue
        for step_id in scenario.steps:
            step = playbook.step(step_id)
            if step is None:
                steps = ", ".join(s.id for s in playbook.rollback)
                found.append(
                    f"{where}.{scenario_id}: playbook {playbook.id} has no step {step_id!r} "
                    f"(its steps: {steps})"
                )
            elif step.action is None:
                found.append(
                    f"{where}.{scenario_id}: step {step_id!r} of {playbook.id} is manual; "
                    "a drill can rehearse only steps with an action"
                )
    return found


def _reviewed_before(playbook: Playbook, use: LastUse) -> bool:
    """Not reviewed since that incident (or never)."""
    return playbook.review is None or playbook.review.last_reviewed < use.resolved_on


def _review_column(playbook: Playbook, today: date, used: LastUse | None = None) -> str:
    review = playbook.review
    if review is not None and review.overdue(today):
        return f"REVIEW OVERDUE (due {review.next_review.isoformat()})"
    if used is not None:
        return f"REVIEW AFTER INCIDENT #{used.incident_id}"
    if review is None:
        return "no review date"
    return f"review due {review.next_review.isoformat()}"
