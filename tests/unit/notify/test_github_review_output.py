"""Review issues: events → outbox rows (real databases), rows → the fake GitHub (real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from bot.actions.github import GitHubConnector
from bot.domain.playbooks import LoadedPlaybooks
from bot.notify.github_review_output import (
    MAX_BODY,
    GitHubReviewDelivery,
    GitHubReviewOutput,
    enqueue_review_check,
    fit_body,
    is_review_of,
)
from bot.reviews.config import ReviewConfig
from bot.reviews.draft import marker
from bot.settings import Settings
from bot.store.models import Incident, OutboxMessage, utcnow
from bot.timeline.events import Kind
from bot.timeline.queue import Failed, Retry, Sent
from bot.timeline.recorder import Timeline
from tests.fakes.github import DEFAULT_TOKEN, FakeGitHub

REPO = "nexus/incident-reviews"
REVIEW = ReviewConfig(repo=REPO, github_logins={"U0ALICE": "alice-gh"})
LABELS = ["post-incident-review", "severity/critical", "playbook/ssot-sync"]


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as fake:
        fake.add_repo(REPO)
        fake.add_assignable(REPO, "alice-gh")
        yield fake


@pytest.fixture
def delivery(github: FakeGitHub) -> GitHubReviewDelivery:
    return GitHubReviewDelivery(GitHubConnector(github.url, token=github.token, timeout=5))


def _timeline(*, token: bool = True, review: ReviewConfig = REVIEW) -> Timeline:
    settings = Settings(
        github_token=DEFAULT_TOKEN if token else None, github_api_url="http://127.0.0.1:9"
    )
    return Timeline([GitHubReviewOutput(settings, LoadedPlaybooks(), review)])


def _resolve(engine: sa.Engine, timeline: Timeline, *, severity: str = "critical") -> int:
    """A new incident resolved in one committed transaction; its id."""
    now = utcnow()
    with Session(engine) as session, session.begin():
        incident = Incident(
            key=f"alertmanager:ssot-sync:{severity}:{now.timestamp()}",
            source="alertmanager",
            title="SSOT sync failure",
            severity=severity,
            status="resolved",
            playbook_id="ssot-sync",
            escalation_level=1,
            created_at=now,
            updated_at=now,
            resolved_at=now,
            labels={"service": "ssot", "alertname": "SSOTSyncFailing"},
            roles={"commander": ["U0ALICE", "U0BOB"]},
            slack_channel="C0INCIDENT",
            slack_root_ts="1767225600.000100",
        )
        session.add(incident)
        session.flush()
        timeline.record(session, incident.id, Kind.RESOLVED, "U0ALICE", reason="fixed", via="slack")
        return incident.id


def _request(engine: sa.Engine, timeline: Timeline, number: int) -> None:
    with Session(engine) as session, session.begin():
        timeline.record(session, number, Kind.REVIEW_REQUESTED, "U0BOB", requested_by="U0BOB")


def _rows(engine: sa.Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.scalars(sa.select(OutboxMessage).order_by(OutboxMessage.id)))


def _settle(engine: sa.Engine) -> None:
    """What the queue does to a sent row: it is no longer pending."""
    with Session(engine) as session, session.begin():
        session.execute(sa.update(OutboxMessage).values(state="sent"))


# -- events → rows -----------------------------------------------------------------


def test_resolved_critical_incident_enqueues_its_review(engine: sa.Engine) -> None:
    number = _resolve(engine, _timeline())

    [row] = _rows(engine)
    assert (row.output, row.channel, row.method) == ("github_review", REPO, "review.publish")
    assert (row.incident_id, row.coalesce_key) == (number, f"review:{number}")
    payload = row.payload
    assert payload["title"] == f"Post-incident review: #{number} SSOT sync failure"
    assert payload["labels"] == LABELS
    assert payload["assignee"] == "alice-gh"  # the first commander's login
    assert (payload["repo"], payload["incident"]) == (REPO, number)
    body = payload["body"]
    assert body.startswith(f"# Post-incident review: #{number} SSOT sync failure")
    assert "https://slack.com/archives/C0INCIDENT/p1767225600000100" in body
    assert is_review_of(body, number)


def test_warning_is_reviewed_info_and_unconfigured_are_not(engine: sa.Engine) -> None:
    warning = _resolve(engine, _timeline(), severity="warning")
    [row] = _rows(engine)
    assert row.incident_id == warning
    assert row.payload["labels"][1] == "severity/warning"
    assert row.payload["assignee"] == "alice-gh"

    _resolve(engine, _timeline(), severity="info")
    _resolve(engine, _timeline(token=False))
    _resolve(engine, _timeline(review=ReviewConfig()))
    assert len(_rows(engine)) == 1


def test_unmapped_commander_leaves_the_review_unassigned(engine: sa.Engine) -> None:
    _resolve(engine, _timeline(review=ReviewConfig(repo=REPO)))

    [row] = _rows(engine)
    assert row.payload["assignee"] is None


def test_a_doubled_request_coalesces_while_one_is_pending(engine: sa.Engine) -> None:
    timeline = _timeline()
    number = _resolve(engine, timeline, severity="info")
    assert _rows(engine) == []

    _request(engine, timeline, number)  # on demand: any severity
    _request(engine, timeline, number)
    assert len(_rows(engine)) == 1

    _settle(engine)
    _request(engine, timeline, number)  # asked again later: published again (found)
    assert [r.state for r in _rows(engine)] == ["sent", "pending"]


def test_a_long_review_is_cut_and_keeps_its_marker() -> None:
    body = "\n".join(f"- line {i} " + "x" * 80 for i in range(2000)) + "\n\n" + marker(7) + "\n"

    cut = fit_body(body, 7)

    assert len(cut) <= MAX_BODY
    assert "`nexus-bot review 7` prints it whole" in cut
    assert is_review_of(cut, 7)
    assert fit_body("short\n\n" + marker(7), 7) == "short\n\n" + marker(7)


def test_only_the_last_line_marks_a_review() -> None:
    assert is_review_of(f"text\r\n{marker(7)}\r\n", 7)
    assert not is_review_of(f"text\n{marker(17)}\n", 7)
    assert not is_review_of(f"{marker(7)}\nquoted above, then more text\n", 7)
    assert not is_review_of(None, 7)


# -- rows → GitHub -----------------------------------------------------------------


def _publish_row(engine: sa.Engine) -> tuple[int, dict[str, Any]]:
    number = _resolve(engine, _timeline())
    [row] = _rows(engine)
    return number, dict(row.payload)


def _linked(github: FakeGitHub, issue: int) -> Sent:
    url = f"{github.url}/{REPO}/issues/{issue}"
    return Sent(report={"kind": "review.linked", "url": url, "number": issue})


def test_publish_files_one_issue_and_a_second_publish_finds_it(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    github.add_issue(REPO, "An older review", body=f"old\n\n{marker(999)}\n", labels=[])
    number, payload = _publish_row(engine)

    assert delivery.send("review.publish", payload) == _linked(github, 2)

    _, issue = github.issues(REPO)
    assert issue.title == f"Post-incident review: #{number} SSOT sync failure"
    assert issue.labels == LABELS
    assert github.labels(REPO) == LABELS  # created: the repository had none
    assert issue.assignees == ["alice-gh"]
    assert issue.body == payload["body"]
    assert issue.body.rstrip().endswith(marker(number))

    before = len(github.calls())
    assert delivery.send("review.publish", payload) == _linked(github, 2)
    assert [c.method for c in github.calls()[before:]] == ["GET"]  # the listing, no write
    assert len(github.issues(REPO)) == 2


def test_a_lost_create_answer_is_found_on_retry(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    _, payload = _publish_row(engine)
    github.fail_next(1, 500, method="POST", path="/issues", apply=True)

    first = delivery.send("review.publish", payload)
    assert isinstance(first, Retry)
    assert "answered 500" in first.error
    assert len(github.issues(REPO)) == 1  # filed, though the answer said otherwise

    assert delivery.send("review.publish", payload) == _linked(github, 1)
    assert len(github.issues(REPO)) == 1
    assert len([c for c in github.calls("POST") if c.path.endswith("/issues")]) == 1


def test_a_dropped_connection_after_the_create_is_found_on_retry(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    _, payload = _publish_row(engine)
    github.fail_next(1, method="POST", path="/issues", apply=True, close=True)

    first = delivery.send("review.publish", payload)
    assert isinstance(first, Retry)
    assert "unreachable" in first.error

    assert delivery.send("review.publish", payload) == _linked(github, 1)
    assert len(github.issues(REPO)) == 1


def test_the_review_is_found_past_the_first_page(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    number, payload = _publish_row(engine)
    ours = github.add_issue(REPO, "ours", body=f"x\n{marker(number)}", labels=[LABELS[0]])
    for i in range(35):  # newer reviews of other incidents: GitHub pages by 30
        github.add_issue(REPO, f"other {i}", body=f"x\n{marker(1000 + i)}", labels=[LABELS[0]])

    assert delivery.send("review.publish", payload) == _linked(github, ours.number)
    listings = [c for c in github.calls("GET") if c.path.endswith("/issues")]
    assert [c.query.get("page") for c in listings] == [None, "2"]
    assert listings[0].query["labels"] == "post-incident-review"
    assert listings[0].query["state"] == "all"


def test_an_unassignable_commander_files_the_review_unassigned(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    github.add_label(REPO, LABELS[0])
    _, payload = _publish_row(engine)
    payload["assignee"] = "mallory-gh"

    assert delivery.send("review.publish", payload) == _linked(github, 1)
    assert github.issue(REPO, 1).assignees == []
    assert github.labels(REPO) == LABELS


@pytest.mark.parametrize("secondary", [False, True], ids=["primary", "secondary"])
def test_rate_limited_is_retried_after_what_github_asked(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery, secondary: bool
) -> None:
    _, payload = _publish_row(engine)
    github.rate_limit_next(reset_in=40, secondary=secondary)

    result = delivery.send("review.publish", payload)

    assert isinstance(result, Retry)
    assert result.after is not None
    assert 35 <= result.after <= 40
    assert "answered 403" in result.error
    assert github.issues(REPO) == []


def test_a_403_with_no_requests_left_is_a_rate_limit(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    _, payload = _publish_row(engine)
    github.fail_next(1, 403, message="Forbidden", headers={"x-ratelimit-remaining": "0"})

    result = delivery.send("review.publish", payload)

    assert isinstance(result, Retry)
    assert result.after == 60.0  # no reset given: GitHub's advice, a minute


def test_server_errors_are_retried_with_backoff(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    _, payload = _publish_row(engine)
    github.fail_next(1, 502, method="GET", path="/issues")

    result = delivery.send("review.publish", payload)

    assert result == Retry(
        f"GitHub: post-incident review of #{payload['incident']}: answered 502: Server Error"
    )


def test_a_refused_issue_fails_with_a_report(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    number, payload = _publish_row(engine)
    github.fail_next(1, 422, method="POST", path="/issues", message="Validation Failed")

    result = delivery.send("review.publish", payload)

    assert isinstance(result, Failed)
    what = f"post-incident review of #{number}"
    assert result.report == {
        "output": "github_review",
        "problem": "rejected",
        "what": what,
        "error": f"GitHub: {what}: answered 422: Validation Failed",
    }
    assert github.issues(REPO) == []


def test_unreachable_github_is_retried(engine: sa.Engine) -> None:
    _, payload = _publish_row(engine)
    nowhere = GitHubReviewDelivery(GitHubConnector("http://127.0.0.1:9", token="t", timeout=2))

    result = nowhere.send("review.publish", payload)

    assert isinstance(result, Retry)
    assert "ConnectionError" in result.error


def test_check_reports_open_then_closed(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    number, payload = _publish_row(engine)
    assert delivery.send("review.publish", payload) == _linked(github, 1)
    _settle(engine)
    with Session(engine) as session, session.begin():
        assert enqueue_review_check(session, REVIEW, number, 1)
        assert not enqueue_review_check(session, REVIEW, number, 1)  # one pending check
    check = _rows(engine)[-1]
    assert (check.method, check.channel, check.incident_id) == ("review.check", REPO, number)

    url = f"{github.url}/{REPO}/issues/1"
    state = {"kind": "review.state", "url": url, "number": 1}
    assert delivery.send(check.method, check.payload) == Sent(report={**state, "state": "open"})
    github.close_issue(REPO, 1)
    assert delivery.send(check.method, check.payload) == Sent(report={**state, "state": "closed"})


def test_check_of_a_vanished_issue_fails_with_a_report(delivery: GitHubReviewDelivery) -> None:
    result = delivery.send("review.check", {"repo": REPO, "incident": 3, "number": 42})

    assert isinstance(result, Failed)
    assert result.report is not None
    assert result.report["what"] == "follow-up of the review of #3"
    assert "404" in result.error


def test_without_credentials_or_readable_payload_rows_fail() -> None:
    sender = GitHubReviewDelivery(None)
    result = sender.send("review.check", {"repo": REPO, "incident": 3, "number": 1})
    assert isinstance(result, Failed)
    assert "credentials" in result.error
    assert isinstance(sender.send("review.publish", {"incident": 3}), Failed)


# -- recovery drills ---------------------------------------------------------------

DRILL_LABELS = ["drill", "severity/critical", "playbook/ssot-sync"]
SCORECARD: dict[str, Any] = {
    "run_id": 4,
    "scenario": "ssot-schema-mismatch",
    "scenario_title": "Schema mismatch after an SSOT change (drill)",
    "playbook_id": "ssot-sync",
    "matched_playbook": True,
    "passed": False,
    "ended": "timed_out",
    "started_at": "2026-01-01T10:00:00+00:00",
    "finished_at": "2026-01-01T10:25:00+00:00",
    "time_to_acknowledge_seconds": 95,
    "acknowledged_by": "U0ALICE",
    "time_to_first_request_seconds": 250.5,
    "steps": [
        {
            "step_id": "revert-commit",
            "title": "Revert the SSOT commit",
            "action": "git.revert",
            "outcome": "rehearsed",
            "would_work": True,
            "reason": None,
            "requested_by": "U0ALICE",
            "approved_by": "U0BOB",
            "time_to_request_seconds": 250.5,
            "time_to_approve_seconds": 40,
            "checks": ["branch drill/1-revert-commit pushed", "diff reverts 2 files"],
        },
        {
            "step_id": "restart",
            "title": "Restart <b>sync</b> @platform-team",
            "action": "kubernetes.restart",
            "outcome": "not requested",
            "would_work": False,
            "reason": "deployment ssot-sync\n# not found [x](https://evil.example)",
            "requested_by": None,
            "approved_by": None,
            "time_to_request_seconds": None,
            "time_to_approve_seconds": None,
            "checks": [],
        },
    ],
    "participants": ["U0ALICE", "U0BOB"],
    "findings": ["Nobody approved within 5m <!-- nexus-incident: 1 -->"],
}


def _drill(engine: sa.Engine, timeline: Timeline, *, finish: bool = True) -> int:
    """A drill's incident resolved, then (by default) finished, each committed; its id."""
    number = _resolve_drill(engine, timeline)
    if finish:
        _finish(engine, timeline, number)
    return number


