"""The reader's notebooks: every page with code, as a notebook that runs on its own.

A Sphinx extension (``sphinx.local_extensions`` in _config.yml), so ``make book`` and
``make preview`` make the same notebooks. At ``build-finished`` it reads the notebooks
myst-nb executed (``_build/jupyter_execute``: cells in page order, the page's line of each
cell, the glued values) and writes, into ``_build/html``:

* ``notebooks/<page>.ipynb`` for every TOC page with code cells, without outputs;
* ``notebooks/byhand.py``, ``notebooks/README.md``, ``notebooks/img/`` (the pictures the
  notebooks show) and ``notebooks/.binder/`` (Binder's configuration): the tree that CI
  publishes to the branch Colab and Binder open (``reader_notebooks_branch``);
* ``backprop-by-hand-notebooks.zip``: the notebooks, ``byhand.py`` and the README.

A reader's notebook differs from its page only where Jupyter cannot follow the site:

* its first code cell, collapsed, carries the exact ``byhand.py`` of this build (hash-checked,
  compressed): it imports ``byhand`` if the importable one is that version, and otherwise
  writes it beside the notebook (replacing an older copy) and imports it. No network, and
  nothing for the reader to install but torch, numpy, matplotlib and scikit-learn;
* MyST becomes Markdown that Jupyter and Colab render: glued values become the values the
  page shows; admonitions become quotes with a bold title; dropdowns, headed sections;
  ``{term}``, ``{doc}``, ``{ref}`` become links to the published site; figures, images from
  the site; ``(label)=`` targets and comments go. Math stays as it is;
* ``from myst_nb import glue`` goes (the setup cell defines a ``glue`` that shows what it is
  given with ``display=True``, as myst-nb's does), and so does ``from figures import ...``:
  an interactive figure's cell becomes its static picture (``image/svg+xml`` from the
  figure) with a link to the figure on the page;
* cells the page hides or folds are collapsed (JupyterLab's ``source_hidden``/
  ``outputs_hidden``; Colab's form cells with a ``# @title``); exercise solutions are such
  a cell between the stub and its check ("Solution (run to see it pass)");
* a wrong-formula demonstration (``raises-exception``) starts with the setup cell's
  ``%%raises`` magic: it shows the same error as the page, and "Run all" goes on (Colab
  stops at any error; JupyterLab honours the tag, but the magic also fails when the cell
  does *not* raise its error).

Everything it cannot convert (an unknown role or directive, a relative link, a figure cell
with more than the figure's call) stops the build with an error naming the file and line.
``tests/test_notebooks.py`` runs every notebook in a clean Python without byhand, myst-nb
and jupytext, and checks what a reader gets.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import posixpath
import re
import textwrap
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urljoin

import nbformat
import yaml
from sphinx.application import Sphinx
from sphinx.util import logging

import guard_lint
from guard import toc_documents

logger = logging.getLogger(__name__)


BRANCH = "notebooks"  # the branch CI publishes the tree to (reader_notebooks_branch)
OUT = "notebooks"  # under _build/html: the tree the notebooks branch receives
ARCHIVE = "backprop-by-hand-notebooks"  # the .zip (site root) and its one folder
BINDER_DIR = ".binder"  # at the repository's root; copied into the tree
IMG = "img"
NOTEBOOK_TAGS = ("remove-cell", "remove-input", "hide-input", "hide-cell", "hide-output")
# What the setup cell's title says, and the solution's (Colab shows the title of a form cell).
SETUP_TITLE = "Setup: byhand, the book's checking module (run this cell first)"
SOLUTION_TITLE = "Solution (run to see it pass)"
HIDDEN_TITLES = {
    "remove-cell": "Hidden on the page: computes what the text uses",
    "remove-input": "Code hidden on the page (its output is shown)",
    "hide-input": "Code folded on the page",
    "hide-cell": "Folded on the page",
}
ADMONITIONS = {
    "note", "tip", "hint", "important", "warning", "caution", "attention", "danger",
    "error", "seealso",
}  # fmt: skip
FIGURE_MODULE = "figures"


# --- what the site knows: titles, labels, terms, pictures, glued values --------------------


@dataclass
class Site:
    """The published site's addresses and what the build knows about its pages. Built from
    the Sphinx environment (:func:`site_of`); tests make small ones by hand."""

    url: str  # the published site, ending in "/"
    titles: dict[str, str] = field(default_factory=dict)  # docname -> title
    labels: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # -> doc, id, title
    terms: dict[str, tuple[str, str]] = field(default_factory=dict)  # lower term -> doc, id
    images: dict[str, str] = field(default_factory=dict)  # srcdir path -> site path
    downloads: dict[str, str] = field(default_factory=dict)  # srcdir path -> site path
    equations: dict[str, tuple[str, int]] = field(default_factory=dict)  # label -> doc, no
    figure_numbers: dict[str, dict[str, str]] = field(default_factory=dict)  # label -> text
    glue: dict[str, dict[str, dict]] = field(default_factory=dict)  # doc -> key -> mimebundle
    srcdir: Path = Path(".")
    include: Callable[[Path, dict], str] | None = None  # literalinclude's reader

    def page(self, docname: str, anchor: str = "") -> str:
        return f"{self.url}{docname}.html" + (f"#{anchor}" if anchor else "")


def site_of(app: Sphinx) -> Site:
    env = app.env
    std = env.domaindata["std"]
    labels = {name: tuple(value) for name, value in std["labels"].items()}
    for name, (doc, anchor) in std["anonlabels"].items():
        labels.setdefault(name, (doc, anchor, ""))
    terms = {  # Sphinx finds a term whatever its case
        name.lower(): (doc, anchor)
        for (kind, name), (doc, anchor) in std["objects"].items()
        if kind == "term"
    }
    numbers = {}
    for name, (doc, anchor, _title) in labels.items():
        for kind, found in env.toc_fignumbers.get(doc, {}).items():
            if anchor in found:
                numbers[name] = (kind, ".".join(map(str, found[anchor])))
    glue = {}
    execute = Path(app.outdir).parent / "jupyter_execute"
    for path in execute.rglob("*.glue.json"):
        doc = path.relative_to(execute).as_posix()[: -len(".glue.json")]
        glue[doc] = {k: v.get("data", {}) for k, v in json.loads(path.read_text()).items()}

    def include(path: Path, options: dict) -> str:
        from sphinx.directives.code import LiteralIncludeReader

        return LiteralIncludeReader(str(path), options, app.config).read()[0]

    return Site(
        url=(app.config.html_baseurl or "").rstrip("/") + "/",
        titles={doc: title.astext() for doc, title in env.titles.items()},
        labels=labels,
        terms=terms,
        images={path: f"_images/{name}" for path, (_docs, name) in env.images.items()},
        downloads={path: f"_downloads/{name}" for path, (_docs, name) in env.dlfiles.items()},
        equations={n: (d, no) for n, (d, no) in env.domaindata["math"]["objects"].items()},
        figure_numbers={
            name: (app.config.numfig_format.get(kind, "%s") % number)
            for name, (kind, number) in numbers.items()
        },
        glue=glue,
        srcdir=Path(app.srcdir),
        include=include,
    )


# --- MyST to Markdown that Jupyter renders -------------------------------------------------

# A relative address in inline HTML (<a href="../x.zip">): relative to the page on the site.
HTML_LINK = re.compile(r'(\b(?:href|src)=")(?!https?:|#|mailto:|data:)([^"]+)"')
ROLE_BEFORE = re.compile(r"\{([A-Za-z][\w:+.-]*)\}$")
EXPLICIT = re.compile(r"^(.*?)\s*<([^<>]+)>$", re.S)


def _explicit(content: str) -> tuple[str | None, str]:
    """``text <target>`` -> (text, target); ``target`` -> (None, target)."""
    match = EXPLICIT.match(content.strip())
    return (match.group(1), match.group(2)) if match else (None, content.strip())


def _link(text: str, url: str) -> str:
    text = text.replace("[", r"\[").replace("]", r"\]")
    return f"[{text}]({url})"


def scan_roles(text: str) -> list[tuple[int, int, str, str]]:
    """Every MyST role in ``text`` outside code spans, as (start, end, name, content):
    ``{name}`` followed at once by a code span (CommonMark's backtick rules)."""
    found = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] != "`":
            i += 1
            continue
        run = len(text[i:]) - len(text[i:].lstrip("`"))
        close = i + run
        while True:
            close = text.find("`" * run, close)
            if close < 0:
                break
            after = close + run
            if (close == 0 or text[close - 1] != "`") and (
                after >= len(text) or text[after] != "`"
            ):
                break
            close = after + len(text[after:]) - len(text[after:].lstrip("`"))
        if close < 0:  # an unmatched run is literal text
            i += run
            continue
        role = ROLE_BEFORE.search(text, 0, i)
        if role and role.end() == i:
            found.append((role.start(), close + run, role.group(1), text[i + run : close]))
        i = close + run
    return found


