"""A real browser for tests: Debian's Chromium, driven by Playwright's sync API.

Playwright never downloads a browser here (no `playwright install`): it starts
the system's `/usr/bin/chromium` (or `NEXUS_CHROMIUM`), headless. Without
Chromium or the Playwright package a test skips with the reason on a developer
machine and fails when CI=true (.ci/run installs Chromium, the `test` extra
installs Playwright)::

    @pytest.fixture(scope="module")
    def chromium() -> Iterator[Browser]:
        with launch_chromium() as browser:
            yield browser

    def test_page(chromium: Browser) -> None:
        with open_page(chromium, PHONE_DARK) as page:
            page.goto(url)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tests.conftest import unavailable

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

DEFAULT_CHROMIUM = "/usr/bin/chromium"
ColorScheme = Literal["light", "dark", "no-preference"]


def chromium_executable() -> str:
    """The Chromium binary to drive; skips (fails when CI=true) if there is none."""
    chosen = os.environ.get("NEXUS_CHROMIUM")
    wanted = chosen or DEFAULT_CHROMIUM
    path: str | None = wanted
    if not Path(wanted).is_file():
        # Only the default may be found elsewhere on PATH; a chosen one must exist.
        path = None if chosen else shutil.which("chromium")
    if path is None:
        unavailable(
            f"Chromium not installed at {wanted} (Debian package 'chromium'; .ci/run installs it)"
        )
    assert path is not None
    return path


def chromium_args() -> list[str]:
    """Chromium refuses to start sandboxed as root (CI and this machine run as root)."""
    args = ["--disable-dev-shm-usage", "--disable-gpu"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")
    return args


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """A headless Chromium for the block, closed (with Playwright's driver) after it."""
    executable = chromium_executable()
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed (pip install -e '.[test]')")
        raise  # unreachable: unavailable() skips or fails
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=chromium_args()
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class Viewport:
    """A screen: its CSS pixel size, colour scheme, and whether it is a phone (touch,
    device scale factor 2)."""

    width: int
    height: int
    color_scheme: ColorScheme = "light"
    mobile: bool = False


DESKTOP = Viewport(1280, 900)
PHONE_DARK = Viewport(390, 844, "dark", mobile=True)


@contextmanager
def open_page(
    browser: Browser, viewport: Viewport = DESKTOP, *, timeout_ms: float = 10_000
) -> Iterator[Page]:
    """A page in a fresh context (no shared cookies or cache) on this viewport, in UTC
    and en-US so times and words are the same on every machine."""
    context = browser.new_context(
        viewport={"width": viewport.width, "height": viewport.height},
        color_scheme=viewport.color_scheme,
        is_mobile=viewport.mobile,
        has_touch=viewport.mobile,
        device_scale_factor=2 if viewport.mobile else 1,
        locale="en-US",
        timezone_id="UTC",
    )
    context.set_default_timeout(timeout_ms)
    try:
        yield context.new_page()
    finally:
        context.close()
