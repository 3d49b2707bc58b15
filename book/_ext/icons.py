"""The theme's icons from a web font cut down to the icons the pages use.

pydata-sphinx-theme draws its icons (menu, search, GitHub, download, dark mode, ...)
with FontAwesome's 1.5 MB JavaScript; ``templates/layout.html`` leaves that script out
and the icons are drawn by FontAwesome's own CSS web font instead. At ``build-finished``
(whole site, every page written) this module

* collects the icon classes (``fa-bars``, ``fa-github``, ...) that the built pages use
  (read with the standard library's HTML parser) and the icons stylesheets draw by
  themselves (admonition and dropdown marks: every FontAwesome codepoint in a
  ``content:`` outside the per-icon rules);
* cuts each FontAwesome font down to those glyphs with fontTools (a few KB of WOFF,
  ``*.subset.woff``, which every page preloads);
* points the pages' stylesheet bundles (``pages.py``) at them and drops the CSS rules of
  the ~1,400 icons no page uses (a third of the theme's stylesheet); bundles no page
  links any more (an earlier preview build's) are deleted.

It runs on every build, the preview's too (about a second).
"""

from __future__ import annotations

import logging as std_logging
import re
from html.parser import HTMLParser
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import SphinxError
from sphinx.util import logging

logger = logging.getLogger(__name__)

THEME_CSS = "_static/styles/pydata-sphinx-theme.css"
WEBFONTS = "_static/vendor/fontawesome/webfonts"
SKIP_DIRS = {"_static", "_sources", "_images", "_downloads", "reports"}

# In the theme's (minified) CSS: ".fa-bars:before{content:"\f0c9"}", several selectors
# per rule when icons share a glyph; and "@font-face{...src:url(../vendor/.../fa-solid-900.woff2)...}".
ICON_RULE = re.compile(r"(?:\.fa-[\w-]+:(?:before|after),?)+\{content:\"(?:\\[0-9a-f]+|[^\"]*)\"\}")
ICON_SELECTOR = re.compile(r"\.(fa-[\w-]+):(?:before|after)")
PRIVATE_USE = re.compile(r"\\(f[0-9a-f]{3}|e[0-9a-f]{3})\b|([\ue000-\uf8ff])", re.I)
FONT_SRC = re.compile(r"src:url\((?P<dir>[^)]*?/webfonts/)(?P<name>fa-[a-z]+-\d+)[.\w]*\)[^;}]*")


class IconError(SphinxError):
    category = "Icon font error"


def codepoints(css: str) -> set[int]:
    """FontAwesome's codepoints (private use area) written in a piece of CSS."""
    return {int(a, 16) if a else ord(b) for a, b in PRIVATE_USE.findall(css)}


def icon_codepoints(theme_css: str) -> dict[str, int]:
    """``{"fa-bars": 0xf0c9, ...}`` from the theme's stylesheet."""
    found: dict[str, int] = {}
    for rule in ICON_RULE.finditer(theme_css):
        cps = codepoints(rule.group(0).split("{", 1)[1])
        for name in ICON_SELECTOR.findall(rule.group(0)):
            if cps:  # one per rule in practice; with several, the highest (as before: a set's last)
                found[name] = max(cps)
    return found


class _Classes(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.classes: set[str] = set()
        self.stylesheets: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.classes.update(c for c in (a.get("class") or "").split() if c.startswith("fa-"))
        if tag == "link" and a.get("rel") == "stylesheet" and a.get("href"):
            self.stylesheets.add(a["href"].split("?")[0].rsplit("/", 1)[-1])


def _parse(html_text: str) -> _Classes:
    parser = _Classes()
    parser.feed(html_text)
    parser.close()
    return parser


def icon_classes(html_text: str) -> set[str]:
    """The ``fa-*`` classes of a page's elements."""
    return _parse(html_text).classes


def built_pages(outdir: Path) -> list[Path]:
    return sorted(
        p for p in outdir.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(outdir).parts[:-1])
    )


def subset_font(source: Path, out: Path, unicodes: set[int]) -> None:
    from fontTools import subset
    from fontTools.ttLib import TTFont

    font = TTFont(source, recalcTimestamp=False)
    options = subset.Options()
    options.flavor = "woff"
    options.layout_features = []
    options.name_IDs = []
    options.notdef_outline = True
    options.recalc_timestamp = False  # same input, same bytes
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=sorted(unicodes & set(font.getBestCmap())))
    subsetter.subset(font)
    font.flavor = "woff"
    font.save(out)


def trim_css(css: str, used: set[str]) -> str:
    """Drop the rules of icons not in ``used``; point @font-face at the subset fonts."""
    css = ICON_RULE.sub(
        lambda m: m.group(0) if used & set(ICON_SELECTOR.findall(m.group(0))) else "", css
    )
    return FONT_SRC.sub(lambda m: f'src:url({m["dir"]}{m["name"]}.subset.woff) format("woff")', css)


def subset_icons(outdir: Path) -> str:
    """Subset the icon fonts to what ``outdir``'s pages use; return a one-line summary."""
    from pages import BUNDLE_PREFIX, UNTRIMMED

    css_path, webfonts = outdir / THEME_CSS, outdir / WEBFONTS
    if not css_path.is_file() or not webfonts.is_dir():
        return "no FontAwesome web fonts: nothing to subset"
    class_cp = icon_codepoints(css_path.read_text(encoding="utf-8"))
    used: set[str] = set()
    linked: set[str] = set()
    for page in built_pages(outdir):
        parsed = _parse(page.read_text(encoding="utf-8"))
        used |= parsed.classes
        linked |= parsed.stylesheets
    wanted = {class_cp[c] for c in used if c in class_cp}
    for sheet in (outdir / "_static").rglob("*.css"):  # icons drawn by CSS alone
        wanted |= codepoints(ICON_RULE.sub("", sheet.read_text(encoding="utf-8")))
    std_logging.getLogger("fontTools").setLevel(std_logging.WARNING)
    sizes = []
    for ttf in sorted(webfonts.glob("fa-*.ttf")):
        out = ttf.with_suffix(".subset.woff")
        subset_font(ttf, out, wanted)
        sizes.append(f"{out.name} {out.stat().st_size / 1024:.1f} KB")
    bundles = sorted((outdir / BUNDLE_PREFIX).parent.glob(Path(BUNDLE_PREFIX).name + "*.css"))
    for path in bundles:
        if path.name not in linked:
            path.unlink()  # no page links it any more
            continue
        css = path.read_text(encoding="utf-8")
        if css.startswith(UNTRIMMED):
            trimmed = trim_css(css[len(UNTRIMMED) :], used)
            path.write_text(
                f"/* bundle: {len(used)} icon classes kept */\n" + trimmed, encoding="utf-8"
            )
    return f"{len(wanted)} icons: " + ", ".join(sizes)


def finish(app: Sphinx, exception: Exception | None) -> None:
    if exception is not None or app.builder.format != "html":
        return
    try:
        summary = subset_icons(Path(app.outdir))
    except ImportError as err:  # fontTools comes with matplotlib, which the book needs
        raise IconError(f"fontTools is needed to cut the icon fonts down: {err}") from err
    logger.info(f"icons: {summary}")


def setup(app: Sphinx) -> dict:
    app.connect("build-finished", finish, priority=800)  # after pages.write_bundles
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