class Converter:
    """MyST Markdown of one page to Markdown Jupyter renders. Problems are collected as
    ``file:line: message``; the caller raises them all at once."""

    def __init__(self, site: Site, docname: str, path: str, md_config=None):
        from markdown_it.renderer import RendererHTML
        from myst_parser.parsers.mdit import create_md_parser

        self.site, self.docname, self.path = site, docname, path
        config = md_config or guard_lint.md_config(site.srcdir)
        self.md = create_md_parser(config, RendererHTML)
        self.problems: list[str] = []
        self.heading = 1  # the level of the last heading: a dropdown's goes one deeper
        self.pictures: dict[str, bytes] = {}  # img/<name> -> content, for the site

    def problem(self, line: int, message: str) -> None:
        self.problems.append(f"{self.path}:{line}: {message}")

    # blocks ---------------------------------------------------------------------------
    def markdown(self, text: str, line: int) -> str:
        """``text`` (MyST; its first line is line ``line`` of the page) as Markdown."""
        lines = text.split("\n")
        tokens = self.md.parse(text)
        out: list[str] = []
        pos = 0
        i = 0
        while i < len(tokens):
            token = tokens[i]
            j = i + 1
            if token.nesting == 1:  # a container: up to its closing token
                depth = 1
                while depth:
                    depth += tokens[j].nesting
                    j += 1
            if token.map is None:
                i = j
                continue
            start, end = token.map
            out += lines[pos:start]
            out += self.block(token, tokens[i:j], lines[start:end], line, start)
            pos = end
            i = j
        out += lines[pos:]
        return "\n".join(out)

    def block(self, token, inner, lines: list[str], first: int, start: int) -> list[str]:
        """One top-level block (``lines``, from line ``start`` of a text whose first line is
        the page's line ``first``) as Markdown."""
        line = first + start
        kind = token.type
        if kind in ("myst_target", "myst_line_comment", "myst_block_break", "front_matter"):
            return []
        if kind in ("fence", "colon_fence") and token.info.strip().startswith("{"):
            name, _, arg = token.info.strip()[1:].partition("}")
            return self.directive(name.strip(), arg.strip(), token.content, line)
        if kind in ("fence", "code_block", "math_block", "hr"):
            return lines
        if kind == "html_block":
            return self.absolute("\n".join(lines)).split("\n")
        if kind == "math_block_label":  # $$ ... $$ (label): the label goes
            return ["$$", token.content.strip("\n"), "$$"]
        if kind == "amsmath":
            return ["$$", *lines, "$$"]
        if kind == "heading_open":
            self.heading = int(token.tag[1])
        for t in inner:
            self.check_nested(t, first + t.map[0] if t.map else line)
        text = self.inline("\n".join(lines), inner, line)
        if any(c.type == "html_inline" for t in inner for c in t.children or ()):
            text = self.absolute(text)
        return text.split("\n")

    def absolute(self, html: str) -> str:
        """Relative addresses in HTML (``<a href="../x.zip">``) as the site's, from the page."""
        page = self.site.page(self.docname)
        return HTML_LINK.sub(lambda m: f'{m.group(1)}{urljoin(page, m.group(2))}"', html)

    def check_nested(self, t, at: int) -> None:
        """What the block converter leaves alone must be plain Markdown."""
        if t.type in ("fence", "colon_fence") and t.info.strip().startswith("{"):
            self.problem(at, f"a directive inside a list or quote ({t.info.strip()}): "
                         "move it out to convert it")  # fmt: skip
        elif t.type in ("myst_target", "substitution_block", "footnote_block_open"):
            self.problem(at, f"{t.type} inside a block cannot be shown in Jupyter")
        for c in t.children or ():
            if c.type in ("substitution_inline", "footnote_ref"):
                self.problem(at, f"{c.type} cannot be shown in Jupyter")
            for attr in ("href", "src"):
                target = c.attrs.get(attr) if c.attrs else None
                if target and not re.match(r"^(https?:|mailto:|data:)", str(target)):
                    self.problem(at, f"relative link or image {target!r}: use {{doc}}, {{ref}} "
                                 "or {figure} (they become the published site's addresses)")  # fmt: skip

    def inline(self, text: str, inner, line: int) -> str:
        expected = [
            c.meta.get("name") for t in inner for c in (t.children or ()) if c.type == "myst_role"
        ]
        roles = scan_roles(text)
        if [name for _, _, name, _ in roles] != expected:
            self.problem(line, f"cannot tell the roles {expected} apart from the code spans here")
            return text
        out, pos = [], 0
        for start, end, name, content in roles:
            out.append(text[pos:start])
            out.append(self.role(name, content, line + text.count("\n", 0, start)))
            pos = end
        out.append(text[pos:])
        return "".join(out)

    # roles ------------------------------------------------------------------------------
    def role(self, name: str, content: str, line: int) -> str:
        site = self.site
        text, target = _explicit(content)
        if name == "term":
            found = site.terms.get(target.lower())
            if not found:
                self.problem(line, f"unknown term {target!r}")
                return text or target
            return _link(text or target, site.page(*found))
        if name == "doc":
            doc = self.docname_of(target)
            if doc not in site.titles:
                self.problem(line, f"unknown document {target!r}")
                return text or target
            return _link(text or site.titles[doc], site.page(doc))
        if name in ("ref", "numref"):
            found = site.labels.get(target.lower())
            if not found:
                self.problem(line, f"unknown label {target!r}")
                return text or target
            doc, anchor, title = found
            if name == "numref":
                number = site.figure_numbers.get(target.lower(), "")
                title = (
                    text.replace("%s", number).replace("{number}", number) if text else number
                ) or title
                text = None
            if not (text or title):
                self.problem(line, f"{{{name}}}`{content}` needs a text: the label has no title")
            return _link(text or title, site.page(doc, anchor))
        if name == "eq":
            found = site.equations.get(target)
            if not found:
                self.problem(line, f"unknown equation {target!r}")
                return target
            return _link(text or f"({found[1]})", site.page(found[0], f"equation-{target}"))
        if name == "math":
            return f"${content}$"
        if name == "download":
            path = self.srcpath(target)
            if path not in site.downloads:
                self.problem(line, f"{{download}} of a file the build did not copy: {target!r}")
                return text or target
            return _link(text or Path(target).name, site.url + site.downloads[path])
        if name in ("sub", "sup", "kbd"):
            return f"<{name}>{content}</{name}>"
        if name == "abbr":
            return content.split(" (", 1)[0]
        if name.startswith("glue"):
            return self.glue_inline(name, content, line)
        self.problem(line, f"unknown role {{{name}}}: add it to book/_ext/notebooks.py")
        return content

    def docname_of(self, target: str) -> str:
        target = target.removesuffix(".md")
        if target.startswith("/"):
            return target.lstrip("/")
        return posixpath.normpath(posixpath.join(posixpath.dirname(self.docname), target))

    def srcpath(self, target: str) -> str:
        if target.startswith("/"):
            return target.lstrip("/")
        return posixpath.normpath(posixpath.join(posixpath.dirname(self.docname), target))

    def glued(self, key: str, line: int) -> dict | None:
        doc, sep, name = key.partition("::")
        doc, name = (self.docname_of(doc), name) if sep else (self.docname, key)
        data = self.site.glue.get(doc, {}).get(name)
        if data is None:
            self.problem(line, f"no glued value {key!r}")
        return data

    def glue_inline(self, name: str, content: str, line: int) -> str:
        from myst_nb.core.variables import format_plain_text

        key, fmt = content, ""
        if name == "glue:text" and ":" in content.replace("::", "\0"):
            key, fmt = content.rsplit(":", 1)
        data = self.glued(key, line)
        if data is None:
            return ""
        if name == "glue:md" and "text/markdown" in data:
            return self.markdown(data["text/markdown"], line).strip()
        if name in ("glue", "glue:any") and "text/markdown" in data:
            return data["text/markdown"]
        if name in ("glue:text", "glue", "glue:any", "glue:md") and "text/plain" in data:
            return format_plain_text(
                data["text/plain"], fmt or ("s" if name == "glue:text" else "")
            )
        self.problem(line, f"{{{name}}}`{content}` has no text to show in Jupyter")
        return ""

    # directives -------------------------------------------------------------------------
    def directive(self, name: str, arg: str, body: str, line: int) -> list[str]:
        options, body, body_line = _options(body, line + 1)
        if name == "admonition" or name in ADMONITIONS:
            title = self.inline_only(arg, line) if name == "admonition" else name.capitalize()
            inner = self.markdown(body, body_line).strip("\n").split("\n")
            return [f"> **{title}**", ">", *[f"> {x}" if x else ">" for x in inner]]
        if name == "dropdown":
            level = min(self.heading + 1, 6)
            title = self.inline_only(arg, line) or "More"
            return [
                "#" * level + f" {title}",
                "",
                *self.markdown(body, body_line).strip("\n").split("\n"),
            ]
        if name in ("figure", "image"):
            url = self.image(arg, line)
            alt = str(options.get("alt", "")).replace("\n", " ")
            out = [f"![{alt}]({url})"]
            if name == "figure" and body.strip():
                out += ["", *self.markdown(body, body_line).strip("\n").split("\n")]
            return out
        if name in ("glue", "glue:", "glue:any", "glue:figure", "glue:md", "glue:math"):
            return self.glue_block(name, arg, options, body, body_line, line)
        if name == "literalinclude":
            if self.site.include is None:
                self.problem(line, "literalinclude needs the build")
                return []
            path = self.site.srcdir / self.srcpath(arg)
            code = self.site.include(path, {k: v for k, v in options.items()})
            return [f"```{options.get('language', '')}", *code.rstrip("\n").split("\n"), "```"]
        if name in ("code-block", "code", "sourcecode"):
            return [f"```{arg}", *body.rstrip("\n").split("\n"), "```"]
        if name == "math":
            return ["$$", *body.strip("\n").split("\n"), "$$"]
        if name == "glossary":
            return self.glossary(body, body_line)
        if name == "raw" and arg == "html":
            return body.rstrip("\n").split("\n")
        self.problem(line, f"unknown directive {{{name}}}: add it to book/_ext/notebooks.py")
        return []

    def inline_only(self, text: str, line: int) -> str:
        return self.markdown(text, line).strip()

    def image(self, target: str, line: int) -> str:
        if re.match(r"^https?:", target):
            return target
        path = self.srcpath(target)
        if path not in self.site.images:
            self.problem(line, f"image {target!r} is not one the build copied to the site")
            return target
        return self.site.url + self.site.images[path]

    def picture(self, name: str, data: bytes) -> str:
        """A picture the site does not have yet: written under notebooks/img/."""
        self.pictures[name] = data
        return f"{self.site.url}{OUT}/{IMG}/{name}"

    def glue_block(self, name, key, options, body, body_line, line) -> list[str]:
        data = self.glued(key, line)
        if data is None:
            return []
        stem = Path(self.docname).name
        alt = str(options.get("alt", key)).replace("\n", " ")
        out: list[str] = []
        if name == "glue:md" and "text/markdown" in data:
            out = self.markdown(data["text/markdown"], line).split("\n")
        elif name == "glue:math" and "text/latex" in data:
            out = ["$$", data["text/latex"].strip().strip("$"), "$$"]
        elif "image/svg+xml" in data:
            svg = data["image/svg+xml"]
            out = [f"![{alt}]({self.picture(f'{stem}-{key}.svg', svg.encode())})"]
        elif "image/png" in data:
            png = base64.b64decode(data["image/png"])
            out = [f"![{alt}]({self.picture(f'{stem}-{key}.png', png)})"]
        elif "text/html" in data:
            out = data["text/html"].strip().split("\n")
        elif "text/markdown" in data:
            out = data["text/markdown"].split("\n")
        elif "text/plain" in data:
            out = ["```", *data["text/plain"].split("\n"), "```"]
        else:
            self.problem(line, f"glued {key!r} has nothing Jupyter can show")
        if name == "glue:figure" and body.strip():
            out += ["", *self.markdown(body, body_line).strip("\n").split("\n")]
        return out

    def glossary(self, body: str, line: int) -> list[str]:
        out: list[str] = []
        entries: list[tuple[list[str], list[str], int]] = []
        for number, text in enumerate(body.split("\n")):
            if text and not text[0].isspace():
                if entries and not entries[-1][1]:
                    entries[-1][0].append(text.strip())  # another name for the same term
                else:
                    entries.append(([text.strip()], [], line + number))
            elif entries:
                entries[-1][1].append(text)
        for names, definition, at in entries:
            out += [f"**{' / '.join(names)}**", ""]
            out += self.markdown(textwrap.dedent("\n".join(definition)).strip("\n"), at + 1).split(
                "\n"
            )
            out.append("")
        return out


