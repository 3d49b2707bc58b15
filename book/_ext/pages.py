"""What every page loads, and the theme markup the book changes.

* Templates (``templates/`` beside this file, searched before the theme's):
  ``layout.html`` drops FontAwesome's 1.5 MB JavaScript (``icons.py`` serves the icons
  as a small web font instead), preloads that font, keeps the search index off pages
  other than the search page, and carries the math stylesheet and glyphs
  (``mathsvg.py``); ``search-button-field.html`` and ``sections/sidebar-primary.html``
  are two accessibility fixes (see their comments); ``search.html`` defers the search
  page's own scripts like all the others.
* The theme shows a second search field in a bar above the sidebar's own at desktop
  widths (pydata-sphinx-theme 0.17 puts one in ``navbar_persistent`` unless told not to;
  sphinx-book-theme 1.3 has its own in the sidebar): the bar's is switched off.
* ``html-page-context`` chooses the page's scripts and stylesheets: sphinx-thebe's are
  dropped (live code is off; the launch buttons are plain links), and every script is
  deferred, so none delays the first paint. ``documentation_options.js`` is inlined
  instead (the inline snippets after it use its global at once). A page with an
  interactive figure (``data-byhand-figure``, from book/figures.py) also loads
  ``byhand-figures.js``; no other page does.
* One stylesheet per page instead of ten (one of which ``@import``s another), in the
  book's theme (other themes keep their own links): each is render-blocking, and on
  HTTP/1.1, as Lighthouse measures locally, the chain cost half a second of first paint.
  The theme's and the page's stylesheets are concatenated, in order, into
  ``_static/styles/bundle-<hash>.css`` (``@import`` inlined, ``url()`` rebased);
  ``icons.py`` trims it at the end of the build. No library: a bundler
  (lightningcss) would also minify, but the sheets are minified already, and it would
  add a dependency for a concatenation.
* Folded code cells: the summary reads "Show code cell source", and nothing else names
  it (myst-nb labels it "Toggle hidden content", which axe-core flags).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.builders.html._assets import _JavaScript
from sphinx.errors import SphinxError
from sphinx.util import logging

logger = logging.getLogger(__name__)


class BundleError(SphinxError):
    category = "Stylesheet bundle error"


TEMPLATES = Path(__file__).with_name("templates")
# Icon fonts the pages preload (icons.py writes them at the end of every build).
ICON_FONTS = ("fa-solid-900", "fa-brands-400")
ICON_FONT_DIR = "_static/vendor/fontawesome/webfonts"
DROPPED_CSS = ("sphinx-thebe.css",)
INLINED_JS = "documentation_options.js"
# Interactive figures (book/figures.py marks each with this attribute): their script is
# loaded by the pages that have one, and only by them.
FIGURE_MARK = "data-byhand-figure"
FIGURE_JS = "_static/byhand-figures.js"
# The whole book as one PDF (scripts/build_pdf.py writes it at the site's root, after the
# HTML build): linked from every page's download menu.
BOOK_PDF = "backprop-by-hand.pdf"


THEMES = ("sphinx_book_theme", "pydata_sphinx_theme")  # what the templates override


def configure(app: Sphinx, config) -> None:
    """config-inited: our templates first; no second search field."""
    if config.html_theme not in THEMES:
        return  # the overrides are for the book's theme only
    # new objects, never the (shared) default list and dict mutated in place
    config.templates_path = [str(TEMPLATES), *config.templates_path]
    config.html_theme_options = {"navbar_persistent": [], **config.html_theme_options}


def drop_thebe(app: Sphinx) -> None:
    """sphinx-thebe comes with Jupyter Book whether or not thebe is on; with it off
    (``launch_buttons.thebe: false``) its scripts, its unpkg.com URL and its per-page
    config only cost bytes. Disconnect the two handlers that add them."""
    try:
        import sphinx_thebe
    except ImportError:
        return
    unwanted = {sphinx_thebe.init_thebe_core, sphinx_thebe.update_thebe_context}
    for listeners in app.events.listeners.values():
        for listener in list(listeners):
            if listener.handler in unwanted:
                app.disconnect(listener.id)


def _name(asset) -> str:
    return Path(str(getattr(asset, "filename", asset) or "")).name


# The two stylesheets pydata-sphinx-theme links from its own template macro, first.
THEME_SHEETS = ("_static/styles/theme.css", "_static/styles/pydata-sphinx-theme.css")
BUNDLE_PREFIX = "_static/styles/bundle-"
PENDING = "/* bundle of: "  # + JSON list of sheets, until build-finished
UNTRIMMED = "/* bundle: icons not trimmed yet */\n"  # icons.py replaces this line
IMPORT = re.compile(r"""@import\s+(?:url\()?["']?([^"')]+)["']?\)?\s*;""")
RELATIVE_URL = re.compile(r"""url\((["']?)(?!data:|https?:|/|#)([^"')]+)\1\)""")
_written: dict[tuple[int, str, tuple[str, ...]], str] = {}  # (process, outdir, sheets) -> bundle


def css_text(file: Path, bundle_dir: Path) -> str:
    """A stylesheet with its @imports inlined and its url()s made relative to bundle_dir."""
    text = file.read_text(encoding="utf-8")
    text = IMPORT.sub(lambda m: css_text((file.parent / m.group(1)).resolve(), bundle_dir), text)

    def rebase(m: re.Match) -> str:
        path = m.group(2).split("?")[0].split("#")[0]
        target = (file.parent / path).resolve()
        rel = os.path.relpath(target, bundle_dir).replace(os.sep, "/")
        return f"url({m.group(1)}{rel}{m.group(2)[len(path) :]}{m.group(1)})"

    return RELATIVE_URL.sub(rebase, text)


def bundle(outdir: Path, sheets: tuple[str, ...]) -> str:
    """The bundle of ``sheets`` (paths under outdir): its path, for the page to link.

    Some sheets are written only at the end of the build (myst-nb's), so a page gets the
    bundle's name now and the file holds the list of its sheets until ``write_bundles``
    (build-finished) concatenates them. The name depends on every sheet's content (or,
    for one not written yet, on its name, which then carries a content hash itself)."""
    key = (os.getpid(), str(outdir), sheets)  # one process may build several sites
    if key not in _written:
        digest = hashlib.sha256()
        for name in sheets:
            digest.update(name.encode())
            if (outdir / name).is_file():
                digest.update((outdir / name).read_bytes())
        name = f"{BUNDLE_PREFIX}{digest.hexdigest()[:10]}.css"
        path = outdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = outdir / f"{name}.{os.getpid()}.tmp"
        tmp.write_text(PENDING + json.dumps(list(sheets)), encoding="utf-8")
        os.replace(tmp, path)  # workers may write the same bundle at once
        _written[key] = name
    return _written[key]


def write_bundles(app: Sphinx, exception: Exception | None) -> None:
    """build-finished (after myst-nb has written its stylesheet): concatenate each bundle
    this build asked for. icons.py trims them next."""
    if exception is not None or app.builder.format != "html":
        return
    outdir = Path(app.outdir)
    for path in sorted((outdir / BUNDLE_PREFIX).parent.glob(Path(BUNDLE_PREFIX).name + "*.css")):
        text = path.read_text(encoding="utf-8")
        if not text.startswith(PENDING):
            continue
        sheets = json.loads(text[len(PENDING) :])
        missing = [name for name in sheets if not (outdir / name).is_file()]
        if missing:
            raise BundleError(
                f"{path.name}: stylesheets missing at the end of the build: {missing}"
            )
        body = "\n".join(
            f"/* {name} */\n" + css_text(outdir / name, path.parent) for name in sheets
        )
        path.write_text(UNTRIMMED + body, encoding="utf-8")


def link_book_pdf(context: dict) -> None:
    """The download menu offers the whole book as one PDF (BOOK_PDF) beside the page's own
    files. A plain link, which no check fetches: a build without ``make pdf`` has the link
    and not the file (tests/test_pdf.py checks it resolves once the PDF is built)."""
    for group in context.get("header_buttons") or []:
        if group.get("label") == "download-buttons":
            group["buttons"].append(
                {
                    "type": "link",
                    "url": context["pathto"](BOOK_PDF, 1),
                    "text": "book .pdf",
                    "tooltip": "The whole book as one PDF",
                    "icon": "fas fa-book",
                    "label": "download-book-pdf-button",
                }
            )


# --- images: their size known before they load, and fetched when the reader gets near ------
IMG_TAG = re.compile(r"<img\b[^>]*>")
FIRST_SCREEN = 3000  # characters of a page's body: its title, badge and first paragraph
SVG_SIZE = re.compile(r"<svg\b[^>]*?\bwidth=\"([\d.]+)(?:px)?\"[^>]*?\bheight=\"([\d.]+)(?:px)?\"")
SVG_VIEWBOX = re.compile(r"<svg\b[^>]*?\bviewBox=\"[\d.-]+[ ,]+[\d.-]+[ ,]+([\d.]+)[ ,]+([\d.]+)\"")


def image_size(path: Path) -> tuple[int, int] | None:
    """A PNG's or an SVG's intrinsic width and height in CSS pixels, or None."""
    try:
        head = path.read_bytes()[:4096]
    except OSError:
        return None
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    if path.suffix == ".svg":
        text = head.decode("utf-8", "replace")
        found = SVG_SIZE.search(text) or SVG_VIEWBOX.search(text)
        if found:
            return round(float(found.group(1))), round(float(found.group(2)))
    return None


def size_images(app: Sphinx, pagename: str, context: dict) -> None:
    """Each image of the page's body gets its intrinsic ``width`` and ``height`` (the
    browser reserves its box before it loads: nothing shifts), and ``loading="lazy"``
    unless it starts the page (within its first FIRST_SCREEN characters, where it may be
    the largest thing a reader sees first): a plot further down is fetched when the reader
    scrolls near it, not with the page (chapter 2's three plots were 115 KB of its first
    load)."""
    body = context.get("body")
    images = getattr(app.builder, "images", None)
    if not body or not images or "<img" not in body:
        return
    by_name = {name: Path(app.srcdir, source) for source, name in images.items()}

    def fix(match: re.Match) -> str:
        tag = match.group(0)
        src = re.search(r'\ssrc="([^"]+)"', tag)
        source = by_name.get(Path(src.group(1)).name) if src else None
        size = image_size(source) if source is not None else None
        if size is None:
            return tag
        extra = ""
        if " width=" not in tag and " height=" not in tag:
            extra += f' width="{size[0]}" height="{size[1]}"'
        if match.start() > FIRST_SCREEN and " loading=" not in tag:
            extra += ' loading="lazy" decoding="async"'
        return re.sub(r"\s*/?>$", lambda end: extra + end.group(0), tag, count=1)

    context["body"] = IMG_TAG.sub(fix, body)


def select_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """html-page-context, after every other handler: the page's scripts and stylesheets."""
    link_book_pdf(context)
    size_images(app, pagename, context)
    context["icon_font_preloads"] = [f"{ICON_FONT_DIR}/{name}.subset.woff" for name in ICON_FONTS]
    css = context.get("css_files")
    if css is not None and app.config.html_theme in THEMES:  # layout.html links the bundle
        css = [c for c in css if _name(c) not in DROPPED_CSS]
        outdir = Path(app.outdir)
        local = [str(c.filename) for c in css if "://" not in str(c.filename)]
        sheets = (*THEME_SHEETS, *local)
        context["css_bundle"] = bundle(outdir, sheets)
        css = [c for c in css if "://" in str(c.filename)]
        context["css_files"] = css
    scripts = context.get("script_files")
    if scripts is None:
        return
    static = Path(app.outdir) / "_static"
    chosen = []
    for js in scripts:
        if not isinstance(js, _JavaScript) or not js.filename:
            chosen.append(js)  # inline snippets: they only set globals
            continue
        attrs = dict(js.attributes)
        if _name(js) == INLINED_JS and (static / INLINED_JS).is_file():
            body = (static / INLINED_JS).read_text(encoding="utf-8").strip()
            chosen.append(_JavaScript(None, priority=js.priority, body=body))
        elif "async" in attrs or "defer" in attrs:
            chosen.append(js)
        else:
            attrs["defer"] = "defer"
            chosen.append(_JavaScript(js.filename, priority=js.priority, **attrs))
    if f'{FIGURE_MARK}="' in context.get("body", ""):  # an attribute, not code quoting it
        chosen.append(_JavaScript(FIGURE_JS, defer="defer"))
    context["script_files"] = chosen


# --- folded code cells -----------------------------------------------------------------------
def visit_hide_cell(self, node) -> None:
    """myst-nb's ``visit_HideCellInput`` without ``aria-label`` on the summary."""
    from html import escape

    classes = " ".join(node["classes"])
    self.body.append(f'<details class="admonition hide {classes}">\n<summary>\n')
    self.body.append(f'<p class="collapsed admonition-title">{escape(node["prompt_show"])}</p>\n')
    self.body.append(f'<p class="expanded admonition-title">{escape(node["prompt_hide"])}</p>\n')
    self.body.append("</summary>\n")


def depart_hide_cell(self, node) -> None:
    self.body.append("</details>\n")


def setup(app: Sphinx) -> dict:
    app.connect("config-inited", configure)
    app.connect("html-page-context", select_assets, priority=900)
    app.connect("build-finished", write_bundles, priority=700)  # after myst-nb's (500)
    drop_thebe(app)
    try:
        from myst_nb.sphinx_ import HideCodeCellNode
    except ImportError:
        pass
    else:
        app.add_node(HideCodeCellNode, override=True, html=(visit_hide_cell, depart_hide_cell))
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
