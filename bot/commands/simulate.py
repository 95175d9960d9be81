"""`nexus-bot simulate FILE`: what the bot would do with a payload, with no network.

Shows severity and why, routes, the matched playbook and why, the buttons,
the escalation schedule and the Block Kit JSON the bot would post.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from bot.domain.alerts import PayloadError, parse_alerts
from bot.domain.playbooks import load_playbooks
from bot.domain.triage import IncidentPlan, plan_incidents
from bot.settings import Settings
from bot.slack.blocks import IncidentView, playbook_blocks, root_blocks, to_json

MAX_PAYLOAD_BYTES = 10 * 1024 * 1024


def run_simulate(settings: Settings, file: str, source: str | None, as_json: bool) -> int:
    try:
        raw = _read(file)
    except OSError as exc:
        return _fail(f"{file}: cannot read: {exc.strerror or exc}")
    if len(raw) > MAX_PAYLOAD_BYTES:
        return _fail(f"{file}: more than the {MAX_PAYLOAD_BYTES} bytes accepted")
    try:
        body = json.loads(raw)
    except UnicodeDecodeError:
        return _fail(f"{file}: not UTF-8 text")
    except json.JSONDecodeError as exc:
        return _fail(f"{file}:{exc.lineno}:{exc.colno}: not valid JSON: {exc.msg}")
    except RecursionError:
        return _fail(f"{file}: JSON nested too deeply")
    try:
        alerts = parse_alerts(body, source)
    except PayloadError as exc:
        return _fail(f"{file}: {exc}")
    loaded = load_playbooks([settings.nexus_playbooks], settings.allowed_targets)
    if loaded.problems:
        for problem in loaded.problems:
            print(problem, file=sys.stderr)
        return _fail("playbooks are invalid: run `nexus-bot validate`")
    plans = plan_incidents(alerts, loaded.playbooks, settings)
    if as_json:
        print(json.dumps([plan_as_dict(plan) for plan in plans], indent=2))
    else:
        for plan in plans:
            print(describe_plan(plan))
    return 0


def _read(file: str) -> bytes:
    if file == "-":
        return sys.stdin.buffer.read(MAX_PAYLOAD_BYTES + 1)
    with open(file, "rb") as handle:
        return handle.read(MAX_PAYLOAD_BYTES + 1)


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _view(plan: IncidentPlan) -> IncidentView:
    first_level = plan.ladder[0].role if plan.ladder else None
    return IncidentView(
        title=plan.title,
        severity=plan.severity.value,
        status="triggered",
        playbook_id=plan.playbook.id,
        playbook_title=plan.playbook.title,
        escalation_role=first_level,
        service=plan.service,
        pagerduty_url=next((a.url for a in plan.alerts if a.pagerduty_incident_id), None),
        firing=plan.firing,
        resolved=plan.resolved,
    )


def plan_as_dict(plan: IncidentPlan) -> dict[str, Any]:
    return {
        "key": plan.key,
        "title": plan.title,
        "severity": plan.severity.value,
        "severity_reason": plan.severity_reason,
        "routes": [route.value for route in plan.routes],
        "playbook": plan.playbook.id,
        "playbook_reason": plan.match.explanation,
        "procedure": plan.playbook.procedure_kind.value,
        "alerts": {"total": len(plan.alerts), "firing": plan.firing, "resolved": plan.resolved},
        "buttons": [
            {
                "step": step.step.id,
                "action": step.step.action,
                "params": step.params,
                "does": step.description,
                "ask_for": list(step.missing),
                "invalid": list(step.invalid),
                "refused": step.refusal,
            }
            for step in plan.steps
            if step.step.action is not None
        ],
        "manual": [
            {
                "step": step.step.id,
                "command": step.command,
                "fill_in": list(step.missing),
                "why_manual": step.step.note,  # None: the playbook does not say
            }
            for step in plan.steps
            if step.command is not None
        ],
        "escalation": [
            {
                "level": level.level,
                "role": level.role,
                "after_seconds": int(level.starts_after.total_seconds()),
                "slack": list(level.slack),
                "email": list(level.email),
                "pagerduty_level": level.pagerduty_level,
            }
            for level in plan.ladder
        ],
        "blocks": {
            "root": to_json(root_blocks(_view(plan))),
            "thread": to_json(playbook_blocks(plan.playbook, plan.steps)),
        },
    }


def describe_plan(plan: IncidentPlan) -> str:
    lines = [
        f"Incident: {plan.title}",
        f"  key:        {plan.key}",
        f"  alerts:     {len(plan.alerts)} ({plan.firing} firing, {plan.resolved} resolved)",
        f"  severity:   {plan.severity.value} ({plan.severity_reason})",
        f"  routes:     {', '.join(r.value for r in plan.routes)}",
        f"  playbook:   {plan.playbook.id} ({plan.match.explanation})",
        f"  procedure:  {plan.playbook.procedure_steps.title}",
        "  buttons:",
    ]
    for step in plan.steps:
        if step.step.action is None:
            continue
        if step.refusal:
            state = f"REFUSED: {step.refusal}"
        elif step.missing:
            state = f"will ask for {', '.join(step.missing)}"
        elif step.invalid:
            state = f"will ask, invalid: {'; '.join(step.invalid)}"
        else:
            state = step.description or ""
        lines.append(f"    [{step.step.id}] {step.step.action}: {state}")
    manual = [s for s in plan.steps if s.command is not None]
    if manual:
        lines.append("  manual commands:")
        for step in manual:
            lines.append(f"    [{step.step.id}] {step.command}")
            # Every step a human must run says why the bot does not (issue: no silent gaps).
            lines.append(f"      why manual: {step.step.note or 'no reason given in the playbook'}")
    lines.append("  escalation:")
    if not plan.ladder:
        lines.append("    none (info incidents do not escalate)")
    for level in plan.ladder:
        lines.append(f"    {level.label}: {level.when}")
    blocks = {
        "root": to_json(root_blocks(_view(plan))),
        "thread": to_json(playbook_blocks(plan.playbook, plan.steps)),
    }
    lines.append("  Block Kit:")
    lines += ["    " + line for line in json.dumps(blocks, indent=2).splitlines()]
    return "\n".join(lines) + "\n"