def _options(body: str, line: int) -> tuple[dict, str, int]:
    """A directive's options (``:key: value`` lines or a ``---`` YAML block) and the rest."""
    lines = body.split("\n")
    options: dict = {}
    if lines and lines[0].strip() == "---":
        end = next((k for k in range(1, len(lines)) if lines[k].strip() == "---"), None)
        if end is not None:
            options = yaml.safe_load("\n".join(lines[1:end])) or {}
            lines = lines[end + 1 :]
            line += end + 1
    else:
        while lines and re.match(r"^:[\w-]+:", lines[0]):
            key, _, value = lines.pop(0)[1:].partition(":")
            options[key] = value.strip()
            line += 1
    return options, "\n".join(lines), line


# --- code cells ----------------------------------------------------------------------------


def _drop_imports(source: str, module: str) -> tuple[str, list[str]]:
    """``source`` without its ``from <module> import ...`` statements; the names they imported."""
    tree = ast.parse(source)
    names: list[str] = []
    drop: set[int] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == module:
            names += [a.asname or a.name for a in node.names]
            drop.update(range(node.lineno, node.end_lineno + 1))
    lines = [x for k, x in enumerate(source.split("\n"), 1) if k not in drop]
    return "\n".join(lines).strip("\n"), names


def _uses(source: str, names: set[str]) -> bool:
    """Whether ``source`` uses one of ``names`` (or the figures module itself)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    return any(
        (isinstance(n, ast.Name) and n.id in names)
        or (isinstance(n, ast.Import) and any(a.name == FIGURE_MODULE for a in n.names))
        for n in ast.walk(tree)
    )


def _titled(source: str, title: str) -> str:
    """Colab shows a form cell's ``# @title`` instead of its code; a cell magic stays first."""
    if source.startswith("%%"):
        first, _, rest = source.partition("\n")
        return f"{first}\n# @title {title}\n{rest}"
    return f"# @title {title}\n{source}"


