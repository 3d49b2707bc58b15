"""The book's rendering extension (book/_ext/render.py and its parts), on tiny projects.

Each test builds a few-line Sphinx project in-process (about a second each), with the
extension the book loads: bad TeX fails the build naming the page; without Node the
math falls back loudly; every icon the pages use survives the font subsetting; a page
that loads anything from another host fails the build. The full book's pages are
checked in a browser by tests/test_browser.py.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
from sphinx.application import Sphinx

from conftest import ROOT

sys.path.insert(0, str(ROOT / "book" / "_ext"))
import icons  # noqa: E402
import mathsvg  # noqa: E402
import offline  # noqa: E402
import render  # noqa: E402

NODE_OK = mathsvg.node_problem() is None
needs_node = pytest.mark.skipif(not NODE_OK, reason=f"math needs Node: {mathsvg.node_problem()}")

CONF = """
import sys
sys.path.insert(0, {ext!r})
extensions = ["myst_parser", "render"]
myst_enable_extensions = ["dollarmath", "amsmath"]
html_theme = {theme!r}
html_theme_options = {{"repository_url": "https://github.com/example/book", "use_repository_button": True}}
root_doc = "index"
exclude_patterns = ["_build"]
"""


class Built:
    def __init__(self, root: Path, log: str, error: Exception | None):
        self.root, self.log, self.error = root, log, error
        self.html = root / "_build" / "html"

    def page(self, name: str) -> str:
        return (self.html / f"{name}.html").read_text(encoding="utf-8")


def build(root: Path, pages: dict[str, str], theme: str = "basic", strict: bool = False) -> Built:
    """Build ``pages`` ({name: MyST text}) with the book's rendering extension."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "conf.py").write_text(CONF.format(ext=str(ROOT / "book" / "_ext"), theme=theme))
    toc = "\n".join(name for name in pages if name != "index")
    pages = {"index": f"# Test\n\n```{{toctree}}\n{toc}\n```\n", **pages}
    for name, text in pages.items():
        (root / f"{name}.md").write_text(text, encoding="utf-8")
    out = io.StringIO()
    error = None
    try:
        app = Sphinx(
            str(root), str(root), str(root / "_build" / "html"), str(root / "_build" / "doctrees"),
            "html", status=out, warning=out, freshenv=True, warningiserror=strict,
            keep_going=strict,
        )  # fmt: skip
        app.build()
        if app.statuscode:
            error = RuntimeError(f"status {app.statuscode}")
    except Exception as exc:  # the build's own failure, as sphinx-build would print it
        error = exc
    return Built(root, out.getvalue(), error)


@pytest.fixture(scope="module")
def themed(tmp_path_factory) -> Built:
    """One small site in the book's theme, with math, a folded cell and icons."""
    pages = {
        "maths": (
            "# Maths\n\nInline $dL/dW = X^\\top G$ and a display formula:\n\n"
            "$$\nG = \\frac{\\partial L}{\\partial Y}\n$$ (eq-g)\n\n"
            "See {eq}`eq-g`. Again $X^\\top G$, the same glyphs.\n\n"
            "## Section with $W$\n\nText.\n"
        ),
        # an interactive figure as book/figures.py writes it, and a page that only quotes its mark
        "figure": '# Figure\n\n```{raw} html\n<figure class="bh-fig" data-byhand-figure="sum"></figure>\n```\n',
        "quoted": "# Quoted\n\nThe attribute `data-byhand-figure` marks a figure.\n",
    }
    built = build(tmp_path_factory.mktemp("themed"), pages, theme="sphinx_book_theme")
    assert built.error is None, built.log[-3000:]
    return built


# --- math ------------------------------------------------------------------------------------
@needs_node
def test_math_is_svg_with_mathml_and_no_script(themed):
    page = themed.page("maths")
    assert page.count("<mjx-container") >= 5, "every formula becomes an mjx-container"
    assert "<mjx-assistive-mml" in page, "screen readers get MathML"
    assert page.count('id="MJX-SVG-global-cache"') == 1, "the page's glyphs are written once"
    assert "\\(" not in page and "$$" not in page, "no TeX left for the browser"
    assert not re.search(r"<script[^>]*mathjax|MathJax = ", page, re.I), "no MathJax script"
    assert 'class="eqno">(1)' in page, "numbered equations keep their number"
    # the section title's formula, in the page's table of contents, is SVG too
    toc = page[page.index('id="pst-page-toc-nav"') :] if 'id="pst-page-toc-nav"' in page else page
    assert "<mjx-container" in toc


