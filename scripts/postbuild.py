"""Post-build step for the HTML book (run by scripts/build_book.py after every build).

Makes every page self-contained (no request leaves the site), light and accessible:

* math: every ``\\(...\\)`` / ``\\[...\\]`` Sphinx emitted is typeset at build time into
  MathJax SVG (with hidden MathML for screen readers) by ``scripts/render_math.mjs``; the
  MathJax <script> tags (a CDN) are removed, so no math JavaScript runs and no font loads.
  Without Node.js (or ``npm ci``) the pages keep client-side MathJax and a warning says so.
  A formula MathJax cannot parse fails the build (``MathRenderError``).
* icons: the theme's FontAwesome JavaScript (1.5 MB) is removed. Icons are drawn by the
  theme's own CSS web font instead, cut down ("subset") to the glyphs the pages and the
  theme's CSS use (a few KB, WOFF, preloaded); the CSS of unused icons is dropped.
* unused scripts: sphinx-thebe (its JS, CSS and unpkg.com URL: the launch button links to
  Binder and needs none of it), and the search index outside the search page (the
  theme loads it everywhere only for search-as-you-type, which is off).
* first paint: the ten stylesheets become one file; the head's scripts are deferred.
* accessibility: three fixes to theme markup that axe-core flags (see A11Y_FIXES).
* finally checks that no page loads a script, stylesheet, font or image from another host.

Idempotent: running it again on processed pages changes nothing. Runs in about a second.
"""

from __future__ import annotations

import html as htmllib
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RENDER_MATH = Path(__file__).resolve().parent / "render_math.mjs"


class MathRenderError(RuntimeError):
    """MathJax could not typeset a formula (the build must fail)."""


class ExternalResourceError(RuntimeError):
    """A page still loads something from another host."""


# --- math -----------------------------------------------------------------------------
# Sphinx (dollarmath, amsmath, {math}, text/latex outputs) writes exactly these two forms.
# Processed elements get the extra class "mjx-svg", so a second run skips them.
MATH_RE = re.compile(
    r'<(?P<tag>span|div) class="(?P<cls>(?:[\w-]+ )*math notranslate nohighlight)"(?P<attrs>[^>]*)>'
    r"(?P<body>.*?)</(?P=tag)>",
    re.S,
)
EQNO_RE = re.compile(r'^\s*(<span class="eqno">.*?</span>)', re.S)
MATHJAX_SCRIPT_RES = (
    re.compile(r"\s*<script>window\.MathJax = .*?</script>", re.S),
    re.compile(r'\s*<script [^>]*src="[^"]*mathjax[^"]*"[^>]*></script>', re.I),
)
STYLE_ID = "mjx-svg-styles"


def _tex_of(tag: str, body: str) -> tuple[str, str, bool]:
    """Split an element body into (eqno html, TeX, display?)."""
    eqno = ""
    m = EQNO_RE.match(body)
    if m:
        eqno, body = m.group(1), body[m.end():]
    tex = htmllib.unescape(body).strip()
    display = tag == "div"
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if tex.startswith(left) and tex.endswith(right):
            tex, display = tex[2:-2].strip(), left == "\\["
            break
    return eqno, tex, display


def _node_ok(html_dir: Path) -> str | None:
    """Why math cannot be rendered at build time, or None when it can."""
    if shutil.which("node") is None:
        return "node (Node.js) is not installed"
    probe = subprocess.run(
        ["node", "-e", "require.resolve('mathjax-full/js/mathjax.js')"],
        cwd=RENDER_MATH.parent, capture_output=True, text=True,
    )
    if probe.returncode:
        return "mathjax-full is not installed (run: npm ci --omit=dev)"
    return None


