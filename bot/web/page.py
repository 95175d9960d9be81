"""The human status page: one HTML5 document, complete without JavaScript.

Every piece of text goes through `html.escape` (update bodies are typed by people and
are shown as text, never markup). There is no inline script or style, so the page runs
under a strict CSP; the stylesheet and the script (bot/web/assets.py) only enhance it:
local times and a refresh of `<main>` every `refresh_seconds`. Without the script a
`<noscript>` meta refresh reloads the whole page instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from html import escape

from bot.web.documents import (
    as_utc,
    headline,
    incident_anchor,
    iso_utc,
    status_word,
    utc_text,
)
from bot.web.model import COMPONENT_LABELS, ComponentView, PublicIncident, StatusSnapshot

STYLESHEET_PATH = "/status/assets/status.css"
SCRIPT_PATH = "/status/assets/status.js"
JSON_PATH = "/status.json"
FEED_PATH = "/status/feed.atom"

# A shape per state as well as a colour, so the state reads without colour vision.
# The icons are decorative (aria-hidden): the state word next to them says it.
_STATE_ICONS = {
    "operational": "✓",
    "degraded_performance": "◆",
    "partial_outage": "▲",
    "major_outage": "✕",
}
_INDICATOR_ICONS = {
    "none": _STATE_ICONS["operational"],
    "minor": _STATE_ICONS["degraded_performance"],
    "major": _STATE_ICONS["partial_outage"],
    "critical": _STATE_ICONS["major_outage"],
}
_IMPACT_LABELS = {"none": "None", "minor": "Minor", "major": "Major", "critical": "Critical"}


def render_page(snapshot: StatusSnapshot, page_url: str) -> str:
    """The page served at /status for this snapshot; `page_url` is its canonical address."""
    title = f"{headline(snapshot)} · {snapshot.page_name} status"
    component_names = {component.id: component.name for component in snapshot.components}
    parts = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<meta name="color-scheme" content="light dark">',
        f"<title>{_text(title)}</title>",
        f'<meta name="description" content="{_text(snapshot.page_name)}: current status, '
        'incidents and their updates.">',
        f'<link rel="canonical" href="{_text(page_url)}">',
        f'<link rel="stylesheet" href="{STYLESHEET_PATH}">',
        f'<link rel="alternate" type="application/atom+xml" href="{FEED_PATH}" '
        f'title="{_text(snapshot.page_name)} incidents (Atom)">',
        f'<link rel="alternate" type="application/json" href="{JSON_PATH}" '
        f'title="{_text(snapshot.page_name)} status (JSON)">',
        f'<script src="{SCRIPT_PATH}" defer></script>',
        # Without the script nothing refreshes <main>; reload the whole page instead.
        f'<noscript><meta http-equiv="refresh" content="{int(snapshot.refresh_seconds)}">'
        "</noscript>",
        "</head>",
        "<body>",
        '<a class="skip-link" href="#status">Skip to the status</a>',
        '<header class="site-header">',
        f"<h1>{_text(snapshot.page_name)} status</h1>",
        "</header>",
        f'<main id="status" data-refresh="{int(snapshot.refresh_seconds)}">',
        _banner(snapshot),
        _components(snapshot.components),
        _active_incidents(snapshot.active, component_names),
        _resolved_incidents(snapshot.resolved, component_names, snapshot.history_days),
        "</main>",
        _footer(snapshot.updated_at),
        "</body>",
        "</html>",
    ]
    return "\n".join(parts) + "\n"


def _banner(snapshot: StatusSnapshot) -> str:
    indicator = snapshot.indicator if snapshot.indicator in _INDICATOR_ICONS else "minor"
    # role="status" makes it a polite live region: the script updates it in place.
    return (
        f'<section class="banner banner--{indicator}" role="status" '
        'aria-labelledby="banner-title">'
        f'<span class="icon" aria-hidden="true">{_INDICATOR_ICONS[indicator]}</span> '
        f'<h2 id="banner-title">{_text(headline(snapshot))}</h2>'
        "</section>"
    )


def _components(components: Iterable[ComponentView]) -> str:
    items = [_component(component) for component in components]
    if not items:
        return ""
    return (
        '<section aria-labelledby="components-title">'
        '<h2 id="components-title">Components</h2>'
        '<ul class="components">' + "".join(items) + "</ul></section>"
    )


def _component(component: ComponentView) -> str:
    state = component.status if component.status in _STATE_ICONS else "degraded_performance"
    label = COMPONENT_LABELS.get(component.status, status_word(component.status))
    description = (
        f'<p class="component__description">{_text(component.description)}</p>'
        if component.description
        else ""
    )
    return (
        f'<li class="component" id="component-{_text(component.id)}">'
        f'<div><h3 class="component__name">{_text(component.name)}</h3>{description}</div>'
        f'<p class="state state--{state}">'
        f'<span class="icon" aria-hidden="true">{_STATE_ICONS[state]}</span> '
        f"<span>{_text(label)}</span></p>"
        "</li>"
    )


def _active_incidents(
    incidents: Iterable[PublicIncident], component_names: Mapping[str, str]
) -> str:
    articles = [_incident(incident, component_names) for incident in incidents]
    body = "".join(articles) or '<p class="empty">No incidents reported</p>'
    return (
        '<section aria-labelledby="active-title">'
        '<h2 id="active-title">Active incidents</h2>' + body + "</section>"
    )


def _resolved_incidents(
    incidents: Iterable[PublicIncident], component_names: Mapping[str, str], days: int
) -> str:
    period = "day" if days == 1 else f"{days} days"
    articles = [_incident(incident, component_names) for incident in incidents]
    body = "".join(articles) or f'<p class="empty">No incidents in the last {period}</p>'
    return (
        '<section aria-labelledby="history-title">'
        f'<h2 id="history-title">Resolved in the last {period}</h2>' + body + "</section>"
    )


def _incident(incident: PublicIncident, component_names: Mapping[str, str]) -> str:
    anchor = incident_anchor(incident.id)
    impact = incident.impact if incident.impact in _IMPACT_LABELS else "minor"
    # A component removed from config since keeps no public name: leave it out.
    affected = [component_names[c] for c in incident.components if c in component_names]
    meta = [f'<span class="impact impact--{impact}">Impact: {_IMPACT_LABELS[impact]}</span>']
    if affected:
        meta.append(f"Affects {_text(', '.join(affected))}")
    meta.append(f"Started {_time(incident.created_at)}")
    if incident.resolved_at is not None:
        meta.append(f"Resolved {_time(incident.resolved_at)}")
    updates = sorted(incident.updates, key=lambda u: (as_utc(u.created_at), u.id), reverse=True)
    items = "".join(
        '<li class="update">'
        f'<p><span class="update__status">{_text(status_word(update.status))}</span> '
        f'<span class="update__time">{_time(update.created_at)}</span></p>'
        f'<p class="update__body">{_text(update.body)}</p>'
        "</li>"
        for update in updates
    )
    return (
        f'<article class="incident incident--{impact}" id="{anchor}" '
        f'aria-labelledby="{anchor}-title">'
        f'<h3 id="{anchor}-title"><a href="#{anchor}">{_text(incident.name)}</a></h3>'
        f'<p class="incident__meta">{" · ".join(meta)}</p>'
        f'<ol class="updates" aria-label="Updates, newest first">{items}</ol>'
        "</article>"
    )


def _footer(updated_at: datetime) -> str:
    return (
        '<footer class="site-footer">'
        f'<p>Last updated <span id="last-updated">{_time(updated_at)}</span>.</p>'
        f'<p><a href="{JSON_PATH}">Status as JSON</a> · '
        f'<a href="{FEED_PATH}">Incident feed (Atom)</a></p>'
        "</footer>"
    )


def _time(moment: datetime) -> str:
    """A `<time>` in UTC; the script rewrites the text to local time and keeps UTC in a title."""
    return f'<time datetime="{iso_utc(moment)}">{_text(utc_text(moment))}</time>'


def _text(value: str) -> str:
    return escape(value, quote=True)
