"""Math typeset at build time: TeX to MathJax SVG, with MathML for screen readers.

A Sphinx HTML math renderer (``html_math_renderer = "mathsvg"``). Readers' browsers run
no math JavaScript and fetch no font: every formula is an SVG whose glyphs are paths, plus
a hidden MathML copy that screen readers read. ``make book`` and ``make preview`` both
render math this way, from the same code.

How:

* ``render_math.mjs`` (beside this file) is a small Node server around MathJax's own Node
  API (``mathjax-full`` from package.json). It starts once per Sphinx process, on first
  use, and answers one JSON request per line.
* At ``doctree-resolved`` (the main process, one page at a time) every formula of the page,
  and of the page's own table of contents, is sent in one batch. MathJax writes each
  glyph's path once per page (its "global font cache"); the formulas ``<use>`` them. The
  SVGs are stored on the doctree's nodes, which go to the writing workers.
* The visitors below write the stored SVG where Sphinx's MathJax renderer would write the
  TeX. A formula that reaches a visitor without one (a title shown in another page's
  navigation) is typeset there and then, with its own glyphs.
* A formula MathJax cannot parse is a warning at its page and line (an error under
  ``-W``); the build then fails at its end (``MathRenderError``), listing every bad
  formula. In the preview the page shows the TeX in a red box, with MathJax's message.
* Without Node.js or ``mathjax-full``, Sphinx's own MathJax renderer is used instead: pages
  with math load MathJax from its CDN (they need the network to show formulas), and the
  build says so at its start and at its end. ``offline.py`` allows exactly that script.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.errors import SphinxError
from sphinx.locale import _
from sphinx.util import logging
from sphinx.util.math import get_node_equation_number

logger = logging.getLogger(__name__)

SERVER_SCRIPT = Path(__file__).with_name("render_math.mjs")
NAME = "mathsvg"
# The node attributes the batch leaves for the visitors (they travel with the doctree).
SVG, ERROR = "mathsvg_html", "mathsvg_error"
DEFS = "mathsvg_defs"  # on the document: the page's glyphs


class MathRenderError(SphinxError):
    category = "Math error"


class NodeMissing(RuntimeError):
    """Node.js or mathjax-full is not there: math cannot be typeset at build time."""


# --- the Node server -------------------------------------------------------------------
def node_problem(script: Path = SERVER_SCRIPT) -> str | None:
    """Why formulas cannot be typeset at build time, or None when they can."""
    node = shutil.which("node")
    if node is None:
        return "Node.js (the `node` command) is not installed"
    probe = subprocess.run(
        [node, "-e", "require.resolve('mathjax-full/js/mathjax.js')"],
        cwd=script.parent, capture_output=True, text=True,
    )  # fmt: skip
    if probe.returncode:
        return "mathjax-full is not installed (run: npm ci --omit=dev)"
    return None


class MathJaxServer:
    """One ``render_math.mjs`` process, spoken to one JSON line at a time."""

    def __init__(self, script: Path = SERVER_SCRIPT):
        node = shutil.which("node")
        if node is None:
            raise NodeMissing("Node.js (the `node` command) is not installed")
        self.proc = subprocess.Popen(
            [node, str(script)], cwd=script.parent, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )  # fmt: skip
        self.lock = threading.Lock()

    def ask(self, request: dict) -> dict:
        with self.lock:
            try:
                self.proc.stdin.write(json.dumps(request) + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except (BrokenPipeError, OSError):
                line = ""
            if not line:
                self.proc.kill()
                err = self.proc.stderr.read()
                if "Cannot find module" in err and "mathjax-full" in err:
                    raise NodeMissing("mathjax-full is not installed (run: npm ci --omit=dev)")
                raise RuntimeError(
                    f"the MathJax server ({SERVER_SCRIPT.name}) stopped:\n{err[-2000:]}"
                )
        reply = json.loads(line)
        if "fatal" in reply:
            raise RuntimeError(f"the MathJax server failed:\n{reply['fatal']}")
        return reply

    def render(self, equations: list[tuple[str, bool]], cache: str = "page") -> dict:
        """``{"html": [svg or None, ...], "errors": [{"index", "message"}], "defs": str}``."""
        request = {"equations": [{"tex": t, "display": d} for t, d in equations], "cache": cache}
        return self.ask(request)

    def css(self) -> str:
        return self.ask({"css": True})["css"]

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # the server exits at the end of its input
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            pipe.close()


_servers: dict[int, MathJaxServer] = {}


def server() -> MathJaxServer:
    """This process's server. A forked Sphinx worker starts its own: it must not write to
    the pipe of its parent's."""
    pid = os.getpid()
    if pid not in _servers:
        _servers[pid] = MathJaxServer()
    return _servers[pid]