# --- the setup cell ------------------------------------------------------------------------


def setup_source(byhand: bytes, glue: bool, raises: bool) -> str:
    """The first code cell of every reader's notebook (see the module's docstring)."""
    digest = hashlib.sha256(byhand).hexdigest()
    packed = base64.b64encode(zlib.compress(byhand, 9)).decode()
    blob = "\n".join(textwrap.wrap(packed, 76))
    parts = [
        f'''# @title {SETUP_TITLE}
# This notebook carries the byhand.py it was built with (its SHA-256 is below). If the
# byhand you can import is that version, it is used; otherwise this cell writes byhand.py
# next to the notebook, replacing any other version, and imports it. No network needed.
import base64, hashlib, importlib.util, pathlib, sys, tempfile, zlib

BYHAND_SHA256 = "{digest}"
BYHAND_PY = zlib.decompress(base64.b64decode("""
{blob}
"""))


def _load_byhand():
    found = importlib.util.find_spec("byhand")
    origin = pathlib.Path(found.origin) if found and found.origin else None
    if origin and origin.is_file() and hashlib.sha256(origin.read_bytes()).hexdigest() == BYHAND_SHA256:
        return origin
    path = pathlib.Path("byhand.py")
    if path.is_file():
        print(f"byhand.py in {{path.resolve().parent}} is another version: replaced by this notebook's")
    try:
        path.write_bytes(BYHAND_PY)
    except OSError:  # a folder we may not write to: a temporary one instead
        path = pathlib.Path(tempfile.mkdtemp()) / "byhand.py"
        path.write_bytes(BYHAND_PY)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == BYHAND_SHA256, "byhand.py was not written whole"
    spec = importlib.util.spec_from_file_location("byhand", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["byhand"] = module
    spec.loader.exec_module(module)
    return path


_load_byhand()'''
    ]
    if glue:
        parts.append(
            '''

def glue(name, value, display=True):
    """On the book's page, glue() puts a value computed here into the text (myst-nb).
    Here the text already holds the page's value; display=True shows yours."""
    if display:
        from IPython.display import display as show
        show(value)'''
        )
    if raises:
        parts.append(
            r'''

from IPython.core.magic import register_cell_magic


@register_cell_magic
def raises(line, cell):
    """%%raises GradientMismatch: the cell is a wrong answer, shown failing as on the page.
    Its error is shown and "Run all" goes on; the cell fails if it does not raise that."""
    names = line.split() or ["GradientMismatch"]
    result = get_ipython().run_cell("\n" + cell)  # "\n": line numbers as the cell shows them
    error = result.error_before_exec or result.error_in_exec
    if type(error).__name__ not in names:
        raise AssertionError(f"this cell should fail with {' or '.join(names)}, as on the book's page")'''
        )
    return "".join(parts)