def render_math(pages: dict[Path, str], html_dir: Path) -> int:
    """Typeset the math of every page in place; return the number of formulas."""
    found: list[tuple[Path, re.Match]] = []
    for path, text in pages.items():
        found += [(path, m) for m in MATH_RE.finditer(text)]
    if not found:
        for path, text in pages.items():
            pages[path] = _drop_mathjax_scripts(text)
        return 0
    why = _node_ok(html_dir)
    if why:
        print(
            f"postbuild: WARNING: {why}. The {len(found)} formulas are left for MathJax to "
            "typeset in the reader's browser, from a CDN: the pages are not self-contained.",
            file=sys.stderr,
        )
        for path, text in pages.items():
            pages[path] = _drop_mathjax_scripts(text)  # only on pages without math
        return 0
    parts = [_tex_of(m["tag"], m["body"]) for _, m in found]
    page_of = {path: n for n, path in enumerate(dict.fromkeys(path for path, _ in found))}
    request = {
        "equations": [
            {"tex": tex, "display": display, "page": page_of[path]}
            for (path, _), (_, tex, display) in zip(found, parts)
        ]
    }
    proc = subprocess.run(
        ["node", str(RENDER_MATH)], input=json.dumps(request), capture_output=True,
        text=True, cwd=RENDER_MATH.parent,
    )
    if proc.returncode:
        where = []
        for line in proc.stderr.splitlines():
            n = re.match(r"render_math: equation (\d+) failed", line)
            if n:
                path = found[int(n.group(1))][0]
                where.append(f"{path.relative_to(html_dir)}: {line}")
            else:
                where.append(line)
        raise MathRenderError("MathJax could not typeset:\n" + "\n".join(where))
    out = json.loads(proc.stdout)
    style = f'<style id="{STYLE_ID}">{_minify_css(out["css"])}</style>'
    by_page: dict[Path, list[tuple[re.Match, str]]] = {}
    for (path, m), (eqno, _, _), svg in zip(found, parts, out["html"]):
        tag, cls, attrs = m["tag"], m["cls"], m["attrs"]
        by_page.setdefault(path, []).append(
            (m, f'<{tag} class="{cls} mjx-svg"{attrs}>{eqno}{svg}</{tag}>')
        )
    for path, subs in by_page.items():
        text = pages[path]
        for m, new in reversed(subs):
            text = text[: m.start()] + new + text[m.end():]
        if STYLE_ID not in text:
            text = text.replace("</head>", f"  {style}\n  </head>", 1)
        # the glyph paths this page's formulas <use>, once per page
        cache = out["caches"][str(page_of[path])]
        text = re.sub(r"<body[^>]*>", lambda b: b.group(0) + cache, text, count=1)
        pages[path] = text
    for path, text in pages.items():
        pages[path] = _drop_mathjax_scripts(text)
    return len(found)


def _drop_mathjax_scripts(text: str) -> str:
    if MATH_RE.search(text):  # math left for the browser: keep MathJax
        return text
    for pattern in MATHJAX_SCRIPT_RES:
        text = pattern.sub("", text)
    return text


def _minify_css(css: str) -> str:
    css = re.sub(r"\s*([{};:,>])\s*", r"\1", css)
    return re.sub(r"\s+", " ", css).replace(";}", "}").strip()


# --- scripts the book does not need ----------------------------------------------------
DROP_RES = (
    # FontAwesome's SVG+JS: icons come from the (subset) web font instead.
    re.compile(r'\s*<script [^>]*src="[^"]*_static/scripts/fontawesome\.js[^"]*"></script>'),
    # sphinx-thebe: live code is off; the launch buttons are plain links.
    re.compile(r'\s*<script>const THEBE_JS_URL = .*?</script>', re.S),
    re.compile(r'\s*<script [^>]*src="[^"]*_static/sphinx-thebe\.js[^"]*"></script>'),
    re.compile(r'\s*<link [^>]*href="[^"]*_static/sphinx-thebe\.css[^"]*" />'),
    re.compile(r'\s*<script type="text/x-thebe-config">.*?</script>', re.S),
    re.compile(r"\s*<script>kernelName = '[^']*'</script>"),
)
SEARCH_RES = (
    re.compile(r'\s*<script src="[^"]*_static/searchtools\.js"></script>'),
    re.compile(r'\s*<script src="[^"]*_static/language_data\.js"></script>'),
    re.compile(r'\s*<script src="[^"]*searchindex\.js"></script>'),
)


