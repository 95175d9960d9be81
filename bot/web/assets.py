"""The status page's stylesheet and script, as strings so packaging needs no data files.

Served at /status/assets/status.css and /status/assets/status.js: the page has no inline
style or script at all, so it works under a strict CSP (`script-src 'self'`, no
`unsafe-inline` for styles either).

Colours come from `PALETTES`, one per colour scheme (`prefers-color-scheme`). Every pair in
`TEXT_PAIRS` carries text and is kept at a contrast of at least 4.5:1 (WCAG AA; a unit test
computes them). The state colours are only a supplement: each state is also a word and an
icon of its own shape.
"""

from __future__ import annotations

PALETTES: dict[str, dict[str, str]] = {
    "light": {
        "background": "#ffffff",
        "surface": "#f6f8fa",
        "border": "#d1d9e0",
        "text": "#1f2328",
        "muted": "#59636e",
        "link": "#0550ae",
        "focus": "#0969da",
        "operational": "#1a7f37",
        "degraded-performance": "#8a5b00",
        "partial-outage": "#b83c00",
        "major-outage": "#c21c2c",
        "banner-none": "#dafbe1",
        "banner-minor": "#fff8c5",
        "banner-major": "#fff1e5",
        "banner-critical": "#ffebe9",
    },
    "dark": {
        "background": "#0d1117",
        "surface": "#161b22",
        "border": "#3d444d",
        "text": "#e6edf3",
        "muted": "#9ea7b3",
        "link": "#58a6ff",
        "focus": "#58a6ff",
        "operational": "#3fb950",
        "degraded-performance": "#d29922",
        "partial-outage": "#f0883e",
        "major-outage": "#ff6b6b",
        "banner-none": "#12261e",
        "banner-minor": "#272115",
        "banner-major": "#2a1a10",
        "banner-critical": "#2d1417",
    },
}

_STATES = ("operational", "degraded-performance", "partial-outage", "major-outage")
_BANNERS = ("banner-none", "banner-minor", "banner-major", "banner-critical")

# (foreground, background) pairs where the foreground is text (or the focus ring).
TEXT_PAIRS: tuple[tuple[str, str], ...] = (
    *((fg, bg) for fg in ("text", "muted", "link", "focus") for bg in ("background", "surface")),
    *((state, bg) for state in _STATES for bg in ("background", "surface")),
    *(("text", banner) for banner in _BANNERS),
    *zip(_STATES, _BANNERS, strict=True),
)


def _custom_properties(palette: dict[str, str]) -> str:
    return "".join(f"  --{name}: {value};\n" for name, value in palette.items())


_COLOURS = (
    ":root {\n  color-scheme: light dark;\n"
    + _custom_properties(PALETTES["light"])
    + "}\n@media (prefers-color-scheme: dark) {\n:root {\n"
    + _custom_properties(PALETTES["dark"])
    + "}\n}\n"
)

