"""Post-incident reviews as GitHub issues: a timeline output and its queue sender.

`GitHubReviewOutput` drafts the review in the event's own transaction (the
timeline is read there, no I/O) and enqueues one ``review.publish`` row:

* on ``resolved`` of a warning or critical incident;
* on ``review.requested`` (``/incident review``, ``@nexus review``), any severity.

A recovery drill's incident gets no post-incident review (resolved or asked
for): on ``drill.finished`` its scorecard is filed instead, through the same
publisher (find-or-create by the incident's marker, under the ``drill`` label,
the first label and so the one it is found by), at the queue's drill priority.

The row coalesces per incident: a doubled request while one is pending adds
nothing. Nothing is enqueued without ``review.repo`` or GitHub credentials.

`GitHubReviewDelivery` sends those rows through PyGithub. Publishing is
find-or-create keyed by the incident: the repository's issues with the review
label are listed (all states, newest first) and the one whose body ends with
the marker line ``<!-- nexus-incident: N -->`` is the review. A create whose
answer was lost is therefore found by the retry instead of created twice, and
two replicas never race: the queue sends one row per incident at a time. A
found review is never edited: the team may have started filling it in.

``review.check`` (enqueued by the follow-up job, `enqueue_review_check`)
fetches the issue and reports whether it is open or closed.

Both report through the queue's ``Sent(report=...)``: ``{"kind":
"review.linked", "url", "number"}`` and ``{"kind": "review.state", "state",
"url", "number"}``; a refused request fails with a ``rejected`` report.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

import requests
import structlog
from github import GithubException, RateLimitExceededException
from github.Issue import Issue
from github.Repository import Repository
from sqlalchemy.orm import Session

from bot.actions.base import ActionError
from bot.actions.github import GitHubConnector
from bot.domain.alerts import Severity
from bot.domain.playbooks import LoadedPlaybooks
from bot.reviews.config import MAX_LABEL, ReviewConfig
from bot.reviews.draft import draft_review, marker, slack_thread_url
from bot.reviews.drill_scorecard import DrillIncident, draft_scorecard, scorecard_title
from bot.reviews.facts import ReviewFacts, load_review_facts
from bot.settings import Settings
from bot.store.models import Incident
from bot.timeline.events import Event, Kind
from bot.timeline.queue import Failed, Result, Retry, Sent, enqueue

log = structlog.get_logger("bot.notify.github_review")

OUTPUT_NAME = "github_review"
# GitHub's limits: 256 characters of title, 65,536 of body (with room to spare).
MAX_TITLE = 256
MAX_BODY = 65_000
# The listing is bounded by `since` (last update): an incident's review is filed
# after the incident opened; a day of slack covers clocks that disagree.
CLOCK_SLACK = timedelta(days=1)
# A rate limit that does not say until when (GitHub: wait at least a minute),
# and the longest a bogus reset header may hold a row.
DEFAULT_RATE_LIMIT_WAIT_S = 60.0
MAX_RATE_LIMIT_WAIT_S = 3600.0

# Drill scorecards are found by this label (and the incident's marker), never
# mistaken for post-incident reviews, which are found by theirs.
DRILL_LABEL = "drill"
# outbox.priority of a drill's rows: after every real incident's (0) on one key.
DRILL_PRIORITY = 1

_PUBLISHED_ON = (Severity.WARNING, Severity.CRITICAL)
_LABEL_COLOURS = {
    DRILL_LABEL: "0e8a16",
    "severity/critical": "b60205",
    "severity/warning": "fbca04",
    "severity/info": "c5def5",
}
_DEFAULT_COLOUR = "5319e7"


class Method(StrEnum):
    PUBLISH = "review.publish"
    CHECK = "review.check"


def github_configured(settings: Settings) -> bool:
    """The same decision as `GitHubConnector.from_settings`, without building clients."""
    app = settings.github_app_id is not None and settings.github_app_private_key is not None
    return settings.github_token is not None or app


class GitHubReviewOutput:
    """Enqueues the review of a resolved (or on demand) incident; see the module docstring."""

    name = OUTPUT_NAME

    def __init__(self, settings: Settings, playbooks: LoadedPlaybooks, review: ReviewConfig):
        self.playbooks = playbooks
        self.review = review
        self.enabled = review.repo is not None and github_configured(settings)

    def on_event(self, session: Session, event: Event) -> None:
        if not self.enabled or event.kind not in (
            Kind.RESOLVED,
            Kind.REVIEW_REQUESTED,
            Kind.DRILL_FINISHED,
        ):
            return
        incident = session.get(Incident, event.incident_id)
        if incident is None:
            return
        if incident.drill_run_id is not None:
            # A drill's review is its scorecard; nothing else of it reaches GitHub.
            if event.kind == Kind.DRILL_FINISHED:
                enqueue_drill_scorecard(session, self.review, incident, event.facts)
            return
        if event.kind == Kind.DRILL_FINISHED:
            return  # not a drill's incident: a scorecard of nothing
        # Checked before drafting: an info incident's timeline is not read for nothing.
        if event.kind == Kind.RESOLVED and incident.severity not in _PUBLISHED_ON:
            return
        facts = load_review_facts(session, event.incident_id, self.playbooks)
        if facts is None:
            return
        added = enqueue_review_publish(session, self.review, facts)
        if not added:
            log.info("review already pending", incident=event.incident_id, kind=event.kind)


def enqueue_review_publish(session: Session, review: ReviewConfig, facts: ReviewFacts) -> bool:
    """Queue the publication of `facts`' review; False if one is pending already."""
    assert review.repo is not None
    incident = facts.incident
    body = fit_body(
        draft_review(facts, slack_thread_url(incident.slack_channel, incident.slack_root_ts)),
        incident.id,
    )
    commanders = incident.roles.get("commander") or ()
    payload = {
        "repo": review.repo,
        "incident": incident.id,
        "opened_at": incident.created_at.isoformat(),
        "title": f"Post-incident review: #{incident.id} {incident.title}"[:MAX_TITLE],
        "body": body,
        # The first label is the one the publisher finds reviews by.
        "labels": [
            label[:MAX_LABEL]
            for label in (
                review.label,
                f"severity/{incident.severity}",
                f"playbook/{incident.playbook_id}",
            )
        ],
        "assignee": review.github_logins.get(commanders[0]) if commanders else None,
    }
    return enqueue(
        session,
        output=OUTPUT_NAME,
        key=review.repo,
        method=Method.PUBLISH,
        payload=payload,
        incident_id=incident.id,
        coalesce_key=f"review:{incident.id}",
    )