# --- one page ------------------------------------------------------------------------------


@dataclass
class Built:
    notebook: nbformat.NotebookNode
    pictures: dict[str, bytes]


def reader_notebook(
    executed: nbformat.NotebookNode,
    site: Site,
    docname: str,
    byhand: bytes,
    md_config=None,
) -> tuple[Built | None, list[str]]:
    """The reader's notebook of ``docname`` from its executed notebook; and the problems."""
    path = f"{docname}.md"
    conv = Converter(site, docname, path, md_config)
    lines = executed.metadata.get("source_map") or [0] * len(executed.cells)
    cells: list = []
    uses_glue = uses_raises = False
    figures_seen = 0
    figure_names: set[str] = set()  # what the page imported from figures.py
    for index, cell in enumerate(executed.cells):
        line = lines[index] + 1  # the cell's first line in the page (1-based)
        if cell.cell_type == "markdown":
            cells.append(nbformat.v4.new_markdown_cell(conv.markdown(cell.source, line)))
            continue
        if cell.cell_type != "code":
            continue
        tags = list(cell.metadata.get("tags", []))
        source = cell.source
        source, imported = _drop_imports(source, FIGURE_MODULE)
        figure_names.update(imported)
        if _uses(source, figure_names):
            figures_seen += 1
            cells.append(figure_cell(conv, cell, source, line, figures_seen))
            continue
        source, glued = _drop_imports(source, "myst_nb")
        if glued and glued != ["glue"]:
            conv.problem(line, f"imports {glued} from myst_nb; a reader's notebook has only glue")
        uses_glue |= "glue" in glued
        if not source.strip():
            continue
        meta: dict = {"tags": tags} if tags else {}
        if "raises-exception" in tags:
            uses_raises = True
            declared = cell.metadata.get("raises", "GradientMismatch")
            names = [declared] if isinstance(declared, str) else list(declared)
            source = f"%%raises {' '.join(names)}\n{source}"
        hidden = [
            t for t in ("remove-cell", "remove-input", "hide-input", "hide-cell") if t in tags
        ]
        if "solution" in tags:
            source = _titled(source, SOLUTION_TITLE)
            meta.update(cellView="form", jupyter={"source_hidden": True})
        elif hidden:
            source = _titled(source, HIDDEN_TITLES[hidden[0]])
            meta.update(cellView="form", jupyter={"source_hidden": True})
        if {"remove-cell", "hide-cell", "hide-output"} & set(tags):
            meta.setdefault("jupyter", {})["outputs_hidden"] = True
        new = nbformat.v4.new_code_cell(source, metadata=meta)
        cells.append(new)
        caption = cell.metadata.get("mystnb", {}).get("figure", {}).get("caption")
        if caption:
            cells.append(nbformat.v4.new_markdown_cell(conv.markdown(caption, line)))
    first = next((k for k, c in enumerate(cells) if c.cell_type == "code"), None)
    if first is None:
        return None, conv.problems
    title = site.titles.get(docname, docname)
    intro = (
        f"> This notebook is the page [{title}]({site.page(docname)}) of Backprop by Hand, "
        "made when the book was built. Run its cells in order: the first sets up `byhand`, "
        "the book's checking module. Cells whose code the page folds or hides are collapsed "
        "here too; open one to read it. In an exercise, write your answer in the stub, then "
        "run it and the check below it: the collapsed cell between them is the solution. "
        "Interactive figures are pictures here; on the page they move."
    )
    setup = nbformat.v4.new_code_cell(
        setup_source(byhand, uses_glue, uses_raises),
        metadata={"cellView": "form", "jupyter": {"source_hidden": True}, "tags": ["setup"]},
    )
    cells[first:first] = [nbformat.v4.new_markdown_cell(intro), setup]
    notebook = nbformat.v4.new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
            "language_info": {"name": "python"},
            "colab": {"provenance": [], "toc_visible": True},
        },
    )
    for cell in notebook.cells:  # stable ids: a rebuild of the same page is byte-identical
        cell.id = hashlib.sha256(f"{docname}:{cell.source}".encode()).hexdigest()[:12]
    _dedupe_ids(notebook)
    return Built(notebook, conv.pictures), conv.problems


