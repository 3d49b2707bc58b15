"""The book as readers see it: every page in a real browser (Chromium or Chrome).

The book is built once for the session (the ``built_book`` fixture), served on loopback
the way GitHub Pages serves the project site (under ``_config.yml``'s
``notfound_urls_prefix``, e.g. ``/backprop-by-hand/``, with 404.html for missing paths), and
opened with Playwright. One browser serves the whole module; every test is parametrized by
page, so a failure names the page.

The browser: ``scripts/find_browser.py`` (``$CHROMIUM_PATH``, Playwright's Chrome channel,
then common paths on Linux and macOS). Without one the tests skip, saying so, except under
``CI=true``, where they fail. Playwright's own browser downloads are never used.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import yaml

from conftest import ROOT, toc_docs
from find_browser import BrowserNotFound, find_browser
from offline import external_resources, site_problems

pytestmark = [pytest.mark.build, pytest.mark.browser]


def site_prefix() -> str:
    """The path the site is served under, as the 404 page's links expect it: a project site
    https://OWNER.github.io/REPO/ is under /REPO/ (a fork sets its own in _config.yml)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    prefix = (config["sphinx"]["config"].get("notfound_urls_prefix") or "/").strip("/")
    return f"/{prefix}/" if prefix else "/"


PREFIX = site_prefix()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
PHONE = {"width": 390, "height": 844}
LAPTOP = {"width": 1280, "height": 800}


PAGES = [f"{doc}.html" for doc in toc_docs()]
CHAPTERS = [p for p in PAGES if p != PAGES[0]]


