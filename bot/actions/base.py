"""What every remediation executor provides: a live preview and a guarded execution.

Executors are synchronous (git runs as a subprocess, PyGithub and the
Kubernetes client are blocking); the approval flow calls them in a worker
thread. They never decide *whether* to run: the two-person rule and the
allow-list are checked before they are called.

The flow:
1. ``preview(params)`` fetches the world as it is now and says exactly what
   will happen (commit title/author/diffstat, PR title/state/files, current →
   new replicas, the revision a rollback goes to, a ConfigMap key's old → new
   value). Its ``snapshot`` records what the approver saw.
2. ``execute(params, snapshot, context)`` first re-checks the target against
   the snapshot; if the world changed it raises ``TargetChanged`` saying what
   changed, and does nothing. Otherwise it acts and returns the result.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from bot.actions.registry import ActionParams


class ActionError(Exception):
    """An expected failure, told to humans as is (conflict, not found, rejected push)."""


class ActionFailed(ActionError):
    """The action ran and failed (a Job exited 1): what it printed goes with the failure."""

    def __init__(self, message: str, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.details = list(details or [])


class TargetChanged(ActionError):
    """The target is no longer what the approver saw; nothing was done."""


class ActionUnavailable(ActionError):
    """The executor lacks what it needs (e.g. no GitHub credentials configured)."""


@dataclass(frozen=True)
class Preview:
    summary: str  # one line: what will happen
    details: list[str] = field(default_factory=list)  # shown on the approval card
    snapshot: dict[str, Any] = field(default_factory=dict)  # JSON-able; re-checked at execution


@dataclass(frozen=True)
class Undo:
    """A follow-up request the result offers, e.g. "Restore 3 replicas" (needs approval too)."""

    title: str
    action: str
    params: dict[str, Any]


@dataclass(frozen=True)
class ExecutionContext:
    incident_number: int
    incident_title: str
    requested_by: str  # Slack user ID
    approved_by: str  # Slack user ID
    incident_url: str | None = None  # link to the Slack thread, when known
    # Set in a recovery drill (rehearsal executors only): the throwaway branch a
    # rehearsed git step pushes to, e.g. "drill/12-revert-commit".
    drill_branch: str | None = None
    # The request being executed: names what must be created once (a Job).
    request_id: int | None = None


@dataclass(frozen=True)
class ExecutionResult:
    summary: str
    details: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    undo: Undo | None = None
    data: dict[str, Any] = field(default_factory=dict)  # stored with the execution (audit)


class Executor(Protocol):
    """One per registered action name (see bot/actions/catalog.py)."""

    action: str

    def preview(self, params: ActionParams) -> Preview: ...

    def execute(
        self, params: ActionParams, snapshot: dict[str, Any], context: ExecutionContext
    ) -> ExecutionResult: ...
