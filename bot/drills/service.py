"""Recovery drills through the real path: start, apply the synthetic alert, score, finish.

Starting a drill writes its run and its synthetic alert into the inbox, in one
transaction, exactly as a webhook would (source ``drill``, applied after real
alerts). The inbox worker applies it like any alert: an incident (marked with
the run, keyed by it so it never joins a real incident), its thread, its
playbook with buttons, the two-person rule, the (compressed) ladder. Requests
of a drill incident run rehearsal executors: nothing real changes.

A sweep (every replica, every few seconds) finishes each running drill once,
with a compare-and-set on the run's state: when it was acknowledged and each of
its steps ended, or at its deadline. Finishing stores the scorecard, records
``drill.finished`` (the outputs post and file it) and resolves the incident.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from bot.domain.alerts import Alert, AlertSource
from bot.domain.playbooks import LoadedPlaybooks, PlaybookMatch
from bot.domain.triage import plan_incidents, plan_with_playbook
from bot.drills.config import DrillScenario
from bot.drills.scorecard import DrillFacts, ExpectedStep, Scorecard, is_complete, score
from bot.incidents.service import IncidentService
from bot.settings import Settings
from bot.store.models import DrillRun, InboxBatch, utcnow
from bot.store.repository import Repository
from bot.timeline.events import Kind
from bot.timeline.recorder import Timeline, read_timeline

log = structlog.get_logger("bot.drills")

_INBOX = cast(sa.Table, InboxBatch.__table__)
DRILL_INBOX_PRIORITY = 2  # after PagerDuty (0) and Alertmanager (1): real alerts first
TRIGGERS = ("cli", "slack", "schedule")


class UnknownScenario(ValueError):
    pass


@dataclass(frozen=True)
class Started:
    batch: str
    runs: list[tuple[int, str]]  # (run id, scenario id)

    @property
    def run_ids(self) -> list[int]:
        return [run_id for run_id, _ in self.runs]


class DrillService:
    def __init__(
        self,
        settings: Settings,
        repo: Repository,
        playbooks: LoadedPlaybooks,
        timeline: Timeline,
        incidents: IncidentService,
    ) -> None:
        self.settings = settings
        self.repo = repo
        self.playbooks = playbooks
        self.timeline = timeline
        self.incidents = incidents

    @property
    def scenarios(self) -> dict[str, DrillScenario]:
        return self.settings.drills.scenarios

    def expected_steps(self, scenario: DrillScenario) -> list[ExpectedStep]:
        """The steps a scenario exercises: those it names, else every runnable step."""
        playbook = self.playbooks.get(scenario.playbook)
        if playbook is None:
            return []
        wanted = scenario.steps or [s.id for s in playbook.rollback if s.action is not None]
        steps = []
        for step_id in wanted:
            step = playbook.step(step_id)
            if step is not None and step.action is not None:
                steps.append(ExpectedStep(step.id, step.title, step.action))
        return steps

    # -- start ---------------------------------------------------------------------

    def start(
        self,
        scenarios: Sequence[str],
        trigger: str,
        started_by: str,
        *,
        schedule_id: str | None = None,
        session: Session | None = None,
        now: datetime | None = None,
    ) -> Started:
        """Runs and their synthetic alerts, in the caller's transaction (or a new one)."""
        unknown = [s for s in scenarios if s not in self.scenarios]
        if unknown or not scenarios:
            known = ", ".join(self.scenarios)
            raise UnknownScenario(f"unknown drill scenario {', '.join(unknown)!s}; known: {known}")
        if trigger not in TRIGGERS:
            raise ValueError(f"trigger must be one of {TRIGGERS}")
        if session is None:
            with self.repo.session() as s:
                return self.start(
                    scenarios, trigger, started_by, schedule_id=schedule_id, session=s, now=now
                )
        now = now or utcnow()
        batch = uuid.uuid4().hex[:12]
        runs: list[tuple[int, str]] = []
        for scenario_id in scenarios:
            scenario = self.scenarios[scenario_id]
            run = DrillRun(
                scenario=scenario_id,
                playbook_id=scenario.playbook,
                trigger=trigger,
                started_by=started_by,
                batch=batch,
                schedule_id=schedule_id,
                state="running",
                started_at=now,
                deadline_at=now + self.settings.drills.timeout,
            )
            session.add(run)
            session.flush()
            body = {
                "run": run.id,
                "scenario": scenario_id,
                "started_by": started_by,
                "alert": scenario.alert.model_dump(),
            }
            session.execute(
                sa.insert(_INBOX).values(
                    source="drill",
                    priority=DRILL_INBOX_PRIORITY,
                    body=json.dumps(body),
                    group_key=f"drill:{run.id}",
                    alert_count=1,
                    state="pending",
                    attempts=0,
                    not_before=now,
                    received_at=now,
                )
            )
            runs.append((run.id, scenario_id))
        log.info("drill started", batch=batch, runs=runs, trigger=trigger)
        return Started(batch, runs)

    def audit_started(self, started: Started, trigger: str, started_by: str) -> None:
        """After the start committed: who started which drills (the audit trail)."""
        for run_id, scenario_id in started.runs:
            self.repo.audit(
                started_by,
                "drill.started",
                None,
                {
                    "run": run_id,
                    "scenario": scenario_id,
                    "trigger": trigger,
                    "batch": started.batch,
                },
            )

    # -- apply (the inbox worker's applier for source "drill") ------------------------

    def apply(self, body: str, redelivered: bool = False) -> None:
        data = json.loads(body)
        run_id = int(data["run"])
        scenario_id = str(data["scenario"])
        with self.repo.session() as s:
            run = s.get(DrillRun, run_id, with_for_update=True)
            if run is None or run.incident_id is not None or run.state != "running":
                return  # applied before (a redelivery), or finished without its alert
            alert = self._alert(run_id, data["alert"])
            plans = plan_incidents([alert], self.playbooks.playbooks, self.settings)
            matched = plans[0].playbook.id if plans else None
            playbook = self.playbooks.get(run.playbook_id)
            if playbook is None:
                raise LookupError(f"drill playbook {run.playbook_id!r} is not loaded")
            plan = (
                plans[0]
                if matched == run.playbook_id
                else plan_with_playbook(
                    [alert], PlaybookMatch(playbook, f"drill scenario {scenario_id}"), self.settings
                )
            )
            plan = replace(plan, key=f"drill/{run_id}")
            number = self.incidents.open_drill(
                s, plan, run_id, scenario_id, str(data.get("started_by") or "nexus-bot")
            )
            run.incident_id = number
            # Kept for the scorecard: did the synthetic alert reach the right playbook?
            run.scorecard = {"matched_playbook": matched}

    @staticmethod
    def _alert(run_id: int, raw: dict[str, Any]) -> Alert:
        labels = {str(k): str(v) for k, v in (raw.get("labels") or {}).items()}
        labels["drill"] = "true"
        return Alert(
            source=AlertSource.GENERIC,
            fingerprint=f"drill-{run_id}",
            title=str(raw.get("title") or "Recovery drill"),
            labels=labels,
            annotations={str(k): str(v) for k, v in (raw.get("annotations") or {}).items()},
            group_key=f"drill-{run_id}",
            starts_at=utcnow(),
        )

    # -- finish ------------------------------------------------------------------------

    def sweep(self, now: datetime | None = None) -> int:
        """Finish every drill that is complete or past its deadline; returns how many."""
        now = now or utcnow()
        with self.repo.session() as s:
            running = list(s.scalars(sa.select(DrillRun).where(DrillRun.state == "running")))
            s.expunge_all()
        finished = 0
        for run in running:
            if self._finish_if_due(run, now):
                finished += 1
        return finished

    def _finish_if_due(self, run: DrillRun, now: datetime) -> bool:
        scenario = self.scenarios.get(run.scenario)
        expected = self.expected_steps(scenario) if scenario else []
        timed_out = now >= run.deadline_at
        with self.repo.session() as s:
            events = read_timeline(s, run.incident_id) if run.incident_id is not None else []
            if not timed_out and not (events and is_complete(events, expected)):
                return False
            card = self._score(run, scenario, events, expected, now, timed_out)
            facts = card.facts()
            moved = s.execute(  # type: ignore[attr-defined]
                sa.update(DrillRun)
                .where(DrillRun.id == run.id, DrillRun.state == "running")
                .values(state="finished", finished_at=now, passed=card.passed, scorecard=facts)
            ).rowcount
            if moved != 1:
                return False  # another replica finished it
            if run.incident_id is not None:
                self.timeline.record(s, run.incident_id, Kind.DRILL_FINISHED, "nexus-bot", **facts)
                self.incidents.resolve_in(s, run.incident_id, "nexus-bot", reason="drill")
        # The audit chain takes its own transaction (it retries on a racing append).
        self.repo.audit(
            "nexus-bot",
            "drill.finished",
            run.incident_id,
            {"run": run.id, "scenario": run.scenario, "passed": card.passed, "ended": card.ended},
        )
        log.info("drill finished", run=run.id, passed=card.passed, ended=card.ended)
        return True

    def _score(
        self,
        run: DrillRun,
        scenario: DrillScenario | None,
        events: list[Any],
        expected: list[ExpectedStep],
        now: datetime,
        timed_out: bool,
    ) -> Scorecard:
        extra = []
        if run.incident_id is None:
            extra.append("The drill's alert was never applied: was the bot running?")
        if not expected:
            extra.append(f"Scenario {run.scenario} names no runnable step of {run.playbook_id}")
        matched = (run.scorecard or {}).get("matched_playbook")
        drill = DrillFacts(
            run_id=run.id,
            scenario=run.scenario,
            scenario_title=scenario.title if scenario else run.scenario,
            playbook_id=run.playbook_id,
            started_at=run.started_at,
            timeout_seconds=self.settings.drills.timeout.total_seconds(),
        )
        return score(
            drill,
            events,
            expected,
            finished_at=now,
            timed_out=timed_out,
            matched_playbook=matched if isinstance(matched, str) else None,
            extra_findings=extra,
        )

    # -- reading -------------------------------------------------------------------------

    def runs(
        self,
        *,
        ids: Sequence[int] | None = None,
        limit: int = 50,
    ) -> list[DrillRun]:
        with self.repo.session() as s:
            query = sa.select(DrillRun).order_by(DrillRun.id.desc())
            if ids is not None:
                query = query.where(DrillRun.id.in_(list(ids)))
            else:
                query = query.limit(limit)
            rows = list(s.scalars(query))
            s.expunge_all()
        return rows
