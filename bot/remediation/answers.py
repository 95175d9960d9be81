"""What the approval flow answers the clicker, and how a decided card ended."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Decided:
    """How a decided request ended, for redrawing the card that was clicked."""

    request_id: int
    title: str
    outcome: str  # "done", "failed", "aborted", "denied"
    requested_by: str
    decided_by: str
    summary: str = ""
    details: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    reason: str = ""
    at: str = ""  # HH:MM:SS UTC of the approval
    rehearsal: bool = False  # a drill's step: it was rehearsed, nothing real changed


@dataclass
class FlowAnswer:
    """What to tell the clicker (plain text), and how the clicked card ended (if it did)."""

    message: str
    decided: Decided | None = None
    request_id: int | None = None
    needs_input: list[str] = field(default_factory=list)
    defaults: dict[str, str] = field(default_factory=dict)