@needs_node
def test_bad_tex_fails_the_build_naming_the_page(tmp_path):
    pages = {"good": "# Good\n\n$x^2$\n", "bad": "# Bad\n\nFine $x$, broken $\\frac{a}{$ here.\n"}
    built = build(tmp_path, pages)
    assert isinstance(built.error, mathsvg.MathRenderError), built.log[-3000:]
    message = str(built.error)
    assert "bad.md:3" in message and "\\frac{a}{" in message, message
    assert "good" not in message
    assert re.search(r"bad\.md:3: WARNING: MathJax cannot typeset", built.log), built.log[-2000:]
    # the page itself shows the TeX in an error box, not a blank
    assert 'class="math-error"' in built.page("bad")


@needs_node
def test_bad_tex_is_an_error_under_W(tmp_path):
    built = build(
        tmp_path, {"bad": "# Bad\n\n$$\n\\begin{nosuchenv}x\\end{nosuchenv}\n$$\n"}, strict=True
    )
    assert built.error is not None
    assert "bad.md" in built.log and "nosuchenv" in built.log


def test_without_node_the_build_says_so_and_falls_back(tmp_path, monkeypatch):
    """No `node` on PATH: Sphinx's MathJax (from its CDN) typesets in the browser, the
    build says why at its start and its end, and a strict build fails."""
    python_only = tmp_path / "bin"
    python_only.mkdir()
    monkeypatch.setenv("PATH", str(python_only))
    assert mathsvg.node_problem() is not None
    built = build(tmp_path / "site", {"maths": "# Maths\n\n$x^2$\n"})
    assert built.error is None, built.log[-3000:]
    assert built.log.count("math is NOT typeset at build time: Node.js") == 2, built.log[-3000:]
    page = built.page("maths")
    assert "mathjax@3" in page, "the fallback loads MathJax"
    assert "<mjx-container" not in page
    strict = build(tmp_path / "strict", {"maths": "# Maths\n\n$x^2$\n"}, strict=True)
    assert strict.error is not None and "Node.js" in strict.log


def test_tex_matches_sphinx_mathjax():
    """What is typeset is what sphinx.ext.mathjax would hand to MathJax."""
    from docutils import nodes

    block = nodes.math_block(
        "a = b\n\nc = d \\\\ e", "a = b\n\nc = d \\\\ e", nowrap=False, number=None
    )
    tex, display = mathsvg.tex_of(block)
    assert display and "\\begin{aligned}" in tex and "\\begin{split}c = d \\\\ e\\end{split}" in tex
    assert mathsvg.tex_of(nodes.math("x", "x")) == ("x", False)


# --- icons -----------------------------------------------------------------------------------
def test_every_icon_renders_after_subsetting(themed):
    """Every icon class on the pages, and every icon a stylesheet draws, has its glyph in
    the subset font the CSS now points at; the full fonts are no longer used."""
    from fontTools.ttLib import TTFont

    html = themed.html
    page = themed.page("maths")
    assert "fontawesome.js" not in page, "FontAwesome's JavaScript is dropped"
    bundle = re.search(
        r'<link rel="stylesheet" href="(_static/styles/bundle-[0-9a-f]+\.css)"', page
    )
    assert bundle, "the page links one stylesheet bundle"
    css = (html / bundle.group(1)).read_text(encoding="utf-8")
    assert ".subset.woff" in css and ".woff2" not in css, "the CSS points at the subset fonts"
    assert ".fa-ghost:before" not in css, "the rules of unused icons are dropped"
    fonts = {
        p.name.split(".")[0]: set(TTFont(p).getBestCmap())
        for p in (html / icons.WEBFONTS).glob("*.subset.woff")
    }
    assert {"fa-solid-900", "fa-brands-400"} <= set(fonts)
    every_glyph = set().union(*fonts.values())
    class_cp = icons.icon_codepoints((html / icons.THEME_CSS).read_text(encoding="utf-8"))
    used = set().union(
        *(icons.icon_classes(p.read_text(encoding="utf-8")) for p in icons.built_pages(html))
    )
    named = {c for c in used if c in class_cp}
    assert {"fa-bars", "fa-magnifying-glass", "fa-github"} <= named, sorted(used)
    missing = sorted(c for c in named if class_cp[c] not in every_glyph)
    assert not missing, f"icons with no glyph in the subset fonts: {missing}"
    drawn = set()
    for sheet in (html / "_static").rglob("*.css"):
        drawn |= icons.codepoints(icons.ICON_RULE.sub("", sheet.read_text(encoding="utf-8")))
    lost = sorted(hex(cp) for cp in drawn if cp not in every_glyph)
    assert not lost, f"icons drawn by the stylesheets, missing from the subset fonts: {lost}"
    # each page preloads the fonts it will use, and they exist
    for name in ("fa-solid-900", "fa-brands-400"):
        assert f"{name}.subset.woff" in themed.page("maths")


