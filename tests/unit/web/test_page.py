"""The HTML status page and its assets: structure, escaping, CSP-friendliness, contrast."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from bot.web.assets import PALETTES, SCRIPT, STYLESHEET, TEXT_PAIRS
from bot.web.model import (
    COMPONENT_LABELS,
    INDICATORS,
    ComponentView,
    PublicIncident,
    PublicUpdate,
    StatusSnapshot,
)
from bot.web.page import render_page

PAGE_URL = "https://status.example.com/status"
NOW = datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
SCRIPT_BODY = "<script>alert(1)</script>"
ATTRIBUTE_BODY = '"><img src=x onerror=alert(1)>'
VOID = {"meta", "link", "br", "img", "input", "hr", "source", "wbr"}
ICONS = {"none": "✓", "minor": "◆", "major": "▲", "critical": "✕"}
INLINE = {"a", "span", "time", "strong", "em", "abbr", "code"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Element] = field(default_factory=list)


class _TreeBuilder(HTMLParser):
    """A small DOM from the standard library's parser; fails on a misnested end tag."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]
        self.all: list[Element] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {name: value or "" for name, value in attrs})
        if tag not in INLINE:  # a block starts on its own line, as a reader would see it
            self.handle_data("\n")
        self.stack[-1].children.append(element)
        self.all.append(element)
        if tag not in VOID:
            self.stack.append(element)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        for element in self.stack:
            element.text += data


def _parse(page: str) -> _TreeBuilder:
    tree = _TreeBuilder()
    tree.feed(page)
    tree.close()
    assert [e.tag for e in tree.stack] == ["#document"], "unclosed elements"
    return tree


def _find(tree: _TreeBuilder, tag: str, **attrs: str) -> list[Element]:
    return [
        e
        for e in tree.all
        if e.tag == tag and all(e.attrs.get(k.rstrip("_")) == v for k, v in attrs.items())
    ]


def _one(tree: _TreeBuilder, tag: str, **attrs: str) -> Element:
    found = _find(tree, tag, **attrs)
    assert len(found) == 1, (tag, attrs, len(found))
    return found[0]


def _words(text: str) -> str:
    return " ".join(text.split())


def _incident(number: int, *, hours_ago: float = 1, resolved: bool = False) -> PublicIncident:
    start = NOW - timedelta(hours=hours_ago)
    updates = [PublicUpdate(number * 10, "investigating", "Looking into it.", start)]
    if resolved:
        updates.insert(
            0, PublicUpdate(number * 10 + 1, "resolved", "All fixed.", start + timedelta(hours=1))
        )
    return PublicIncident(
        id=number,
        name=f"Incident {number}",
        status=updates[0].status,
        impact="major",
        created_at=start,
        updated_at=updates[0].created_at,
        resolved_at=updates[0].created_at if resolved else None,
        components=("ssot",),
        updates=tuple(updates),
    )


def _snapshot(**changes: object) -> StatusSnapshot:
    active = PublicIncident(
        id=7,
        name="Configuration sync delayed",
        status="identified",
        impact="critical",
        created_at=datetime(2026, 11, 30, 3, 12, tzinfo=UTC),
        updated_at=datetime(2026, 11, 30, 3, 40, tzinfo=UTC),
        resolved_at=None,
        components=("ssot", "gone-from-config"),
        updates=(
            PublicUpdate(
                71, "identified", f"Rolled back.\n{SCRIPT_BODY}", NOW - timedelta(minutes=20)
            ),
            PublicUpdate(
                70, "investigating", ATTRIBUTE_BODY, datetime(2026, 11, 30, 3, 12, tzinfo=UTC)
            ),
        ),
    )
    snapshot = StatusSnapshot(
        page_name="NEXUS <platform>",
        page_url=PAGE_URL,
        updated_at=NOW,
        indicator="critical",
        description="Major outage",
        components=(
            ComponentView("ssot", "Configuration (SSOT)", "The source of truth.", "major_outage"),
            ComponentView("frenly-ai", "Frenly AI", "AI changes.", "partial_outage", True),
            ComponentView("apis", "Platform APIs", "", "degraded_performance"),
            ComponentView("search", "Search", "Finding things.", "operational"),
        ),
        active=(active,),
        resolved=(_incident(3, hours_ago=30, resolved=True),),
        refresh_seconds=45,
    )
    return replace(snapshot, **changes)  # type: ignore[arg-type]


