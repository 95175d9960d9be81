"""github.close_pr and the GitHub clients, through PyGithub, against the fake GitHub over HTTP."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from github import Github
from pydantic import SecretStr

from bot.actions.base import ActionError, ActionUnavailable, TargetChanged
from bot.actions.catalog import ClosePullRequest
from bot.actions.github import (
    ClosePullRequestExecutor,
    GitHubConnector,
    PullRequests,
    github_client,
)
from bot.settings import Settings
from tests.fakes.github import FakeGitHub
from tests.unit.actions.actions_git_support import APP_ID, CONTEXT, INSTALLATION_ID, REPO, Remote

HEAD = "1" * 40
FILES = [f"ssot_plan/part-{i:02}.yaml" for i in range(25)]


@pytest.fixture
def pr(github: FakeGitHub) -> int:
    github.add_pull(REPO, 7, title="Drop the SSOT plan", head_sha=HEAD, user="mallory", files=FILES)
    return 7


def params(pr: int = 7) -> ClosePullRequest:
    return ClosePullRequest(repo=REPO, pr=pr, comment="Rejected: Dangerous change detected")


def test_preview_shows_the_pull_request(connector: GitHubConnector, pr: int) -> None:
    preview = ClosePullRequestExecutor(connector).preview(params(pr))
    assert preview.summary == 'Close acme/ssot#7 "Drop the SSOT plan" by @mallory with a comment'
    text = "\n".join(preview.details)
    assert "State: open, not merged; feature-7 → main at 111111111111" in text
    assert "Files changed (25): ssot_plan/part-00.yaml" in text
    assert "ssot_plan/part-19.yaml and 5 more" in text
    assert "part-20" not in text
    assert preview.snapshot == {"state": "open", "head_sha": HEAD, "title": "Drop the SSOT plan"}


def test_close_comments_then_closes(
    connector: GitHubConnector, github: FakeGitHub, pr: int
) -> None:
    executor = ClosePullRequestExecutor(connector)
    preview = executor.preview(params(pr))
    before = len(github.calls())

    result = executor.execute(params(pr), preview.snapshot, CONTEXT)

    writes = [c.route for c in github.calls()[before:] if c.method != "GET"]
    assert writes == [f"POST /repos/{REPO}/issues/7/comments", f"PATCH /repos/{REPO}/pulls/7"]
    pull = github.pull(REPO, 7)
    assert pull.state == "closed"
    (comment,) = pull.comments
    assert comment == (
        "Rejected: Dangerous change detected\n\n"
        "Incident #42: SSOT plan wiped\n"
        "Approved by <@U0APPROVE> (requested by <@U0REQUEST>)\n"
        "https://slack.example/archives/C1/p1"
    )
    assert result.links == [f"{github.url}/{REPO}/pull/7"]
    assert result.summary.startswith("Closed acme/ssot#7")
    assert result.data["comment_url"].endswith("#issuecomment-1")
    assert all(c.headers["Authorization"] == f"token {github.token}" for c in github.calls())


def test_already_closed_is_a_target_change_and_nothing_is_posted(
    connector: GitHubConnector, github: FakeGitHub, pr: int
) -> None:
    executor = ClosePullRequestExecutor(connector)
    preview = executor.preview(params(pr))
    github.pull(REPO, 7).state = "closed"
    with pytest.raises(TargetChanged, match="already closed, nothing done"):
        executor.execute(params(pr), preview.snapshot, CONTEXT)
    assert github.calls("POST") == [] and github.calls("PATCH") == []
    with pytest.raises(ActionError, match="already closed"):
        executor.preview(params(pr))


def test_merged_is_a_target_change(connector: GitHubConnector, github: FakeGitHub, pr: int) -> None:
    executor = ClosePullRequestExecutor(connector)
    preview = executor.preview(params(pr))
    pull = github.pull(REPO, 7)
    pull.state, pull.merged = "closed", True
    with pytest.raises(TargetChanged, match="revert the merge commit instead"):
        executor.execute(params(pr), preview.snapshot, CONTEXT)
    assert github.calls("POST") == []
    with pytest.raises(ActionError, match="is merged"):
        executor.preview(params(pr))


def test_new_commits_since_preview_are_a_target_change(
    connector: GitHubConnector, github: FakeGitHub, pr: int
) -> None:
    executor = ClosePullRequestExecutor(connector)
    preview = executor.preview(params(pr))
    github.pull(REPO, 7).head_sha = "2" * 40
    with pytest.raises(TargetChanged, match="new commits were pushed"):
        executor.execute(params(pr), preview.snapshot, CONTEXT)
    assert github.pull(REPO, 7).state == "open"
    assert github.calls("POST") == []


def test_github_app_auth_end_to_end(github: FakeGitHub, pr: int, app_key: tuple[str, str]) -> None:
    connector = GitHubConnector(github.url, app_id=APP_ID, private_key=app_key[0])
    executor = ClosePullRequestExecutor(connector)
    executor.execute(params(pr), executor.preview(params(pr)).snapshot, CONTEXT)

    assert github.pull(REPO, 7).state == "closed"
    routes = [c.route for c in github.calls()]
    assert routes[:2] == [
        f"GET /repos/{REPO}/installation",
        f"POST /app/installations/{INSTALLATION_ID}/access_tokens",
    ]
    assert routes.count(f"POST /app/installations/{INSTALLATION_ID}/access_tokens") == 1
    (token,) = github.issued_tokens
    for call in github.calls()[2:]:
        assert call.headers["Authorization"] == f"token {token}"
    assert connector.git_token(REPO) == token


def test_github_app_with_the_wrong_key_fails_clearly(github: FakeGitHub, pr: int) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = other.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    executor = ClosePullRequestExecutor(GitHubConnector(github.url, app_id=APP_ID, private_key=pem))
    with pytest.raises(
        ActionError, match="GitHub App installation for acme/ssot: GitHub rejected the credentials"
    ):
        executor.preview(params(pr))


def test_bad_token_fails_clearly_without_the_token(github: FakeGitHub, pr: int) -> None:
    secret = "ghp_WrongTokenWrongToken0000000000000"
    executor = ClosePullRequestExecutor(GitHubConnector(github.url, token=secret))
    with pytest.raises(ActionError) as error:
        executor.preview(params(pr))
    assert "GitHub rejected the credentials (401 Bad credentials)" in str(error.value)
    assert secret not in str(error.value)
    assert github.calls()[-1].status == 401


def test_missing_pull_request_and_no_credentials(
    connector: GitHubConnector, github: FakeGitHub
) -> None:
    with pytest.raises(ActionError, match="not found"):
        ClosePullRequestExecutor(connector).preview(params(99))
    with pytest.raises(ActionUnavailable):
        ClosePullRequestExecutor(None).preview(params(99))


def test_unreachable_github_is_an_action_error() -> None:
    connector = GitHubConnector("http://127.0.0.1:9", token="t", timeout=2)
    with pytest.raises(ActionError, match="unreachable"):
        ClosePullRequestExecutor(connector).preview(params(1))


def test_open_pull_request_and_its_validation_errors(
    pulls: PullRequests, github: FakeGitHub, remote: Remote
) -> None:
    remote.commit({"x.txt": "x\n"}, "On a branch", branch="revert/abc")
    url = pulls.open_pull_request(REPO, "revert/abc", "main", "Revert abc", "body")
    (pull,) = github.pulls(REPO)
    assert url == f"{github.url}/{REPO}/pull/{pull.number}"
    assert (pull.head_ref, pull.base_ref, pull.body) == ("revert/abc", "main", "body")
    with pytest.raises(ActionError, match="A pull request already exists"):
        pulls.open_pull_request(REPO, "revert/abc", "main", "Again", "body")
    with pytest.raises(ActionError, match="head or base invalid"):
        pulls.open_pull_request(REPO, "no-such-branch", "main", "T", "B")


def test_clients_from_settings(
    github: FakeGitHub, app_key: tuple[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)  # no config/nexus.yaml
    for name in ("GITHUB_TOKEN", "GITHUB_APP_ID", "GITHUB_APP_PRIVATE_KEY", "NEXUS_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    assert GitHubConnector.from_settings(Settings(github_api_url=github.url)) is None
    assert github_client(Settings(github_api_url=github.url), REPO) is None

    token_settings = Settings(github_api_url=github.url, github_token=SecretStr(github.token))
    github.add_pull(REPO, 3, title="Three")
    client = github_client(token_settings, REPO)
    assert isinstance(client, Github)
    assert client.get_repo(REPO).get_pull(3).title == "Three"

    app_settings = Settings(
        github_api_url=github.url,
        github_app_id=APP_ID,
        github_app_private_key=SecretStr(app_key[0]),
    )
    connector = GitHubConnector.from_settings(app_settings)
    assert connector is not None
    assert connector.git_token(REPO) in github.issued_tokens
