"""The pure drill scorecard: timeline events in, step outcomes, timings and findings out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.drills.scorecard import (
    DrillFacts,
    ExpectedStep,
    is_complete,
    score,
    step_results,
)
from bot.timeline.events import Event, Kind

T0 = datetime(2026, 5, 6, 10, 0, tzinfo=UTC)
PLAYBOOK = "frenly-ai-dangerous-edit"
CLOSE = ExpectedStep("close-pr", "Close the AI pull request", "github.close_pr")
SCALE = ExpectedStep("scale-to-zero", "Scale Frenly AI to zero", "k8s.scale")
EXPECTED = [CLOSE, SCALE]
DRILL = DrillFacts(
    run_id=7,
    scenario="ai-malfunction",
    scenario_title="Simulate dangerous AI proposals",
    playbook_id=PLAYBOOK,
    started_at=T0,
    timeout_seconds=1800,
)


class Story:
    """A drill incident's timeline, written event by event at given offsets."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.add(0, Kind.OPENED, "cli:ops", title="Frenly AI (drill)")
        self.add(1, Kind.LEVEL_REACHED, "nexus-bot", level=1)

    def add(self, seconds: float, kind: Kind, actor: str, **facts: Any) -> Story:
        at = T0 + timedelta(seconds=seconds)
        self.events.append(Event(1, kind, actor, at, facts, False, len(self.events) + 1))
        return self

    def ack(self, seconds: float, actor: str = "U0CAROL") -> Story:
        return self.add(seconds, Kind.ACKNOWLEDGED, actor, via="slack")

    def request(self, seconds: float, request_id: int, step: ExpectedStep) -> Story:
        return self.add(
            seconds,
            Kind.REMEDIATION_REQUESTED,
            "U0ALICE",
            request_id=request_id,
            step_id=step.step_id,
            title=step.title,
            action=step.action,
        )

    def approve(self, seconds: float, request_id: int, actor: str = "U0BOB") -> Story:
        return self.add(
            seconds, Kind.REMEDIATION_APPROVED, actor, request_id=request_id, requested_by="U0ALICE"
        )

    def done(self, seconds: float, request_id: int) -> Story:
        return self.add(
            seconds,
            Kind.REMEDIATION_DONE,
            "nexus-bot",
            request_id=request_id,
            summary="Rehearsed: would work",
            checks=["dry run accepted by the API server"],
            rehearsal=True,
        )

    def step_works(self, start: float, request_id: int, step: ExpectedStep) -> Story:
        return (
            self.request(start, request_id, step)
            .approve(start + 20, request_id)
            .done(start + 25, request_id)
        )


def card(story: Story, *, timed_out: bool = False, matched: str | None = PLAYBOOK) -> Any:
    return score(
        DRILL,
        story.events,
        EXPECTED,
        finished_at=T0 + timedelta(minutes=30 if timed_out else 5),
        timed_out=timed_out,
        matched_playbook=matched,
    )


def test_every_step_would_work_and_acknowledged_is_complete_and_passed() -> None:
    story = Story().ack(30).step_works(60, 1, CLOSE).step_works(120, 2, SCALE)
    assert is_complete(story.events, EXPECTED)
    result = card(story)
    assert result.passed is True and result.ended == "completed"
    assert result.findings == []
    assert [(s.step_id, s.outcome, s.would_work) for s in result.steps] == [
        ("close-pr", "would_work", True),
        ("scale-to-zero", "would_work", True),
    ]
    assert result.steps[0].checks == ["dry run accepted by the API server"]
    assert result.steps[0].reason == "Rehearsed: would work"
    facts = result.facts()
    assert facts["passed"] is True and facts["steps"][1]["step_id"] == "scale-to-zero"
    assert facts["started_at"] == T0.isoformat()


def test_without_an_acknowledgement_it_is_not_complete_and_fails_at_the_deadline() -> None:
    story = Story().step_works(60, 1, CLOSE).step_works(120, 2, SCALE)
    assert not is_complete(story.events, EXPECTED)
    result = card(story, timed_out=True)
    assert result.passed is False and result.ended == "timed_out"
    assert result.acknowledged_by is None and result.time_to_acknowledge_seconds is None
    assert "Nobody acknowledged the drill within its timeout (30m 00s)" in result.findings


def test_a_failed_rehearsal_would_not_work_with_its_message() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE)
    story.request(120, 2, SCALE).approve(130, 2).add(
        140,
        Kind.REMEDIATION_FAILED,
        "nexus-bot",
        request_id=2,
        outcome="failed",
        message="deployments.apps 'frenly-ai' is forbidden",
    )
    assert is_complete(story.events, EXPECTED)  # every step ended, one badly
    result = card(story)
    scale = result.steps[1]
    assert (scale.outcome, scale.would_work) == ("would_not_work", False)
    assert scale.reason == "deployments.apps 'frenly-ai' is forbidden"
    assert result.passed is False
    assert (
        'Step "Scale Frenly AI to zero" would not have worked: '
        "deployments.apps 'frenly-ai' is forbidden"
    ) in result.findings


def test_a_refused_step_is_refused() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE)
    story.add(
        90,
        Kind.REMEDIATION_REFUSED,
        "U0MALLORY",
        request_id=None,
        step_id="scale-to-zero",
        title=SCALE.title,
        reason="target not allow-listed",
        stage="request",
    )
    assert is_complete(story.events, EXPECTED)
    result = card(story)
    scale = result.steps[1]
    assert scale.outcome == "refused" and scale.would_work is False
    assert scale.reason == "target not allow-listed"
    assert scale.requested_by == "U0MALLORY"
    assert result.passed is False


