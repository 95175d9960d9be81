"""The status page's machine-readable documents: a Statuspage-style JSON summary and an Atom feed.

Both are pure functions of a `StatusSnapshot` (already only published facts, invariant 9),
so a request renders from the stored snapshot and never touches incidents.

JSON shape: Atlassian Statuspage's `summary.json`, which users already script against
(`status.indicator`, `components[].status`, `incidents[]` = the unresolved ones, with
`incident_updates` newest first). Resolved incidents of the last `history_days` are in an
extra `resolved_incidents` list rather than mixed into `incidents`, so a script that
alerts on "any incident listed" keeps working; unknown keys are ignored by such scripts.
"""

from __future__ import annotations

import re
import unicodedata
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from bot.web.model import INDICATORS, PublicIncident, PublicUpdate, StatusSnapshot

ATOM_NAMESPACE = "http://www.w3.org/2005/Atom"
# The year in every tag: URI (RFC 4151). Fixed, so entry ids never change once readers saw them.
_TAG_YEAR = "2026"
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# XML 1.0 forbids most C0 controls even escaped; ElementTree would write them and break the feed.
_NOT_XML_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def as_utc(moment: datetime) -> datetime:
    """The instant in UTC; a naive datetime (the store never gives one) is taken as UTC."""
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def iso_utc(moment: datetime) -> str:
    """ISO 8601 / RFC 3339 in UTC with a `Z`, to the second: `2026-11-30T03:12:00Z`."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_text(moment: datetime) -> str:
    """What a person reads before the script localises it: `30 Nov 2026, 03:12 UTC`.

    Month names are spelled out here, not with `%b`, which follows the process locale.
    """
    utc = as_utc(moment)
    return f"{utc.day} {_MONTHS[utc.month - 1]} {utc.year}, {utc:%H:%M} UTC"


def status_word(status: str) -> str:
    """`investigating` -> `Investigating` (the public statuses are single words)."""
    return status.replace("_", " ").capitalize()


def headline(snapshot: StatusSnapshot) -> str:
    """The banner's words for the indicator; the snapshot's own text only for an unknown one."""
    return INDICATORS.get(snapshot.indicator) or snapshot.description


def page_slug(name: str) -> str:
    """A stable id for the page from its name: `NEXUS platform` -> `nexus-platform`."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-") or "status"


def incident_anchor(incident_id: int) -> str:
    """The fragment each incident's <article> carries on the page."""
    return f"incident-{incident_id}"


def incident_link(page_url: str, incident_id: int) -> str:
    return f"{_without_fragment(page_url)}#{incident_anchor(incident_id)}"


def status_json(snapshot: StatusSnapshot, page_url: str) -> dict[str, Any]:
    """The summary document served at /status.json (see the module docstring for its shape)."""
    page_id = page_slug(snapshot.page_name)
    return {
        "page": {
            "id": page_id,
            "name": snapshot.page_name,
            "url": page_url,
            "time_zone": "Etc/UTC",
            "updated_at": iso_utc(snapshot.updated_at),
        },
        "status": {"indicator": snapshot.indicator, "description": headline(snapshot)},
        # No `updated_at` per component: the snapshot does not know when each one last
        # changed, and a made-up time would mislead scripts that diff on it.
        "components": [
            {
                "id": component.id,
                "name": component.name,
                "description": component.description,
                "status": component.status,
                "position": position,
                "page_id": page_id,
                "group": False,
                "group_id": None,
                "only_show_if_degraded": False,
            }
            for position, component in enumerate(snapshot.components, start=1)
        ],
        "incidents": [_incident_json(i, page_url, page_id) for i in snapshot.active],
        "resolved_incidents": [_incident_json(i, page_url, page_id) for i in snapshot.resolved],
        # Statuspage has them; we have none, and an absent key would break `data[...]` scripts.
        "scheduled_maintenances": [],
    }