def _dedupe_ids(notebook) -> None:
    seen: dict[str, int] = {}
    for cell in notebook.cells:
        count = seen.get(cell.id, 0)
        seen[cell.id] = count + 1
        if count:
            cell.id = f"{cell.id[:9]}-{count}"


def figure_cell(conv: Converter, cell, source: str, line: int, number: int):
    """An interactive figure's cell, as its static picture and a link to the figure."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        body = []
    if not (
        len(body) == 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Call)
    ):
        conv.problem(line, "a cell that draws an interactive figure must hold only the figure's "
                     "call (the figure becomes a picture in the reader's notebook)")  # fmt: skip
    data = next((o.get("data", {}) for o in cell.get("outputs", []) if "data" in o), {})
    svg = data.get("image/svg+xml")
    html = data.get("text/html", "")
    if not svg:
        conv.problem(line, "the interactive figure has no image/svg+xml picture to show in Jupyter")
        return nbformat.v4.new_markdown_cell("")
    anchor = re.search(r'\bid="([^"]+)"', html)
    stem = Path(conv.docname).name
    url = conv.picture(f"{stem}-figure-{number}.svg", svg.encode() if isinstance(svg, str) else svg)
    page = conv.site.page(conv.docname, anchor.group(1) if anchor else "")
    text = data.get("text/plain", "the figure").replace("\n", " ")
    return nbformat.v4.new_markdown_cell(
        f"![{text}]({url})\n\n*The figure as it first appears; [on the book's page]({page}) it "
        "is interactive.*"
    )


# --- the whole book ------------------------------------------------------------------------


def code_pages(srcdir: Path, toc: Path, md_config) -> list[str]:
    """The TOC pages with code cells that run: the pages that get a reader's notebook."""
    found = []
    for doc in toc_documents(toc):
        page = srcdir / f"{doc}.md"
        if page.is_file() and any(
            f.runs for f in guard_lint.code_cell_fences(page.read_text(encoding="utf-8"), md_config)
        ):
            found.append(doc)
    return found


