"""A drill's scorecard, computed from its incident's timeline (pure: no I/O).

What the team learns from a drill: how long until someone acknowledged it,
requested each step and approved it; whether each step *would have worked*
(the rehearsal's dry run, throwaway push or permission check) and why not;
who took part; and the findings (no acknowledgement, a step not run, the
synthetic alert matching another playbook).

A drill is complete when it was acknowledged and each of its steps reached an
end (would work, would not work, refused, denied, expired). It passes when it
completed and every step would have worked.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from bot.timeline.events import Event, Kind

# Outcomes of a step, and which of them end it.
WOULD_WORK = "would_work"
WOULD_NOT_WORK = "would_not_work"
ENDED = frozenset({WOULD_WORK, WOULD_NOT_WORK, "refused", "denied", "expired"})
_BOT_ACTORS = frozenset({"nexus-bot", "scheduler", "generic", "alertmanager", "pagerduty"})


@dataclass(frozen=True)
class ExpectedStep:
    step_id: str
    title: str
    action: str


@dataclass
class StepResult:
    step_id: str
    title: str
    action: str
    outcome: str = "not_run"
    would_work: bool = False
    reason: str = "nobody requested it"
    requested_by: str | None = None
    approved_by: str | None = None
    time_to_request_seconds: float | None = None
    time_to_approve_seconds: float | None = None
    checks: list[str] = field(default_factory=list)


@dataclass
class Scorecard:
    run_id: int
    scenario: str
    scenario_title: str
    playbook_id: str
    matched_playbook: str | None
    started_at: str
    finished_at: str
    ended: str  # "completed" or "timed_out"
    passed: bool
    acknowledged_by: str | None
    time_to_acknowledge_seconds: float | None
    time_to_first_request_seconds: float | None
    steps: list[StepResult]
    participants: list[str]
    findings: list[str]

    def facts(self) -> dict[str, Any]:
        """JSON-able: the drill.finished event's facts and the stored scorecard."""
        return asdict(self)


@dataclass(frozen=True)
class DrillFacts:
    run_id: int
    scenario: str
    scenario_title: str
    playbook_id: str
    started_at: datetime
    timeout_seconds: float


def step_results(events: Sequence[Event], expected: Sequence[ExpectedStep]) -> list[StepResult]:
    """Each expected step's latest attempt, as far as the timeline tells."""
    opened = _opened_at(events)
    by_step = {step.step_id: StepResult(step.step_id, step.title, step.action) for step in expected}
    step_of_request: dict[int, str] = {}
    requested_at: dict[int, datetime] = {}
    for event in events:
        request_id = event.fact("request_id")
        if event.kind == Kind.REMEDIATION_REQUESTED:
            step_id = str(event.fact("step_id") or "")
            result = by_step.get(step_id)
            if result is None or not isinstance(request_id, int):
                continue
            step_of_request[request_id] = step_id
            requested_at[request_id] = event.at
            # A new attempt at the step (after a denial or expiry) starts over.
            by_step[step_id] = StepResult(
                step_id,
                result.title,
                result.action,
                outcome="requested",
                reason="requested, never approved",
                requested_by=event.actor,
                time_to_request_seconds=_seconds(opened, event.at),
            )
            continue
        if event.kind == Kind.REMEDIATION_REFUSED:
            refused = by_step.get(str(event.fact("step_id") or ""))
            if refused is not None:
                refused.outcome = "refused"
                refused.would_work = False
                refused.reason = str(event.fact("reason") or "refused")
                if refused.requested_by is None and event.actor not in _BOT_ACTORS:
                    refused.requested_by = event.actor
            continue
        if not isinstance(request_id, int) or request_id not in step_of_request:
            continue
        result = by_step[step_of_request[request_id]]
        if event.kind == Kind.REMEDIATION_APPROVED:
            result.outcome = "approved"
            result.reason = "approved, no result yet"
            result.approved_by = event.actor
            result.time_to_approve_seconds = _seconds(requested_at.get(request_id), event.at)
        elif event.kind == Kind.REMEDIATION_DONE:
            result.outcome = WOULD_WORK
            result.would_work = True
            result.reason = str(event.fact("summary") or "")
            result.checks = [str(c) for c in event.fact("checks", []) or []]
            verify = event.fact("verify")
            if isinstance(verify, dict) and not verify.get("ok"):
                # The step would run, but its own verification would not pass.
                result.outcome = WOULD_NOT_WORK
                result.would_work = False
                result.reason = f"its verification ({verify.get('title')}) would fail: " + str(
                    verify.get("summary") or ""
                )
        elif event.kind == Kind.REMEDIATION_FAILED:
            result.outcome = WOULD_NOT_WORK
            result.would_work = False
            result.reason = str(event.fact("message") or "failed")
        elif event.kind == Kind.REMEDIATION_DENIED:
            result.outcome = "denied"
            result.reason = f"denied by {event.actor}: {event.fact('reason') or 'no reason'}"
        elif event.kind == Kind.REMEDIATION_EXPIRED:
            result.outcome = "expired"
            result.reason = "nobody approved it in time"
    return [by_step[step.step_id] for step in expected]


