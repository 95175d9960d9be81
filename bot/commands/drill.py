"""`nexus-bot drill list | run SCENARIO|--all [--wait] [--json] | history [--json]`.

`run` starts drills the way a schedule does: runs and synthetic alerts in the
database's inbox, which the running bot applies (a thread, buttons, the
two-person rule; nothing real changes). `--wait` returns when every scorecard
is ready: exit 0 if every step would have worked, 1 if any would not (or the
drill timed out), 2 when it cannot tell (no database, no bot applying the
alerts).
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from bot.commands.database import login_name, migrated_database, say_unavailable
from bot.core import build_core
from bot.domain.playbooks import load_playbooks
from bot.drills.scorecard import format_duration_seconds
from bot.drills.service import DrillService, UnknownScenario
from bot.settings import Settings
from bot.store.models import DrillRun, DrillTick, utcnow

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2
POLL_SECONDS = 1.0
# A running bot applies a drill's alert within a second or two; this long
# without it, nobody is applying the inbox.
APPLY_PATIENCE_SECONDS = 60.0


def run_drill(
    settings: Settings,
    scenario: str | None,
    all_scenarios: bool,
    wait: bool,
    as_json: bool,
) -> int:
    chosen = list(settings.drills.scenarios) if all_scenarios else [scenario or ""]
    try:
        with migrated_database(settings) as engine:
            core = build_core(settings, engine, _playbooks(settings))
            actor = f"cli:{login_name()}"
            try:
                started = core.drills.start(chosen, "cli", actor)
            except UnknownScenario as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_UNAVAILABLE
            core.drills.audit_started(started, "cli", actor)
            if not as_json:
                for run_id, scenario_id in started.runs:
                    print(f"Drill run {run_id} started: {scenario_id} (rehearsal mode)")
            if not wait:
                if as_json:
                    begun = sorted(core.drills.runs(ids=started.run_ids), key=lambda r: r.id)
                    print(json.dumps([_run_json(r) for r in begun]))
                return 0
            runs = _wait(core.drills, started.run_ids)
    except sa.exc.SQLAlchemyError as exc:
        say_unavailable(exc)
        return EXIT_UNAVAILABLE
    if runs is None:
        print(
            "error: no bot applied the drill's alert or scored it in time: is `nexus-bot serve` "
            "running on this database? The drill stays recorded and is scored at its deadline.",
            file=sys.stderr,
        )
        return EXIT_UNAVAILABLE
    if as_json:
        print(json.dumps([_run_json(r) for r in runs], indent=2))
    else:
        for run in runs:
            print()
            print(scorecard_text(run.scorecard or {}))
    return 0 if all(run.passed for run in runs) else EXIT_FAILED


def _wait(drills: DrillService, run_ids: list[int]) -> list[DrillRun] | None:
    """Until every run finished; None when no bot applies them, or scores them in time.

    The running bot finishes drills (its sweep has every output configured, so
    the scorecard reaches the thread); this command only watches.
    """
    began = time.monotonic()
    # The bot scores a drill at its deadline at the latest; then allow a margin.
    patience = drills.settings.drills.timeout.total_seconds() + 120
    while True:
        runs = drills.runs(ids=run_ids)
        if all(run.state == "finished" for run in runs):
            return sorted(runs, key=lambda r: r.id)
        waited = time.monotonic() - began
        unapplied = [r for r in runs if r.incident_id is None]
        # A drill shorter than the patience is scored by then anyway.
        apply_patience = min(APPLY_PATIENCE_SECONDS, drills.settings.drills.timeout.total_seconds())
        if (unapplied and waited > apply_patience) or waited > patience:
            return None
        time.sleep(POLL_SECONDS)


def list_drills(settings: Settings, as_json: bool) -> int:
    now = utcnow()
    try:
        with migrated_database(settings) as engine:
            core = build_core(settings, engine, _playbooks(settings))
            runs = core.drills.runs(limit=500)
    except sa.exc.SQLAlchemyError as exc:
        say_unavailable(exc)
        return EXIT_UNAVAILABLE
    last: dict[str, DrillRun] = {}
    for run in runs:  # newest first
        if run.state == "finished":
            last.setdefault(run.scenario, run)
    drills = settings.drills
    scenarios: list[dict[str, Any]] = []
    for scenario_id, scenario in drills.scenarios.items():
        steps = core.drills.expected_steps(scenario)
        previous = last.get(scenario_id)
        scenarios.append(
            {
                "id": scenario_id,
                "title": scenario.title,
                "playbook": scenario.playbook,
                "steps": [s.step_id for s in steps],
                "last_run": previous.id if previous else None,
                "last_result": _result(previous) if previous else None,
                "last_finished_at": _iso(previous.finished_at) if previous else None,
            }
        )
    schedules = []
    for schedule in drills.schedules:
        upcoming = drills.trigger(schedule).get_next_fire_time(None, now.astimezone(drills.zone()))
        schedules.append(
            {
                "id": schedule.id,
                "cron": schedule.cron,
                "run": schedule.run,
                "timezone": drills.timezone,
                "next_run": upcoming.isoformat() if upcoming and drills.enabled else None,
            }
        )
    if as_json:
        print(json.dumps({"scenarios": scenarios, "schedules": schedules}, indent=2))
        return 0
    print("Scenarios")
    for item in scenarios:
        result = (
            f"{item['last_result']} (run {item['last_run']})" if item["last_run"] else "never run"
        )
        print(f"  {item['id']:<20} {item['title']}")
        print(f"  {'':<20} playbook {item['playbook']}; steps {', '.join(item['steps']) or '-'}")
        print(f"  {'':<20} last: {result}")
    print("Schedules" + ("" if drills.enabled else " (disabled: drills.enabled is false)"))
    for item in schedules:
        print(
            f"  {item['id']:<10} {item['cron']:<24} {item['run']:<10} "
            f"next {item['next_run'] or '-'} ({item['timezone']})"
        )
    return 0


def drill_history(settings: Settings, as_json: bool, limit: int) -> int:
    try:
        with migrated_database(settings) as engine:
            core = build_core(settings, engine, _playbooks(settings))
            runs = core.drills.runs(limit=limit)
            with core.repo.session() as s:
                missed = list(
                    s.scalars(
                        sa.select(DrillTick)
                        .where(DrillTick.outcome == "missed")
                        .order_by(DrillTick.scheduled_for.desc())
                        .limit(limit)
                    )
                )
                s.expunge_all()
    except sa.exc.SQLAlchemyError as exc:
        say_unavailable(exc)
        return EXIT_UNAVAILABLE
    if as_json:
        document = {
            "runs": [_run_json(r) for r in runs],
            "missed": [
                {
                    "schedule": t.schedule_id,
                    "scheduled_for": _iso(t.scheduled_for),
                    "detail": t.detail,
                }
                for t in missed
            ],
        }
        print(json.dumps(document, indent=2))
        return 0
    if not runs and not missed:
        print("No drills yet. Start one: nexus-bot drill run ai-malfunction --wait")
        return 0
    for run in runs:
        incident = f"incident #{run.incident_id}" if run.incident_id else "no incident"
        print(
            f"run {run.id:<5} {run.started_at:%Y-%m-%d %H:%M} {run.scenario:<20} "
            f"{run.trigger:<8} {_result(run):<9} {incident}"
        )
    for tick in missed:
        when = f"{tick.scheduled_for:%Y-%m-%d %H:%M}"
        print(f"missed    {when} schedule {tick.schedule_id}: {tick.detail or ''}")
    return 0


def scorecard_text(card: dict[str, Any]) -> str:
    """The scorecard for a terminal (the README shows one)."""
    verdict = "PASSED" if card.get("passed") else "FAILED"
    lines = [
        f"DRILL scorecard — run {card.get('run_id')}: {card.get('scenario_title')} "
        f"({card.get('scenario')}): {verdict}",
        f"  playbook {card.get('playbook_id')}; ended: {card.get('ended')}",
        f"  time to acknowledge: {_took(card.get('time_to_acknowledge_seconds'))}"
        + (f" by {card['acknowledged_by']}" if card.get("acknowledged_by") else ""),
        f"  time to first request: {_took(card.get('time_to_first_request_seconds'))}",
        "  steps:",
    ]
    for step in card.get("steps") or []:
        mark = "ok  " if step.get("would_work") else "FAIL"
        lines.append(
            f"    [{mark}] {step.get('title')} ({step.get('action')}): {step.get('outcome')}"
        )
        lines.append(
            f"           requested {_took(step.get('time_to_request_seconds'))} after the alert"
            f" by {step.get('requested_by') or '-'}, approved "
            f"{_took(step.get('time_to_approve_seconds'))} later "
            f"by {step.get('approved_by') or '-'}"
        )
        lines.append(f"           {step.get('reason')}")
        for check in step.get("checks") or []:
            lines.append(f"           ✓ {check}")
    participants = ", ".join(card.get("participants") or []) or "nobody"
    lines.append(f"  participants: {participants}")
    findings = card.get("findings") or []
    lines.append("  findings:" if findings else "  findings: none")
    lines += [f"    - {finding}" for finding in findings]
    return "\n".join(lines)


def _took(seconds: Any) -> str:
    return format_duration_seconds(float(seconds)) if isinstance(seconds, int | float) else "-"


def _result(run: DrillRun) -> str:
    if run.state != "finished":
        return "running"
    return "PASSED" if run.passed else "FAILED"


def _run_json(run: DrillRun) -> dict[str, Any]:
    return {
        "run": run.id,
        "scenario": run.scenario,
        "playbook": run.playbook_id,
        "trigger": run.trigger,
        "started_by": run.started_by,
        "batch": run.batch,
        "schedule": run.schedule_id,
        "state": run.state,
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "incident": run.incident_id,
        "passed": run.passed,
        "scorecard": run.scorecard if run.state == "finished" else None,
    }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _playbooks(settings: Settings) -> Any:
    return load_playbooks([settings.nexus_playbooks], settings.allowed_targets)


__all__: Sequence[str] = ["drill_history", "list_drills", "run_drill", "scorecard_text"]
