"""Git remediations: revert a commit, restore a path from history, then push.

The pieces live in their own modules; this one keeps the import path
``bot.actions.git`` for the executors and the workspace:

* `bot.actions.git_workspace`: mirrors, throw-away clones, running git safely, pushing;
* `bot.actions.git_commits`: resolving commits, describing them, checking snapshots;
* `bot.actions.git_publish`: push to the branch, else a side branch and a pull request;
* `bot.actions.git_revert`: the ``git.revert`` executor;
* `bot.actions.git_restore`: the ``git.restore_path`` executor.
"""

from __future__ import annotations

from bot.actions.git_commits import trailer
from bot.actions.git_restore import RestorePathExecutor
from bot.actions.git_revert import RevertExecutor
from bot.actions.git_workspace import (
    Checkout,
    GitCommandError,
    GitWorkspace,
    TokenSource,
    auth_header,
    redact,
)

__all__ = [
    "Checkout",
    "GitCommandError",
    "GitWorkspace",
    "RestorePathExecutor",
    "RevertExecutor",
    "TokenSource",
    "auth_header",
    "redact",
    "trailer",
]