def _empty() -> StatusSnapshot:
    return _snapshot(
        indicator="none",
        description="All systems operational",
        components=(ComponentView("ssot", "Configuration (SSOT)", "", "operational"),),
        active=(),
        resolved=(),
    )


def test_head_links_the_assets_and_refreshes_without_script() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    assert _one(tree, "html").attrs["lang"] == "en"
    assert "width=device-width" in _one(tree, "meta", name="viewport").attrs["content"]
    assert _one(tree, "meta", name="color-scheme").attrs["content"] == "light dark"
    assert _one(tree, "link", rel="stylesheet").attrs["href"] == "/status/assets/status.css"
    script = _one(tree, "script")
    assert script.attrs == {"src": "/status/assets/status.js", "defer": ""}
    refresh = _one(tree, "noscript").children
    assert [(e.tag, e.attrs) for e in refresh] == [
        ("meta", {"http-equiv": "refresh", "content": "45"})
    ]
    feed = _one(tree, "link", rel="alternate", type="application/atom+xml")
    assert feed.attrs["href"] == "/status/feed.atom"
    assert _one(tree, "title").text == "Major outage · NEXUS <platform> status"


def test_landmarks_and_the_banner() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    assert _words(_one(tree, "header").text) == "NEXUS <platform> status"
    main = _one(tree, "main")
    assert main.attrs == {"id": "status", "data-refresh": "45"}
    banner = _one(tree, "section", role="status")
    assert _words(banner.text) == "✕ Major outage"
    assert _one(tree, "h2", id=banner.attrs["aria-labelledby"]).text == "Major outage"
    assert banner is main.children[0]
    assert _one(tree, "footer")


@pytest.mark.parametrize("indicator", list(INDICATORS))
def test_the_banner_says_the_indicator_in_words(indicator: str) -> None:
    tree = _parse(render_page(_snapshot(indicator=indicator), PAGE_URL))

    banner = _one(tree, "section", role="status")
    assert _one(tree, "h2", id="banner-title").text.strip() == INDICATORS[indicator]
    assert f"banner--{indicator}" in banner.attrs["class"]
    icon = banner.children[0]
    assert (icon.attrs, icon.text) == ({"class": "icon", "aria-hidden": "true"}, ICONS[indicator])


def test_each_component_shows_its_name_description_and_state_in_words() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    items = _find(tree, "li", **{"class": "component"})
    assert [_words(item.text) for item in items] == [
        "Configuration (SSOT) The source of truth. ✕ Major outage",
        "Frenly AI AI changes. ▲ Partial outage",
        "Platform APIs ◆ Degraded performance",
        "Search Finding things. ✓ Operational",
    ]
    for item, component in zip(items, _snapshot().components, strict=True):
        state = item.children[-1]
        icon, word = state.children
        assert icon.attrs["aria-hidden"] == "true"
        assert word.text == COMPONENT_LABELS[component.status]
        assert state.attrs["class"] == f"state state--{component.status}"


def test_an_active_incident_with_its_updates_newest_first() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    article = _one(tree, "article", id="incident-7")
    assert _one(tree, "h3", id=article.attrs["aria-labelledby"]).text == (
        "Configuration sync delayed"
    )
    assert _one(tree, "a", href="#incident-7")
    meta = _words(article.children[1].text)
    # The component no longer in config has no public name and is left out.
    assert meta.startswith("Impact: Critical · Affects Configuration (SSOT) · Started")
    statuses = _find(tree, "span", **{"class": "update__status"})
    assert [s.text for s in statuses][:2] == ["Identified", "Investigating"]
    times = [t for t in _find(tree, "time") if t.attrs["datetime"] == "2026-11-30T03:12:00Z"]
    assert {t.text for t in times} == {"30 Nov 2026, 03:12 UTC"}
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", t.attrs["datetime"])
        for t in _find(tree, "time")
    )


def test_update_bodies_appear_only_as_escaped_text() -> None:
    page = render_page(_snapshot(), PAGE_URL)
    tree = _parse(page)

    bodies = [b.text for b in _find(tree, "p", **{"class": "update__body"})]
    assert bodies[:2] == [f"Rolled back.\n{SCRIPT_BODY}", ATTRIBUTE_BODY]
    assert "<script>alert" not in page
    assert "<img" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in page
    assert not _find(tree, "img")


