"""The playbook `review:` block: owner, dates, cadence, and when a review is overdue."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from bot.domain.playbook_review import PlaybookReview, review_today
from bot.domain.playbooks import LoadedPlaybooks, Playbook

TODAY = date(2026, 11, 30)


def review(**data: Any) -> PlaybookReview:
    block = {"owner": "S0PLATFORMLEADS", "last_reviewed": "2026-06-03", **data}
    return PlaybookReview.model_validate(block, context={"today": TODAY})


def error_of(**data: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        review(**data)
    return str(caught.value)


def test_defaults_to_every_90_days() -> None:
    r = review()
    assert r.every == timedelta(days=90)
    assert r.next_review == date(2026, 9, 1)


@pytest.mark.parametrize(
    ("every", "days"), [("7d", 7), ("90d", 90), ("2160h", 90), ("730d", 730), ("30d", 30)]
)
def test_every_accepts_whole_days(every: str, days: int) -> None:
    assert review(every=every).every == timedelta(days=days)


@pytest.mark.parametrize(
    ("every", "message"),
    [
        ("6d", "expected between 7d and 730d, got '6d'"),
        ("731d", "expected between 7d and 730d, got '731d'"),
        ("36h", "expected a whole number of days like 90d, got '36h'"),
        ("quarterly", "expected a duration in days like 90d, got 'quarterly'"),
        (90, "expected a duration in days like 90d, got 90"),
    ],
)
def test_every_out_of_range_or_not_days(every: Any, message: str) -> None:
    assert message in error_of(every=every)


@pytest.mark.parametrize("owner", ["U0ALICE", "W0ENTERPRISE", "S0PLATFORMLEADS"])
def test_owner_is_a_slack_user_or_group(owner: str) -> None:
    assert review(owner=owner).owner == owner


@pytest.mark.parametrize("owner", ["alice", "@platform-leads", "s0lower", "C0CHANNEL", "U"])
def test_owner_that_is_not_a_slack_id(owner: str) -> None:
    assert "expected a Slack user (U…, W…) or user-group (S…) ID" in error_of(owner=owner)


def test_yaml_dates_and_iso_text_are_the_same() -> None:
    assert review(last_reviewed=date(2026, 6, 3)) == review(last_reviewed="2026-06-03")


@pytest.mark.parametrize("value", ["03/06/2026", "2026-6-3", "2026-02-30", 20260603, "yesterday"])
def test_last_reviewed_must_be_a_calendar_date(value: Any) -> None:
    assert "expected a date as YYYY-MM-DD" in error_of(last_reviewed=value)


def test_last_reviewed_in_the_future_is_refused() -> None:
    assert "2026-12-25 is in the future (today is 2026-11-30)" in error_of(
        last_reviewed="2026-12-25"
    )


def test_tomorrow_is_tolerated_for_time_zones() -> None:
    assert review(last_reviewed="2026-12-01").last_reviewed == date(2026, 12, 1)


def test_unknown_and_missing_keys() -> None:
    assert "extra" in error_of(next_review="2026-09-01").lower()
    with pytest.raises(ValidationError, match="owner"):
        PlaybookReview.model_validate({"last_reviewed": "2026-06-03"})


def test_overdue_boundaries() -> None:
    r = review()  # due 2026-09-01
    assert not r.overdue(date(2026, 8, 31))
    assert not r.overdue(date(2026, 9, 1)), "due on the day, not yet late"
    assert r.overdue(date(2026, 9, 2))
    assert [r.days_overdue(date(2026, 9, d)) for d in (1, 2, 3)] == [0, 1, 2]
    assert r.days_overdue(date(2026, 1, 1)) == 0
    assert r.days_overdue(TODAY) == 90


def test_describe_overdue() -> None:
    assert review().describe_overdue(TODAY) == (
        "review overdue since 2026-09-01, 90 days "
        "(last reviewed 2026-06-03, every 90d; owner S0PLATFORMLEADS)"
    )
    assert "2026-09-02" not in review().describe_overdue(date(2026, 9, 2))
    assert ", 1 day (" in review().describe_overdue(date(2026, 9, 2))


def test_today_comes_from_the_clock_or_nexus_today() -> None:
    assert review_today({}) == date.today()
    assert review_today({"NEXUS_TODAY": ""}) == date.today()
    assert review_today({"NEXUS_TODAY": "2027-01-30"}) == date(2027, 1, 30)
    with pytest.raises(ValueError, match="NEXUS_TODAY: expected a date as YYYY-MM-DD"):
        review_today({"NEXUS_TODAY": "tomorrow"})


def test_the_playbook_model_carries_an_optional_review() -> None:
    base: dict[str, Any] = {
        "id": "reviewed",
        "title": "Reviewed",
        "risk_level": "LOW",
        "probability": "Low",
        "impact": "Low",
        "description": "A playbook.",
    }
    assert Playbook.model_validate(base).review is None
    playbook = Playbook.model_validate(
        {**base, "review": {"owner": "U0ALICE", "last_reviewed": "2026-11-01", "every": "30d"}}
    )
    assert playbook.review is not None
    assert playbook.review.next_review == date(2026, 12, 1)


def test_shipped_playbooks_name_an_owner_and_are_not_overdue_on_2026_11_30(
    shipped: LoadedPlaybooks,
) -> None:
    for playbook in shipped.playbooks:
        assert playbook.review is not None, playbook.id
        assert playbook.review.every == timedelta(days=90)
        assert not playbook.review.overdue(TODAY), playbook.id
