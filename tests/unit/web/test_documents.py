"""The status JSON (Statuspage summary shape) and the Atom feed, rendered from a snapshot."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import pytest

from bot.web.documents import atom_feed, iso_utc, page_slug, status_json, utc_text
from bot.web.model import ComponentView, PublicIncident, PublicUpdate, StatusSnapshot

PAGE_URL = "https://status.example.com:8443/status"
ATOM = "{http://www.w3.org/2005/Atom}"
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)


def _at(hours: float) -> datetime:
    return NOW - timedelta(hours=hours)


def _snapshot(body: str = "We are looking into it.") -> StatusSnapshot:
    active = PublicIncident(
        id=7,
        name="Configuration sync delayed",
        status="identified",
        impact="critical",
        created_at=_at(1),
        updated_at=_at(0.5),
        resolved_at=None,
        components=("ssot",),
        updates=(
            PublicUpdate(71, "identified", "A bad deploy; rolling back.", _at(0.5)),
            PublicUpdate(70, "investigating", body, _at(1)),
        ),
    )
    resolved = PublicIncident(
        id=3,
        name="Slow API responses",
        status="resolved",
        impact="minor",
        created_at=_at(30),
        updated_at=_at(27),
        resolved_at=_at(27),
        components=("apis",),
        updates=(
            PublicUpdate(32, "resolved", "Fixed.", _at(27)),
            PublicUpdate(31, "monitoring", "A fix is out.", _at(28)),
            PublicUpdate(30, "investigating", "Looking.", _at(30)),
        ),
    )
    return StatusSnapshot(
        page_name="NEXUS platform",
        page_url=PAGE_URL,
        updated_at=NOW,
        indicator="critical",
        description="Major outage",
        components=(
            ComponentView("ssot", "Configuration (SSOT)", "The source of truth.", "major_outage"),
            ComponentView("frenly-ai", "Frenly AI", "AI changes.", "partial_outage", True),
            ComponentView("apis", "Platform APIs", "Orders and billing.", "operational"),
        ),
        active=(active,),
        resolved=(resolved,),
    )


def test_the_page_and_overall_status() -> None:
    document = status_json(_snapshot(), PAGE_URL)

    assert document["page"] == {
        "id": "nexus-platform",
        "name": "NEXUS platform",
        "url": PAGE_URL,
        "time_zone": "Etc/UTC",
        "updated_at": "2026-11-30T04:00:00Z",
    }
    assert document["status"] == {"indicator": "critical", "description": "Major outage"}
    assert document["scheduled_maintenances"] == []


def test_components_keep_their_order_and_states_including_an_override() -> None:
    components = status_json(_snapshot(), PAGE_URL)["components"]

    assert [(c["id"], c["status"], c["position"]) for c in components] == [
        ("ssot", "major_outage", 1),
        ("frenly-ai", "partial_outage", 2),
        ("apis", "operational", 3),
    ]
    assert components[1] == {
        "id": "frenly-ai",
        "name": "Frenly AI",
        "description": "AI changes.",
        "status": "partial_outage",
        "position": 2,
        "page_id": "nexus-platform",
        "group": False,
        "group_id": None,
        "only_show_if_degraded": False,
    }


def test_incidents_lists_the_unresolved_and_resolved_incidents_the_rest() -> None:
    document = status_json(_snapshot(), PAGE_URL)

    assert [i["id"] for i in document["incidents"]] == ["7"]
    assert [i["id"] for i in document["resolved_incidents"]] == ["3"]
    active = document["incidents"][0]
    assert active == {
        "id": "7",
        "name": "Configuration sync delayed",
        "status": "identified",
        "impact": "critical",
        "created_at": "2026-11-30T03:00:00Z",
        "started_at": "2026-11-30T03:00:00Z",
        "updated_at": "2026-11-30T03:30:00Z",
        "monitoring_at": None,
        "resolved_at": None,
        "shortlink": f"{PAGE_URL}#incident-7",
        "page_id": "nexus-platform",
        "components": ["ssot"],
        "incident_updates": [
            {
                "id": "71",
                "incident_id": "7",
                "status": "identified",
                "body": "A bad deploy; rolling back.",
                "created_at": "2026-11-30T03:30:00Z",
                "updated_at": "2026-11-30T03:30:00Z",
                "display_at": "2026-11-30T03:30:00Z",
            },
            {
                "id": "70",
                "incident_id": "7",
                "status": "investigating",
                "body": "We are looking into it.",
                "created_at": "2026-11-30T03:00:00Z",
                "updated_at": "2026-11-30T03:00:00Z",
                "display_at": "2026-11-30T03:00:00Z",
            },
        ],
    }


def test_a_resolved_incident_has_its_times_and_updates_newest_first() -> None:
    resolved = status_json(_snapshot(), PAGE_URL)["resolved_incidents"][0]

    assert resolved["resolved_at"] == "2026-11-29T01:00:00Z"
    assert resolved["monitoring_at"] == "2026-11-29T00:00:00Z"
    assert [u["status"] for u in resolved["incident_updates"]] == [
        "resolved",
        "monitoring",
        "investigating",
    ]
    assert resolved["shortlink"] == f"{PAGE_URL}#incident-3"


def test_every_time_is_utc_with_a_z_and_the_document_is_plain_json() -> None:
    document = status_json(_snapshot(), PAGE_URL)
    text = json.dumps(document)
    times = re.findall(r'"(?:\w+_at)": "([^"]+)"', text)

    assert times and all(ISO_Z.match(t) for t in times)
    assert json.loads(text) == document


def test_a_time_in_another_zone_is_converted_to_utc() -> None:
    paris = timezone(timedelta(hours=1))
    moment = datetime(2026, 11, 30, 4, 12, 30, tzinfo=paris)

    assert iso_utc(moment) == "2026-11-30T03:12:30Z"
    assert iso_utc(datetime(2026, 11, 30, 3, 12)) == "2026-11-30T03:12:00Z"  # naive = UTC
    assert utc_text(moment) == "30 Nov 2026, 03:12 UTC"


@pytest.mark.parametrize(
    ("name", "slug"),
    [("NEXUS platform", "nexus-platform"), ("  Ünïcode & Co. ", "unicode-co"), ("✓", "status")],
)
def test_the_page_id_is_a_stable_slug(name: str, slug: str) -> None:
    assert page_slug(name) == slug


def _feed(snapshot: StatusSnapshot | None = None, page_url: str = PAGE_URL) -> ET.Element:
    return ET.fromstring(atom_feed(snapshot or _snapshot(), page_url))


def test_the_feed_is_atom_with_its_required_elements() -> None:
    raw = atom_feed(_snapshot(), PAGE_URL)
    feed = ET.fromstring(raw)

    assert raw.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    assert feed.tag == f"{ATOM}feed"
    assert feed.findtext(f"{ATOM}id") == "tag:status.example.com,2026:status"
    assert feed.findtext(f"{ATOM}title") == "NEXUS platform status"
    assert feed.findtext(f"{ATOM}updated") == "2026-11-30T04:00:00Z"
    assert feed.findtext(f"{ATOM}author/{ATOM}name") == "NEXUS platform"
    links = {link.get("rel"): link.attrib for link in feed.findall(f"{ATOM}link")}
    assert links["self"]["href"] == f"{PAGE_URL}/feed.atom"
    assert links["self"]["type"] == "application/atom+xml"
    assert links["alternate"]["href"] == PAGE_URL


def test_one_entry_per_public_update_newest_first() -> None:
    entries = _feed().findall(f"{ATOM}entry")

    assert [e.findtext(f"{ATOM}id") for e in entries] == [
        "tag:status.example.com,2026:incident-7/update-71",
        "tag:status.example.com,2026:incident-7/update-70",
        "tag:status.example.com,2026:incident-3/update-32",
        "tag:status.example.com,2026:incident-3/update-31",
        "tag:status.example.com,2026:incident-3/update-30",
    ]
    updated = [e.findtext(f"{ATOM}updated") or "" for e in entries]
    assert updated == sorted(updated, reverse=True)
    assert all(ISO_Z.match(u) for u in updated)


def test_an_entry_has_title_content_link_and_categories() -> None:
    entry = _feed().findall(f"{ATOM}entry")[0]

    assert entry.findtext(f"{ATOM}title") == "Configuration sync delayed — Identified"
    assert entry.findtext(f"{ATOM}updated") == "2026-11-30T03:30:00Z"
    assert entry.findtext(f"{ATOM}published") == "2026-11-30T03:30:00Z"
    content = entry.find(f"{ATOM}content")
    assert content is not None
    assert content.get("type") == "text"
    assert content.text == "A bad deploy; rolling back."
    link = entry.find(f"{ATOM}link")
    assert link is not None and link.get("href") == f"{PAGE_URL}#incident-7"
    category = entry.find(f"{ATOM}category")
    assert category is not None
    assert (category.get("term"), category.get("label")) == ("ssot", "Configuration (SSOT)")


def test_entry_ids_are_stable_across_renders_and_new_updates() -> None:
    first = [e.findtext(f"{ATOM}id") for e in _feed().findall(f"{ATOM}entry")]
    again = [e.findtext(f"{ATOM}id") for e in _feed().findall(f"{ATOM}entry")]
    snapshot = _snapshot()
    incident = snapshot.active[0]
    newer = PublicUpdate(72, "monitoring", "Rolled back; watching.", NOW)
    later = replace(snapshot, active=(replace(incident, updates=(newer, *incident.updates)),))
    after_an_update = [e.findtext(f"{ATOM}id") for e in _feed(later).findall(f"{ATOM}entry")]

    assert first == again
    assert len(set(first)) == len(first)
    # A new update adds an entry on top; readers keep the ones they already have.
    assert after_an_update == ["tag:status.example.com,2026:incident-7/update-72", *first]


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script>",
        "x ]]> <![CDATA[ y",
        '"><img src=x onerror=alert(1)> & &amp;',
    ],
)
def test_bodies_are_escaped_text(body: str) -> None:
    raw = atom_feed(_snapshot(body), PAGE_URL)
    entry = ET.fromstring(raw).findall(f"{ATOM}entry")[1]

    assert entry.findtext(f"{ATOM}content") == body
    assert b"<script>" not in raw
    assert b"]]>" not in raw
    assert b"<img" not in raw


def test_characters_xml_cannot_hold_are_dropped_not_left_to_break_the_feed() -> None:
    raw = atom_feed(_snapshot("bell\x07 and null\x00 end"), PAGE_URL)

    assert ET.fromstring(raw).findall(f"{ATOM}entry")[1].findtext(f"{ATOM}content") == (
        "bell and null end"
    )


def test_an_empty_page_has_a_valid_feed_without_entries() -> None:
    snapshot = StatusSnapshot(
        page_name="NEXUS platform",
        page_url=None,
        updated_at=NOW,
        indicator="none",
        description="All systems operational",
        components=(),
        active=(),
        resolved=(),
    )
    feed = _feed(snapshot, "http://localhost:8080/status")

    assert feed.findall(f"{ATOM}entry") == []
    assert feed.findtext(f"{ATOM}id") == "tag:localhost,2026:status"
    assert feed.findtext(f"{ATOM}updated") == "2026-11-30T04:00:00Z"
    assert feed.findtext(f"{ATOM}subtitle") == "All systems operational"
    assert status_json(snapshot, "http://localhost:8080/status")["incidents"] == []
