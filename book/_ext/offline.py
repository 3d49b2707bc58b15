"""No page loads anything from another host: checked at the end of every build.

This module is the one definition of "loads from another host"; the browser tests
(tests/test_browser.py) import it too.

A browser fetches by itself: scripts, stylesheets, preloads, icons and manifests
(``<link rel=...>``), images (``src`` and ``srcset``), frames, media, and ``url(...)`` /
``@import`` in CSS (``<style>``, ``style=""`` and the site's stylesheets). A plain link
(``<a href>``, ``<link rel="canonical">``) is not fetched and is fine. A script that
fetches a URL it names in a string (thebe's unpkg.com bundle did) is caught by the
second rule: no page text may name a known CDN host.

At ``build-finished`` every built page and stylesheet is checked; a resource from
another host fails the build, naming the page. The one exception: without Node.js the
math falls back to MathJax from its CDN (``mathsvg.py`` says so loudly), and that one
script is allowed.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import SphinxError
from sphinx.util import logging

logger = logging.getLogger(__name__)

# A URL on another host: absolute (http:, https:) or scheme-relative (//host/...).
REMOTE_URL = re.compile(r"^\s*(?:https?:)?//", re.I)
FETCHED_LINK_RELS = {"stylesheet", "preload", "modulepreload", "prefetch", "icon",
                     "shortcut", "apple-touch-icon", "manifest", "mask-icon"}  # fmt: skip
SRC_TAGS = {
    "script",
    "img",
    "iframe",
    "frame",
    "source",
    "audio",
    "video",
    "track",
    "embed",
    "input",
}
# url(...) and @import in CSS (inline or in a stylesheet) that point to another host.
CSS_REMOTE = re.compile(
    r"""url\(\s*['"]?\s*(?:https?:)?//[^)'"]*|@import\s+['"](?:https?:)?//[^'"]*""", re.I
)
# Hosts that serve scripts, styles and fonts to other sites: a page that names one in any
# text (an inline script's string, a config snippet) is about to fetch from it.
CDN_HOSTS = re.compile(
    r"(?:https?:)?//(?:cdn\.jsdelivr\.net|unpkg\.com|cdnjs\.cloudflare\.com|fonts\.googleapis\.com"
    r"|fonts\.gstatic\.com|ajax\.googleapis\.com|code\.jquery\.com|cdn\.plot\.ly"
    r"|use\.fontawesome\.com|kit\.fontawesome\.com|polyfill\.io)[^\s\"'<>)]*",
    re.I,
)
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "reports"}


class ExternalResourceError(SphinxError):
    category = "Self-contained pages"


class _Fetches(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag in SRC_TAGS:
            for key in ("src", "poster", "data"):
                if REMOTE_URL.match(a.get(key, "")):
                    self.found.append(f"<{tag} {key}={a[key]}>")
            for candidate in a.get("srcset", "").split(","):
                url = candidate.strip().split(" ")[0]
                if REMOTE_URL.match(url):
                    self.found.append(f"<{tag} srcset={url}>")
        if tag == "object" and REMOTE_URL.match(a.get("data", "")):
            self.found.append(f"<object data={a['data']}>")
        if tag == "link":
            rels = set(a.get("rel", "").lower().split())
            if rels & FETCHED_LINK_RELS and REMOTE_URL.match(a.get("href", "")):
                self.found.append(f"<link rel={a['rel']} href={a['href']}>")
        if "style" in a:
            self.found += [f'style="{m}"' for m in CSS_REMOTE.findall(a["style"])]
        self._in_style = tag == "style"

    def handle_endtag(self, tag):
        self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.found += [f"<style> {m}" for m in CSS_REMOTE.findall(data)]


def external_resources(page_html: str) -> list[str]:
    """What a page would fetch from another host (empty for a self-contained page)."""
    parser = _Fetches()
    parser.feed(page_html)
    parser.close()
    found = parser.found
    found += [f"names {m}" for m in CDN_HOSTS.findall(page_html) if not any(m in f for f in found)]
    return found


def css_external_resources(css: str) -> list[str]:
    """What a stylesheet would fetch from another host."""
    return CSS_REMOTE.findall(css)


def built_pages(outdir: Path) -> list[Path]:
    return sorted(
        p for p in outdir.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(outdir).parts[:-1])
    )


def site_problems(outdir: Path, allowed: tuple[str, ...] = ()) -> list[str]:
    """Every resource from another host in the built site, as "page: what"."""
    problems = []
    for page in built_pages(outdir):
        rel = page.relative_to(outdir).as_posix()
        for found in external_resources(page.read_text(encoding="utf-8")):
            if not any(url in found for url in allowed):
                problems.append(f"{rel}: {found[:160]}")
    static = outdir / "_static"
    for sheet in sorted(static.rglob("*.css")) if static.is_dir() else []:
        rel = sheet.relative_to(outdir).as_posix()
        problems += [
            f"{rel}: {found[:160]}"
            for found in css_external_resources(sheet.read_text(encoding="utf-8"))
        ]
    return problems


def check(app: Sphinx, exception: Exception | None) -> None:
    """build-finished: fail the build if a page loads anything from another host."""
    if exception is not None or app.builder.format != "html":
        return
    allowed = ()
    if getattr(app, "_mathsvg_fallback", None):  # mathsvg.py: no Node, MathJax from its CDN
        allowed = (app.config.mathjax_path,)
    problems = site_problems(Path(app.outdir), allowed)
    if problems:
        raise ExternalResourceError(
            "pages load resources from other hosts (the book must work offline):\n  "
            + "\n  ".join(problems)
        )


def setup(app: Sphinx) -> dict:
    app.connect("build-finished", check, priority=900)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
