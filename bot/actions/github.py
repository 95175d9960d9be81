"""GitHub: authenticated clients, revert/restore pull requests, and ``github.close_pr``.

Credentials are a token (GITHUB_TOKEN) or a GitHub App (GITHUB_APP_ID +
GITHUB_APP_PRIVATE_KEY). An App is installed per account, so its client is
per repository: the installation of ``owner/name`` is looked up once and its
short-lived token is refreshed by PyGithub.

PyGithub's defaults sleep between calls (0.25 s, 1 s per write) and retry for
minutes on rate limits; during an incident a clear failure now is better, so
both are off and every request has a timeout.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator
from typing import Any

import requests
from github import (
    Auth,
    BadCredentialsException,
    Github,
    GithubException,
    GithubIntegration,
    UnknownObjectException,
)
from github.PullRequest import PullRequest

from bot.actions.base import (
    ActionError,
    ActionUnavailable,
    ExecutionContext,
    ExecutionResult,
    Preview,
    TargetChanged,
)
from bot.actions.catalog import ClosePullRequest
from bot.actions.registry import ActionParams
from bot.settings import Settings

DEFAULT_TIMEOUT = 15  # seconds per HTTP request
_MAX_FILES_SHOWN = 20
_NO_CREDENTIALS = "GitHub credentials are not configured (GITHUB_TOKEN, or GITHUB_APP_ID + key)"


class GitHubConnector:
    """Hands out an authenticated ``Github`` client for a repository."""

    def __init__(
        self,
        api_url: str,
        *,
        token: str | None = None,
        app_id: int | None = None,
        private_key: str | None = None,
        timeout: int = DEFAULT_TIMEOUT,
    ) -> None:
        if not token and not (app_id is not None and private_key):
            raise ValueError("a token, or an app id and private key, are needed")
        self.api_url = api_url.rstrip("/")
        self._options: dict[str, Any] = {
            "base_url": self.api_url,
            "timeout": timeout,
            "retry": None,
            "seconds_between_requests": 0,
            "seconds_between_writes": 0,
            "lazy": True,  # get_repo() without a GET: we only need its pulls
        }
        self._token = token
        self._integration: GithubIntegration | None = None
        if not token and app_id is not None and private_key:
            self._integration = GithubIntegration(
                auth=Auth.AppAuth(app_id, private_key), **self._options
            )
        self._clients: dict[str, Github] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> GitHubConnector | None:
        """None when no GitHub credentials are configured (the token wins over an App)."""
        token = settings.github_token.get_secret_value() if settings.github_token else None
        key = settings.github_app_private_key
        if not token and (settings.github_app_id is None or key is None):
            return None
        return cls(
            settings.github_api_url,
            token=token,
            app_id=settings.github_app_id,
            private_key=key.get_secret_value() if key else None,
        )

    def client(self, repo: str) -> Github:
        """A client that can act on ``repo`` ("owner/name")."""
        with self._lock:
            if self._integration is None:
                assert self._token is not None
                if "" not in self._clients:  # one client (and connection pool) for all repos
                    self._clients[""] = Github(auth=Auth.Token(self._token), **self._options)
                return self._clients[""]
            cached = self._clients.get(repo)
        if cached is not None:
            return cached
        owner, name = repo.split("/", 1)
        with _github_errors(f"finding the GitHub App installation for {repo}"):
            installation = self._integration.get_repo_installation(owner, name)
            client = self._integration.get_github_for_installation(installation.id)
        with self._lock:
            self._clients[repo] = client
        return client

    def git_token(self, repo: str) -> str | None:
        """The token for git over https to ``repo`` (an App's installation token is
        fetched and refreshed by PyGithub)."""
        if self._integration is None:
            return self._token
        auth = self.client(repo).requester.auth
        with _github_errors(f"getting a GitHub App token for {repo}"):
            return auth.token if auth is not None else None


def github_client(settings: Settings, repo: str) -> Github | None:
    """A client for ``repo`` from the settings, or None without credentials."""
    connector = GitHubConnector.from_settings(settings)
    return None if connector is None else connector.client(repo)


@contextlib.contextmanager
def _github_errors(what: str) -> Iterator[None]:
    """PyGithub and requests failures as ActionError, worded for the incident channel."""
    try:
        yield
    except ActionError:
        raise
    except UnknownObjectException as exc:
        raise ActionError(f"{what}: not found (404), or the credentials cannot see it") from exc
    except GithubException as exc:
        if isinstance(exc, BadCredentialsException) or exc.status == 401:
            raise ActionError(
                f"{what}: GitHub rejected the credentials ({exc.status} {_message(exc)}); "
                "check GITHUB_TOKEN or the GitHub App id and key"
            ) from exc
        raise ActionError(f"{what}: GitHub answered {exc.status}: {_message(exc)}") from exc
    except requests.RequestException as exc:
        raise ActionError(f"{what}: GitHub API unreachable ({type(exc).__name__})") from exc


def _message(exc: GithubException) -> str:
    data = exc.data
    if isinstance(data, dict):
        parts = [str(data.get("message", ""))]
        for error in data.get("errors") or []:
            parts.append(
                str(error.get("message", error)) if isinstance(error, dict) else str(error)
            )
        text = "; ".join(p for p in parts if p)
    else:
        text = str(data or "")
    return text[:300] or "no message"


class PullRequests:
    """Opens the pull requests git executors fall back to when a push is refused."""

    def __init__(self, connector: GitHubConnector) -> None:
        self.connector = connector

    def open_pull_request(self, repo: str, head: str, base: str, title: str, body: str) -> str:
        """Open ``head`` → ``base`` on ``repo``; returns the pull request's web URL."""
        with _github_errors(f"opening a pull request {head} → {base} on {repo}"):
            remote = self.connector.client(repo).get_repo(repo)
            pull = remote.create_pull(base=base, head=head, title=title, body=body)
            return pull.html_url