_LAYOUT = """
*, *::before, *::after { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0;
  font: 1rem/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif;
  color: var(--text);
  background: var(--background);
  /* Long words and URLs in update bodies must not widen the page past 320 px. */
  overflow-wrap: anywhere;
}
.site-header, main, .site-footer { max-width: 60rem; margin: 0 auto; padding: 0 1rem; }
h1 { font-size: 1.5rem; line-height: 1.25; margin: 1.5rem 0 1rem; }
h2 { font-size: 1.25rem; line-height: 1.3; margin: 2rem 0 0.75rem; }
h3 { font-size: 1.0625rem; line-height: 1.35; margin: 0; }
p { margin: 0; }
a { color: var(--link); text-underline-offset: 0.15em; }
:focus-visible { outline: 3px solid var(--focus); outline-offset: 2px; border-radius: 2px; }
time { font-variant-numeric: tabular-nums; }

.skip-link {
  position: absolute; left: 0.5rem; top: -10rem;
  padding: 0.5rem 0.75rem; background: var(--background); color: var(--link);
}
.skip-link:focus { top: 0.5rem; }

.banner {
  display: flex; align-items: center; gap: 0.75rem;
  padding: 1rem; border-radius: 0.5rem;
  border-left: 0.375rem solid var(--state-colour);
  background: var(--banner-colour);
}
.banner h2 { margin: 0; }
.banner--none { --state-colour: var(--operational); --banner-colour: var(--banner-none); }
.banner--minor {
  --state-colour: var(--degraded-performance); --banner-colour: var(--banner-minor);
}
.banner--major { --state-colour: var(--partial-outage); --banner-colour: var(--banner-major); }
.banner--critical {
  --state-colour: var(--major-outage); --banner-colour: var(--banner-critical);
}

.icon {
  display: inline-block; flex: none; width: 1.5em; text-align: center;
  font-weight: 700; color: var(--state-colour);
}
.state--operational { --state-colour: var(--operational); }
.state--degraded_performance, .impact--minor, .incident--minor {
  --state-colour: var(--degraded-performance);
}
.state--partial_outage, .impact--major, .incident--major { --state-colour: var(--partial-outage); }
.state--major_outage, .impact--critical, .incident--critical {
  --state-colour: var(--major-outage);
}

.components {
  list-style: none; margin: 0; padding: 0;
  border: 1px solid var(--border); border-radius: 0.5rem; background: var(--surface);
}
.component {
  display: flex; flex-direction: column; gap: 0.25rem;
  padding: 0.75rem 1rem; border-top: 1px solid var(--border);
}
.component:first-child { border-top: 0; }
.component__description { color: var(--muted); font-size: 0.9375rem; }
.state { font-weight: 600; color: var(--state-colour); }

.incident {
  margin: 0 0 1rem; padding: 1rem;
  border: 1px solid var(--border); border-left: 0.375rem solid var(--state-colour, var(--border));
  border-radius: 0.5rem; background: var(--surface);
  scroll-margin-top: 1rem;
}
.incident:target { outline: 3px solid var(--focus); outline-offset: 2px; }
.incident__meta { margin: 0.25rem 0 0.75rem; color: var(--muted); font-size: 0.9375rem; }
.impact { font-weight: 600; color: var(--state-colour, var(--muted)); }
.updates { list-style: none; margin: 0; padding: 0; }
.update { padding: 0.5rem 0; border-top: 1px solid var(--border); }
.update__status { font-weight: 700; }
.update__time { color: var(--muted); font-size: 0.9375rem; }
/* Keep the line breaks people typed, without rendering anything they typed as markup. */
.update__body { margin-top: 0.25rem; white-space: pre-line; }
.empty { color: var(--muted); }

.site-footer {
  margin-top: 3rem; padding-top: 1.5rem; padding-bottom: 1.5rem;
  border-top: 1px solid var(--border); color: var(--muted); font-size: 0.9375rem;
}
.site-footer p + p { margin-top: 0.5rem; }

@media (min-width: 40rem) {
  h1 { font-size: 1.875rem; }
  .component {
    flex-direction: row; justify-content: space-between; align-items: flex-start; gap: 1rem;
  }
  .state { flex: none; text-align: right; }
}
@media (prefers-reduced-motion: no-preference) {
  html { scroll-behavior: smooth; }
}
@media (prefers-reduced-motion: reduce) {
  *, *::before, *::after {
    animation-duration: 0.01ms !important; animation-iteration-count: 1 !important;
    transition-duration: 0.01ms !important; scroll-behavior: auto !important;
  }
}
/* Windows high contrast: system colours replace ours; keep the state edges visible. */
@media (forced-colors: active) {
  .banner, .incident { border-left-color: CanvasText; }
}
"""

STYLESHEET = _COLOURS + _LAYOUT