def enqueue_drill_scorecard(
    session: Session, review: ReviewConfig, incident: Incident, facts: Mapping[str, Any]
) -> bool:
    """Queue the filing of a drill's scorecard (a ``review.publish`` row, coalesced per
    incident, at drill priority); False if one is pending already."""
    assert review.repo is not None
    drill = DrillIncident(
        id=incident.id,
        severity=incident.severity,
        playbook_id=incident.playbook_id,
        thread_url=slack_thread_url(incident.slack_channel, incident.slack_root_ts),
    )
    payload = {
        "repo": review.repo,
        "incident": incident.id,
        "opened_at": incident.created_at.isoformat(),
        "title": scorecard_title(incident.id, facts)[:MAX_TITLE],
        "body": fit_body(draft_scorecard(drill, facts), incident.id),
        # The first label is the one the publisher finds the scorecard by.
        "labels": [
            label[:MAX_LABEL]
            for label in (
                DRILL_LABEL,
                f"severity/{incident.severity}",
                f"playbook/{incident.playbook_id}",
            )
        ],
        "assignee": None,  # a drill's findings are the team's, not one commander's
    }
    return enqueue(
        session,
        output=OUTPUT_NAME,
        key=review.repo,
        method=Method.PUBLISH,
        payload=payload,
        incident_id=incident.id,
        coalesce_key=f"drill:{incident.id}",
        priority=DRILL_PRIORITY,
    )