def _resolve_drill(engine: sa.Engine, timeline: Timeline) -> int:
    now = utcnow()
    with Session(engine) as session, session.begin():
        incident = Incident(
            key=f"drill:ssot-schema-mismatch:{now.timestamp()}",
            source="alertmanager",
            title="Schema mismatch after an SSOT change (drill)",
            severity="critical",
            status="resolved",
            playbook_id="ssot-sync",
            escalation_level=1,
            created_at=now,
            updated_at=now,
            resolved_at=now,
            labels={"service": "ssot"},
            roles={"commander": ["U0ALICE"]},
            slack_channel="C0DRILLS",
            slack_root_ts="1767225600.000200",
            drill_run_id=4,
        )
        session.add(incident)
        session.flush()
        timeline.record(session, incident.id, Kind.RESOLVED, "U0ALICE", reason="manual")
        timeline.record(session, incident.id, Kind.REVIEW_REQUESTED, "U0BOB", requested_by="U0BOB")
        return incident.id


def _finish(engine: sa.Engine, timeline: Timeline, number: int) -> None:
    with Session(engine) as session, session.begin():
        timeline.record(session, number, Kind.DRILL_FINISHED, "nexus-bot", **SCORECARD)


def test_a_drill_files_no_review_but_its_scorecard_at_drill_priority(engine: sa.Engine) -> None:
    timeline = _timeline()
    number = _drill(engine, timeline, finish=False)
    assert _rows(engine) == []  # resolved and asked for: still no post-incident review

    _finish(engine, timeline, number)
    _finish(engine, timeline, number)  # recorded twice: one row while one is pending

    [row] = _rows(engine)
    assert (row.output, row.channel, row.method) == ("github_review", REPO, "review.publish")
    assert (row.incident_id, row.coalesce_key, row.priority) == (number, f"drill:{number}", 1)
    payload = row.payload
    assert payload["title"] == f"DRILL ssot-schema-mismatch: FAILED (incident #{number})"
    assert payload["labels"] == DRILL_LABELS
    assert payload["assignee"] is None
    body = payload["body"]
    assert is_review_of(body, number)
    for expected in (
        "**Result:** FAILED (timed out)",
        "Time to acknowledge: 1m 35s by `@U0ALICE`",
        "Time to first remediation request: 4m 10s",
        "### 1. Revert the SSOT commit",
        "- Would it work for real: yes",
        "- Requested by `@U0ALICE` after 4m 10s\n- Approved by `@U0BOB` after 40s",
        "- **Drill run:** 4\n",
        "  - branch drill/1-revert-commit pushed",
        "- Would it work for real: no: deployment ssot-sync \\# not found",
        "## Participants\n\n`@U0ALICE`, `@U0BOB`",
        "https://slack.com/archives/C0DRILLS/p1767225600000200",
    ):
        assert expected in body, expected