def test_a_refusal_by_the_bot_does_not_name_the_bot_as_requester() -> None:
    story = (
        Story()
        .ack(10)
        .add(90, Kind.REMEDIATION_REFUSED, "nexus-bot", step_id="close-pr", reason="no token")
    )
    assert step_results(story.events, EXPECTED)[0].requested_by is None


def test_denied_then_requested_again_and_done_counts_the_latest_attempt() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE)
    story.request(100, 2, SCALE).add(
        110, Kind.REMEDIATION_DENIED, "U0BOB", request_id=2, reason="wrong target"
    )
    denied = step_results(story.events, EXPECTED)[1]
    assert denied.outcome == "denied" and "denied by U0BOB: wrong target" in denied.reason
    story.step_works(200, 3, SCALE)
    result = card(story)
    scale = result.steps[1]
    assert (scale.outcome, scale.would_work) == ("would_work", True)
    assert scale.time_to_request_seconds == 200.0  # the second request's time
    assert scale.time_to_approve_seconds == 20.0
    assert result.passed is True and result.findings == []


def test_timings_come_from_the_event_times() -> None:
    story = Story().ack(45).request(90, 1, CLOSE).approve(150, 1).done(155, 1)
    story.step_works(300, 2, SCALE)
    result = card(story)
    assert result.time_to_acknowledge_seconds == 45.0
    assert result.time_to_first_request_seconds == 90.0
    close = result.steps[0]
    assert close.time_to_request_seconds == 90.0
    assert close.time_to_approve_seconds == 60.0
    assert (close.requested_by, close.approved_by) == ("U0ALICE", "U0BOB")
    assert result.acknowledged_by == "U0CAROL"


def test_a_requested_but_unapproved_step_is_not_finished() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE).request(120, 2, SCALE)
    assert not is_complete(story.events, EXPECTED)
    result = card(story, timed_out=True)
    assert result.steps[1].outcome == "requested"
    assert 'Step "Scale Frenly AI to zero" was not finished before the drill ended' in (
        result.findings
    )
    assert result.passed is False


def test_participants_are_people_not_the_bot() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE).step_works(120, 2, SCALE)
    story.add(130, Kind.NOTE_ADDED, "U0DAVE", text="looks fine", via="slack")
    story.add(131, Kind.NOTE_ADDED, "scheduler", text="reminder", via="slack")
    story.add(132, Kind.ROLE_ASSIGNED, "nexus-bot", role="commander", holders=["U0ERIN"])
    result = card(story)
    assert result.participants == ["U0CAROL", "U0ALICE", "U0BOB", "U0DAVE"]
    for bot in ("nexus-bot", "scheduler", "cli:ops", "generic"):
        assert bot not in result.participants


def test_the_alert_matching_another_playbook_is_a_finding() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE).step_works(120, 2, SCALE)
    result = card(story, matched="schema-mismatch")
    assert result.matched_playbook == "schema-mismatch"
    assert any(
        f.startswith(f"The drill's alert matched playbook schema-mismatch, not {PLAYBOOK}")
        for f in result.findings
    ), result.findings
    # No match at all is not reported as a different playbook.
    assert not any("matched playbook" in f for f in card(story, matched=None).findings)


def test_an_escalation_before_the_acknowledgement_is_a_finding() -> None:
    story = Story().add(120, Kind.LEVEL_REACHED, "scheduler", level=2).ack(130)
    story.step_works(200, 1, CLOSE).step_works(300, 2, SCALE)
    result = card(story)
    assert "The drill escalated to level 2 before anyone acknowledged it" in result.findings


def test_no_expected_steps_never_passes() -> None:
    story = Story().ack(10)
    assert is_complete(story.events, [])
    result = score(
        DRILL,
        story.events,
        [],
        finished_at=T0 + timedelta(minutes=1),
        timed_out=False,
        matched_playbook=PLAYBOOK,
        extra_findings=["Scenario ai-malfunction names no runnable step"],
    )
    assert result.steps == [] and result.passed is False
    assert result.findings == ["Scenario ai-malfunction names no runnable step"]


def test_unexpected_steps_and_foreign_requests_are_ignored() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE).step_works(120, 2, SCALE)
    story.request(150, 3, ExpectedStep("revert-ai-commit", "Revert", "git.revert"))
    story.add(160, Kind.REMEDIATION_FAILED, "nexus-bot", request_id=3, message="boom")
    story.add(170, Kind.REMEDIATION_FAILED, "nexus-bot", request_id=99, message="boom")
    result = card(story)
    assert [s.step_id for s in result.steps] == ["close-pr", "scale-to-zero"]
    assert result.passed is True


def test_a_step_whose_verification_would_fail_does_not_pass() -> None:
    story = Story().ack(10).step_works(60, 1, CLOSE)
    story.request(120, 2, SCALE).approve(130, 2).add(
        140,
        Kind.REMEDIATION_DONE,
        "nexus-bot",
        request_id=2,
        summary="Would work (server-side dry run accepted): scale",
        rehearsal=True,
        verify={"title": "Verify integrity", "ok": False, "summary": "CronJob not found"},
    )
    result = card(story)
    scale = result.steps[1]
    assert (scale.outcome, scale.would_work) == ("would_not_work", False)
    assert scale.reason == "its verification (Verify integrity) would fail: CronJob not found"
    assert result.passed is False
