"""Helpers for the drill tests: a drill.finished scorecard's facts."""

from __future__ import annotations

from typing import Any


def scorecard(**overrides: Any) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "run_id": 3,
        "scenario": "frenly-ai-edit",
        "scenario_title": "Frenly AI <dangerous> edit",
        "playbook_id": "frenly-ai-dangerous-edit",
        "matched_playbook": "frenly-ai-dangerous-edit",
        "passed": False,
        "ended": "timed_out",
        "time_to_acknowledge_seconds": 65,
        "acknowledged_by": "U0LEAD",
        "time_to_first_request_seconds": 3723,
        "steps": [
            {
                "step_id": "scale-to-zero",
                "title": "Scale Frenly AI to zero",
                "action": "k8s.scale",
                "outcome": "would_work",
                "would_work": True,
                "reason": "",
                "requested_by": "U0ALICE",
                "approved_by": "U0BOB",
                "time_to_request_seconds": 90,
                "time_to_approve_seconds": 30,
                "checks": ["dry run accepted by the API server"],
            },
            {
                "step_id": "revert-commit",
                "title": "Revert the commit",
                "action": "github.revert",
                "outcome": "not_requested",
                "would_work": False,
                "reason": "nobody requested it before the timeout",
                "requested_by": None,
                "approved_by": None,
                "time_to_request_seconds": None,
                "time_to_approve_seconds": None,
                "checks": [],
            },
        ],
        "participants": ["U0ALICE", "U0BOB"],
        "findings": ["step revert-commit: nobody requested it within the timeout"],
    }
    facts.update(overrides)
    return facts
