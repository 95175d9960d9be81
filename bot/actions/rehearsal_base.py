"""What every rehearsal shares: how a failed rehearsal is told, and refusals to rehearse.

A rehearsal (a recovery drill's approved step) runs the real executor's checks
but changes nothing real; its error says whether the step *would have worked*.
"""

from __future__ import annotations

from bot.actions.base import ActionError, ActionUnavailable, TargetChanged


class RehearsalRefused(ActionUnavailable):
    """The rehearsal itself cannot run safely (no drill branch, a guard tripped)."""


def would_not_have_worked(exc: ActionError) -> ActionError:
    """The real step's failure, worded as a rehearsal's finding; its kind is kept."""
    if isinstance(exc, RehearsalRefused):
        return exc
    if isinstance(exc, TargetChanged):
        # The real step would have refused too, doing nothing: the drill stops here.
        return TargetChanged(f"Rehearsal stopped: {exc}")
    if isinstance(exc, ActionUnavailable):
        return ActionUnavailable(f"Would not have worked: {exc}")
    return ActionError(f"Would not have worked: {exc}")