def test_the_page_needs_no_inline_script_or_style() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    assert all(s.attrs.get("src") and not s.text.strip() for s in _find(tree, "script"))
    assert not _find(tree, "style")
    for element in tree.all:
        assert "style" not in element.attrs, element
        assert not [a for a in element.attrs if a.startswith("on")], element
        assert not element.attrs.get("href", "").lower().startswith("javascript:")


def test_ids_are_unique_and_every_label_points_at_one() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    ids = [e.attrs["id"] for e in tree.all if "id" in e.attrs]
    assert len(ids) == len(set(ids))
    for element in tree.all:
        if "aria-labelledby" in element.attrs:
            assert element.attrs["aria-labelledby"] in ids


def test_resolved_incidents_of_the_history_are_listed_after_the_active() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    sections = [s for s in _one(tree, "main").children if s.tag == "section"]
    assert [_one(tree, "h2", id=s.attrs["aria-labelledby"]).text for s in sections] == [
        "Major outage",
        "Components",
        "Active incidents",
        "Resolved in the last 14 days",
    ]
    history = sections[-1]
    assert [a.attrs["id"] for a in history.children if a.tag == "article"] == ["incident-3"]
    assert "Resolved 28 Nov 2026, 23:00 UTC" in _words(history.text)


def test_the_footer_says_when_and_links_the_feeds() -> None:
    tree = _parse(render_page(_snapshot(), PAGE_URL))

    footer = _one(tree, "footer")
    assert "Last updated 30 Nov 2026, 04:00 UTC." in _words(footer.text)
    assert _one(tree, "span", id="last-updated").children[0].attrs == {
        "datetime": "2026-11-30T04:00:00Z"
    }
    links = footer.children[1].children
    assert [(a.attrs["href"], a.text) for a in links] == [
        ("/status.json", "Status as JSON"),
        ("/status/feed.atom", "Incident feed (Atom)"),
    ]


def test_a_quiet_page() -> None:
    tree = _parse(render_page(_empty(), PAGE_URL))

    assert _one(tree, "h2", id="banner-title").text == "All systems operational"
    empty = [p.text for p in _find(tree, "p", **{"class": "empty"})]
    assert empty == ["No incidents reported", "No incidents in the last 14 days"]
    assert not _find(tree, "article")


def test_fifty_active_incidents_all_render() -> None:
    incidents = tuple(_incident(n, hours_ago=n) for n in range(1, 51))
    tree = _parse(render_page(_snapshot(active=incidents, resolved=()), PAGE_URL))

    articles = _find(tree, "article")
    assert [a.attrs["id"] for a in articles] == [f"incident-{n}" for n in range(1, 51)]


def _luminance(colour: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize("scheme", list(PALETTES))
def test_text_colours_reach_a_contrast_of_four_and_a_half(scheme: str) -> None:
    palette = PALETTES[scheme]
    low = {
        (fg, bg): round(contrast(palette[fg], palette[bg]), 2)
        for fg, bg in TEXT_PAIRS
        if contrast(palette[fg], palette[bg]) < 4.5
    }
    assert low == {}


def test_the_stylesheet_defines_every_colour_it_uses_and_adapts_to_the_reader() -> None:
    defined = set(re.findall(r"(--[\w-]+)\s*:", STYLESHEET))
    used = set(re.findall(r"var\((--[\w-]+)", STYLESHEET))

    assert used <= defined, used - defined
    for rule in ("prefers-color-scheme: dark", "prefers-reduced-motion: reduce", ":focus-visible"):
        assert rule in STYLESHEET
    assert "@import" not in STYLESHEET and "url(" not in STYLESHEET


def test_the_script_refreshes_main_from_the_same_origin_and_localises_times() -> None:
    assert "fetch(SOURCE, {" in SCRIPT and 'var SOURCE = "/status";' in SCRIPT
    assert 'cache: "no-cache"' in SCRIPT
    assert 'new DOMParser().parseFromString(text, "text/html")' in SCRIPT
    assert 'getAttribute("data-refresh")' in SCRIPT
    assert 'getElementById("status")' in SCRIPT
    assert "time[datetime]" in SCRIPT
    # Nothing that turns text into code or markup.
    for risky in ("eval(", "innerHTML", "outerHTML", "document.write", "new Function"):
        assert risky not in SCRIPT