def is_complete(events: Sequence[Event], expected: Sequence[ExpectedStep]) -> bool:
    """Acknowledged, and every expected step ended."""
    if _acknowledgement(events) is None:
        return False
    return all(result.outcome in ENDED for result in step_results(events, expected))


def score(
    drill: DrillFacts,
    events: Sequence[Event],
    expected: Sequence[ExpectedStep],
    *,
    finished_at: datetime,
    timed_out: bool,
    matched_playbook: str | None,
    extra_findings: Iterable[str] = (),
) -> Scorecard:
    opened = _opened_at(events)
    steps = step_results(events, expected)
    ack = _acknowledgement(events)
    findings = list(extra_findings)
    if ack is None:
        findings.append(
            "Nobody acknowledged the drill within its timeout "
            f"({format_duration_seconds(drill.timeout_seconds)})"
        )
    if matched_playbook is not None and matched_playbook != drill.playbook_id:
        findings.append(
            f"The drill's alert matched playbook {matched_playbook}, not {drill.playbook_id}: "
            "check the playbook's match rules"
        )
    levels = [int(e.fact("level") or 0) for e in events if e.kind == Kind.LEVEL_REACHED]
    if max(levels, default=1) > 1:
        findings.append(f"The drill escalated to level {max(levels)} before anyone acknowledged it")
    for step in steps:
        if step.outcome == WOULD_WORK:
            continue
        if step.outcome in ENDED:
            findings.append(f'Step "{step.title}" would not have worked: {step.reason}')
        else:
            findings.append(f'Step "{step.title}" was not finished before the drill ended')
    first_request = min(
        (e.at for e in events if e.kind == Kind.REMEDIATION_REQUESTED), default=None
    )
    complete = ack is not None and all(step.outcome in ENDED for step in steps)
    passed = complete and all(step.would_work for step in steps) and bool(steps)
    return Scorecard(
        run_id=drill.run_id,
        scenario=drill.scenario,
        scenario_title=drill.scenario_title,
        playbook_id=drill.playbook_id,
        matched_playbook=matched_playbook,
        started_at=drill.started_at.isoformat(),
        finished_at=finished_at.isoformat(),
        ended="timed_out" if timed_out else "completed",
        passed=passed,
        acknowledged_by=ack.actor if ack else None,
        time_to_acknowledge_seconds=_seconds(opened, ack.at) if ack else None,
        time_to_first_request_seconds=_seconds(opened, first_request),
        steps=steps,
        participants=_participants(events),
        findings=findings,
    )


def format_duration_seconds(seconds: float) -> str:
    """`45s`, `1m 05s`, `2h 03m`: for people reading a scorecard."""
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m {whole % 60:02d}s"
    return f"{whole // 3600}h {whole % 3600 // 60:02d}m"


def _acknowledgement(events: Sequence[Event]) -> Event | None:
    return next((e for e in events if e.kind == Kind.ACKNOWLEDGED), None)


def _opened_at(events: Sequence[Event]) -> datetime | None:
    return next((e.at for e in events if e.kind == Kind.OPENED), None)


def _participants(events: Sequence[Event]) -> list[str]:
    kinds = {
        Kind.ACKNOWLEDGED,
        Kind.REMEDIATION_REQUESTED,
        Kind.REMEDIATION_APPROVED,
        Kind.REMEDIATION_DENIED,
        Kind.NOTE_ADDED,
        Kind.ROLE_ASSIGNED,
    }
    seen: list[str] = []
    for event in events:
        if event.kind in kinds and event.actor not in _BOT_ACTORS and event.actor not in seen:
            seen.append(event.actor)
    return seen


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return round(max(0.0, (end - start).total_seconds()), 1)