def enqueue_review_check(
    session: Session, review: ReviewConfig, incident_id: int, number: int
) -> bool:
    """Queue a look at review issue `number` (a ``review.state`` report follows)."""
    if review.repo is None:
        return False
    return enqueue(
        session,
        output=OUTPUT_NAME,
        key=review.repo,
        method=Method.CHECK,
        payload={"repo": review.repo, "incident": incident_id, "number": number},
        incident_id=incident_id,
        coalesce_key=f"review-check:{incident_id}",
    )


def fit_body(body: str, incident_id: int) -> str:
    """`body` within GitHub's limit, cut at a line, still ending with the marker."""
    if len(body) <= MAX_BODY:
        return body
    tail = (
        f"\n\n_This review was cut at {MAX_BODY:,} characters (GitHub's limit); "
        f"`nexus-bot review {incident_id}` prints it whole._\n\n{marker(incident_id)}\n"
    )
    head = body[: MAX_BODY - len(tail)]
    cut = head.rfind("\n")
    return (head[:cut] if cut > 0 else head).rstrip() + tail


def is_review_of(body: str | None, incident_id: int) -> bool:
    """The body's last line is the incident's marker (a quoted marker elsewhere is not)."""
    lines = (body or "").rstrip().splitlines()
    return bool(lines) and lines[-1].strip() == marker(incident_id)


@dataclass
class GitHubReviewDelivery:
    """The queue's Sender for ``output="github_review"`` rows. Called from worker threads."""

    connector: GitHubConnector | None
    # GitHub's secondary limits punish bursts of writes (issues, labels) hardest.
    rate: float = 0.5
    burst: int = 2

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubReviewDelivery:
        return cls(GitHubConnector.from_settings(settings))

    def send(self, method: str, payload: Mapping[str, Any]) -> Result:
        try:
            repo, incident = str(payload["repo"]), int(payload["incident"])
        except (KeyError, TypeError, ValueError) as problem:
            # A row this code cannot read now will not be readable later either.
            return Failed(f"GitHub review {method}: bad payload: {problem!r}")
        what = _what(method, incident, payload)
        if self.connector is None:
            return _rejected(what, "GitHub credentials are not configured")
        try:
            remote = self.connector.client(repo).get_repo(repo)
            if method == Method.PUBLISH:
                return self._publish(remote, incident, payload)
            if method == Method.CHECK:
                return self._check(remote, int(payload["number"]))
            return Failed(f"GitHub review: unknown method {method!r}")
        except (KeyError, TypeError, ValueError) as problem:
            return Failed(f"GitHub review {method}: bad payload: {problem!r}")
        except ActionError as error:
            # The App installation lookup wraps its failure; judge the cause.
            return _outcome(error.__cause__ or error, what)
        except (GithubException, requests.RequestException) as error:
            return _outcome(error, what)

    def _publish(self, remote: Repository, incident: int, payload: Mapping[str, Any]) -> Result:
        labels = [str(label) for label in payload["labels"]]
        opened_at = datetime.fromisoformat(str(payload["opened_at"]))
        if opened_at.tzinfo is not None:  # PyGithub formats `since` as UTC as it is
            opened_at = opened_at.astimezone(UTC)
        found = self._find(remote, labels[0], incident, opened_at - CLOCK_SLACK)
        if found is not None:
            log.info("review found", incident=incident, number=found.number)
            return Sent(report=_linked(found))
        self._ensure_labels(remote, labels)
        assignees: list[str] = []
        login = payload.get("assignee")
        if login:
            if remote.has_in_assignees(str(login)):
                assignees.append(str(login))
            else:
                log.warning(
                    "review filed without assignee: not assignable in the repository",
                    incident=incident,
                    login=login,
                    repo=remote.full_name,
                )
        issue = remote.create_issue(
            title=str(payload["title"]),
            body=str(payload["body"]),
            labels=labels,
            assignees=assignees,
        )
        log.info("review filed", incident=incident, number=issue.number)
        return Sent(report=_linked(issue))

    @staticmethod
    def _find(remote: Repository, label: str, incident: int, since: datetime) -> Issue | None:
        issues = remote.get_issues(
            state="all", labels=[label], sort="created", direction="desc", since=since
        )
        for issue in issues:
            # The listing holds pull requests too. `issue.pull_request` would fetch each
            # issue again (PyGithub completes attributes the listing left out); the
            # web address tells them apart for free.
            if "/pull/" not in issue.html_url and is_review_of(issue.body, incident):
                return issue
        return None

    @staticmethod
    def _ensure_labels(remote: Repository, labels: list[str]) -> None:
        """Create the labels the repository lacks: a new issue silently drops unknown
        labels when the bot cannot push, and the review label is how reviews are found."""
        existing = {label.name for label in remote.get_labels()}
        for name in labels:
            if name in existing:
                continue
            try:
                remote.create_label(name, _LABEL_COLOURS.get(name, _DEFAULT_COLOUR))
            except GithubException as error:
                # 422 already_exists: another replica (or a person) made it meanwhile.
                if error.status != 422:
                    raise

    @staticmethod
    def _check(remote: Repository, number: int) -> Result:
        issue = remote.get_issue(number)
        state = "closed" if issue.state == "closed" else "open"
        report = {"kind": "review.state", "state": state, "url": issue.html_url, "number": number}
        return Sent(report=report)