# No build step and no framework: plain ES2017 that every current browser runs.
SCRIPT = """\
(function () {
  "use strict";

  var SOURCE = "/status";
  var FETCH_TIMEOUT_MS = 15000;
  var main = document.getElementById("status");
  if (!main) { return; }

  var localFormat = null;
  try {
    var zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
    // A reader already on UTC keeps the server's text as it is.
    if (zone && zone !== "UTC" && zone !== "Etc/UTC") {
      localFormat = new Intl.DateTimeFormat(undefined, {
        day: "numeric", month: "short", year: "numeric",
        hour: "2-digit", minute: "2-digit", timeZoneName: "short"
      });
    }
  } catch (error) {
    localFormat = null;
  }

  // Show each time in the reader's zone; the UTC text stays in its title.
  function localise(root) {
    if (!localFormat) { return; }
    var times = root.querySelectorAll("time[datetime]");
    for (var i = 0; i < times.length; i++) {
      var element = times[i];
      if (element.hasAttribute("data-utc")) { continue; }
      var moment = new Date(element.getAttribute("datetime"));
      if (isNaN(moment.getTime())) { continue; }
      var utc = element.textContent;
      element.setAttribute("data-utc", utc);
      element.setAttribute("title", utc);
      element.textContent = localFormat.format(moment);
    }
  }

  function imported(nodes) {
    return Array.prototype.map.call(nodes, function (node) {
      return document.importNode(node, true);
    });
  }

  function replaceContent(target, nodes) {
    while (target.firstChild) { target.removeChild(target.firstChild); }
    nodes.forEach(function (node) { target.appendChild(node); });
  }

  function focusedHref() {
    var active = document.activeElement;
    return active && main.contains(active) ? active.getAttribute("href") : null;
  }

  function refocus(href) {
    if (!href) { return; }
    var links = main.querySelectorAll("a[href]");
    for (var i = 0; i < links.length; i++) {
      if (links[i].getAttribute("href") === href) {
        links[i].focus({ preventScroll: true });
        return;
      }
    }
  }

  // Replace what <main> shows, not the page: the scroll position stays where it was.
  function swap(page) {
    var fresh = page.getElementById("status");
    if (!fresh) { return; }
    var href = focusedHref();
    var banner = main.querySelector("[role=status]");
    var freshBanner = fresh.querySelector("[role=status]");
    if (banner && freshBanner) {
      // Keep the live region's element so screen readers announce a changed status.
      banner.className = freshBanner.className;
      if (banner.textContent !== freshBanner.textContent) {
        replaceContent(banner, imported(freshBanner.childNodes));
      }
      Array.prototype.slice.call(main.childNodes).forEach(function (child) {
        if (child !== banner) { main.removeChild(child); }
      });
      Array.prototype.slice.call(fresh.childNodes).forEach(function (child) {
        if (child !== freshBanner) { main.appendChild(document.importNode(child, true)); }
      });
    } else {
      replaceContent(main, imported(fresh.childNodes));
    }
    var refresh = fresh.getAttribute("data-refresh");
    if (refresh) { main.setAttribute("data-refresh", refresh); }
    var updated = document.getElementById("last-updated");
    var freshUpdated = page.getElementById("last-updated");
    if (updated && freshUpdated) {
      updated.parentNode.replaceChild(document.importNode(freshUpdated, true), updated);
    }
    if (page.title) { document.title = page.title; }
    localise(document);
    refocus(href);
  }

  function intervalMs() {
    var seconds = parseInt(main.getAttribute("data-refresh"), 10);
    return (seconds >= 10 ? seconds : 60) * 1000;
  }

  var timer = null;
  var dueWhileHidden = false;

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(refresh, intervalMs());
  }

  function refresh() {
    // A background tab waits: it refreshes as soon as someone looks at it again.
    if (document.hidden) { dueWhileHidden = true; return; }
    var controller = typeof AbortController === "function" ? new AbortController() : null;
    var abort = controller
      ? setTimeout(function () { controller.abort(); }, FETCH_TIMEOUT_MS)
      : null;
    fetch(SOURCE, {
      cache: "no-cache",
      credentials: "same-origin",
      headers: { "Accept": "text/html" },
      signal: controller ? controller.signal : undefined
    })
      .then(function (response) {
        if (!response.ok) { throw new Error("status page answered " + response.status); }
        return response.text();
      })
      .then(function (text) {
        swap(new DOMParser().parseFromString(text, "text/html"));
      })
      .catch(function () {
        // Offline or the server is away: keep showing what we have and try again later.
      })
      .then(function () {
        clearTimeout(abort);
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && dueWhileHidden) {
      dueWhileHidden = false;
      refresh();
    }
  });

  localise(document);
  schedule();
})();
"""