def test_subset_drops_unused_icons(tmp_path):
    css = '.fa-bars:before{content:"\\f0c9"}.fa-ghost:before{content:"\\f6e2"}'
    assert icons.icon_codepoints(css) == {"fa-bars": 0xF0C9, "fa-ghost": 0xF6E2}
    assert icons.icon_classes('<i class="x fa-solid fa-bars"></i><span class="fa-bars">') == {
        "fa-solid",
        "fa-bars",
    }


# --- pages: scripts, stylesheets, theme markup -------------------------------------------------
def test_pages_load_what_they_need(themed):
    page = themed.page("maths")
    head = page[: page.index("</head>")]
    assert "thebe" not in page.lower(), "sphinx-thebe's scripts, config and URL are dropped"
    assert "searchindex.js" not in page, "the search index loads on the search page only"
    search = themed.page("search")
    blocking = re.findall(r"<script (?![^>]*\b(?:defer|async)\b)[^>]*\bsrc=\"([^\"]+)", search)
    assert "searchindex.js" in search and not blocking, f"search page: render-blocking {blocking}"
    sheets = re.findall(r"<link [^>]*rel=\"stylesheet\"[^>]*>", head)
    assert len(sheets) == 1 and "bundle-" in sheets[0], f"one stylesheet, not {sheets}"
    blocking = re.findall(r"<script (?![^>]*\b(?:defer|async)\b)[^>]*\bsrc=", head)
    assert not blocking, f"render-blocking scripts: {blocking}"
    assert "const DOCUMENTATION_OPTIONS" in head, "documentation_options.js is inlined"
    assert 'rel="preload" as="script"' not in head
    assert page.count("search-button-field") == 1, "one search field, not two"
    assert 'aria-label="Toggle hidden content"' not in page
    assert 'role="complementary"' in page


def test_each_site_gets_its_own_bundle(tmp_path):
    """Two sites built one after the other in one process each get a finished bundle
    (the bundle's name is remembered per process and per output directory)."""
    import pages

    for site in ("one", "two"):
        built = build(tmp_path / site, {"p": "# P\n\nText.\n"}, theme="sphinx_book_theme")
        assert built.error is None, built.log[-3000:]
        name = re.search(r'href="(_static/styles/bundle-[0-9a-f]+\.css)"', built.page("p"))
        assert name, f"{site}: the page links a bundle"
        css = (built.html / name.group(1)).read_text(encoding="utf-8")
        assert not css.startswith(pages.PENDING) and "pydata-sphinx-theme.css" in css, site


def test_other_themes_keep_their_own_stylesheets(tmp_path):
    """The bundle is for the book's theme, whose layout the extension overrides: a site in
    another theme builds, whichever site this process built before, and links its sheets."""
    import pages

    pages._written.clear()  # as if this were the process's first build
    built = build(tmp_path, {"p": "# P\n\nText.\n"}, theme="basic")
    assert built.error is None, built.log[-3000:]
    page = built.page("p")
    assert "bundle-" not in page and re.search(r'href="_static/basic\.css', page), page[:2000]


def test_first_paint_waits_for_the_article_bar(themed):
    """The page is render-blocked until the element after the bar of buttons above the
    article is parsed (a half-parsed bar shifted as its buttons came): the element the
    link names exists, once, after the bar."""
    page = themed.page("maths")
    expect = re.search(r'<link rel="expect" href="#([\w-]+)" blocking="render" />', page)
    assert expect, "the page says which element to wait for"
    target = f'id="{expect.group(1)}"'
    assert page.count(target) == 1, f"{target}: the element to wait for is not on the page"
    assert page.index("header-article-items__end") < page.index(target)
    assert page.index(expect.group(0)) < page.index("<body"), "in <head>"