def close_server() -> None:
    srv = _servers.pop(os.getpid(), None)
    if srv is not None:
        srv.close()


# --- what Sphinx's MathJax renderer would typeset ------------------------------------------
def tex_of(node: nodes.Element) -> tuple[str, bool]:
    """The TeX and display flag of a math node, exactly as ``sphinx.ext.mathjax`` writes it
    for MathJax to find in the browser (several paragraphs become an aligned group)."""
    if isinstance(node, nodes.math):
        return node.astext(), False
    if node.get("nowrap"):
        return node.astext(), True
    parts = [part for part in node.astext().split("\n\n") if part.strip()]
    body = []
    for part in parts:
        body.append(r"\begin{split}" + part + r"\end{split}" if r"\\" in part else part)
    tex = r"\\".join(body)
    if len(parts) > 1:
        tex = r" \begin{align}\begin{aligned}" + tex + r"\end{aligned}\end{align} "
    return tex, True


def math_nodes(tree: nodes.Node) -> list[nodes.Element]:
    return [n for n in tree.findall(lambda n: isinstance(n, (nodes.math, nodes.math_block)))]


def _failure_text(node: nodes.Element, message: str) -> str:
    tex, _display = tex_of(node)
    return f"MathJax cannot typeset {tex.strip()!r}: {message}"