def _code_pages(app: Sphinx) -> list[str]:
    srcdir = Path(app.srcdir)
    return code_pages(srcdir, srcdir / app.config.external_toc_path, app.env.myst_config)


def notebook_name(docname: str) -> str:
    """Where a page's notebook is in the tree: its file name alone (the tree is flat)."""
    return f"{Path(docname).name}.ipynb"


def readme(site: Site, names: dict[str, str], torch_version: str) -> str:
    """The README of the tree and the archive; ``names``: {docname: notebook}, in TOC order."""
    listed = "\n".join(f"- `{n}`: {site.titles.get(doc, doc)}" for doc, n in names.items())
    return f"""# Backprop by Hand: the notebooks

Every page of [Backprop by Hand]({site.url}) that has code, as a Jupyter notebook that runs
on its own, exercises included. Made from the book when it was built, with PyTorch
{torch_version}.

You need Python 3.11 or newer with `torch`, `numpy`, `matplotlib`, `scikit-learn` and
Jupyter (`pip install torch numpy matplotlib scikit-learn jupyterlab`; on Linux, PyTorch's
CPU-only wheel is enough: `pip install torch --index-url https://download.pytorch.org/whl/cpu`).
Then `jupyter lab` in this folder, open a notebook, and run its cells in order.

Each notebook's first cell sets up `byhand`, the book's checking module: it carries the
`byhand.py` of this build (beside the notebooks here too) and writes it next to the
notebook if the one you can import is another version. Pictures are loaded from the
book's site; offline you see their descriptions.

{listed}
"""