def test_only_pages_with_a_figure_load_its_script(themed):
    """byhand-figures.js (chapter 2's interactive figures) loads, deferred, on a page with a
    figure, and nowhere else: not on a page that mentions the attribute in its text."""
    import figures
    import pages

    assert pages.FIGURE_MARK == figures.FIGURE_MARK, (
        "the figures and the extension agree on the mark"
    )
    script = re.compile(
        r'<script defer="defer" src="_static/byhand-figures\.js(\?v=[0-9a-f]+)?"></script>'
    )
    assert len(script.findall(themed.page("figure"))) == 1
    for page in ("maths", "quoted", "index"):
        assert "byhand-figures.js" not in themed.page(page), page


# --- a page never loads from another host --------------------------------------------------
@pytest.mark.parametrize(
    "snippet",
    [
        '<script src="https://cdn.example.com/x.js"></script>',
        '<script defer src="//cdn.example.com/x.js"></script>',
        '<link rel="stylesheet" href="https://fonts.example.com/css" />',
        '<link href="https://example.com/f.woff2" rel="preload" as="font" />',
        '<link rel="icon" href="http://example.com/favicon.ico">',
        '<img alt="" src="https://example.com/a.png">',
        '<img alt="" src="a.png" srcset="a.png 1x, https://example.com/a2.png 2x">',
        '<iframe src="https://example.com/embed"></iframe>',
        '<div style="background: url(https://example.com/bg.png)"></div>',
        "<style>@import 'https://example.com/x.css';</style>",
        "<script>const URL = 'https://unpkg.com/thebe@0.8.2/lib/index.js'</script>",
    ],
)
def test_external_resource_is_found(snippet):
    assert offline.external_resources(f"<html><head></head><body>{snippet}</body></html>")


@pytest.mark.parametrize(
    "snippet",
    [
        '<a href="https://github.com/example/book">repository</a>',
        '<link rel="canonical" href="https://example.github.io/book/intro.html" />',
        '<meta property="og:image" content="https://example.github.io/book/logo.svg" />',
        '<img alt="" src="../_images/a.png">',
        '<div style="background: url(data:image/png;base64,AAAA)"></div>',
    ],
)
def test_links_and_local_resources_are_fine(snippet):
    assert offline.external_resources(f"<html><body>{snippet}</body></html>") == []


def test_page_with_external_resource_fails_the_build(tmp_path):
    pages = {
        "leaky": '# Leaky\n\n```{raw} html\n<img alt="" src="https://example.com/pixel.png">\n```\n'
    }
    built = build(tmp_path, pages)
    assert isinstance(built.error, offline.ExternalResourceError), built.log[-3000:]
    assert "leaky.html" in str(built.error) and "example.com/pixel.png" in str(built.error)


# --- preview: edits to the rendering code re-write every page ------------------------------------
def test_code_digest_follows_the_extension(tmp_path):
    ext = tmp_path / "_ext"
    shutil.copytree(ROOT / "book" / "_ext", ext, ignore=shutil.ignore_patterns("__pycache__"))
    before = render.code_digest(ext)
    assert render.code_digest(ext) == before
    with (ext / "templates" / "layout.html").open("a") as f:
        f.write("\n{# an edit #}\n")
    assert render.code_digest(ext) != before


def test_preview_rewrites_conf_before_every_build(tmp_path, monkeypatch):
    """sphinx-autobuild runs a pre-build command and then Sphinx in a new process for
    every build: the preview's pre-build command writes conf.py from _config.yml again,
    so an edit to _config.yml needs no restart (and book/_ext is imported afresh)."""
    import shlex
    import subprocess

    import sphinx_autobuild.build

    sys.path.insert(0, str(ROOT / "scripts"))
    import preview

    assert "subprocess.run([sys.executable] + sphinx_build_args" in __import__("inspect").getsource(
        sphinx_autobuild.build.Builder.__call__
    ), "sphinx-autobuild no longer runs Sphinx in a new process per build"
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy2(ROOT / name, tmp_path / name)
    started = {}
    monkeypatch.setattr(os, "execv", lambda exe, cmd: started.setdefault("cmd", cmd))
    monkeypatch.setattr(os, "chdir", lambda path: None)
    preview.main(["--root", str(tmp_path), "--port", "0"])
    cmd = started["cmd"]
    pre_build = shlex.split(cmd[cmd.index("--pre-build") + 1])
    config = tmp_path / "_config.yml"
    config.write_text(config.read_text().replace('title: "Backprop by Hand"', 'title: "Edited"'))
    subprocess.run(pre_build, check=True, timeout=120)
    assert "html_title = 'Edited'" in (tmp_path / "conf.py").read_text()