def render_page(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """doctree-resolved: typeset the page's formulas (and its table of contents') in one
    batch; leave the SVGs on the nodes and the page's glyphs on the document."""
    if app.builder.format != "html" or app.builder.math_renderer_name != NAME:
        return
    found = math_nodes(doctree)
    toc = app.env.tocs.get(docname)
    if toc is not None:
        found += math_nodes(toc)
    if not found:
        return
    reply = server().render([tex_of(n) for n in found], cache="page")
    for node, svg in zip(found, reply["html"]):
        if svg is not None:
            node[SVG] = svg
    for error in reply["errors"]:
        node = found[error["index"]]
        node[ERROR] = error["message"]
        where = f"{app.env.doc2path(docname, False)}:{node.line or '?'}"
        failures(app).append(f"{where}: {_failure_text(node, error['message'])}")
        logger.warning(
            _failure_text(node, error["message"]), location=node, type="mathsvg", subtype="tex"
        )
    doctree[DEFS] = reply["defs"]


# Punctuation that closes a phrase: it stays on the line of the formula before it.
CLOSING_PUNCTUATION = re.compile(r"^[.,;:!?)\]}\u2019\u201d\u2026]+")
NOWRAP = "math-nowrap"


def glue_punctuation(app: Sphinx, doctree: nodes.document, docname: str) -> None:
    """doctree-resolved: an inline formula and the punctuation right after it ("$W$,")
    go into one ``<span class="math-nowrap">``, so that a narrow screen never starts a line
    with the comma (a formula is an unbreakable box; the browser may break after it)."""
    if app.builder.format != "html":
        return
    for node in list(doctree.findall(nodes.math)):
        parent = node.parent
        if parent is None or isinstance(parent, nodes.inline) and NOWRAP in parent["classes"]:
            continue
        index = parent.index(node)
        after = parent[index + 1] if index + 1 < len(parent) else None
        found = CLOSING_PUNCTUATION.match(after.astext()) if isinstance(after, nodes.Text) else None
        if found is None:
            continue
        wrap = nodes.inline(classes=[NOWRAP])
        parent.replace(node, wrap)
        wrap += node
        wrap += nodes.Text(found.group(0))
        rest = after.astext()[found.end() :]
        if rest:
            parent.replace(after, nodes.Text(rest))
        else:
            parent.remove(after)


def failures(app: Sphinx) -> list[str]:
    if not hasattr(app, "_mathsvg_failures"):
        app._mathsvg_failures = []
    return app._mathsvg_failures


# --- the visitors ----------------------------------------------------------------------
def _svg_for(self, node: nodes.Element) -> str:
    """The stored SVG; otherwise typeset now, with the formula's own glyphs."""
    if SVG in node or ERROR in node:
        return node.get(SVG, "")
    reply = server().render([tex_of(node)], cache="self")
    if reply["errors"]:
        node[ERROR] = reply["errors"][0]["message"]
        logger.warning(
            _failure_text(node, node[ERROR]), location=node, type="mathsvg", subtype="tex"
        )
        return ""
    return reply["html"][0]


def _error_html(self, node: nodes.Element) -> str:
    tex, _display = tex_of(node)
    return (
        f'<code class="math-error" title="MathJax: {html.escape(node[ERROR], quote=True)}">'
        f"{self.encode(tex)}</code>"
    )


def visit_math(self, node: nodes.math) -> None:
    svg = _svg_for(self, node)
    self.body.append(self.starttag(node, "span", "", CLASS="math notranslate nohighlight mjx-svg"))
    self.body.append(svg or _error_html(self, node))
    self.body.append("</span>")
    raise nodes.SkipNode


def visit_math_block(self, node: nodes.math_block) -> None:
    svg = _svg_for(self, node)
    self.body.append(self.starttag(node, "div", CLASS="math notranslate nohighlight mjx-svg"))
    if node["number"] and not node.get("nowrap"):
        number = get_node_equation_number(self, node)
        self.body.append(f'<span class="eqno">({number})')
        self.add_permalink_ref(node, _("Link to this equation"))
        self.body.append("</span>")
    self.body.append(svg or _error_html(self, node))
    self.body.append("</div>\n")
    raise nodes.SkipNode


# --- the page: stylesheet and glyphs ------------------------------------------------------
MATH_CSS_EXTRA = (
    # a formula MathJax could not typeset, as the preview shows it
    "code.math-error{color:#b00020;border:1px solid #b00020;padding:0 .2em;white-space:pre-wrap}"
    # a formula and the punctuation after it: one unbreakable box (glue_punctuation)
    f".{NOWRAP}{{white-space:nowrap}}"
)


def _minify_css(css: str) -> str:
    css = re.sub(r"\s*([{};:,>])\s*", r"\1", css)
    return re.sub(r"\s+", " ", css).replace(";}", "}").strip()


def load_css(app: Sphinx) -> None:
    """builder-inited: MathJax's stylesheet for its SVG output, asked once per build (the
    writing workers inherit it)."""
    if app.builder.format == "html" and app.builder.math_renderer_name == NAME:
        app._mathsvg_css = _minify_css(server().css()) + MATH_CSS_EXTRA


def page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """html-page-context: the SVG stylesheet goes in every page's <head> (a title with math
    can show in any page's navigation), and the page's glyphs right after <body>
    (templates/layout.html)."""
    if app.builder.math_renderer_name != NAME:
        return
    context["mathsvg_css"] = getattr(app, "_mathsvg_css", "")
    context["mathsvg_defs"] = doctree.get(DEFS, "") if doctree is not None else ""


# --- Node or not ------------------------------------------------------------------------------
def choose_renderer(app: Sphinx, config) -> None:
    """config-inited: mathsvg when Node and mathjax-full are there, else Sphinx's MathJax."""
    if config.html_math_renderer not in (None, NAME):
        return  # someone chose another renderer on purpose
    why = node_problem()
    app._mathsvg_fallback = why
    config.html_math_renderer = "mathjax" if why else NAME
    if why:
        logger.warning(fallback_message(why), type="mathsvg", subtype="fallback")


def fallback_message(why: str) -> str:
    return (
        f"math is NOT typeset at build time: {why}. Pages with math load MathJax from "
        "its CDN instead, so they show TeX until a network connection typesets it. "
        "Install Node.js 18+ and run `npm ci --omit=dev` for self-contained pages."
    )


def finish(app: Sphinx, exception: Exception | None) -> None:
    close_server()
    why = getattr(app, "_mathsvg_fallback", None)
    if why:
        logger.warning(fallback_message(why), type="mathsvg", subtype="fallback")
    found = failures(app)
    if found and exception is None:
        raise MathRenderError(
            f"{len(found)} formula(s) could not be typeset:\n  " + "\n  ".join(found)
        )


def setup(app: Sphinx) -> dict:
    app.add_html_math_renderer(NAME, (visit_math, None), (visit_math_block, None))
    app.connect("config-inited", choose_renderer)
    app.connect("builder-inited", load_css)
    app.connect("doctree-resolved", glue_punctuation)
    app.connect("doctree-resolved", render_page)
    app.connect("html-page-context", page_context)
    app.connect("build-finished", finish)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
