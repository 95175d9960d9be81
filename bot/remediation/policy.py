"""The two-person rule, decided without I/O.

A remediation runs only when approved by someone who is (1) not the person who
requested it and (2) on the approver list for that action. Slack user groups
on the list are expanded by the caller (through `usergroups.users.list`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    decision: str  # recorded as the approval row's decision
    message: str  # shown to the clicker (ephemeral) when refused


HOW_TO_CONFIGURE = (
    "Nobody may approve remediations yet: list Slack user or user-group IDs in "
    "`NEXUS_APPROVERS` or `approvals.approvers` in config/nexus.yaml."
)


def judge_approval(
    *,
    approver: str,
    requested_by: str,
    state: str,
    expires_at: datetime,
    now: datetime,
    allowed_users: set[str],
    configured: bool,
) -> Verdict:
    """May `approver` approve this request now?"""
    if state != "pending":
        return Verdict(False, "", f"This request is already {state}.")
    if now >= expires_at:
        return Verdict(
            False, "", "This request has expired; request it again if it is still needed."
        )
    if approver == requested_by:
        return Verdict(
            False,
            "refused_self",
            "You requested this remediation: a second, different person must approve it.",
        )
    if not configured:
        return Verdict(False, "refused_not_allowed", HOW_TO_CONFIGURE)
    if approver not in allowed_users:
        return Verdict(
            False,
            "refused_not_allowed",
            "You are not on the approver list for this action; ask someone who is.",
        )
    return Verdict(True, "approve", "")


def expand_approvers(configured: list[str], group_members: dict[str, set[str]]) -> set[str]:
    """User IDs allowed to approve: listed users plus the members of listed groups."""
    users: set[str] = set()
    for entry in configured:
        if entry.startswith("S"):
            users |= group_members.get(entry, set())
        else:
            users.add(entry)
    return users
