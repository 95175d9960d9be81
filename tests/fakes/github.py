"""A fake GitHub (REST API and git over HTTP) on 127.0.0.1 for tests.

Like tests/fakes/slack.py, aiohttp.web runs on its own event loop in a
background thread, so synchronous code under test (PyGithub, git) talks to it
over a real socket::

    with FakeGitHub() as gh:
        gh.add_pull("acme/ssot", 7, title="Drop the plan", files=["ssot_plan/a.yaml"])
        client = Github(base_url=gh.url, auth=Auth.Token(gh.token))
        ...
        assert [c.route for c in gh.calls()] == [...]

What it models, as PyGithub reads it:

* ``GET /repos/{o}/{r}``, ``GET /repos/{o}/{r}/pulls/{n}`` (+ ``/files``),
  ``POST /repos/{o}/{r}/issues/{n}/comments``, ``PATCH /repos/{o}/{r}/pulls/{n}``,
  ``POST /repos/{o}/{r}/pulls``; single pages, no ``Link`` headers;
* issues: ``GET|POST /repos/{o}/{r}/issues`` (the listing filters by
  ``labels``, ``state`` and ``since``, sorts by ``created`` either ``direction``
  and pages with ``per_page``/``page`` and ``Link`` headers, as GitHub),
  ``GET|PATCH /repos/{o}/{r}/issues/{n}``, ``GET|POST /repos/{o}/{r}/labels``,
  ``GET /repos/{o}/{r}/assignees/{login}`` (204 or 404). As for an integration
  without push access, unknown labels are dropped from a new issue; an assignee
  who is not assignable (`add_assignable`) is refused with 422;
* faults (`fail_next`, `rate_limit_next`): the next matching requests answer
  an error, or are applied and then answer an error or lose their connection
  (an answer lost after the change was made);
* tokens: ``Authorization: token|Bearer <token>`` must be ``token`` or an
  installation token it issued, else 401 ``Bad credentials``; an installation
  token only sees its installation's repositories (404 otherwise, as GitHub);
* GitHub App auth: ``GET /repos/{o}/{r}/installation`` and
  ``POST /app/installations/{id}/access_tokens`` need a JWT RS256-signed with
  the App's key (``app_public_key``) whose ``iss`` is ``app_id``;
* git smart HTTP under ``/git/{o}/{r}.git`` when ``git_root`` is given
  (``git http-backend`` over the bare repositories ``git_root/{o}/{r}.git``),
  with GitHub's Basic ``x-access-token:<token>`` authentication;
* permissions (`set_permissions`): the repository's ``permissions`` (the
  token's role: push, admin...) and the App installation's ``pull_requests``;
* every request is recorded (`calls`), including refused ones.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from aiohttp import web

from tests.fakes.background import BackgroundServer

DEFAULT_TOKEN = "ghp_fakeGitHubToken0000000000000000000000"
_NOW = "2026-01-01T00:00:00Z"


@dataclass
class GitHubCall:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    status: int | None = None
    query: dict[str, str] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)

    @property
    def route(self) -> str:
        return f"{self.method} {self.path}"


@dataclass
class FakePull:
    repo: str
    number: int
    title: str
    head_ref: str
    head_sha: str
    base_ref: str = "main"
    body: str = ""
    user: str = "octocat"
    state: str = "open"
    merged: bool = False
    files: list[str] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)


@dataclass
class FakeIssue:
    repo: str
    number: int
    title: str
    body: str = ""
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    state: str = "open"
    user: str = "nexus-bot[bot]"
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass
class _Fault:
    """The next `count` requests matching method and path answer `status`."""

    count: int
    status: int
    method: str | None
    path: str | None  # the request path ends with this
    message: str
    headers: dict[str, str]
    apply: bool  # make the change first, then lose its answer
    close: bool  # no answer at all: the connection is closed

    def matches(self, call: GitHubCall) -> bool:
        return (self.method is None or call.method == self.method) and (
            self.path is None or call.path.rstrip("/").endswith(self.path)
        )


class FakeGitHub(BackgroundServer):
    thread_name = "fake-github"

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        app_id: int | None = None,
        app_public_key: str | bytes | None = None,
        installations: dict[str, int] | None = None,
        git_root: Path | None = None,
    ) -> None:
        self.token = token
        self.app_id = app_id
        self.app_public_key = app_public_key
        self.installations = dict(installations or {})  # "owner/name" -> installation id
        self.git_root = git_root
        self._lock = threading.RLock()
        self._calls: list[GitHubCall] = []
        self._pulls: dict[tuple[str, int], FakePull] = {}
        self._repos: set[str] = set()
        self._issued: dict[str, int] = {}  # installation token -> installation id
        self._issues: dict[tuple[str, int], FakeIssue] = {}
        self._labels: dict[str, list[str]] = {}  # repo -> label names
        self._assignable: dict[str, set[str]] = {}  # repo -> logins
        self._faults: list[_Fault] = []
        self._permissions: dict[str, dict[str, bool]] = {}  # repo -> role flags
        self._app_permissions: dict[str, dict[str, str]] = {}  # repo -> installation's
        super().__init__()

    # -- lifecycle -----------------------------------------------------------

    def _build_app(self) -> web.Application:
        app = web.Application(client_max_size=50 * 1024 * 1024)
        app.router.add_route("*", "/git/{tail:.*}", self._handle_git)
        app.router.add_route("*", "/{tail:.*}", self._handle_api)
        return app

    @property
    def url(self) -> str:
        """The REST API base URL (``Github(base_url=...)``, GITHUB_API_URL)."""
        if self._port is None:
            raise RuntimeError("FakeGitHub not started")
        return f"http://127.0.0.1:{self._port}"

    @property
    def git_url(self) -> str:
        """The git base URL (GITHUB_GIT_URL): ``{git_url}/{owner}/{repo}.git``."""
        return f"{self.url}/git"

    # -- state -----------------------------------------------------------------

    def add_repo(self, repo: str) -> None:
        with self._lock:
            self._repos.add(repo)

    def add_pull(
        self, repo: str, number: int, *, title: str, head_sha: str = "a" * 40, **kw: Any
    ) -> FakePull:
        pull = FakePull(
            repo, number, title, kw.pop("head_ref", f"feature-{number}"), head_sha, **kw
        )
        with self._lock:
            self._repos.add(repo)
            self._pulls[(repo, number)] = pull
        return pull

    def pull(self, repo: str, number: int) -> FakePull:
        with self._lock:
            return self._pulls[(repo, number)]

    def pulls(self, repo: str) -> list[FakePull]:
        with self._lock:
            return sorted(
                (p for p in self._pulls.values() if p.repo == repo), key=lambda p: p.number
            )

    def add_issue(self, repo: str, title: str, **kw: Any) -> FakeIssue:
        with self._lock:
            self._repos.add(repo)
            issue = FakeIssue(repo, self._next_number(repo), title, **kw)
            self._issues[(repo, issue.number)] = issue
            return issue

    def issue(self, repo: str, number: int) -> FakeIssue:
        with self._lock:
            return self._issues[(repo, number)]

    def issues(self, repo: str) -> list[FakeIssue]:
        with self._lock:
            return sorted(
                (i for i in self._issues.values() if i.repo == repo), key=lambda i: i.number
            )

    def close_issue(self, repo: str, number: int) -> None:
        with self._lock:
            issue = self._issues[(repo, number)]
            issue.state, issue.updated_at = "closed", datetime.now(UTC)

    def add_label(self, repo: str, name: str) -> None:
        with self._lock:
            self._repos.add(repo)
            if name not in self._labels.setdefault(repo, []):
                self._labels[repo].append(name)

    def labels(self, repo: str) -> list[str]:
        with self._lock:
            return list(self._labels.get(repo, []))

    def add_assignable(self, repo: str, *logins: str) -> None:
        with self._lock:
            self._repos.add(repo)
            self._assignable.setdefault(repo, set()).update(logins)

    def set_permissions(
        self,
        repo: str,
        *,
        push: bool = True,
        admin: bool = False,
        maintain: bool = False,
        triage: bool = True,
        pull_requests: str = "write",
    ) -> None:
        """What ``GET /repos/{repo}`` says the token may do (``permissions``), and the
        App installation's ``pull_requests`` permission (read, write) on ``repo``."""
        with self._lock:
            self._permissions[repo] = {
                "admin": admin,
                "maintain": maintain,
                "push": push,
                "triage": triage,
                "pull": True,
            }
            self._app_permissions[repo] = {"contents": "write", "pull_requests": pull_requests}

    def fail_next(
        self,
        count: int = 1,
        status: int = 500,
        *,
        method: str | None = None,
        path: str | None = None,
        message: str = "Server Error",
        headers: dict[str, str] | None = None,
        apply: bool = False,
        close: bool = False,
    ) -> None:
        """The next `count` requests matching `method` and `path` (an ending, e.g.
        ``/issues``) answer `status`; with `apply` they are carried out first (the
        answer is lost, not the change); with `close` the connection is dropped."""
        fault = _Fault(count, status, method, path, message, dict(headers or {}), apply, close)
        with self._lock:
            self._faults.append(fault)

    def rate_limit_next(
        self,
        count: int = 1,
        *,
        reset_in: int = 30,
        secondary: bool = False,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        """403 as GitHub rate-limits: the primary limit (``x-ratelimit-remaining: 0``,
        ``x-ratelimit-reset`` `reset_in` seconds away) or a secondary one (``Retry-After``)."""
        if secondary:
            message = (
                "You have exceeded a secondary rate limit. "
                "Please wait a few minutes before you try again."
            )
            headers = {"Retry-After": str(reset_in)}
        else:
            message = "API rate limit exceeded for installation ID 1."
            reset = int(datetime.now(UTC).timestamp()) + reset_in
            headers = {
                "x-ratelimit-limit": "5000",
                "x-ratelimit-remaining": "0",
                "x-ratelimit-reset": str(reset),
            }
        self.fail_next(count, 403, method=method, path=path, message=message, headers=headers)

    def calls(self, method: str | None = None) -> list[GitHubCall]:
        with self._lock:
            return [c for c in self._calls if method is None or c.method == method]

    def git_calls(self) -> list[GitHubCall]:
        return [c for c in self.calls() if c.path.startswith("/git/")]

    def api_calls(self) -> list[GitHubCall]:
        return [c for c in self.calls() if not c.path.startswith("/git/")]

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    # -- auth --------------------------------------------------------------------

    def _known(self, token: str) -> bool:
        with self._lock:
            return token == self.token or token in self._issued

    def _may_see(self, token: str, repo: str) -> bool | None:
        """None: bad credentials; False: not visible to this token; True: fine."""
        if token == self.token:
            return True
        with self._lock:
            installation = self._issued.get(token)
        if installation is None:
            return None
        return self.installations.get(repo) == installation

    def _jwt_ok(self, token: str) -> bool:
        if self.app_public_key is None or self.app_id is None:
            return False
        try:
            claims = jwt.decode(
                token,
                self.app_public_key,
                algorithms=["RS256"],
                options={"require": ["iat", "exp", "iss"]},
            )
        except jwt.PyJWTError:
            return False
        return str(claims["iss"]) == str(self.app_id)

    # -- REST API ----------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        body: Any = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
        call = GitHubCall(
            request.method, request.path, body, dict(request.headers), query=dict(request.query)
        )
        with self._lock:
            self._calls.append(call)
            fault = next((f for f in self._faults if f.matches(call)), None)
            if fault is not None:
                fault.count -= 1
                if fault.count <= 0:
                    self._faults.remove(fault)
        if fault is None or fault.apply:
            status, payload = self._answer(call)
        if fault is not None:
            if fault.close:
                call.status = None
                assert request.transport is not None
                request.transport.close()
                return web.Response(status=500)  # never reaches the client
            status, payload = _error(fault.status, fault.message)
            call.response_headers = dict(fault.headers)
        call.status = status
        if payload is None:
            return web.Response(status=status, headers=call.response_headers)
        return web.json_response(payload, status=status, headers=call.response_headers)

    def _answer(self, call: GitHubCall) -> tuple[int, Any]:
        auth = call.headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        parts = call.path.strip("/").split("/")
        if scheme.lower() not in ("token", "bearer") or not token:
            return _error(401, "Requires authentication")
        # App (JWT) endpoints.
        if parts[:2] == ["app", "installations"] and parts[3:] == ["access_tokens"]:
            if not self._jwt_ok(token):
                return _error(401, "A JSON web token could not be decoded")
            installation = int(parts[2])
            if installation not in self.installations.values():
                return _error(404, "Not Found")
            issued = "ghs_" + secrets.token_hex(18)
            with self._lock:
                self._issued[issued] = installation
            expires = datetime.now(UTC) + timedelta(hours=1)
            return 201, {
                "token": issued,
                "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "permissions": {"contents": "write", "pull_requests": "write"},
                "repository_selection": "selected",
            }
        if len(parts) < 3 or parts[0] != "repos":
            return _error(404, "Not Found")
        repo = f"{parts[1]}/{parts[2]}"
        rest = parts[3:]
        if rest == ["installation"]:
            if not self._jwt_ok(token):
                return _error(401, "A JSON web token could not be decoded")
            if repo not in self.installations:
                return _error(404, "Not Found")
            return 200, self._installation_json(repo)
        visible = self._may_see(token, repo)
        if visible is None:
            return _error(401, "Bad credentials")
        with self._lock:
            if not visible or repo not in self._repos:
                return _error(404, "Not Found")
            return self._repo_route(call, repo, rest)

    def _repo_route(self, call: GitHubCall, repo: str, rest: list[str]) -> tuple[int, Any]:
        method = call.method
        if not rest and method == "GET":
            return 200, self._repo_json(repo)
        if rest == ["pulls"] and method == "POST":
            return self._create_pull(repo, call.body or {})
        if rest[:1] in (["issues"], ["labels"], ["assignees"]):
            answer = self._issue_route(call, repo, rest)
            if answer is not None:
                return answer
        if len(rest) < 2 or not rest[1].isdigit():
            return _error(404, "Not Found")
        pull = self._pulls.get((repo, int(rest[1])))
        if pull is None:
            return _error(404, "Not Found")
        route = (rest[0], tuple(rest[2:]), method)
        if route == ("pulls", (), "GET"):
            return 200, self._pull_json(pull)
        if route == ("pulls", ("files",), "GET"):
            return 200, [_file_json(name) for name in pull.files]
        if route == ("pulls", (), "PATCH"):
            changes = call.body or {}
            if changes.get("state") in ("open", "closed"):
                if pull.merged:
                    return _error(422, "Validation Failed", "merged pull requests cannot change")
                pull.state = changes["state"]
            for key in ("title", "body"):
                if key in changes:
                    setattr(pull, key, changes[key])
            return 200, self._pull_json(pull)
        if route == ("issues", ("comments",), "POST"):
            text = (call.body or {}).get("body")
            if not text:
                return _error(422, "Validation Failed", "body is missing")
            pull.comments.append(text)
            n = len(pull.comments)
            return 201, {
                "id": pull.number * 1000 + n,
                "url": f"{self.url}/repos/{repo}/issues/comments/{pull.number * 1000 + n}",
                "html_url": f"{self.url}/{repo}/pull/{pull.number}#issuecomment-{n}",
                "body": text,
                "user": _user("nexus-bot[bot]"),
                "created_at": _NOW,
                "updated_at": _NOW,
            }
        return _error(404, "Not Found")

    def _create_pull(self, repo: str, body: dict[str, Any]) -> tuple[int, Any]:
        missing = [k for k in ("title", "head", "base") if not body.get(k)]
        if missing:
            return _error(422, "Validation Failed", f"missing {', '.join(missing)}")
        head, base = str(body["head"]), str(body["base"])
        for pull in self._pulls.values():
            if pull.repo == repo and pull.head_ref == head and pull.state == "open":
                owner = repo.split("/")[0]
                return _error(
                    422, "Validation Failed", f"A pull request already exists for {owner}:{head}."
                )
        head_sha = self._branch_sha(repo, head)
        if head_sha is None or self._branch_sha(repo, base) is None:
            return _error(422, "Validation Failed", "head or base invalid")
        number = self._next_number(repo)
        pull = FakePull(
            repo, number, str(body["title"]), head, head_sha, base, str(body.get("body") or "")
        )
        pull.user = "nexus-bot[bot]"
        self._pulls[(repo, number)] = pull
        return 201, self._pull_json(pull)

    def _next_number(self, repo: str) -> int:
        """Issues and pull requests share their numbers, as on GitHub."""
        taken = [n for (r, n) in (*self._pulls, *self._issues) if r == repo]
        return max([*taken, 0]) + 1

    # -- issues, labels, assignees -------------------------------------------------

    def _issue_route(self, call: GitHubCall, repo: str, rest: list[str]) -> tuple[int, Any] | None:
        """None: not an issue route here (e.g. a pull request's comments)."""
        method, kind = call.method, rest[0]
        if kind == "assignees" and len(rest) == 2 and method == "GET":
            return (
                (204, None)
                if rest[1] in self._assignable.get(repo, set())
                else _error(404, "Not Found")
            )
        if kind == "labels" and len(rest) == 1:
            if method == "GET":
                return self._page(call, [_label_json(n) for n in self._labels.get(repo, [])])
            if method == "POST":
                return self._create_label(repo, call.body or {})
        if kind == "labels" and len(rest) == 2 and method == "GET":
            if rest[1] in self._labels.get(repo, []):
                return 200, _label_json(rest[1])
            return _error(404, "Not Found")
        if kind == "issues" and len(rest) == 1:
            if method == "GET":
                return self._list_issues(call, repo)
            if method == "POST":
                return self._create_issue(repo, call.body or {})
        if kind == "issues" and len(rest) == 2 and rest[1].isdigit():
            issue = self._issues.get((repo, int(rest[1])))
            if issue is None:
                return None  # maybe a pull request
            if method == "GET":
                return 200, self._issue_json(issue)
            if method == "PATCH":
                changes = call.body or {}
                if changes.get("state") in ("open", "closed"):
                    issue.state = changes["state"]
                for key in ("title", "body", "labels", "assignees"):
                    if key in changes:
                        setattr(issue, key, changes[key])
                issue.updated_at = datetime.now(UTC)
                return 200, self._issue_json(issue)
        return None if kind == "issues" else _error(404, "Not Found")

    def _create_label(self, repo: str, body: dict[str, Any]) -> tuple[int, Any]:
        name = str(body.get("name") or "")
        if not name:
            return _error(422, "Validation Failed", "name is missing")
        if name in self._labels.get(repo, []):
            return _error(422, "Validation Failed", "already_exists")
        self._labels.setdefault(repo, []).append(name)
        return 201, _label_json(name)

    def _create_issue(self, repo: str, body: dict[str, Any]) -> tuple[int, Any]:
        title = str(body.get("title") or "")
        if not title or len(title) > 256:
            return _error(422, "Validation Failed", "title is missing or too long")
        if len(str(body.get("body") or "")) > 65536:
            return _error(
                422, "Validation Failed", "body is too long (maximum is 65536 characters)"
            )
        assignees = list(body.get("assignees") or [])
        if body.get("assignee"):
            assignees.append(str(body["assignee"]))
        refused = [a for a in assignees if a not in self._assignable.get(repo, set())]
        if refused:
            return _error(422, "Validation Failed", f"invalid assignees: {', '.join(refused)}")
        known = self._labels.get(repo, [])
        labels = [str(name) for name in body.get("labels") or [] if name in known]
        issue = FakeIssue(
            repo, self._next_number(repo), title, str(body.get("body") or ""), labels, assignees
        )
        self._issues[(repo, issue.number)] = issue
        return 201, self._issue_json(issue)

    def _list_issues(self, call: GitHubCall, repo: str) -> tuple[int, Any]:
        query = call.query
        wanted = {name for name in query.get("labels", "").split(",") if name}
        state = query.get("state", "open")
        since = _parse_time(query["since"]) if query.get("since") else None
        found = [
            i
            for i in self._issues.values()
            if i.repo == repo
            and wanted <= set(i.labels)
            and state in ("all", i.state)
            and (since is None or i.updated_at >= since)
        ]
        if query.get("sort", "created") != "created":
            return _error(422, "Validation Failed", "the fake sorts by created only")
        found.sort(
            key=lambda i: (i.created_at, i.number), reverse=query.get("direction", "desc") == "desc"
        )
        return self._page(call, [self._issue_json(i) for i in found])

    def _page(self, call: GitHubCall, items: list[Any]) -> tuple[int, Any]:
        """One page of `items`, with GitHub's ``Link: <...>; rel="next"`` when more follow."""
        per_page = min(int(call.query.get("per_page", 30)), 100)
        page = int(call.query.get("page", 1))
        start = (page - 1) * per_page
        if start + per_page < len(items):
            query = {**call.query, "page": str(page + 1)}
            target = f"{self.url}{call.path}?" + "&".join(f"{k}={v}" for k, v in query.items())
            call.response_headers["Link"] = f'<{target}>; rel="next"'
        return 200, items[start : start + per_page]

    def _issue_json(self, issue: FakeIssue) -> dict[str, Any]:
        api = f"{self.url}/repos/{issue.repo}"
        assignees = [_user(a) for a in issue.assignees]
        return {
            "url": f"{api}/issues/{issue.number}",
            "repository_url": api,
            "id": 9000 + issue.number,
            "html_url": f"{self.url}/{issue.repo}/issues/{issue.number}",
            "number": issue.number,
            "state": issue.state,
            "title": issue.title,
            "body": issue.body,
            "user": _user(issue.user),
            "labels": [_label_json(name) for name in issue.labels],
            "assignee": assignees[0] if assignees else None,
            "assignees": assignees,
            "locked": False,
            "comments": 0,
            "created_at": _time(issue.created_at),
            "updated_at": _time(issue.updated_at),
            "closed_at": _time(issue.updated_at) if issue.state == "closed" else None,
        }

    def _branch_sha(self, repo: str, branch: str) -> str | None:
        """The branch's head in the bare repository; without git_root, any branch exists."""
        if self.git_root is None:
            return "b" * 40
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
            cwd=self.git_root / f"{repo}.git",
            capture_output=True,
            text=True,
            check=False,
            env=_git_env(self.git_root),
        )
        return proc.stdout.strip() if proc.returncode == 0 else None

    def _repo_json(self, repo: str) -> dict[str, Any]:
        owner, name = repo.split("/")
        return {
            "id": abs(hash(repo)) % 10**8,
            "name": name,
            "full_name": repo,
            "owner": _user(owner),
            "private": True,
            "html_url": f"{self.url}/{repo}",
            "url": f"{self.url}/repos/{repo}",
            "pulls_url": f"{self.url}/repos/{repo}/pulls{{/number}}",
            "default_branch": "main",
            "permissions": dict(
                self._permissions.get(repo)
                or {"admin": False, "maintain": False, "push": True, "triage": True, "pull": True}
            ),
        }

    def _installation_json(self, repo: str) -> dict[str, Any]:
        installation = self.installations[repo]
        return {
            "id": installation,
            "app_id": self.app_id,
            "account": _user(repo.split("/")[0]),
            "target_type": "Organization",
            "access_tokens_url": f"{self.url}/app/installations/{installation}/access_tokens",
            "repository_selection": "selected",
            "permissions": dict(
                self._app_permissions.get(repo) or {"contents": "write", "pull_requests": "write"}
            ),
        }

    def _pull_json(self, pull: FakePull) -> dict[str, Any]:
        api = f"{self.url}/repos/{pull.repo}"
        owner = pull.repo.split("/")[0]
        closed = pull.state == "closed"
        return {
            "url": f"{api}/pulls/{pull.number}",
            "id": 5000 + pull.number,
            "html_url": f"{self.url}/{pull.repo}/pull/{pull.number}",
            "issue_url": f"{api}/issues/{pull.number}",
            "comments_url": f"{api}/issues/{pull.number}/comments",
            "number": pull.number,
            "state": pull.state,
            "locked": False,
            "title": pull.title,
            "body": pull.body,
            "user": _user(pull.user),
            "created_at": _NOW,
            "updated_at": _NOW,
            "closed_at": _NOW if closed else None,
            "merged_at": _NOW if pull.merged else None,
            "draft": False,
            "head": {
                "label": f"{owner}:{pull.head_ref}",
                "ref": pull.head_ref,
                "sha": pull.head_sha,
                "user": _user(owner),
                "repo": self._repo_json(pull.repo),
            },
            "base": {
                "label": f"{owner}:{pull.base_ref}",
                "ref": pull.base_ref,
                "sha": "c" * 40,
                "user": _user(owner),
                "repo": self._repo_json(pull.repo),
            },
            "merged": pull.merged,
            "mergeable": None if closed else True,
            "merged_by": _user("octocat") if pull.merged else None,
            "comments": len(pull.comments),
            "commits": 1,
            "additions": 3 * len(pull.files),
            "deletions": len(pull.files),
            "changed_files": len(pull.files),
        }

    # -- git over HTTP -----------------------------------------------------------

    async def _handle_git(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()  # aiohttp has already undone Content-Encoding: gzip
        call = GitHubCall(request.method, request.path, None, dict(request.headers))
        with self._lock:
            self._calls.append(call)
        if self.git_root is None:
            call.status = 404
            return web.Response(status=404, text="Not Found")
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        user, _, password = _b64(value).partition(":") if scheme == "Basic" else ("", "", "")
        if user != "x-access-token" or not self._known(password):
            call.status = 401
            return web.Response(
                status=401,
                text="Unauthorized",
                headers={"WWW-Authenticate": 'Basic realm="GitHub"'},
            )
        env = {
            **_git_env(self.git_root),
            "GIT_PROJECT_ROOT": str(self.git_root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": "/" + request.match_info["tail"],
            "QUERY_STRING": request.query_string,
            "REQUEST_METHOD": request.method,
            "CONTENT_TYPE": request.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",  # enables receive-pack (push)
            "REMOTE_ADDR": "127.0.0.1",
        }
        if "Git-Protocol" in request.headers:
            env["GIT_PROTOCOL"] = request.headers["Git-Protocol"]
        proc = await asyncio.create_subprocess_exec(
            "git",
            "http-backend",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        out, _ = await proc.communicate(body)
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        call.status = status
        return web.Response(status=status, body=payload, headers=headers)


def _git_env(root: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(root),
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
    }


def _b64(value: str) -> str:
    try:
        return base64.b64decode(value).decode()
    except ValueError:
        return ""


def _error(status: int, message: str, detail: str | None = None) -> tuple[int, Any]:
    body: dict[str, Any] = {
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": str(status),
    }
    if detail:
        body["errors"] = [{"resource": "PullRequest", "code": "custom", "message": detail}]
    return status, body


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


def _label_json(name: str) -> dict[str, Any]:
    return {"name": name, "color": "ededed", "description": None, "default": False}


def _user(login: str) -> dict[str, Any]:
    return {"login": login, "id": abs(hash(login)) % 10**7, "type": "User"}


def _file_json(name: str) -> dict[str, Any]:
    return {
        "sha": "d" * 40,
        "filename": name,
        "status": "modified",
        "additions": 3,
        "deletions": 1,
        "changes": 4,
        "patch": "@@ -1 +1 @@",
    }


@contextlib.contextmanager
def running_fake_github(**kwargs: Any) -> Iterator[FakeGitHub]:
    fake = FakeGitHub(**kwargs)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
