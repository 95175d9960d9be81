"""The pure drill wording: durations, rehearsal results, the scorecard, the timeline mark."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from bot.slack.drill_text import (
    format_seconds,
    rehearsal_done,
    rehearsal_failed,
    scorecard_blocks,
    scorecard_text,
)
from bot.slack.timeline_text import DRILL_LINE, timeline_lines
from bot.timeline.events import Event, Kind
from tests.unit.slack.drill_support import scorecard

AT = datetime(2026, 11, 30, 10, 0, 0, tzinfo=UTC)


def event(kind: str, **facts: Any) -> Event:
    return Event(7, kind, "U0ALICE", AT, facts)


def test_durations_read_like_a_stopwatch() -> None:
    assert format_seconds(65) == "1m 05s"
    assert format_seconds(45.4) == "45s"
    assert format_seconds(0) == "0s"
    assert format_seconds(3723) == "1h 02m"
    assert format_seconds(None) == "—"


def test_a_rehearsal_says_whether_the_step_would_work() -> None:
    done = rehearsal_done(
        event(
            Kind.REMEDIATION_DONE,
            request_id=4,
            title="Scale <x> to zero",
            requested_by="U0ALICE",
            approved_by="U0BOB",
            approved_at="10:01:02",
            summary="ai/frenly-ai: 3 → 0 replicas",
            details=[],
            links=[],
            rehearsal=True,
            checks=["dry run accepted", "RBAC allows <patch>"],
        )
    )
    assert done.startswith("Remediation #4 (Scale &lt;x&gt; to zero) rehearsed.\n")
    assert ":white_check_mark: Would work: ai/frenly-ai: 3 → 0 replicas" in done
    assert "Checked:\n• dry run accepted\n• RBAC allows &lt;patch&gt;" in done
    failed = rehearsal_failed(
        event(Kind.REMEDIATION_FAILED, request_id=5, title="Revert", message="403 <forbidden>")
    )
    assert failed == ":x: Remediation #5 (Revert) rehearsed. Would NOT work: 403 &lt;forbidden&gt;"


def test_the_scorecard_blocks_show_verdict_timings_steps_people_and_findings() -> None:
    blocks = scorecard_blocks(scorecard())
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["text"] == "DRILL scorecard — Frenly AI <dangerous> edit: FAILED"
    timings = " ".join(f["text"] for f in blocks[1]["fields"])
    assert "*Time to acknowledge*\n1m 05s (by <@U0LEAD>)" in timings
    assert "*Time to first request*\n1h 02m" in timings
    assert "`frenly-ai-dangerous-edit` ✅ matched" in timings and "timed out" in timings
    step1, step2 = blocks[2]["text"]["text"], blocks[3]["text"]["text"]
    assert step1.startswith("✅ *1. Scale Frenly AI to zero* (`k8s.scale`) — would work")
    assert "requested by <@U0ALICE> after 1m 30s · approved by <@U0BOB> after 30s" in step1
    assert "• dry run accepted by the API server" in step1
    assert step2.startswith("❌ *2. Revert the commit* (`github.revert`) — not requested")
    assert "nobody requested it before the timeout" in step2
    assert "*Findings*\n• step revert-commit: nobody requested it" in blocks[4]["text"]["text"]
    assert blocks[5]["elements"][0]["text"] == "*Participants*: <@U0ALICE>, <@U0BOB>"
    json.dumps(blocks)  # serialisable as posted


def test_the_scorecard_fallback_text_and_a_pass() -> None:
    text = scorecard_text(scorecard())
    lines = text.split("\n")
    assert lines[0] == "DRILL scorecard — Frenly AI &lt;dangerous&gt; edit: FAILED"
    assert lines[1] == "Time to acknowledge: 1m 05s; to first request: 1h 02m."
    assert "✅ 1. Scale Frenly AI to zero — would work" in lines
    assert (
        "❌ 2. Revert the commit — not requested: nobody requested it before the timeout" in lines
    )
    assert lines[-1] == "Participants: <@U0ALICE>, <@U0BOB>"
    passed = scorecard(passed=True, steps=[], findings=[], matched_playbook="other-playbook")
    blocks = scorecard_blocks(passed)
    assert blocks[0]["text"]["text"].endswith(": PASSED")
    assert "❌ matched `other-playbook` instead" in str(blocks[1])
    unknown = scorecard_blocks(scorecard(matched_playbook=None))
    # Which playbook matched was not recorded: no mark either way.
    assert unknown[1]["fields"][2]["text"] == "*Playbook*\n`frenly-ai-dangerous-edit`"
    assert "_No step was exercised._" in str(blocks)


def test_timeline_marks_a_drill_and_leaves_a_real_incident_alone() -> None:
    real = [
        event(Kind.OPENED, severity="critical", playbook_id="p"),
        event(Kind.REMEDIATION_DONE, request_id=1, approved_by="U0BOB"),
    ]
    assert timeline_lines(real) == [
        "10:00:00 <@U0ALICE> — opened (critical, playbook `p`)",
        "10:00:00 <@U0ALICE> — remediation #1 done (approved by <@U0BOB>)",
    ]
    drill = [
        event(Kind.OPENED, severity="critical", playbook_id="p", drill_run_id=3),
        event(Kind.REMEDIATION_DONE, request_id=1, approved_by="U0BOB", rehearsal=True),
        event(Kind.REMEDIATION_FAILED, request_id=2, outcome="failed", message="no"),
        event(Kind.DRILL_FINISHED, passed=False, scenario_title="Frenly AI edit"),
    ]
    lines = timeline_lines(drill)
    assert lines[0] == DRILL_LINE and "DRILL" in DRILL_LINE
    assert (
        lines[2]
        == "10:00:00 <@U0ALICE> — remediation #1 rehearsed: would work (approved by <@U0BOB>)"
    )
    assert lines[3] == "10:00:00 <@U0ALICE> — remediation #2 rehearsed: would NOT work"
    assert lines[4] == "10:00:00 <@U0ALICE> — drill finished: FAILED (Frenly AI edit)"
    # A caller that knows the incident is a drill says so, whatever the events show.
    assert timeline_lines(real[:1], drill=True)[0] == DRILL_LINE