def _incident_json(incident: PublicIncident, page_url: str, page_id: str) -> dict[str, Any]:
    monitoring = [u.created_at for u in incident.updates if u.status == "monitoring"]
    return {
        "id": str(incident.id),
        "name": incident.name,
        "status": incident.status,
        "impact": incident.impact,
        "created_at": iso_utc(incident.created_at),
        "started_at": iso_utc(incident.created_at),
        "updated_at": iso_utc(incident.updated_at),
        "monitoring_at": iso_utc(min(monitoring)) if monitoring else None,
        "resolved_at": iso_utc(incident.resolved_at) if incident.resolved_at else None,
        "shortlink": incident_link(page_url, incident.id),
        "page_id": page_id,
        "components": list(incident.components),
        "incident_updates": [
            {
                "id": str(update.id),
                "incident_id": str(incident.id),
                "status": update.status,
                "body": update.body,
                "created_at": iso_utc(update.created_at),
                "updated_at": iso_utc(update.created_at),
                "display_at": iso_utc(update.created_at),
            }
            for update in _newest_first(incident.updates)
        ],
    }


def atom_feed(snapshot: StatusSnapshot, page_url: str) -> bytes:
    """An Atom 1.0 feed (RFC 4287) with one entry per public update, newest first.

    Built with ElementTree so every name and body is escaped; bodies are `type="text"`,
    so a reader never renders what someone typed as HTML.
    """
    host = _tag_authority(page_url)
    entries = sorted(
        (
            (incident, update)
            for incident in (*snapshot.active, *snapshot.resolved)
            for update in incident.updates
        ),
        key=lambda pair: (as_utc(pair[1].created_at), pair[1].id),
        reverse=True,
    )
    newest = max(
        [as_utc(snapshot.updated_at), *(as_utc(update.created_at) for _, update in entries)]
    )
    names = {component.id: component.name for component in snapshot.components}

    # Unqualified tags under a default xmlns: ElementTree's `default_namespace` option
    # refuses unqualified attribute names (rel, href), which Atom needs.
    feed = ET.Element("feed", xmlns=ATOM_NAMESPACE)
    _text(feed, "id", f"tag:{host},{_TAG_YEAR}:status")
    _text(feed, "title", f"{snapshot.page_name} status")
    _text(feed, "subtitle", headline(snapshot))
    _text(feed, "updated", iso_utc(newest))
    _link(
        feed,
        f"{_without_fragment(page_url).rstrip('/')}/feed.atom",
        rel="self",
        type="application/atom+xml",
    )
    _link(feed, page_url, rel="alternate", type="text/html")
    # RFC 4287 wants an author on the feed when entries have none of their own.
    author = ET.SubElement(feed, "author")
    _text(author, "name", snapshot.page_name)

    for incident, update in entries:
        entry = ET.SubElement(feed, "entry")
        _text(entry, "id", f"tag:{host},{_TAG_YEAR}:incident-{incident.id}/update-{update.id}")
        _text(entry, "title", f"{incident.name} — {status_word(update.status)}")
        _text(entry, "updated", iso_utc(update.created_at))
        _text(entry, "published", iso_utc(update.created_at))
        _link(entry, incident_link(page_url, incident.id), rel="alternate", type="text/html")
        for component_id in incident.components:
            category = ET.SubElement(entry, "category", term=component_id)
            if component_id in names:
                category.set("label", _xml_safe(names[component_id]))
        _text(entry, "content", update.body).set("type", "text")

    document: bytes = ET.tostring(feed, encoding="utf-8", xml_declaration=True)
    return document


def _newest_first(updates: Iterable[PublicUpdate]) -> list[PublicUpdate]:
    # The model promises newest first; sorting again costs nothing and keeps the promise here.
    return sorted(updates, key=lambda u: (as_utc(u.created_at), u.id), reverse=True)


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    element = ET.SubElement(parent, tag)
    element.text = _xml_safe(text)
    return element


def _link(parent: ET.Element, href: str, *, rel: str, type: str) -> None:
    ET.SubElement(parent, "link", rel=rel, type=type, href=_xml_safe(href))


def _xml_safe(text: str) -> str:
    return _NOT_XML_CHARACTERS.sub("", text)


def _tag_authority(page_url: str) -> str:
    """The host for tag: URIs: a DNS name without port (RFC 4151 allows no port there)."""
    return urlsplit(page_url).hostname or "localhost"


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]