def write_tree(app: Sphinx, exception: Exception | None) -> None:
    """build-finished: the reader's notebooks, the tree for the branch, the archive."""
    if exception is not None or app.builder.name != "html":
        return
    outdir = Path(app.outdir)
    srcdir = Path(app.srcdir)
    execute = outdir.parent / "jupyter_execute"
    site = site_of(app)
    byhand = (srcdir / "book" / "byhand.py").read_bytes()
    problems: list[str] = []
    built: dict[str, Built] = {}
    names: dict[str, str] = {}
    for doc in _code_pages(app):
        executed_path = execute / f"{doc}.ipynb"
        if not executed_path.is_file():
            continue  # not executed (the guard reports it)
        name = notebook_name(doc)
        if name in names.values():
            problems.append(f"{doc}.md: its notebook would be {name}, like another page's")
            continue
        result, found = reader_notebook(
            nbformat.read(executed_path, as_version=4), site, doc, byhand, app.env.myst_config
        )
        problems += found
        if result is not None:
            built[doc], names[doc] = result, name
    if problems:  # all of them, each naming its file and line; no notebook is written
        for problem in problems:
            logger.error(f"reader's notebook: {problem}")
        logger.info(f"{len(problems)} problem(s) stop the reader's notebooks (above).")
        app.statuscode = 1  # fail without -W too (the live preview), as the guard does
        return
    tree = outdir / OUT
    if tree.exists():
        import shutil

        shutil.rmtree(tree)
    (tree / IMG).mkdir(parents=True)
    for doc, result in built.items():
        nbformat.validate(result.notebook)
        (tree / names[doc]).write_text(nbformat.writes(result.notebook) + "\n", encoding="utf-8")
        for picture, data in result.pictures.items():
            (tree / IMG / picture).write_bytes(data)
    import torch

    text = readme(site, names, torch.__version__.split("+")[0])
    (tree / "byhand.py").write_bytes(byhand)
    (tree / "README.md").write_text(text, encoding="utf-8")
    binder = srcdir / BINDER_DIR
    if binder.is_dir():
        (tree / BINDER_DIR).mkdir()
        for path in sorted(binder.iterdir()):
            (tree / BINDER_DIR / path.name).write_bytes(path.read_bytes())
    archive = outdir / f"{ARCHIVE}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        members = [("README.md", text.encode()), ("byhand.py", byhand)] + [
            (names[doc], (tree / names[doc]).read_bytes()) for doc in built
        ]
        for member, data in members:
            info = zipfile.ZipInfo(f"{ARCHIVE}/{member}", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    logger.info(f"reader's notebooks: {len(built)} in {tree}, and {archive.name}")


# --- the buttons: Colab, Binder, the downloads ---------------------------------------------


def launch_urls(app: Sphinx, docname: str) -> dict[str, str]:
    """Colab's and Binder's addresses of a page's notebook on the notebooks branch."""
    options = app.config.html_theme_options
    repo = options.get("repository_url", "").rstrip("/")
    owner_repo = "/".join(repo.split("/")[-2:])
    branch = app.config.reader_notebooks_branch
    name = notebook_name(docname)
    launch = options.get("launch_buttons", {})
    urls = {}
    if launch.get("colab_url"):
        colab = launch["colab_url"].rstrip("/")
        urls["Colab"] = f"{colab}/github/{owner_repo}/blob/{branch}/{name}"
    if launch.get("binderhub_url"):
        binder = launch["binderhub_url"].rstrip("/")
        urls["Binder"] = f"{binder}/v2/gh/{owner_repo}/{branch}?labpath={name}"
    return urls


def buttons(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    """html-page-context, after the theme's: the launch buttons open the reader's notebook
    on the notebooks branch; the download menu offers it and the archive of all of them."""
    groups = context.get("header_buttons")
    if groups is None:
        return
    has = pagename in getattr(app, "_reader_notebooks", ())
    pathto = context["pathto"]
    for group in list(groups):
        if group.get("label") == "launch-buttons":
            if not has:
                groups.remove(group)
                continue
            icons = {
                "Colab": "_static/images/logo_colab.png",
                "Binder": "_static/images/logo_binder.svg",
            }
            group["buttons"] = [
                {
                    "type": "link",
                    "text": text,
                    "tooltip": f"Run this page's notebook on {text}",
                    "icon": icons[text],
                    "url": url,
                }  # fmt: skip
                for text, url in launch_urls(app, pagename).items()
            ]
        if group.get("label") == "download-buttons":
            kept = [b for b in group["buttons"] if b.get("label") != "download-notebook-button"]
            if has:
                kept.insert(0, {
                    "type": "link", "url": pathto(f"{OUT}/{notebook_name(pagename)}", 1),
                    "text": ".ipynb", "icon": "fas fa-code", "label": "download-notebook-button",
                    "tooltip": "Download this page as a notebook that runs on its own",
                })  # fmt: skip
            kept.append({
                "type": "link", "url": pathto(f"{ARCHIVE}.zip", 1), "text": ".zip",
                "icon": "fas fa-file", "label": "download-all-notebooks-button",
                "tooltip": "Download every page's notebook, with byhand.py",
            })  # fmt: skip
            group["buttons"] = kept


def remember_pages(app: Sphinx) -> None:
    """builder-inited (after the guard's checks): which pages get a notebook."""
    app._reader_notebooks = set(_code_pages(app))


def setup(app: Sphinx) -> dict:
    app.add_config_value("reader_notebooks_branch", BRANCH, "html")
    app.connect("builder-inited", remember_pages, priority=950)
    app.connect("html-page-context", buttons, priority=850)
    app.connect("build-finished", write_tree, priority=800)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
