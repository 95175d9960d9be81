"""The card a drill's approval turns into says it was rehearsed, never that it was done."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bot.remediation.flow import Decided
from bot.slack.cards import card_for, outcome_lines
from bot.slack.drill_text import rehearsal_done, rehearsal_failed
from bot.timeline.events import Event, Kind


def _decided(outcome: str, **kw: object) -> Decided:
    return Decided(7, "Scale Frenly AI to zero", outcome, "U0ALICE", "U0BOB", at="10:00:00", **kw)  # type: ignore[arg-type]


def test_a_rehearsed_step_that_would_work() -> None:
    summary = "Would work (server-side dry run accepted): scale ai/frenly-ai from 3 to 0"
    lines = outcome_lines(_decided("done", summary=summary, rehearsal=True))
    assert lines[0].startswith("DRILL (rehearsal — nothing real changed)")
    assert lines[1] == summary  # not "Would work: Would work …"
    assert ":white_check_mark:" not in json.dumps(card_for(_decided("done", rehearsal=True)))


def test_a_rehearsed_step_that_would_not_work() -> None:
    lines = outcome_lines(_decided("failed", reason="RBAC refused the patch", rehearsal=True))
    assert lines[-1] == "Would NOT work: RBAC refused the patch"


def test_a_real_step_is_unchanged() -> None:
    lines = outcome_lines(_decided("done", summary="Scaled ai/frenly-ai from 3 to 0"))
    assert lines[1] == ":white_check_mark: Scaled ai/frenly-ai from 3 to 0"
    assert "DRILL" not in " ".join(lines)


def _event(kind: Kind, **facts: object) -> Event:
    return Event(1, kind, "U0BOB", datetime(2026, 11, 30, tzinfo=UTC), dict(facts), False, 1)


def test_thread_replies_say_the_verdict_once() -> None:
    done = rehearsal_done(
        _event(Kind.REMEDIATION_DONE, summary="Would work (dry run): scale", request_id=1)
    )
    assert "Would work: Would work" not in done and "Would work (dry run): scale" in done
    plain = rehearsal_done(_event(Kind.REMEDIATION_DONE, summary="scale", request_id=1))
    assert "Would work: scale" in plain
    failed = rehearsal_failed(
        _event(Kind.REMEDIATION_FAILED, message="Would not have worked: 403", request_id=1)
    )
    assert "Would NOT work: Would not" not in failed and "Would not have worked: 403" in failed