# Accessibility fixes for theme markup (axe-core, tests/test_browser.py): an accessible
# name must contain the visible label, and all content must sit in a landmark.
A11Y_FIXES = (
    # "Search Ctrl+K" buttons labelled just "Search": let the visible text name them.
    (re.compile(r'(<button class="btn search-button-field[^"]*"[^>]*?) aria-label="Search"'), r"\1"),
    # Hidden solutions: the summary reads "Show solution", not "Toggle hidden content".
    (re.compile(r'<summary aria-label="Toggle hidden content">'), "<summary>"),
    # The sidebar (logo, search, chapters) as one complementary landmark.
    (
        re.compile(r'<div id="pst-primary-sidebar" class="bd-sidebar-primary bd-sidebar">'),
        '<div id="pst-primary-sidebar" class="bd-sidebar-primary bd-sidebar" role="complementary" aria-label="Book">',
    ),
)


def drop_scripts(path: Path, text: str) -> str:
    for pattern in DROP_RES:
        text = pattern.sub("", text)
    for pattern, repl in A11Y_FIXES:
        text = pattern.sub(repl, text)
    if path.name != "search.html":
        for pattern in SEARCH_RES:
            text = pattern.sub("", text)
    return text


# --- render-blocking scripts ---------------------------------------------------------------
# Sphinx puts its scripts in <head> without defer: each one delays the first paint. They all
# wait for DOMContentLoaded anyway, and the inline snippets between them only set globals,
# so they can all be deferred (order kept). documentation_options.js defines a global the
# inline snippets use at once: it is inlined instead (300 bytes).
HEAD_SCRIPT_RE = re.compile(r'<script (?P<attrs>(?:(?!defer|async)[^>])*?)src="(?P<src>[^"]+)"></script>')
DOC_OPTIONS_RE = re.compile(r'<script src="(?P<src>[^"]*_static/documentation_options\.js)(?:\?[^"]*)?"></script>')


def defer_scripts(html_dir: Path, path: Path, text: str) -> str:
    head_end = text.find("</head>")
    if head_end < 0:
        return text
    head, rest = text[:head_end], text[head_end:]

    def inline(m: re.Match) -> str:
        src = html_dir / "_static" / "documentation_options.js"  # 404.html uses /REPO/_static/...
        if not src.is_file():
            return m.group(0)
        return "<script>" + src.read_text(encoding="utf-8").strip() + "</script>"

    head = DOC_OPTIONS_RE.sub(inline, head)
    head = HEAD_SCRIPT_RE.sub(
        lambda m: m.group(0) if "documentation_options" in m["src"]
        else f'<script {m["attrs"]}defer src="{m["src"]}"></script>',
        head,
    )
    return head + rest


# --- one stylesheet -----------------------------------------------------------------------
# Sphinx links ten stylesheets (one @imports another), all render-blocking: a phone on a slow
# network waits for each. They are concatenated, in order, into one file per distinct set.
CSS_LINK_RE = re.compile(
    r'[ \t]*<link (?:href="(?P<a>[^"]+\.css)(?:\?[^"]*)?" rel="stylesheet"'
    r'|rel="stylesheet" type="text/css" href="(?P<b>[^"]+\.css)(?:\?[^"]*)?") />\n?'
)
IMPORT_RE = re.compile(r'@import\s+(?:url\()?["\']?([^"\')]+)["\']?\)?\s*;')
URL_RE = re.compile(r'url\((["\']?)(?!data:|https?:|/|#)([^"\')]+)\1\)')
PRELOAD_JS_RE = re.compile(r'\s*<link rel="preload" as="script" href="[^"]+" />')


def _css_text(file: Path, bundle_dir: Path) -> str:
    """A stylesheet with its @imports inlined and its url()s made relative to bundle_dir."""
    text = file.read_text(encoding="utf-8")
    text = IMPORT_RE.sub(lambda m: _css_text((file.parent / m.group(1)).resolve(), bundle_dir), text)

    def rebase(m: re.Match) -> str:
        target = (file.parent / m.group(2).split("?")[0].split("#")[0]).resolve()
        suffix = m.group(2)[len(m.group(2).split("?")[0].split("#")[0]):]
        rel = os.path.relpath(target, bundle_dir).replace(os.sep, "/")
        return f"url({m.group(1)}{rel}{suffix}{m.group(1)})"

    return URL_RE.sub(rebase, text)