# --- lighter formulas, the same pixels ---------------------------------------------------------
FORMULAS = [
    (r"\frac{\partial L}{\partial W_{ij}} = \sum_{n} x_{ni}\, g_{nj}", True),
    (r"X^\top G \in \mathbb{R}^{n_\text{in} \times n_\text{out}}", False),
    (r"\begin{aligned} Y &= XW + b, \\ H &= \operatorname{relu}(Y) \end{aligned}", True),
    (r"\left( \frac{1}{M} \sum_{n,j} (H_{nj} - T_{nj})^2 \right)", True),
    (r"\begin{pmatrix} 1 & 0 \\ 0 & \mathbf{1}_{N} \end{pmatrix} \odot \sqrt{\hat y}", True),
    (r"\operatorname{vec}_r(G)^\top \big(I_N \otimes W^\top\big)", False),
]


@needs_node
def test_flattened_formulas_draw_the_same_pixels(tmp_path):
    """render_math.mjs drops MathJax's empty <g> wrappers (fewer elements for the browser
    to style and lay out): every formula draws exactly the same pixels without them."""
    from test_browser import CHROMIUM_ARGS

    playwright = pytest.importorskip("playwright.sync_api")
    from find_browser import BrowserNotFound, find_browser

    try:
        found = find_browser()
    except BrowserNotFound as error:
        pytest.skip(str(error))
    server = mathsvg.MathJaxServer()
    try:
        css = server.css()
        flat = server.render(FORMULAS)
        nested = server.ask(
            {
                "equations": [{"tex": t, "display": d} for t, d in FORMULAS],
                "cache": "page",
                "flatten": False,
            }
        )
    finally:
        server.close()
    assert not flat["errors"] and not nested["errors"]
    count = lambda replies: sum(h.count("<g") for h in replies["html"])  # noqa: E731
    assert count(flat) < 0.8 * count(nested), (count(flat), count(nested))
    shots = []
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(**found.launch_options(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 900, "height": 400}, device_scale_factor=2)
        for reply in (flat, nested):
            page.set_content(f"<style>{css}</style>{reply['defs']}" + "".join(
                f'<p id="f{i}" style="display:inline-block;margin:4px">{h}</p><br>'
                for i, h in enumerate(reply["html"])
            ))  # fmt: skip
            shots.append([page.locator(f"#f{i}").screenshot() for i in range(len(FORMULAS))])
        browser.close()
    differ = [
        (tex, n) for (tex, _), a, b in zip(FORMULAS, *shots) if (n := pixels_apart(a, b)) > 24
    ]
    assert not differ, f"flattened formulas draw differently (formula, pixels): {differ}"


def pixels_apart(a: bytes, b: bytes) -> int:
    """How many pixels two screenshots differ in (all of them if their sizes differ).
    Chromium itself antialiases a \\big delimiter a dozen pixels differently from one load
    of the same SVG to the next: the test allows two dozen."""
    from PIL import Image, ImageChops

    one, two = (Image.open(io.BytesIO(shot)).convert("L") for shot in (a, b))
    if one.size != two.size:
        return one.width * one.height
    return sum(ImageChops.difference(one, two).histogram()[1:])


@needs_node
def test_punctuation_stays_with_its_formula(tmp_path):
    """An inline formula and the punctuation after it are one unbreakable box: a narrow
    screen never starts a line with the comma (tests/test_browser.py looks at 320 px)."""
    built = build(tmp_path, {"p": "# P\n\nSo $W$, then $X^\\top G$: and $b$. Not $x$ here.\n"})
    assert built.error is None, built.log[-2000:]
    page = built.page("p")
    assert page.count('<span class="math-nowrap">') == 3, page[page.index("So ") :][:900]
    loose = re.findall(r"</mjx-container></span>[.,;:](?!</span>)", page)
    assert not loose, f"punctuation left free after a formula: {loose}"
