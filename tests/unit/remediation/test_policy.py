"""The two-person rule as a pure decision."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.remediation.policy import HOW_TO_CONFIGURE, expand_approvers, judge_approval

NOW = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)
LATER = NOW + timedelta(minutes=15)


def judge(approver: str = "U0BOB", **overrides: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {
        "approver": approver,
        "requested_by": "U0ALICE",
        "state": "pending",
        "expires_at": LATER,
        "now": NOW,
        "allowed_users": {"U0ALICE", "U0BOB"},
        "configured": True,
    }
    args.update(overrides)
    return judge_approval(**args)  # type: ignore[arg-type]


def test_a_second_allowed_person_may_approve() -> None:
    verdict = judge()
    assert verdict.allowed and verdict.decision == "approve"


def test_the_requester_may_not_approve_even_if_listed() -> None:
    verdict = judge("U0ALICE")
    assert not verdict.allowed
    assert verdict.decision == "refused_self"
    assert "second, different person" in verdict.message


def test_someone_not_listed_is_refused() -> None:
    verdict = judge("U0MALLORY")
    assert not verdict.allowed and verdict.decision == "refused_not_allowed"


def test_nothing_configured_means_nobody_and_says_how() -> None:
    verdict = judge(configured=False, allowed_users=set())
    assert not verdict.allowed
    assert verdict.message == HOW_TO_CONFIGURE
    assert "NEXUS_APPROVERS" in verdict.message


@pytest.mark.parametrize("state", ["approved", "executing", "succeeded", "denied", "expired"])
def test_only_pending_requests_can_be_approved(state: str) -> None:
    verdict = judge(state=state)
    assert not verdict.allowed and state in verdict.message


def test_expiry_boundary() -> None:
    assert not judge(now=LATER).allowed
    assert judge(now=LATER - timedelta(microseconds=1)).allowed


def test_groups_expand_to_their_members() -> None:
    users = expand_approvers(["U0ALICE", "S0LEADS", "S0EMPTY"], {"S0LEADS": {"U0BOB", "U0CAROL"}})
    assert users == {"U0ALICE", "U0BOB", "U0CAROL"}


@given(st.text(min_size=1, max_size=12), st.sets(st.text(min_size=1, max_size=12), max_size=5))
def test_self_approval_is_never_allowed(user: str, allowed: set[str]) -> None:
    verdict = judge(approver=user, requested_by=user, allowed_users=allowed | {user})
    assert not verdict.allowed