# --- the site and the browser ----------------------------------------------------------
class Handler(http.server.SimpleHTTPRequestHandler):
    """Serves the book under PREFIX, and 404.html (status 404) for missing files."""

    def translate_path(self, path):
        clean = urlsplit(path).path
        if clean.startswith(PREFIX):
            clean = "/" + clean[len(PREFIX) :]
        return super().translate_path(clean)

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        if not path.exists():
            body = (Path(self.directory) / "404.html").read_bytes()
            self.send_response(404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        return super().send_head()

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(built_book):
    assert built_book.returncode == 0, "the book did not build:\n" + built_book.log[-4000:]
    handler = functools.partial(Handler, directory=str(built_book.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Site(f"http://127.0.0.1:{server.server_address[1]}{PREFIX}", built_book.html)
    server.shutdown()
    server.server_close()


class Site:
    def __init__(self, base: str, html: Path):
        self.base, self.html = base, html
        self.origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))

    def url(self, page: str) -> str:
        return self.base + page


@pytest.fixture(scope="module")
def browser():
    # Locally, no browser (or no Playwright) skips the module, saying why; in CI (CI=true),
    # or when CHROMIUM_PATH names a browser that is not there, it fails. (Module-scoped:
    # other modules start Playwright themselves, and two cannot run in one thread.)
    in_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    unavailable = pytest.fail if in_ci else pytest.skip
    try:
        from playwright import sync_api
    except ImportError:
        unavailable("Playwright is not installed: make test installs it")
    try:
        found = find_browser()
    except BrowserNotFound as error:
        asked = bool(os.environ.get("CHROMIUM_PATH"))
        (pytest.fail if asked else unavailable)(f"browser tests need Chrome or Chromium: {error}")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(**found.launch_options(), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or parts.hostname in (
        "127.0.0.1",
        "localhost",
        "::1",
    )


class Visit:
    """One page opened in a new tab, with everything that went wrong recorded.

    By default the tab opens in the module's shared browser context (its HTTP cache keeps
    the suite fast); ``own_context=True`` or any context option (viewport, offline, ...)
    gives the visit a fresh context of its own, with an empty cache.
    """

    def __init__(self, browser, shared, url: str, offline=False, theme=None, **context):
        self.console, self.failed, self.bad_status, self.external = [], [], [], []
        own = context.pop("own_context", False) or offline or bool(context)
        self.own_context = own
        self.context = (
            browser.new_context(viewport=context.pop("viewport", LAPTOP), **context)
            if own
            else shared
        )
        if offline:
            # Every request that would leave the machine is recorded and aborted.
            def route(r):
                if is_loopback(r.request.url):
                    r.continue_()
                else:
                    self.external.append(r.request.url)
                    r.abort()

            self.context.route("**/*", route)
        self.page = self.context.new_page()
        if theme:  # as if the reader had chosen it with the theme button
            self.page.add_init_script(
                f"localStorage.setItem('mode', '{theme}'); localStorage.setItem('theme', '{theme}');"
            )
        self.page.on("console", lambda m: m.type == "error" and self.console.append(m.text))
        self.page.on("pageerror", lambda e: self.console.append(f"uncaught: {e}"))
        self.page.on("requestfailed", lambda r: self.failed.append(f"{r.url} ({r.failure})"))
        self.page.on("request", lambda r: is_loopback(r.url) or self.external.append(r.url))
        self.page.on(
            "response", lambda r: r.status >= 400 and self.bad_status.append(f"{r.url} {r.status}")
        )
        self.response = self.page.goto(url, wait_until="load")

    def close(self):
        if self.own_context:
            self.context.close()
        else:
            self.page.close()


@pytest.fixture(scope="module")
def shared_context(browser):
    context = browser.new_context(viewport=LAPTOP)
    yield context
    context.close()


@pytest.fixture
def visit(browser, shared_context):
    opened = []

    def open_(url, **kwargs):
        v = Visit(browser, shared_context, url, **kwargs)
        opened.append(v)
        return v

    yield open_
    for v in opened:
        v.close()


def source_text(site: Site, page: str) -> str:
    src = site.html / "_sources" / Path(page).with_suffix(".md")
    return src.read_text(encoding="utf-8") if src.exists() else ""


MATH_STATE = """() => {
  const math = [...document.querySelectorAll('.math')];
  return {
    math: math.length,
    untypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    containers: document.querySelectorAll('mjx-container').length,
    text: document.body.innerText,
  };
}"""


def check_math(site: Site, page: str, state: dict) -> None:
    assert not state["untypeset"], f"{page}: math left untypeset: {state['untypeset']}"
    raw = [tok for tok in ("$$", "\\(", "\\[") if tok in state["text"]]
    assert not raw, f"{page}: raw TeX delimiters {raw} in the visible text"
    if re.search(r"\$[^$\n]+\$|\{math\}|\\begin\{", source_text(site, page)):
        assert state["containers"] > 0, f"{page}: has math but no MathJax output (mjx-container)"


# --- every page: one visit on a laptop, one on a phone ------------------------------------
# Each page is opened once at 1280 px (offline, with an empty cache, as the self-contained
# and clean-load checks need) and once on a phone; every check reads what that visit saw,
# and each is still a test of its own, parametrized by page, so that a failure names the
# check and the page. A page's tests go to one xdist worker (its xdist_group), so that
# the page is opened once per run, not once per worker.

WIDE_CODE_OK: dict[str, list[str]] = {}
# Code that may scroll sideways at 1280 px, by page: only a line that truly cannot be
# wrapped belongs here, with the reason. (Empty: every code cell fits.)

LAPTOP_LAYOUT = """() => ({
  searchFields: [...document.querySelectorAll('.search-button-field, input[type=search]')]
    .filter(e => e.offsetParent !== null && getComputedStyle(e).visibility !== 'hidden').length,
  wide: [...document.querySelectorAll('article pre, article div.cell_output, article .highlight')]
    .filter(e => e.scrollWidth > e.clientWidth + 1)
    .map(e => e.textContent.split('\\n').reduce((a, b) => (a.length >= b.length ? a : b), '')),
})"""
OUTPUTS = (
    "cells => cells.map(c => { const o = c.querySelector('.cell_output');"
    " return o ? (o.textContent.trim().length + o.querySelectorAll('img, svg, table').length) : 0; })"
)
IMAGES = """async () => {
  const imgs = [...document.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.decode().catch(() => null)));
  return imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.currentSrc || i.src);
}"""
AXE_RUN = "async () => await axe.run(document, {resultTypes: ['violations']})"
THEME = "document.documentElement.dataset.theme"
PHONE_SCROLL = """() => {
  const width = document.scrollingElement.scrollWidth, inner = window.innerWidth;
  const culprits = width <= inner ? [] : [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > inner + 1)
    .slice(0, 8).map(e => e.tagName.toLowerCase() + '.' + [...e.classList].join('.'));
  return {width, inner, culprits};
}"""


def check_laptop_layout(page: str, state: dict) -> None:
    assert state["searchFields"] == 1, (
        f"{page}: {state['searchFields']} search fields at 1280 px, not 1"
    )
    wide = [
        line for line in state["wide"] if not any(ok in line for ok in WIDE_CODE_OK.get(page, []))
    ]
    assert not wide, f"{page}: code that scrolls sideways at 1280 px (longest lines): {wide}"


def axe_violations(result: dict) -> list[str]:
    return [
        f"{x['id']} ({x['impact']}): {x['help']}\n    "
        + "\n    ".join(
            n["target"][0] if len(n["target"]) == 1 else str(n["target"]) for n in x["nodes"][:5]
        )
        for x in result["violations"]
    ]


@dataclass
class Seen:
    """What one page showed: on a laptop (offline, empty cache, light, then dark) and on
    a phone. Each field is read by the test named beside it."""

    status: int  # test_page_loads_cleanly
    console: list  # test_page_loads_cleanly (light), test_self_contained
    failed: list  # test_page_loads_cleanly, test_self_contained
    bad_status: list  # test_page_loads_cleanly
    external: list  # test_self_contained: requests that would have left the machine
    math: dict  # both
    layout: dict  # test_laptop_layout
    sidebar: list  # test_sidebar_reaches_every_chapter
    outputs: list  # test_outputs_and_figures: each div.cell's output size
    broken_images: list  # test_outputs_and_figures
    missing_alt: list  # test_outputs_and_figures
    links: list  # test_downloads_and_launch_buttons
    downloads: dict  # test_downloads_and_launch_buttons: href -> (status, text)
    themes: list  # test_dark_mode_switch: html[data-theme] before and after each click
    axe: dict  # test_accessibility: {mode: (html[data-theme], violations)}
    phone: dict  # test_phone_no_horizontal_scroll


def see(site: Site, browser, page: str) -> Seen:
    """Open ``page`` once on a laptop and once on a phone, and record what every check
    of this module reads."""
    v = Visit(browser, None, site.url(page), offline=True)  # light: the system's scheme
    try:
        loaded = (list(v.console), list(v.failed), list(v.bad_status), list(v.external))
        math, layout = v.page.evaluate(MATH_STATE), v.page.evaluate(LAPTOP_LAYOUT)
        sidebar = v.page.eval_on_selector_all(
            "nav.bd-docs-nav a.reference.internal, .navbar-brand", "as => as.map(a => a.href)"
        )
        outputs = v.page.eval_on_selector_all("div.cell", OUTPUTS)
        broken = v.page.evaluate(IMAGES)
        missing_alt = v.page.eval_on_selector_all("img:not([alt])", "imgs => imgs.map(i => i.src)")
        links = v.page.eval_on_selector_all("a", "as => as.map(a => a.getAttribute('href') || '')")
        downloads = {}
        for href in links:  # the page's downloads: its .md and its reader's notebook
            if href.endswith((".md", ".ipynb")) and "//" not in href:
                response = v.context.request.get(urljoin(site.url(page), href))
                downloads[href] = (response.status, response.text() if response.ok else "")
        axe = {}
        v.page.add_script_tag(path=str(AXE))
        axe["light"] = (v.page.evaluate(THEME), axe_violations(v.page.evaluate(AXE_RUN)))
        themes = [v.page.evaluate(THEME)]
        for _ in range(3):
            v.page.click("button.theme-switch-button")
            themes.append(v.page.evaluate(THEME))
        # dark, as a reader who chose it (and whose system prefers it) loads the page
        v.page.emulate_media(color_scheme="dark")
        v.page.evaluate(
            "localStorage.setItem('mode', 'dark'); localStorage.setItem('theme', 'dark')"
        )
        v.page.reload(wait_until="load")
        v.page.add_script_tag(path=str(AXE))
        axe["dark"] = (v.page.evaluate(THEME), axe_violations(v.page.evaluate(AXE_RUN)))
        console = loaded[0] + [c for c in v.console if c not in loaded[0]]
    finally:
        v.close()
    phone = Visit(
        browser, None, site.url(page), viewport=PHONE, device_scale_factor=3, is_mobile=True,
        has_touch=True,
    )  # fmt: skip
    try:
        scroll = phone.page.evaluate(PHONE_SCROLL)
    finally:
        phone.close()
    return Seen(
        v.response.status, console, loaded[1], loaded[2], loaded[3], math, layout, sidebar,
        outputs, broken, missing_alt, links, downloads, themes, axe, scroll,
    )  # fmt: skip


# (site, page) -> what it showed, for the worker's whole session: a module's fixtures are
# torn down whenever xdist interleaves another module's tests, what a page showed is not
_SEEN: dict[tuple[str, str], Seen] = {}


@pytest.fixture(scope="module")
def seen(site, browser):
    """``seen(page)``: what ``page`` showed, opened on the first test that asks."""

    def get(page: str) -> Seen:
        key = (str(site.html), page)
        if key not in _SEEN:
            _SEEN[key] = see(site, browser, page)
        return _SEEN[key]

    return get


def by_page(pages: list[str]) -> list:
    """``pages`` as parameters, each page's tests grouped on one xdist worker."""
    return [pytest.param(p, id=p, marks=pytest.mark.xdist_group(f"page-{p}")) for p in pages]


@pytest.mark.parametrize("page", by_page(PAGES))
def test_page_loads_cleanly(site, seen, page):
    """With an empty cache, every request is made: none fails, no console error."""
    v = seen(page)
    assert v.status == 200, f"{page}: HTTP {v.status}"
    assert not v.console, f"{page}: console errors:\n" + "\n".join(v.console)
    assert not v.failed, f"{page}: failed requests:\n" + "\n".join(v.failed)
    assert not v.bad_status, f"{page}: HTTP errors:\n" + "\n".join(v.bad_status)
    check_math(site, page, v.math)


@pytest.mark.parametrize("page", by_page(PAGES))
def test_outputs_and_figures(site, seen, page):
    """Every executed output is on the page, and every image has loaded."""
    v = seen(page)
    notebook = site.html / "_sources" / Path(page).with_suffix(".ipynb")
    if notebook.exists():
        cells = [
            c
            for c in json.loads(notebook.read_text(encoding="utf-8"))["cells"]
            if c["cell_type"] == "code" and "remove-cell" not in c["metadata"].get("tags", [])
        ]
        shown = v.outputs
        assert len(shown) == len(cells), (
            f"{page}: {len(cells)} code cells, {len(shown)} on the page"
        )
        missing = [
            i
            for i, (c, n) in enumerate(zip(cells, shown))
            if c.get("outputs") and "remove-output" not in c["metadata"].get("tags", []) and n == 0
        ]
        assert not missing, f"{page}: code cells {missing} (0-based) show none of their outputs"
    assert not v.broken_images, f"{page}: images that did not load: {v.broken_images}"
    assert not v.missing_alt, f"{page}: images without alt text: {v.missing_alt}"


@pytest.mark.parametrize("page", by_page(PAGES))
def test_sidebar_reaches_every_chapter(site, seen, page):
    reached = {h.split("#")[0] for h in seen(page).sidebar}
    expected = {site.url(p) for p in PAGES}
    assert expected <= reached, f"{page}: sidebar lacks {sorted(expected - reached)}"


@pytest.mark.parametrize("page", by_page(PAGES))
def test_dark_mode_switch(seen, page):
    before, after, *_ = themes = seen(page).themes
    assert before != after, f"{page}: the theme button did not change html[data-theme] ({before!r})"
    assert {"light", "dark"} <= set(themes), f"{page}: the theme button cycles through {themes}"


@pytest.mark.parametrize("page", by_page(PAGES))
def test_phone_no_horizontal_scroll(seen, page):
    phone = seen(page).phone
    if phone["width"] > phone["inner"]:
        pytest.fail(
            f"{page}: on a 390 px phone the page scrolls sideways ({phone['width']} > "
            f"{phone['inner']}): {phone['culprits']}"
        )


@pytest.mark.parametrize("page", by_page(PAGES))
def test_laptop_layout(seen, page):
    """At 1280 px: one search field (the theme once showed a second one in a bar above
    the sidebar's), and no code cell or output scrolls sideways."""
    check_laptop_layout(page, seen(page).layout)


def test_layout_check_names_folded_code(browser):
    """A folded cell's code that scrolls sideways is named by its longest line: innerText,
    which the check read, is empty for what a closed fold hides."""
    page = browser.new_page(viewport=LAPTOP)
    try:
        wide = "W_g = X.t() @ G  # " + "wide " * 60
        page.set_content(
            f'<article><details><summary>Show code</summary><pre style="overflow:auto">{wide}</pre>'
            "</details></article>"
        )
        state = page.evaluate(LAPTOP_LAYOUT)
        assert state["wide"] == [wide], state["wide"]
    finally:
        page.close()


# --- phone details (issue 20.3) ----------------------------------------------------------------
SMALL_PHONES = [{"width": 320, "height": 640}, PHONE]
LINE_STARTS = """() => {
  // every "·" of the badge and every inline formula's closing punctuation: is it the first
  // thing on its line (its left edge at the left edge of the line's block)?
  const out = [];
  const badge = document.querySelector('p.byhand-badge');
  if (badge) {
    const left = badge.getBoundingClientRect().left + parseFloat(getComputedStyle(badge).paddingLeft)
      + parseFloat(getComputedStyle(badge).borderLeftWidth);
    const walker = document.createTreeWalker(badge, NodeFilter.SHOW_TEXT);
    for (let t = walker.nextNode(); t; t = walker.nextNode()) {
      for (let i = t.data.indexOf('·'); i >= 0; i = t.data.indexOf('·', i + 1)) {
        const r = document.createRange(); r.setStart(t, i); r.setEnd(t, i + 1);
        if (Math.abs(r.getBoundingClientRect().left - left) < 2) out.push('badge line starts with ·');
      }
    }
    const meta = badge.querySelector('.byhand-badge-meta');
    if (meta && Math.abs(meta.getClientRects()[0].left - left) > 2) out.push('badge: version not on its own line');
  }
  for (const glued of document.querySelectorAll('article .math-nowrap')) {
    if (glued.getClientRects().length > 1) out.push('formula parted from its punctuation: ' + glued.textContent.slice(-40));
  }
  return out;
}"""


@pytest.mark.parametrize("viewport", SMALL_PHONES, ids=["320", "390"])
@pytest.mark.parametrize("page", PAGES)
def test_no_line_starts_with_punctuation(site, visit, page, viewport):
    """On a phone, the page badge's version and date start a line of their own (its
    second line began with "·"), and an inline formula keeps the punctuation after it on
    its line (six places wrapped a comma or a full stop onto a line of its own)."""
    v = visit(site.url(page), viewport=viewport, is_mobile=True, has_touch=True)
    found = v.page.evaluate(LINE_STARTS)
    assert not found, f"{page} at {viewport['width']} px: {found}"


HEADER_BUTTONS = """() => [...document.querySelectorAll('.bd-header-article .btn')]
  .filter((b) => b.getClientRects().length && !b.closest('.dropdown-menu'))
  .map((b) => { const r = b.getBoundingClientRect();
    return [b.title || b.getAttribute('aria-label') || b.className, r.left, r.right, r.width, r.height]; })"""


@pytest.mark.parametrize("viewport", SMALL_PHONES, ids=["320", "390"])
def test_header_buttons_fit_a_small_phone(site, visit, viewport):
    """Every button of the bar above a chapter is whole on the screen of a 320 px phone (the
    last one, the page's contents, was cut off at the right edge), none over the next, each
    at least 24 px wide and high (WCAG's smallest target)."""
    v = visit(site.url(CHAPTERS[0]), viewport=viewport, is_mobile=True, has_touch=True)
    buttons = v.page.evaluate(HEADER_BUTTONS)
    assert len(buttons) >= 7, buttons
    width = viewport["width"]
    cut = [name for name, left, right, *_ in buttons if left < 0 or right > width]
    assert not cut, f"at {width} px, buttons not whole on the screen: {cut}"
    overlap = [(a[0], b[0]) for a, b in zip(buttons, buttons[1:]) if b[1] < a[2] - 0.5]
    assert not overlap, f"at {width} px, buttons over each other: {overlap}"
    small = [(name, w, h) for name, _, _, w, h in buttons if w < 24 or h < 24]
    assert not small, f"at {width} px, buttons smaller than 24 px: {small}"


@pytest.mark.parametrize("mode", ["light", "dark"])
def test_how_close_in_a_fold_looks_as_elsewhere(site, visit, mode):
    """ "How close?" under a check inside a folded cell (the gallery's) is drawn as under any
    other check: the theme gave it the fold's own blue bar and link colour."""
    outside = visit(site.url(CHAPTERS[0]), color_scheme=mode, theme=mode, viewport=PHONE)
    inside = visit(
        site.url("book/wrong-answers.html"), color_scheme=mode, theme=mode, viewport=PHONE
    )
    style = """(inFold) => {
      const s = [...document.querySelectorAll('.grad-check summary')].find((x) => !!x.closest('details.hide') === inFold);
      if (!s) return null;
      const c = getComputedStyle(s);
      return [c.borderLeftStyle, c.borderLeftWidth, c.color, c.fontSize].join(' ');
    }"""
    folded, plain = inside.page.evaluate(style, True), outside.page.evaluate(style, False)
    assert folded and plain, "a page lacks a How close? inside or outside a fold"
    assert folded == plain, f"{mode}: How close? in a fold: {folded}; elsewhere: {plain}"


def paint_with_fonts_held(page, url: str) -> list:
    """Open ``url`` with the icon fonts held back until the page has painted (two frames
    after DOMContentLoaded), as on a slow network. Returns the held requests: the caller
    lets them through with ``route.continue_()``."""
    fonts = []
    page.route("**/*.woff", lambda route: fonts.append(route))
    page.goto(url, wait_until="domcontentloaded")
    page.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")
    assert fonts, "the page asks for its icon fonts before it has painted"
    return fonts


ICON_BOXES = """() => [...document.querySelectorAll('.btn, .btn i, .btn span')]
  .filter((e) => e.getClientRects().length)
  .map((e) => { const r = e.getBoundingClientRect();
    return [e.className, r.x, r.y, r.width, r.height].join(' '); })"""


@pytest.mark.parametrize("viewport", [PHONE, LAPTOP], ids=["phone", "laptop"])
def test_icons_keep_their_place_when_the_font_arrives(site, browser, viewport):
    """The buttons (the bar above the article, the sidebar's search field) are laid out
    the same before the icon fonts arrive and after: a slow network cannot shift them.
    The fonts are held back until the page has painted."""
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        fonts = paint_with_fonts_held(page, site.url(CHAPTERS[0]))
        before = page.evaluate(ICON_BOXES)
        for route in fonts:
            route.continue_()
        page.wait_for_load_state("load")
        page.evaluate("() => document.fonts.ready")
        assert page.evaluate("() => document.fonts.check('900 1em \"Font Awesome 6 Free\"')")
        after = page.evaluate(ICON_BOXES)
        assert len(before) > 5
        moved = [(b, a) for b, a in zip(before, after) if b != a]
        assert not moved and len(before) == len(after), f"moved when the icon font came: {moved}"
    finally:
        context.close()


@pytest.mark.parametrize("mode", ["light", "dark"])
@pytest.mark.parametrize("page", by_page(PAGES))
def test_accessibility(seen, page, mode):
    """axe-core finds no violation (WCAG 2.x A/AA and best practices), in both themes."""
    assert AXE.exists(), f"{AXE} missing: run npm ci"
    theme, violations = seen(page).axe[mode]
    assert theme == mode, f"{page}: html[data-theme] is {theme!r}, not {mode!r}"
    assert not violations, f"{page} ({mode}): axe violations:\n" + "\n".join(violations)


@pytest.mark.parametrize("page", by_page(PAGES))
def test_self_contained(site, seen, page):
    """With every request to another host blocked, the page still loads fully."""
    v = seen(page)
    assert not v.external, f"{page}: requests leaving the site:\n" + "\n".join(v.external)
    own = [f for f in v.failed if f.startswith(site.origin)]
    assert not own, f"{page}: failed same-origin requests:\n" + "\n".join(own)
    assert not v.console, f"{page}: console errors offline:\n" + "\n".join(v.console)
    check_math(site, page, v.math)


# --- the cheat sheet on paper -------------------------------------------------------------
def pdf_sides(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page[^s]", pdf))


@pytest.mark.parametrize("paper", ["A4", "Letter"])
def test_cheatsheet_prints_on_one_side(site, visit, paper):
    """The cheat sheet's rules print on one side of the paper, and the table of forward and
    backward pairs on the back: one sheet. Its formulas print in the text's weight: MathJax's
    glyphs carry a zero-width stroke, which a PDF draws as a hairline round every glyph (bold
    math in PDF viewers) unless the print stylesheet drops it."""
    v = visit(site.url("book/cheatsheet.html"))
    v.page.emulate_media(media="print")
    stroked = v.page.evaluate(
        """() => [...document.querySelectorAll('mjx-container svg [stroke-width="0"]')]
            .filter(g => getComputedStyle(g).stroke !== 'none').length"""
    )
    assert stroked == 0, (
        f"cheat sheet, print: {stroked} math glyph groups keep their hairline stroke"
    )
    sides = pdf_sides(v.page.pdf(format=paper, print_background=True))
    assert sides == 2, f"the cheat sheet prints on {sides} sides of {paper}, not two"
    v.page.add_style_tag(content="section:has(> #cheatsheet-duality) { display: none; }")
    front = pdf_sides(v.page.pdf(format=paper, print_background=True))
    assert front == 1, f"the cheat sheet's rules print on {front} sides of {paper}, not one"


# --- site features ------------------------------------------------------------------------
@pytest.mark.parametrize("word", ["unsqueeze"])
def test_search_finds(site, visit, word):
    expected = {p for p in PAGES if word in source_text(site, p).lower()}
    assert expected, f"no page mentions {word!r}: search for a word the book uses"
    v = visit(site.url(f"search.html?q={word}"))
    v.page.wait_for_selector("#search-results ul.search li", timeout=15000)
    found = v.page.eval_on_selector_all(
        "#search-results ul.search li a", "as => as.map(a => a.href)"
    )
    found = {urlsplit(h).path.removeprefix(PREFIX) for h in found}
    assert found, f"search for {word!r} lists nothing"
    assert expected & found, f"search for {word!r} lists {sorted(found)}, not {sorted(expected)}"
    assert not v.console, "search page console errors:\n" + "\n".join(v.console)


@pytest.mark.parametrize("page", by_page(CHAPTERS))
def test_downloads_and_launch_buttons(seen, page):
    """Each chapter offers its reader's notebook (.ipynb) and its .md, and Colab and Binder
    open the notebook (tests/test_notebooks.py checks every page's addresses)."""
    v = seen(page)
    stem = Path(page).with_suffix("")
    wanted = {".ipynb": f"notebooks/{stem.name}.ipynb", ".md": f"_sources/{stem}.md"}
    for ext, tail in wanted.items():
        href = next((h for h in v.links if h.endswith(tail) and "//" not in h), None)
        assert href, f"{page}: no download link for {tail}"
        status, text = v.downloads[href]
        assert 200 <= status < 300, f"{page}: {href} -> HTTP {status}"
        if ext == ".ipynb":
            assert json.loads(text)["cells"], f"{page}: empty notebook"
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    repo = urlsplit(config["repository"]["url"]).path.strip("/")
    binder = [h for h in v.links if h.startswith("https://mybinder.org/v2/gh/")]
    colab = [h for h in v.links if h.startswith("https://colab.research.google.com/github/")]
    assert binder and all(f"/gh/{repo}/" in h for h in binder), f"{page}: Binder links {binder}"
    assert colab and all(f"/github/{repo}/" in h for h in colab), f"{page}: Colab links {colab}"


def test_sitemap_lists_every_page(site):
    sitemap = (site.html / "sitemap.xml").read_text(encoding="utf-8")
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    base = config["html"]["baseurl"].rstrip("/") + "/"
    listed = set(re.findall(r"<loc>([^<]+)</loc>", sitemap))
    missing = [p for p in PAGES if base + p not in listed]
    assert not missing, f"sitemap.xml lacks {missing}; it lists {sorted(listed)}"


@pytest.mark.parametrize("page", PAGES)
def test_opengraph(site, page):
    text = (site.html / page).read_text(encoding="utf-8")
    for prop in ("og:title", "og:url", "og:description", "og:site_name"):
        assert re.search(rf'<meta property="{prop}" content="[^"]+"', text), f"{page}: no {prop}"
    canonical = re.search(r'<link rel="canonical" href="([^"]+)"', text)
    assert canonical and canonical.group(1).endswith(page), f"{page}: canonical link {canonical}"


def test_404_page(site, visit):
    assert (site.html / "404.html").is_file()
    v = visit(site.base + "no/such/page.html")
    assert v.response.status == 404
    assert not v.failed and not v.bad_status[1:], f"404 page: {v.failed} {v.bad_status}"
    styled = v.page.evaluate(
        "getComputedStyle(document.documentElement).getPropertyValue('--pst-color-primary').trim()"
    )
    assert styled, "404 page did not load the theme's CSS"
    assert v.page.locator("nav.bd-docs-nav a.reference.internal").count() >= len(CHAPTERS)
    errors = [c for c in v.console if "status of 404" not in c]  # the page itself is a 404
    assert not errors, "404 page console errors:\n" + "\n".join(errors)


def test_no_third_party_resources(site):
    """No built page (search, index and 404 included) or stylesheet loads anything from
    another host (book/_ext/offline.py defines what counts; the build checks it too)."""
    problems = site_problems(site.html)
    assert not problems, "third-party resources:\n" + "\n".join(problems)


# --- the preview renders what the book renders ---------------------------------------------


@pytest.fixture(scope="module")
def preview_pair(passing_book):
    """tests/books.py's passing book, as make book's script and the preview built it."""
    assert passing_book.book.returncode == 0, passing_book.book.log[-4000:]
    assert passing_book.previews[0].returncode == 0, passing_book.previews[0].log[-4000:]
    return passing_book.book_html, passing_book.first_preview_html


PREVIEW_PAGES = ["book/intro.html", "book/preview-page.html"]


def _rendered(html: Path, page: str) -> tuple[str, list[str]]:
    """A page's article and the list of what its <head> loads, build paths left out."""
    text = (html / page).read_text(encoding="utf-8")
    article = text[text.index("<article") : text.index("</article>")]
    head = text[: text.index("</head>")]
    loads = re.findall(r'<(?:script|link)\b[^>]*(?:src|href)="([^"]+)"', head)
    return article, loads


@pytest.mark.parametrize("page", PREVIEW_PAGES)
def test_preview_renders_like_the_book(preview_pair, page):
    book, preview = preview_pair
    book_article, book_loads = _rendered(book, page)
    preview_article, preview_loads = _rendered(preview, page)
    assert preview_article == book_article, f"{page}: the preview's article differs from the book's"
    assert preview_loads == book_loads, (
        f"{page}: the preview loads {preview_loads}, the book {book_loads}"
    )
    assert "<mjx-container" in (preview / PREVIEW_PAGES[1]).read_text(encoding="utf-8")


@pytest.mark.parametrize("page", PREVIEW_PAGES)
def test_preview_page_offline(preview_pair, browser, shared_context, page):
    """The preview's page, offline: everything loads, math is typeset, one search field,
    no code scrolls sideways, no third-party resource, no axe violation."""
    _, preview = preview_pair
    handler = functools.partial(Handler, directory=str(preview))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        site = Site(f"http://127.0.0.1:{server.server_address[1]}{PREFIX}", preview)
        v = Visit(browser, shared_context, site.url(page), offline=True)
        try:
            assert not v.external, f"{page}: requests leaving the site: {v.external}"
            assert not v.console and not v.failed, f"{page}: {v.console} {v.failed}"
            state = v.page.evaluate(MATH_STATE)
            assert not state["untypeset"], f"{page}: math left untypeset: {state['untypeset']}"
            check_laptop_layout(page, v.page.evaluate(LAPTOP_LAYOUT))
            assert not external_resources((preview / page).read_text(encoding="utf-8"))
            v.page.add_script_tag(path=str(AXE))
            result = v.page.evaluate(
                "async () => await axe.run(document, {resultTypes: ['violations']})"
            )
            assert not result["violations"], (
                f"{page}: axe: {[x['id'] for x in result['violations']]}"
            )
        finally:
            v.close()
    finally:
        server.shutdown()
        server.server_close()
