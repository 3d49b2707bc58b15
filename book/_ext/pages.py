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
  instead (the inline snippets after it use its global at once).
* Folded code cells: the summary reads "Show code cell source", and nothing else names
  it (myst-nb labels it "Toggle hidden content", which axe-core flags).
"""

from __future__ import annotations

from pathlib import Path

from sphinx.application import Sphinx
from sphinx.builders.html._assets import _JavaScript
from sphinx.util import logging

logger = logging.getLogger(__name__)

TEMPLATES = Path(__file__).with_name("templates")
# Icon fonts the pages preload (icons.py writes them at the end of every build).
ICON_FONTS = ("fa-solid-900", "fa-brands-400")
ICON_FONT_DIR = "_static/vendor/fontawesome/webfonts"
DROPPED_CSS = ("sphinx-thebe.css",)
INLINED_JS = "documentation_options.js"


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


def select_assets(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """html-page-context, after every other handler: the page's scripts and stylesheets."""
    context["icon_font_preloads"] = [f"{ICON_FONT_DIR}/{name}.subset.woff" for name in ICON_FONTS]
    css = context.get("css_files")
    if css is not None:
        context["css_files"] = [c for c in css if _name(c) not in DROPPED_CSS]
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
    drop_thebe(app)
    try:
        from myst_nb.sphinx_ import HideCodeCellNode
    except ImportError:
        pass
    else:
        app.add_node(HideCodeCellNode, override=True, html=(visit_hide_cell, depart_hide_cell))
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