def _what(method: str, incident: int, payload: Mapping[str, Any]) -> str:
    """The row in words, for errors and reports."""
    if method != Method.PUBLISH:
        return f"follow-up of the review of #{incident}"
    labels = payload.get("labels")
    if isinstance(labels, list) and labels and labels[0] == DRILL_LABEL:
        return f"drill scorecard of #{incident}"
    return f"post-incident review of #{incident}"


def _linked(issue: Issue) -> dict[str, Any]:
    return {"kind": "review.linked", "url": issue.html_url, "number": issue.number}


def _rejected(what: str, error: str) -> Failed:
    message = f"GitHub: {what}: {error}"
    report = {"output": OUTPUT_NAME, "problem": "rejected", "what": what, "error": message}
    return Failed(message, report=report)


def _outcome(error: BaseException, what: str) -> Result:
    if isinstance(error, requests.RequestException):  # timeouts, refused, lost answers
        return Retry(f"GitHub: {what}: API unreachable ({type(error).__name__})")
    if not isinstance(error, GithubException):
        return _rejected(what, str(error)[:300])
    headers = {str(k).lower(): str(v) for k, v in (error.headers or {}).items()}
    message = f"GitHub: {what}: answered {error.status}: {_message(error)}"
    limited = isinstance(error, RateLimitExceededException) or error.status == 429
    if limited or (error.status == 403 and headers.get("x-ratelimit-remaining") == "0"):
        wait = _requested_wait(headers)
        return Retry(message, after=DEFAULT_RATE_LIMIT_WAIT_S if wait is None else wait)
    if error.status >= 500:
        return Retry(message)
    return _rejected(what, f"answered {error.status}: {_message(error)}")


def _message(error: GithubException) -> str:
    data = error.data
    if isinstance(data, dict):
        parts = [str(data.get("message", ""))]
        for item in data.get("errors") or []:
            parts.append(str(item.get("message", item)) if isinstance(item, dict) else str(item))
        text = "; ".join(p for p in parts if p)
    else:
        text = str(data or "")
    return text[:300] or "no message"


def _requested_wait(headers: Mapping[str, str]) -> float | None:
    """Seconds GitHub asked for: ``Retry-After`` (secondary limits), else until
    ``x-ratelimit-reset`` (epoch seconds, primary limit)."""
    wait: float | None = None
    try:
        if "retry-after" in headers:
            wait = float(headers["retry-after"])
        elif "x-ratelimit-reset" in headers:
            wait = float(headers["x-ratelimit-reset"]) - time.time()
    except ValueError:
        return None
    if wait is None or not math.isfinite(wait):
        return None
    return min(max(wait, 1.0), MAX_RATE_LIMIT_WAIT_S)