def _ref(p: ClosePullRequest) -> str:
    return f"{p.repo}#{p.pr}"


class ClosePullRequestExecutor:
    action = "github.close_pr"

    def __init__(self, connector: GitHubConnector | None) -> None:
        self.connector = connector

    def _pull(self, p: ClosePullRequest) -> PullRequest:
        if self.connector is None:
            raise ActionUnavailable(_NO_CREDENTIALS)
        return self.connector.client(p.repo).get_repo(p.repo).get_pull(p.pr)

    def preview(self, params: ActionParams) -> Preview:
        p = _close_params(params)
        with _github_errors(f"reading {_ref(p)}"):
            pr = self._pull(p)
            files = [f.filename for f in itertools.islice(pr.get_files(), _MAX_FILES_SHOWN)]
            count = pr.changed_files
        if pr.merged:
            raise ActionError(f"{_ref(p)} is merged: closing it would not undo it — {_REVERT_HINT}")
        if pr.state != "open":
            raise ActionError(f"{_ref(p)} is already closed; nothing to do")
        more = f" and {count - len(files)} more" if count > len(files) else ""
        return Preview(
            summary=f'Close {_ref(p)} "{pr.title}" by @{pr.user.login} with a comment',
            details=[
                f'Pull request {_ref(p)} "{pr.title}" by @{pr.user.login}',
                f"State: {pr.state}, not merged; {pr.head.ref} → {pr.base.ref} "
                f"at {pr.head.sha[:12]}",
                f"Files changed ({count}): {', '.join(files)}{more}",
                f'Comment: "{p.comment}"',
            ],
            snapshot={"state": pr.state, "head_sha": pr.head.sha, "title": pr.title},
        )

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult:
        p = _close_params(params)
        with _github_errors(f"reading {_ref(p)}"):
            pr = self._pull(p)
            merged, state, head_sha = pr.merged, pr.state, pr.head.sha
        if merged:
            raise TargetChanged(
                f"{_ref(p)} was merged: closing it would not undo it — {_REVERT_HINT}"
            )
        if state != "open":
            raise TargetChanged(f"{_ref(p)} is already closed, nothing done")
        seen = snapshot.get("head_sha")
        if head_sha != seen:
            raise TargetChanged(
                f"new commits were pushed to {_ref(p)} since the preview "
                f"({str(seen)[:12]} → {head_sha[:12]}); nothing was done. Preview again."
            )
        text = (
            f"{p.comment}\n\nIncident #{context.incident_number}: {context.incident_title}\n"
            f"Approved by <@{context.approved_by}> (requested by <@{context.requested_by}>)"
        )
        if context.incident_url:
            text += f"\n{context.incident_url}"
        # Comment first: the reason is on the PR before anyone gets a "closed" e-mail.
        with _github_errors(f"commenting on {_ref(p)}"):
            comment = pr.create_issue_comment(text)
        with _github_errors(f"commented on {_ref(p)}, but closing it"):
            pr.edit(state="closed")
        return ExecutionResult(
            summary=f'Closed {_ref(p)} "{pr.title}" with a comment',
            details=[f"Comment posted: {comment.html_url}", f"{_ref(p)} is now closed"],
            links=[pr.html_url],
            data={
                "pr": p.pr,
                "pr_url": pr.html_url,
                "comment_url": comment.html_url,
                "head_sha": head_sha,
            },
        )


_REVERT_HINT = "revert the merge commit instead (git.revert)"


def _close_params(params: ActionParams) -> ClosePullRequest:
    if not isinstance(params, ClosePullRequest):
        raise TypeError(f"expected ClosePullRequest, got {type(params).__name__}")
    return params
