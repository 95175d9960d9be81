"""`/incident component NAME STATE`: the Communications role sets a component by hand.

The state stays until set to `auto` again, whatever incidents come and go; the
page is rebuilt in the same transaction. Who may do it is decided by the
caller (the Slack layer knows the user and the role's user groups).
"""

from __future__ import annotations

import sqlalchemy as sa

from bot.settings import Settings
from bot.store.audit import append_audit
from bot.store.models import StatusComponentOverride, utcnow
from bot.store.repository import Repository
from bot.web import snapshot
from bot.web.model import COMPONENT_LABELS, COMPONENT_STATES

AUTO = "auto"
STATE_ALIASES = {
    "operational": "operational",
    "ok": "operational",
    "degraded": "degraded_performance",
    "degraded_performance": "degraded_performance",
    "degraded-performance": "degraded_performance",
    "partial": "partial_outage",
    "partial_outage": "partial_outage",
    "partial-outage": "partial_outage",
    "major": "major_outage",
    "major_outage": "major_outage",
    "major-outage": "major_outage",
    AUTO: AUTO,
}


class StatusComponents:
    def __init__(self, settings: Settings, repo: Repository) -> None:
        self.settings = settings
        self.repo = repo

    def set_state(self, name: str, state: str, actor: str) -> str:
        """Set (or with `auto`, clear) a component's state; returns what to tell the user."""
        wanted = STATE_ALIASES.get(state.lower())
        if wanted is None:
            known = ", ".join([*COMPONENT_STATES, AUTO])
            return f"Unknown state `{state[:40]}`: one of {known}."
        component = next(
            (
                c
                for c in self.settings.status_page.components
                if name.lower() in (c.id, c.name.lower())
            ),
            None,
        )
        if component is None:
            known = ", ".join(f"`{c.id}`" for c in self.settings.status_page.components)
            return f"Unknown component `{name[:60]}`. Known: {known or 'none configured'}."
        now = utcnow()
        with self.repo.session() as s:
            table = StatusComponentOverride
            s.execute(sa.delete(table).where(table.component_id == component.id))
            if wanted != AUTO:
                s.add(table(component_id=component.id, state=wanted, set_by=actor, set_at=now))
                s.flush()
            snapshot.refresh(s, self.settings, now)
            detail = {"component": component.id, "state": wanted}
            append_audit(s, actor, "status_page.component", None, detail, at=now)
        if wanted == AUTO:
            return f"{component.name} follows its incidents again."
        return f"{component.name} is now shown as {COMPONENT_LABELS[wanted].lower()}."