def bundle_css(html_dir: Path, pages: dict[Path, str]) -> int:
    """Replace each page's stylesheet links with one link to their concatenation."""
    static = (html_dir / "_static").resolve()
    bundles: dict[tuple[str, ...], str] = {}
    for path, text in pages.items():
        head_end = text.find("</head>")
        links = list(CSS_LINK_RE.finditer(text, 0, head_end))
        if len(links) < 2:
            continue
        hrefs = [m["a"] or m["b"] for m in links]
        cut = hrefs[0].index("_static/")
        prefix = hrefs[0][:cut]  # "../" on book pages, "/REPO/" on 404.html
        names = tuple(h[h.index("_static/") + len("_static/"):] for h in hrefs)
        if names not in bundles:
            parts = [f"/* {n} */\n" + _css_text(static / n, static / "styles") for n in names]
            body = "\n".join(parts)
            name = f"styles/bundle-{hashlib.sha256(body.encode()).hexdigest()[:10]}.css"
            (static / name).write_text(body, encoding="utf-8")
            bundles[names] = name
        link = f'  <link rel="stylesheet" href="{prefix}_static/{bundles[names]}" />\n'
        first, last = links[0], links[-1]
        middle = text[first.end():last.start()]
        for m in links[1:-1]:
            middle = middle.replace(m.group(0), "", 1)
        pages[path] = text[: first.start()] + link + middle + text[last.end():]
    return len(bundles)


def preload_fonts(html_dir: Path, text: str) -> str:
    """Fetch the scripts late (they are deferred) and the icon fonts early."""
    text = PRELOAD_JS_RE.sub("", text)
    m = re.search(r'<link rel="stylesheet" href="([^"]*)_static/styles/bundle-', text)
    if not m or "fa-solid-900.subset.woff" in text:
        return text
    fonts = "".join(
        f'\n  <link rel="preload" as="font" type="font/woff" crossorigin href="{m.group(1)}'
        f'_static/vendor/fontawesome/webfonts/{name}.subset.woff" />'
        for name in ("fa-solid-900", "fa-brands-400")
        if (html_dir / "_static/vendor/fontawesome/webfonts" / f"{name}.subset.woff").is_file()
    )
    return text.replace(m.group(0), fonts.lstrip("\n") + "\n" + m.group(0), 1) if fonts else text


# --- icon fonts --------------------------------------------------------------------------
FONT_SRC_RE = re.compile(
    r"src:url\((?P<dir>[^)]*?/webfonts/)(?P<name>fa-[a-z]+-\d+)[.\w]*\)[^;}]*"
)
ICON_RULE_RE = re.compile(r"(?:\.fa-[\w-]+:(?:before|after),?)+\{content:\"(?:\\[0-9a-f]+|[^\"]*)\"\}")
PUA_RE = re.compile(r"\\(f[0-9a-f]{3}|e[0-9a-f]{3})\b|([\ue000-\uf8ff])", re.I)
ICON_CLASS_RE = re.compile(r"\.(fa-[\w-]+):(?:before|after)")


def _codepoints(css: str) -> set[int]:
    found = set()
    for m in PUA_RE.finditer(css):
        found.add(int(m.group(1), 16) if m.group(1) else ord(m.group(2)))
    return found