def test_outside_text_in_a_scorecard_is_inert(engine: sa.Engine) -> None:
    number = _drill(engine, _timeline())
    [row] = _rows(engine)
    body = row.payload["body"]

    assert "<b>" not in body and "\\<b\\>sync\\</b\\>" in body
    assert "@platform-team" not in body  # no team mention: a word joiner follows the @
    assert "[x](https://evil.example)" not in body
    assert body.count("<!-- nexus-incident:") == 1  # a finding's marker is text, not ours
    assert body.rstrip().endswith(marker(number))


def test_drill_finished_of_a_real_incident_or_unconfigured_files_nothing(
    engine: sa.Engine,
) -> None:
    real = _resolve(engine, _timeline(), severity="info")
    _finish(engine, _timeline(), real)
    _drill(engine, _timeline(token=False))
    _drill(engine, _timeline(review=ReviewConfig()))
    assert _rows(engine) == []


def test_the_scorecard_is_filed_once_labelled_drill(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    github.add_issue(REPO, "A review", body=f"x\n\n{marker(1)}\n", labels=[LABELS[0]])
    number = _drill(engine, _timeline())
    [row] = _rows(engine)

    assert delivery.send(row.method, row.payload) == _linked(github, 2)
    assert delivery.send(row.method, row.payload) == _linked(github, 2)  # redelivered: found

    review, scorecard = github.issues(REPO)
    assert scorecard.title == f"DRILL ssot-schema-mismatch: FAILED (incident #{number})"
    assert scorecard.labels == DRILL_LABELS
    assert scorecard.body == row.payload["body"]
    assert "drill" in github.labels(REPO)
    assert review.labels == [LABELS[0]]
    assert len([c for c in github.calls("POST") if c.path.endswith("/issues")]) == 1
    listing = next(c for c in github.calls("GET") if c.path.endswith("/issues"))
    assert listing.query["labels"] == "drill"


def test_a_refused_scorecard_says_what_it_was(
    engine: sa.Engine, github: FakeGitHub, delivery: GitHubReviewDelivery
) -> None:
    number = _drill(engine, _timeline())
    [row] = _rows(engine)
    github.fail_next(1, 422, method="POST", path="/issues", message="Validation Failed")

    result = delivery.send(row.method, row.payload)

    assert isinstance(result, Failed)
    assert result.report is not None
    assert result.report["what"] == f"drill scorecard of #{number}"