def subset_icon_fonts(html_dir: Path, pages: dict[Path, str]) -> str:
    """Cut FontAwesome's web fonts down to the icons in use; point the CSS at them."""
    static = html_dir / "_static"
    css_path = static / "styles" / "pydata-sphinx-theme.css"
    webfonts = static / "vendor" / "fontawesome" / "webfonts"
    if not css_path.is_file() or not webfonts.is_dir():
        return "no FontAwesome web fonts found; nothing to subset"
    try:
        from fontTools import subset
        from fontTools.ttLib import TTFont
    except ImportError:  # fontTools comes with matplotlib
        return "fontTools missing: icon fonts left whole"
    css = original = css_path.read_text(encoding="utf-8")
    # Icon classes to codepoints, from the theme's own CSS.
    class_cp: dict[str, int] = {}
    for rule in ICON_RULE_RE.finditer(css):
        cps = _codepoints(rule.group(0).split("{", 1)[1])
        for name in ICON_CLASS_RE.findall(rule.group(0)):
            class_cp.update({name: cp for cp in cps})
    # Icons drawn by CSS alone (admonitions, dropdown arrows, ...): every codepoint
    # left once the per-class rules are removed, in every stylesheet of the site.
    wanted = set()
    for sheet in static.rglob("*.css"):
        wanted |= _codepoints(ICON_RULE_RE.sub("", sheet.read_text(encoding="utf-8")))
    for text in pages.values():
        for classes in re.findall(r'class="([^"]*\bfa-[^"]*)"', text):
            wanted |= {class_cp[c] for c in classes.split() if c in class_cp}
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    sizes = []
    for ttf in sorted(webfonts.glob("fa-*.ttf")):
        out = ttf.with_suffix(".subset.woff")
        font = TTFont(ttf, recalcTimestamp=False)
        have = set(font.getBestCmap())
        options = subset.Options()
        options.flavor = "woff"
        options.layout_features = []
        options.name_IDs = []
        options.notdef_outline = True
        options.recalc_timestamp = False  # same input, same bytes
        subsetter = subset.Subsetter(options)
        subsetter.populate(unicodes=sorted(wanted & have))
        subsetter.subset(font)
        font.flavor = "woff"
        font.save(out)
        sizes.append(f"{out.name} {out.stat().st_size / 1024:.1f} KB")
    # Drop the CSS rules of the ~1400 icons no page uses (a third of the theme's CSS).
    used = set()
    for text in pages.values():
        for classes in re.findall(r'class="([^"]*\bfa-[^"]*)"', text):
            used |= {c for c in classes.split() if c.startswith("fa-")}
    css = ICON_RULE_RE.sub(
        lambda m: m.group(0) if used & set(ICON_CLASS_RE.findall(m.group(0))) else "", css
    )
    new_css = FONT_SRC_RE.sub(
        lambda m: f'src:url({m["dir"]}{m["name"]}.subset.woff) format("woff")', css
    )
    if new_css != original:
        css_path.write_text(new_css, encoding="utf-8")
    return f"{len(wanted)} icons: " + ", ".join(sizes)


# --- self-containment check --------------------------------------------------------------
# What a browser fetches by itself: scripts, stylesheets, preloads, icons, images, frames.
FETCHED_RE = re.compile(
    r'<(?:script|img|iframe|source|audio|video)\b[^>]*\ssrc="(https?:)?//[^"]*"'
    r'|<link\b(?=[^>]*\srel="(?:stylesheet|preload|modulepreload|icon|shortcut icon|manifest)")'
    r'[^>]*\shref="(?:https?:)?//[^"]*"'
    r"|url\((?:['\"])?(?:https?:)?//",
    re.I,
)


def external_resources(text: str) -> list[str]:
    return [m.group(0)[:160] for m in FETCHED_RE.finditer(text)]


# --- driver --------------------------------------------------------------------------------
def html_pages(html_dir: Path) -> list[Path]:
    skip = {"_static", "_sources", "_images"}
    return sorted(p for p in html_dir.rglob("*.html") if not skip & set(p.relative_to(html_dir).parts))


def postprocess(html: Path) -> None:
    """Rewrite the built pages in ``html`` in place."""
    start = time.perf_counter()
    html = Path(html)
    paths = html_pages(html)
    originals = {p: p.read_text(encoding="utf-8") for p in paths}
    pages = {
        p: defer_scripts(html, p, drop_scripts(p, t))
        for p, t in originals.items()
    }
    n_math = render_math(pages, html)
    fonts = subset_icon_fonts(html, pages)
    bundle_css(html, pages)
    for path, text in pages.items():
        pages[path] = preload_fonts(html, text)
    problems = []
    for path, text in pages.items():
        if text != originals[path]:
            path.write_text(text, encoding="utf-8")
        problems += [f"{path.relative_to(html)}: {r}" for r in external_resources(text)]
    still_mathjax = [p for p, t in pages.items() if MATH_RE.search(t)]
    if problems and not still_mathjax:
        raise ExternalResourceError(
            "pages load resources from other hosts:\n  " + "\n  ".join(problems)
        )
    print(
        f"postbuild: {len(paths)} pages, {n_math} formulas typeset to SVG, {fonts} "
        f"({time.perf_counter() - start:.1f} s)"
    )


if __name__ == "__main__":
    postprocess(Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "_build" / "html"))
