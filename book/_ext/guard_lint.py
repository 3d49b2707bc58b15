"""What a page may not do: the build guard's static rules (no build, no kernel).

The book promises that the build fails when a manual gradient is wrong. A page could break
that promise without touching ``byhand.py``: by switching off its own execution (front
matter, cell tags, cell options), by hiding a cell from the executor, or with code that
skips, swallows, loosens or rewrites a check. This module reads a page the way myst-nb
reads it and lists every such door it finds, as sentences that name the page, the cell
and the line. ``guard.py`` runs it on every TOC page when the build starts, and stops the
build before any code runs; ``guard_run.py`` then checks, from the executed notebooks,
that what should have run did run and failed only where it was meant to.

These rules are a seat belt, not a sandbox: Python cannot be locked down from inside, so
review still reads every page. They refuse the doors a contributor could open by
accident or by taking a shortcut, and each rule names the way out.

The one definition of "a code cell" lives here too (:func:`code_cells`,
:func:`has_code_cells`): the build, the repository checks and the tests import it.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml
from markdown_it.renderer import RendererHTML
from myst_nb.core.read import is_myst_markdown_notebook, read_myst_markdown_notebook
from myst_parser.config.main import MdParserConfig
from myst_parser.parsers.mdit import create_md_parser

BOOK = Path(__file__).resolve().parents[1]
# The modules a page imports from book/: the reader's checks and chapter 2's figures.
# No other module may sit there (every page runs with book/ as its working directory), and
# page code may not rebind, rename or patch what these two own.
HELPERS = ("byhand", "figures")

# --- pages and their cells: the one definition ------------------------------------

# Directives whose body is text, not Markdown: a {code-cell} inside one is an example.
LITERAL_DIRECTIVES = {
    "code-cell", "raw-cell", "code-block", "code", "sourcecode", "literalinclude",
    "math", "raw", "eval-rst", "glue", "glue:any", "glue:figure", "glue:math",
}  # fmt: skip
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:.-]+)\}")


def md_config(root: Path | None = None) -> MdParserConfig:
    """The Markdown settings pages are read with: ``_config.yml``'s ``parse`` section
    (the build passes Sphinx's own object instead)."""
    extensions: list[str] = []
    config = (root or BOOK.parent) / "_config.yml"
    if config.is_file():
        parsed = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        extensions = list((parsed.get("parse") or {}).get("myst_enable_extensions") or [])
    return MdParserConfig(enable_extensions=set(extensions))


@dataclass
class Fence:
    """A ``{code-cell}`` directive in a page's text, and whether myst-nb will execute it."""

    line: int  # 1-based line of the opening fence
    runs: bool  # a top-level ``` or ~~~ fence: myst-nb turns it into a notebook cell
    where: str = ""  # for one that does not run: what it sits in


def code_cell_fences(text: str, config: MdParserConfig | None = None) -> list[Fence]:
    """Every ``{code-cell}`` directive of a MyST page, nested ones included.

    myst-nb executes only the code cells at the top level of the page, written with
    backticks or tildes (``myst_nb.core.read.read_myst_markdown_notebook``). One inside a
    dropdown, an admonition, a list or a block quote, or written as a ``:::`` fence, is
    dropped with a warning: its code never runs. Code-cell examples inside a literal block
    (a ```` ```md ```` fence, a ``{code-block}``) are text, not cells, and are not listed.
    """
    config = config or md_config()
    key = (text, repr(config))
    if key not in _FENCES:
        _FENCES[key] = _fences(text, config)
    return list(_FENCES[key])


_FENCES: dict[tuple[str, str], tuple[Fence, ...]] = {}  # the build reads each page twice


def _fences(text: str, config: MdParserConfig) -> tuple[Fence, ...]:
    # block level only, as myst-nb's reader does (inline parsing is most of the time)
    config = dataclasses.replace(config, disable_syntax=[*config.disable_syntax, "inline"])
    parser = create_md_parser(config, RendererHTML)
    found: list[Fence] = []

    def walk(source: str, offset: int, inside: str) -> None:
        for token in parser.parse(source + "\n"):
            if token.type not in ("fence", "colon_fence"):
                continue
            match = DIRECTIVE.match(token.info.strip())
            line = offset + (token.map[0] if token.map else 0) + 1
            if match and match["name"] == "code-cell":
                if inside or token.level:
                    where = inside or "a list or block quote"
                    found.append(Fence(line, False, where))
                elif token.type == "colon_fence":
                    found.append(Fence(line, False, "a ':::' fence (write it with backticks)"))
                else:
                    found.append(Fence(line, True))
            elif match and match["name"] not in LITERAL_DIRECTIVES:
                walk(token.content, line, inside or f"a {{{match['name']}}} directive")

    walk(text, 0, "")
    return tuple(found)


def has_code_cells(text: str, config: MdParserConfig | None = None) -> bool:
    """Whether a MyST page has ``{code-cell}`` blocks (executed or not)."""
    return bool(code_cell_fences(text, config))


def read_notebook(page: Path, config: MdParserConfig | None = None) -> nbformat.NotebookNode:
    """The page as the notebook myst-nb executes (cells, their options, front matter)."""
    return read_myst_markdown_notebook(
        page.read_text(encoding="utf-8"), config or md_config(), add_source_map=True, path=page
    )


def code_cells(page: Path, config: MdParserConfig | None = None) -> list[nbformat.NotebookNode]:
    """The page's code cells, exactly as myst-nb executes them, in order."""
    return [c for c in read_notebook(page, config).cells if c.cell_type == "code"]


def tags(cell) -> list[str]:
    return list(cell.metadata.get("tags", []) or [])


# --- the names byhand and figures own --------------------------------------------------


def byhand_names(book: Path = BOOK) -> set[str]:
    """The names the helper modules export (``__all__`` of ``book/byhand.py`` and
    ``book/figures.py``), read without importing torch."""
    names: set[str] = set()
    for module in HELPERS:
        path = book / f"{module}.py"
        found = None
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
            ):
                found = ast.literal_eval(node.value)
        if found is None:
            raise RuntimeError(
                f"{path} has no __all__: the guard cannot tell which names {module} owns"
            )
        names |= set(found)
    return names


# The calls whose records the build counts, and whose tolerances it polices.
CHECKS = ("check", "compare", "claim", "fd_check")
RECORDED = ("check", "claim", "fd_check")  # compare() returns a report, shows nothing

# --- front matter and cell options ------------------------------------------------------

# Per-page (front matter ``mystnb:``) settings that only change how outputs look, never
# whether a cell runs, how long it may take or whether its error or stderr counts.
# Everything else myst-nb accepts there (execution_mode, execution_allow_errors,
# execution_timeout, execution_excludepatterns, execution_raise_on_error,
# execution_in_temp, execution_show_tb, execution_cache_path, kernel_rgx_aliases,
# output_stderr, render_plugin, metadata_key, cell_metadata_key, mime_priority_overrides,
# eval_name_regex, custom_formats, ...) is the book's to set, once, in _config.yml.
PAGE_RENDER_OPTIONS = {
    "code_prompt_show", "code_prompt_hide", "number_source_lines", "scroll_outputs",
    "merge_streams", "render_image_options", "render_figure_options",
    "render_markdown_format", "render_text_lexer", "render_error_lexer",
}  # fmt: skip
# The same for one cell (``mystnb:`` in a code cell's options). ``output_stderr`` is not
# here: a cell that hides its stderr hides the warning the build would fail on.
CELL_RENDER_OPTIONS = {
    "code_prompt_show", "code_prompt_hide", "number_source_lines", "scroll_outputs",
    "merge_streams", "remove_code_source", "remove_code_outputs", "image", "figure",
    "markdown_format", "text_lexer", "error_lexer",
}  # fmt: skip
# Cell options: the ones myst-nb reads, ``raises`` (the book's own), and Jupyter's standard
# cell metadata, which changes nothing here. Anything else is most likely a typo
# ("raise:", "tag:") that would silently do nothing.
CELL_OPTIONS = {
    "tags",
    "mystnb",
    "raises",
    "editable",
    "deletable",
    "collapsed",
    "scrolled",
    "jupyter",
    "name",
    "slideshow",
}
SKIP_TAGS = {"skip-execution"}  # nbclient's NotebookClient.skip_cells_with_tag
HIDING_TAGS = {"remove-stderr"}  # myst-nb drops stderr before it can warn
KERNEL = "python3"
DEFAULT_RAISES = "GradientMismatch"
# A demonstration shows a wrong formula failing. These types never demonstrate one: they
# are a typo, a missing import or an interrupted kernel, or they are too broad to mean
# anything. (AssertionError, RuntimeError, TypeError, ValueError, ... may be declared.)
UNDECLARABLE = {
    "Exception", "BaseException", "NameError", "UnboundLocalError", "AttributeError",
    "SyntaxError", "IndentationError", "TabError", "ImportError", "ModuleNotFoundError",
    "KeyboardInterrupt", "SystemExit", "GeneratorExit", "StopIteration", "RecursionError",
    "NotImplementedError", "FalseClaim",
}  # fmt: skip


def declared_raises(cell) -> list[str]:
    """The exception types a ``raises-exception`` cell may fail with."""
    raises = cell.metadata.get("raises")
    if raises is None:
        return [DEFAULT_RAISES]
    return [raises] if isinstance(raises, str) else list(raises)


def front_matter_problems(metadata: dict, metadata_key: str = "mystnb") -> list[str]:
    """What in a page's front matter would change how, or whether, the page is executed."""
    found = []
    overrides = metadata.get(metadata_key)
    if overrides is not None:
        if not isinstance(overrides, dict):
            found.append(f"its front matter sets '{metadata_key}: {overrides!r}'")
        else:
            for key in sorted(set(overrides) - PAGE_RENDER_OPTIONS):
                found.append(
                    f"its front matter sets '{metadata_key}: {key}', which would change how "
                    "this page is executed or checked; execution is set for every page at "
                    "once, in _config.yml"
                )
    if "execution" in metadata:
        found.append(
            "its front matter has an 'execution' section (jupyter-cache reads its timeout "
            "and allow_errors); execution is set for every page at once, in _config.yml"
        )
    kernel = metadata.get("kernelspec") or {}
    if kernel.get("name") != KERNEL or kernel.get("language", "python") != "python":
        found.append(
            f"its kernelspec is {kernel.get('name')!r}, not the book's {KERNEL!r} "
            "(copy the header from book/_template.md)"
        )
    return found


def cell_option_problems(cell, number: int, cell_metadata_key: str = "mystnb") -> list[str]:
    """What in one code cell's options would skip it, hide its output or misdeclare it."""
    found = []
    where = f"code cell {number}"
    cell_tags = tags(cell)
    for tag in sorted(set(cell_tags) & SKIP_TAGS):
        found.append(f"{where} is tagged {tag}: it would never run")
    for tag in sorted(set(cell_tags) & HIDING_TAGS):
        found.append(f"{where} is tagged {tag}, which hides a warning the build would fail on")
    options = cell.metadata.get(cell_metadata_key)
    if options is not None:
        unknown = (
            sorted(set(options) - CELL_RENDER_OPTIONS) if isinstance(options, dict) else [options]
        )
        for key in unknown:
            found.append(
                f"{where} sets '{cell_metadata_key}: {key}'; a cell may only set how its "
                f"output looks ({', '.join(sorted(CELL_RENDER_OPTIONS))})"
            )
    if "render" in cell.metadata:
        found.append(f"{where} uses the old 'render:' option; write '{cell_metadata_key}:'")
    if "load" in cell.metadata:
        found.append(f"{where} loads its code from a file (load:); write the code in the page")
    extra = sorted(set(cell.metadata) - CELL_OPTIONS - {cell_metadata_key, "render", "load"})
    for key in extra:
        found.append(
            f"{where} has the unknown option '{key}' (did you mean tags, raises or mystnb?)"
        )
    if "raises" in cell.metadata:
        raises = cell.metadata["raises"]
        names = [raises] if isinstance(raises, str) else raises
        if "raises-exception" not in cell_tags:
            found.append(f"{where} declares 'raises:' but is not tagged raises-exception")
        if (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) and re.fullmatch(r"[A-Za-z_]\w*", n) for n in names)
        ):
            found.append(f"{where}: 'raises:' must name an exception class, e.g. AssertionError")
        else:
            for name in names:
                if name in UNDECLARABLE:
                    found.append(
                        f"{where} declares 'raises: {name}'; a wrong-formula demonstration "
                        f"fails its check ({DEFAULT_RAISES}) or a specific assertion, never "
                        f"with {name}"
                    )
    return found


# --- the code itself ------------------------------------------------------------------

# The modules a page may import (the top-level package, or an exact submodule). A page
# that needs another adds it here, in review: a local module could replace byhand's
# check, and importlib, builtins, unittest.mock, ctypes, subprocess, pickle, threading,
# sys, os, contextlib, ... can patch, skip or silence one.
ALLOWED_IMPORTS = {
    "byhand", "figures", "torch", "numpy", "matplotlib", "sklearn", "math", "cmath", "random",
    "time", "itertools", "functools", "collections", "dataclasses", "typing",
    "statistics", "string", "textwrap", "operator", "fractions", "decimal", "warnings",
    "platform", "struct", "re", "IPython.display", "myst_nb",
}  # fmt: skip
# Parts of torch that replace operators, kernels or dispatch under a check.
FORBIDDEN_TORCH = (
    "torch.library",
    "torch.overrides",
    "torch.utils._python_dispatch",
    "torch._",
    "torch.utils.cpp_extension",
    "torch.utils._mode_utils",
)
FORBIDDEN_CALLS = {
    "exec": "runs code the page does not show",
    "eval": "runs code the page does not show",
    "compile": "builds code the page does not show",
    "__import__": "imports past the page's import list",
    "globals": "can rebind check() by name",
    "locals": "can rebind check() by name",
    "vars": "can rebind check() by name",
    "setattr": "can patch byhand or torch",
    "delattr": "can patch byhand or torch",
    "get_ipython": "can reconfigure the kernel (custom exception handlers, input "
    "transformers, magics)",
    "breakpoint": "waits for a debugger that never comes",
    "input": "waits for input that never comes",
}  # fmt: skip
FORBIDDEN_ATTRIBUTES = {
    "__dict__", "__globals__", "__builtins__", "__code__", "__closure__", "__defaults__",
    "__kwdefaults__", "__class__", "__bases__", "__mro__", "__subclasses__", "__setattr__",
    "__delattr__", "__getattribute__", "__import__", "__loader__", "__spec__",
}  # fmt: skip
# Identifiers that rewrite what torch does to every tensor, or swallow exceptions.
FORBIDDEN_NAMES = {
    "__torch_function__": "it overrides torch functions, a check's comparison among them",
    "__torch_dispatch__": "it overrides torch operators, a check's comparison among them",
    "__exit__": "a context manager can swallow the error of a failing check",
    "__aexit__": "a context manager can swallow the error of a failing check",
    "__builtins__": "it can rebind Python's built-ins",
}  # fmt: skip
# Exception types whose handler would swallow a failing check (GradientMismatch and
# FalseClaim are AssertionErrors). Catching RuntimeError, ValueError, ... is fine, and so is
# catching GradientMismatch around nothing but compare() (see _Linter.visit_Try).
SWALLOWING = {
    "Exception",
    "BaseException",
    "AssertionError",
    "GradientMismatch",
    "FalseClaim",
    "GradcheckError",
}
# Hooks that change what autograd puts in .grad, i.e. the reference a check compares with.
HOOK = re.compile(r"^register_.*hook$|^saved_tensors_hooks$")
TOLERANCE_BOUNDS = {"rtol": 1e-4, "atol": 1e-5, "eps": 1e-4}
MAGIC_ALLOWED: set[str] = set()


@dataclass
class CodeReport:
    """What :func:`lint_code` found in one cell."""

    problems: list[str] = field(default_factory=list)
    # every check/fd_check/claim call, at any depth, as (line, name): each must run
    sites: list[tuple[int, str]] = field(default_factory=list)
    calls: set[str] = field(default_factory=set)  # byhand's names the cell calls
    imported: set[str] = field(default_factory=set)


def _root(node: ast.AST) -> ast.AST:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node


def _chain(node: ast.AST) -> list[str]:
    """``torch.testing.assert_close`` -> ["torch", "testing", "assert_close"]."""
    names = []
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        if isinstance(node, ast.Attribute):
            names.append(node.attr)
        node = node.func if isinstance(node, ast.Call) else node.value
    if isinstance(node, ast.Name):
        names.append(node.id)
    return names[::-1]


def _forbidden(module: str) -> bool:
    if module.startswith("torch.__"):
        return False  # torch.__version__ (torch.__dict__ & co. are refused on their own)
    return any(
        module == m or module.startswith(m if m.endswith("_") else m + ".") for m in FORBIDDEN_TORCH
    )


def _import_allowed(module: str) -> bool:
    if _forbidden(module):
        return False
    return any(module == a or module.startswith(a + ".") for a in ALLOWED_IMPORTS)


class _Linter(ast.NodeVisitor):
    def __init__(self, owned: set[str], imported: set[str], source: str):
        self.owned = owned  # byhand's names
        self.imported = set(imported)  # names bound by imports (on this page so far)
        self.modules = {"torch": "torch"}  # name -> the module (or object) it was imported as
        self.source = source
        self.report = CodeReport()
        self.depth_def = 0  # inside a function, lambda or class
        self.conditional = 0  # inside if/try/while-else/comprehension/... at top level
        self.call_funcs: set[int] = set()  # ids of nodes that are the callee of a call

    def problem(self, node: ast.AST, text: str) -> None:
        line = getattr(node, "lineno", None)
        self.report.problems.append(f"line {line}: {text}" if line else text)

    # -- names ----------------------------------------------------------------
    def _binds(self, node: ast.AST, name: str) -> None:
        if name in self.owned or name in HELPERS:
            self.problem(
                node, f"rebinds '{name}', which byhand or figures owns (import it from there)"
            )
        if name in FORBIDDEN_NAMES:
            self.problem(node, f"defines '{name}': {FORBIDDEN_NAMES[name]}")

    def _targets(self, target: ast.AST) -> None:
        for node in ast.walk(target):
            if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
                self._binds(node, node.id)
        self._assigned_attribute(target)

    def _assigned_attribute(self, target: ast.AST) -> None:
        if isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self._assigned_attribute(element)
            return
        if isinstance(target, ast.Starred):
            return self._assigned_attribute(target.value)
        if not isinstance(target, (ast.Attribute, ast.Subscript)):
            return
        chain = _chain(target)
        root = _root(target)
        if "grad" in chain[1:] and not (
            isinstance(target, ast.Attribute) and target.attr == "grad"
        ):
            self.problem(
                target,
                "changes a .grad in place: a check's reference must be what autograd computed",
            )
        if (
            isinstance(target, ast.Attribute)
            and isinstance(root, ast.Name)
            and root.id in self.imported
        ):
            self.problem(
                target,
                f"assigns to {'.'.join(chain)}: a page does not patch "
                "modules or classes it imported",
            )
        if (
            isinstance(target, ast.Attribute)
            and target.attr.startswith("__")
            and target.attr.endswith("__")
        ):
            self.problem(target, f"assigns to {target.attr}")

    def visit_Constant(self, node: ast.Constant) -> None:
        if node.value == "byhand":
            self.problem(
                node,
                "writes byhand's record key ('byhand'): the build counts the "
                "records byhand's checks leave, and only those",
            )

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Load):
            if node.id in CHECKS and id(node) not in self.call_funcs:
                self.problem(
                    node,
                    f"uses {node.id} as a value; call it directly, "
                    f"{node.id}(...), so the build can count and read it",
                )
            if node.id in FORBIDDEN_NAMES:
                self.problem(node, f"uses '{node.id}': {FORBIDDEN_NAMES[node.id]}")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        chain = _chain(node)
        if chain and chain[0] in self.modules:
            dotted = ".".join([self.modules[chain[0]], *chain[1:]])
            if _forbidden(dotted) and not _forbidden(dotted.rpartition(".")[0]):
                self.problem(
                    node, f"uses {dotted}, which can replace what torch computes under a check"
                )
        if node.attr in FORBIDDEN_ATTRIBUTES:
            self.problem(node, f"reaches for .{node.attr}, an escape hatch out of the page's code")
        elif node.attr in FORBIDDEN_NAMES:
            self.problem(node, f"uses '{node.attr}': {FORBIDDEN_NAMES[node.attr]}")
        if (
            isinstance(node.value, ast.Name)
            and node.value.id in HELPERS
            and node.attr in CHECKS
            and id(node) not in self.call_funcs
        ):
            self.problem(node, f"uses {node.value.id}.{node.attr} as a value; call it directly")
        self.generic_visit(node)

    # -- imports ----------------------------------------------------------------
    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _import_allowed(alias.name):
                self.problem(
                    node,
                    f"imports {alias.name}, which pages do not use (the "
                    "allowed modules are listed in book/_ext/guard_lint.py)",
                )
            if alias.name in HELPERS and alias.asname not in (None, alias.name):
                self.problem(node, f"imports {alias.name} under another name")
            bound = alias.asname or alias.name.split(".")[0]
            self.modules[bound] = alias.name if alias.asname else bound
            if alias.asname:
                self._binds(node, alias.asname)
            self.imported.add(bound)
            self.report.imported.add(bound)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        module = "." * node.level + (node.module or "")
        for alias in node.names:
            full = f"{module}.{alias.name}"
            allowed = (
                node.level == 0
                and not _forbidden(full)
                and (_import_allowed(module) or _import_allowed(full))
            )
            if not allowed:
                self.problem(
                    node,
                    f"imports {alias.name} from {module}, which pages do not use "
                    "(the allowed modules are listed in book/_ext/guard_lint.py)",
                )
            if alias.name == "*":
                self.problem(node, f"imports * from {module}; name what you use")
                continue
            bound = alias.asname or alias.name
            self.modules[bound] = full
            if module in HELPERS:
                if alias.asname not in (None, alias.name):
                    self.problem(
                        node,
                        f"imports {module}'s {alias.name} as {alias.asname}; keep {module}'s names",
                    )
            else:
                self._binds(node, bound)
            self.imported.add(bound)
            self.report.imported.add(bound)

    # -- bindings -----------------------------------------------------------------
    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            self._targets(target)
            self._grad_assignment(target, node.value)
        # an alias of something imported (T = torch.Tensor) counts as imported
        if isinstance(node.value, (ast.Name, ast.Attribute)):
            root = _root(node.value)
            if isinstance(root, ast.Name) and root.id in self.imported:
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        self.imported.add(target.id)
        self.generic_visit(node)

    def _grad_assignment(self, target: ast.AST, value: ast.AST) -> None:
        if (
            isinstance(target, ast.Attribute)
            and target.attr == "grad"
            and not (isinstance(value, ast.Constant) and value.value is None)
        ):
            self.problem(
                target,
                "assigns to .grad; a check's reference must be what "
                "autograd computed (only '.grad = None' resets it)",
            )

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._targets(node.target)
        if isinstance(node.target, ast.Attribute) and node.target.attr == "grad":
            self.problem(
                node, "changes a .grad in place: a check's reference must be what autograd computed"
            )
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._targets(node.target)
        if node.value is not None:
            self._grad_assignment(node.target, node.value)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for target in node.targets:
            self._targets(target)
        self.generic_visit(node)

    def visit_NamedExpr(self, node: ast.NamedExpr) -> None:
        self._targets(node.target)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            self._binds(node, name)

    visit_Nonlocal = visit_Global

    def _function(self, node) -> None:
        self._binds(node, node.name)
        args = node.args
        for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
            if arg is not None:
                self._binds(arg, arg.arg)
        self.depth_def += 1
        self.generic_visit(node)
        self.depth_def -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = _function

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self._binds(node, node.name)
        self.depth_def += 1
        self.generic_visit(node)
        self.depth_def -= 1

    def visit_Lambda(self, node: ast.Lambda) -> None:
        for arg in [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]:
            self._binds(arg, arg.arg)
        self.depth_def += 1
        self.generic_visit(node)
        self.depth_def -= 1

    # -- control flow ----------------------------------------------------------
    def _conditional(self, node, parts_unconditional=(), parts_conditional=()) -> None:
        for name in parts_unconditional:
            for child in _as_list(getattr(node, name)):
                self.visit(child)
        self.conditional += 1
        for name in parts_conditional:
            for child in _as_list(getattr(node, name)):
                self.visit(child)
        self.conditional -= 1

    def visit_If(self, node: ast.If) -> None:
        self._conditional(node, ("test",), ("body", "orelse"))

    def visit_IfExp(self, node: ast.IfExp) -> None:
        self._conditional(node, ("test",), ("body", "orelse"))

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        self.visit(node.values[0])
        self.conditional += 1
        for value in node.values[1:]:
            self.visit(value)
        self.conditional -= 1

    def visit_For(self, node) -> None:
        self._targets(node.target)
        self._conditional(node, ("iter", "body"), ("orelse",))

    visit_AsyncFor = visit_For

    def visit_While(self, node: ast.While) -> None:
        self._conditional(node, ("test", "body"), ("orelse",))

    def visit_With(self, node) -> None:
        for item in node.items:
            if item.optional_vars is not None:
                self._targets(item.optional_vars)
        self.generic_visit(node)

    visit_AsyncWith = visit_With

    def visit_Match(self, node) -> None:
        self._conditional(node, ("subject",), ("cases",))

    def _comprehension(self, node) -> None:
        for generator in node.generators:
            self._targets(generator.target)
        self.conditional += 1
        self.generic_visit(node)
        self.conditional -= 1

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Try(self, node) -> None:
        calls = [
            c for statement in node.body for c in ast.walk(statement) if isinstance(c, ast.Call)
        ]
        only_compare = bool(calls) and all(_chain(c.func)[-1:] == ["compare"] for c in calls)
        for handler in node.handlers:
            caught = _caught(handler.type)
            swallowed = sorted(caught & SWALLOWING) or (
                ["everything"] if handler.type is None else []
            )
            if swallowed == ["GradientMismatch"] and only_compare:
                # Collecting compare()'s verdicts (to claim that a check catches a bug) fakes
                # no pass: compare() shows no ✓ and leaves no record.
                swallowed = []
            if swallowed:
                self.problem(
                    handler,
                    f"catches {', '.join(swallowed)}, which would swallow a "
                    "failing check (catch the specific error you expect)",
                )
            if handler.name:
                self._binds(handler, handler.name)
        for statement in node.finalbody:
            for inner in _walk_same_scope(statement):
                if isinstance(inner, (ast.Return, ast.Break, ast.Continue)):
                    self.problem(
                        inner,
                        "leaves a 'finally' block early, which swallows any "
                        "error (a failing check's too)",
                    )
        self._conditional(node, ("finalbody",), ("body", "handlers", "orelse"))

    visit_TryStar = visit_Try

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        self.generic_visit(node)

    def visit_Raise(self, node: ast.Raise) -> None:
        raised = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
        names = set(_chain(raised)) if raised is not None else set()
        if names & {"GradientMismatch", "FalseClaim", "GradcheckError"}:
            self.problem(
                node, "raises byhand's error by hand; a demonstration must fail a real check"
            )
        self.generic_visit(node)

    # -- calls -------------------------------------------------------------------
    def visit_Call(self, node: ast.Call) -> None:
        self.call_funcs.add(id(node.func))
        chain = _chain(node.func)
        name = chain[-1] if chain else ""
        direct = isinstance(node.func, ast.Name) or (
            isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in HELPERS
        )
        if direct and name in CHECKS:
            self._check_call(node, name)
        elif direct and name in self.owned:
            self.report.calls.add(name)
        if isinstance(node.func, ast.Name):
            if node.func.id in FORBIDDEN_CALLS:
                if node.func.id == "get_ipython" and "get_ipython" not in self.source:
                    pass  # a magic, reported by _magic
                else:
                    self.problem(
                        node, f"calls {node.func.id}(), which {FORBIDDEN_CALLS[node.func.id]}"
                    )
            if node.func.id == "open":
                self._open(node)
            if node.func.id == "type" and len(node.args) == 3:
                self.problem(node, "builds a class with type(name, bases, dict)")
            module = _chain(node.args[0])[:1] if node.args else []
            if node.func.id == "getattr" and module and module[0] in HELPERS:
                self.problem(node, f"reads {module[0]}'s names with getattr(); import them")
            name_given = node.args[1] if len(node.args) > 1 else None
            if (
                node.func.id in ("getattr", "hasattr")
                and isinstance(name_given, ast.Constant)
                and name_given.value in ("grad", "_grad")
            ):
                self.problem(
                    node,
                    "reads .grad with getattr(); write W.grad, so that the build can "
                    "see which gradient a check's manual side is computed from",
                )
        if isinstance(node.func, ast.Attribute):
            self._method(node, chain)
        self._magic(node)
        self.generic_visit(node)

    def _check_call(self, node: ast.Call, name: str) -> None:
        self.report.calls.add(name)
        if name in RECORDED:
            self.report.sites.append((node.lineno, name))
            if self.depth_def == 0 and self.conditional:
                self.problem(
                    node,
                    f"calls {name}() where it may not run (under an if, a "
                    "try, a comprehension, an 'and'/'or'): a check runs "
                    "whenever its cell runs",
                )
        for keyword in node.keywords:
            if keyword.arg is None:
                self.problem(node, f"passes **keywords to {name}(); write each one out")
            elif keyword.arg in TOLERANCE_BOUNDS:
                bound = TOLERANCE_BOUNDS[keyword.arg]
                value = keyword.value
                if not (
                    isinstance(value, ast.Constant)
                    and isinstance(value.value, (int, float))
                    and not isinstance(value.value, bool)
                    and 0 <= value.value <= bound
                ):
                    self.problem(
                        node,
                        f"passes {keyword.arg}={ast.unparse(value)} to {name}(); "
                        f"a tolerance is a number written out, at most {bound:g}",
                    )
        if any(isinstance(arg, ast.Starred) for arg in node.args):
            self.problem(node, f"passes *arguments to {name}(); write them out")
        holds = node.args[1] if name == "claim" and len(node.args) > 1 else None
        if holds is not None and not any(isinstance(n, ast.Name) for n in ast.walk(holds)):
            self.problem(
                node,
                f"claims {ast.unparse(holds)}, which holds whatever PyTorch does: a claim "
                "asserts what the page computed (make sure it can fail: try its negation)",
            )
        if name in ("check", "compare") and node.args and isinstance(node.args[0], ast.Dict):
            for key, value in zip(node.args[0].keys, node.args[0].values):
                if isinstance(value, ast.Tuple) and len(value.elts) == 2:
                    manual, reference = value.elts
                    if ast.dump(manual) == ast.dump(reference):
                        label = ast.unparse(key) if key is not None else "a quantity"
                        self.problem(
                            node, f"{name}() compares {label} with itself ({ast.unparse(manual)})"
                        )

    def _method(self, node: ast.Call, chain: list[str]) -> None:
        method = node.func.attr  # type: ignore[union-attr]
        if HOOK.match(method):
            self.problem(
                node,
                f"calls .{method}(), which can change what autograd puts in "
                ".grad (a check's reference)",
            )
        if "grad" in chain[:-1] and method.endswith("_") and method != "zero_":
            self.problem(
                node,
                f"changes a .grad in place (.{method}); a check's reference "
                "must be what autograd computed",
            )
        if method in ("filterwarnings", "simplefilter"):
            action = (
                node.args[0]
                if node.args
                else next((k.value for k in node.keywords if k.arg == "action"), None)
            )
            if not (
                isinstance(action, ast.Constant) and action.value in ("error", "always", "default")
            ):
                self.problem(
                    node,
                    f"calls warnings.{method}() to silence warnings; the build "
                    "treats a warning as an error, so fix its cause",
                )
        if method == "set_default_dtype":
            self.problem(
                node,
                "sets the default dtype: start_chapter() sets float64, so that "
                "a check's tolerance measures the formula; a float32 section "
                "passes dtype= to its tensors",
            )
        if method in (
            "write_text",
            "write_bytes",
            "unlink",
            "rmdir",
            "touch",
            "symlink_to",
            "hardlink_to",
        ):
            self.problem(node, f"calls .{method}(): a page does not change files")

    def _open(self, node: ast.Call) -> None:
        mode = (
            node.args[1]
            if len(node.args) > 1
            else next((k.value for k in node.keywords if k.arg == "mode"), ast.Constant("r"))
        )
        if not (
            isinstance(mode, ast.Constant)
            and isinstance(mode.value, str)
            and not set(mode.value) & set("wax+")
        ):
            self.problem(node, "opens a file for writing: a page does not change files")

    def _magic(self, node: ast.Call) -> None:
        if not (
            isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Call)
            and isinstance(node.func.value.func, ast.Name)
            and node.func.value.func.id == "get_ipython"
        ):
            return
        kind = node.func.attr
        name = node.args[0].value if node.args and isinstance(node.args[0], ast.Constant) else "?"
        if kind == "run_cell_magic" and name not in MAGIC_ALLOWED:
            self.problem(
                node,
                f"uses the cell magic %%{name}, which can skip, capture or "
                "rewrite the cell's code; write plain Python",
            )
        elif kind == "run_line_magic" and name not in MAGIC_ALLOWED:
            self.problem(node, f"uses the magic %{name}; write plain Python")
        elif kind in ("system", "getoutput"):
            self.problem(node, "runs a shell command (!); write plain Python")


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _caught(node: ast.AST | None) -> set[str]:
    if node is None:
        return set()
    if isinstance(node, ast.Tuple):
        return set().union(*(_caught(e) for e in node.elts))
    chain = _chain(node)
    return {chain[-1]} if chain else {"?"}


def _walk_same_scope(node: ast.AST):
    """``ast.walk`` that does not enter nested functions, classes or loops' own scope."""
    yield node
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.For, ast.While)) and isinstance(child, (ast.Break, ast.Continue)):
            continue
        yield from _walk_same_scope(child)


def python_source(source: str) -> str:
    """A cell's IPython source as plain Python (magics become get_ipython() calls)."""
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager().transform_cell(source)


def lint_code(
    source: str, owned: set[str] | None = None, imported: set[str] = frozenset()
) -> CodeReport:
    """The problems in one code cell's source, and its check, fd_check and claim call sites."""
    owned = byhand_names() if owned is None else owned
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError as err:
        report = CodeReport()
        report.problems.append(f"line {err.lineno}: is not valid Python ({err.msg})")
        return report
    linter = _Linter(owned, set(imported), source)
    linter.visit(tree)
    linter.report.problems = list(dict.fromkeys(linter.report.problems))
    return linter.report


def call_sites(source: str) -> list[tuple[int, str]]:
    """Every check/fd_check/claim call in a cell, at any depth (in a function, a loop, a
    lambda), as (line, name): each must run at least once, so each must leave a record
    whose site is that line (or fail where a demonstration is meant to)."""
    return lint_code(source, owned=set()).sites


# --- a check that compares autograd with itself ------------------------------------------
# check({"dL/dW": (W_g, W.grad)}) compares a manual gradient with autograd's. If W_g was
# computed from W.grad (W_g = W.grad.clone(), two cells earlier), or is autograd's own
# gradient of a scalar with respect to W (torch.autograd.grad(L, W), torch.func.grad), the
# check compares autograd with itself and passes whatever the formula. _Flow follows the
# page's code in the order it runs and records, for each value, the gradients it is
# computed from: a key ("grad", "W") for a read of W.grad, ("autograd", "W") for such a
# gradient computed by autograd. A check's reference side *is* a gradient when it is W.grad
# or a view or copy of it (W.grad.T, a name bound to W.grad, torch.autograd.grad(...)[0]).
# It follows assignments (across cells), in-place changes, tuple unpacking, dicts of pairs
# built before the check, and functions the page defines, their parameters bound at each
# call. It is a seat belt like the rest: what it cannot follow (a value through a container
# it does not read) it lets through, so that it never refuses a sound page.
# Jacobians and vector-Jacobian products (jacrev, torch.func.vjp, autograd.grad with
# grad_outputs) are local derivatives a chain rule multiplies, like G = Y.grad; they are
# not the reference's own gradient, and are let through.
# Known doors, next to close (each rare in a page): .grad read through a loop variable or
# a list element (for p in [W]: W_g = p.grad) has the loop's name, not W's; a reference=
# given by a variable counts as named. Among the call-site doors (call_sites, above): a
# call written as a method chain over two lines is recorded at the line of its attribute,
# and two calls on one line are one site.

# Calls whose result is autograd's gradient of a scalar: the dotted name, and where the
# tensors it differentiates with respect to are ("inputs": the second positional or the
# keyword `inputs`; "called": the arguments of the call of the function it returns).
SCALAR_GRADIENTS = {
    "torch.autograd.grad": "inputs",
    "torch.func.grad": "called",
    "torch.func.grad_and_value": "called",
}
# Methods and attributes that give the same values (or a view of them): a tensor's identity
# for "whose gradient is this" (W.detach() holds W's values, W.grad.T is W's gradient).
SAME_VALUES = {"detach", "clone", "requires_grad_", "data", "contiguous"}
VIEWS = SAME_VALUES | {
    "T", "mT", "t", "reshape", "view", "flatten", "squeeze", "unsqueeze", "transpose",
    "permute", "reshape_as", "view_as", "expand", "expand_as", "float", "double", "to",
}  # fmt: skip
# What carries nothing of a value but its shape: zeros_like(W.grad) is not computed from it.
SHAPE_ONLY = {
    "shape", "size", "dim", "ndim", "numel", "dtype", "device", "zeros_like", "ones_like",
    "empty_like", "full_like", "rand_like", "randn_like", "new_zeros", "new_ones",
    "new_empty", "new_full", "len", "isinstance", "type",
}  # fmt: skip
# The calls that compare pairs, and where their {name: (manual, reference)} dict is.
PAIRED = {"check": 0, "compare": 0, "paths_figure": "grads", "sum_figure": "grads"}


@dataclass
class _Function:
    params: list[str]
    returns: frozenset = frozenset()  # keys, and ("param", p) / ("param.grad", p) for params
    parts: list | None = None  # per element, when every return is a tuple of one length
    checks: list = field(default_factory=list)  # (label, manual, reference, default, line)


class _Flow:
    """Which gradients each value of a page is computed from (see above)."""

    def __init__(self):
        self.values: dict[str, frozenset] = {}  # name -> keys it is computed from
        self.views: dict[str, frozenset] = {}  # name -> the gradients it is (a view of)
        self.tensors: dict[str, str] = {}  # name -> the tensor whose values it holds
        self.pairs: dict[str, list] = {}  # dict name -> [(label, manual, reference), ...]
        self.functions: dict[str, _Function] = {}
        self.modules: dict[str, str] = {"torch": "torch"}
        self.local: _Function | None = None  # the function being read
        self.scope: dict[str, frozenset] | None = None  # its local names
        self.problems: list[tuple[int, str]] = []

    def cell(self, tree: ast.Module) -> list[tuple[int, str]]:
        self.problems = []
        for statement in tree.body:
            self.statement(statement, replace=True)
        return list(dict.fromkeys(self.problems))

    # -- statements, in the order they run -----------------------------------------------
    def statement(self, node: ast.stmt, replace: bool) -> None:
        if isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                self.modules[alias.asname or top] = alias.name if alias.asname else top
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names if node.level == 0 and node.module else []:
                self.modules[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        elif isinstance(node, ast.Assign):
            value = node.value
            if isinstance(value, ast.Lambda) and [type(t) for t in node.targets] == [ast.Name]:
                self._function(node.targets[0].id, value.args, [ast.Return(value.body)])
                return
            keys = self.expr(value)
            for target in node.targets:
                self._bind(target, value, keys, replace)
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            self._bind(node.target, node.value, self.expr(node.value), replace)
        elif isinstance(node, ast.AugAssign):  # acc += W.grad: more values, not a copy
            keys = self.expr(node.value)
            if isinstance(node.target, ast.Name):
                keys = self._not_its_own(node.target.id, keys)
            self._bind(node.target, None, keys, False)
        elif isinstance(node, ast.Expr):
            self.expr(node.value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self._function(node.name, node.args, node.body)
        elif isinstance(node, ast.Return):
            self._return(node.value)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self._bind(node.target, None, self.expr(node.iter), False)
            for _ in range(2):  # twice: what one turn computes, the next may read
                for inner in node.body + node.orelse:
                    self.statement(inner, replace=False)
        else:  # if, while, with, try, match: every branch, none of them certain
            for name in ("test", "subject"):
                if isinstance(getattr(node, name, None), ast.expr):
                    self.expr(getattr(node, name))
            for item in getattr(node, "items", []):
                keys = self.expr(item.context_expr)
                if item.optional_vars is not None:
                    self._bind(item.optional_vars, None, keys, False)
            blocks = [getattr(node, name, []) for name in ("body", "orelse", "finalbody")]
            blocks += [h.body for h in getattr(node, "handlers", [])]
            blocks += [c.body for c in getattr(node, "cases", [])]
            straight = replace and isinstance(node, (ast.With, ast.AsyncWith))
            for block in blocks:
                for inner in block if isinstance(block, list) else []:
                    self.statement(inner, replace=straight)

    def _get(self, name: str) -> frozenset:
        if self.scope is not None and name in self.scope:
            return self.scope[name]
        return self.values.get(name, frozenset())

    def _set(self, name: str, keys: frozenset, replace: bool) -> None:
        table = self.scope if self.scope is not None else self.values
        table[name] = keys if replace else self._get(name) | keys

    def _bind(self, target: ast.AST, source: ast.AST | None, keys: frozenset, replace: bool):
        if isinstance(target, ast.Name):
            self._set(target.id, keys, replace)
            if isinstance(source, (ast.Dict, ast.DictComp)):
                self.pairs[target.id] = self._pairs(source)
            if self.scope is None:
                view, tensor = self.view(source), self._tensor(source)
                self.views[target.id] = view if replace else self.views.get(target.id, view)
                if tensor is not None and tensor != target.id:
                    self.tensors[target.id] = tensor
                elif replace:
                    self.tensors.pop(target.id, None)
        elif isinstance(target, (ast.Tuple, ast.List)):
            count = len(target.elts)
            if isinstance(source, (ast.Tuple, ast.List)) and len(source.elts) == count:
                for element, part in zip(target.elts, source.elts):
                    self._bind(element, part, self.expr(part), replace)
                return
            # element by element where the page shows it; otherwise nothing is followed
            parts = self._parts(source, count) or [frozenset()] * count
            for element, part in zip(target.elts, parts):
                self._bind(element, None, part, replace)
        elif isinstance(target, ast.Starred):
            self._bind(target.value, None, frozenset(), replace)
        elif isinstance(target, (ast.Subscript, ast.Attribute)):
            root = _root(target)
            if isinstance(root, ast.Name):
                self._set(root.id, keys, False)  # W_g[0] = ..., W_g.data = ...
                pair = _pair(source)
                if isinstance(target, ast.Subscript) and root.id in self.pairs and pair:
                    self.pairs[root.id].append((ast.unparse(target.slice), *pair))

    def _pairs(self, node: ast.AST | None) -> list:
        """The (label, manual, reference) pairs of a check's dict, as far as the page shows
        them: a dict literal, a dict comprehension, or a name bound to one earlier."""
        if isinstance(node, ast.Dict):
            return [
                (ast.unparse(key) if key is not None else "a quantity", *pair)
                for key, value in zip(node.keys, node.values)
                if (pair := _pair(value))
            ]
        if isinstance(node, ast.DictComp) and (pair := _pair(node.value)):
            return [(ast.unparse(node.key), *pair)]
        if isinstance(node, ast.Name):
            return list(self.pairs.get(node.id, []))
        return []

    # -- what a value is computed from, and what gradient it is -----------------------------
    def _dotted(self, node: ast.AST) -> str:
        chain = _chain(node)
        if chain and chain[0] in self.modules:
            chain = [self.modules[chain[0]], *chain[1:]]
        return ".".join(chain)

    def _tensor(self, node: ast.AST | None) -> str | None:
        """The tensor whose values an expression holds (through names and SAME_VALUES)."""
        while isinstance(node, (ast.Call, ast.Attribute)):
            if isinstance(node, ast.Call):
                if not (isinstance(node.func, ast.Attribute) and node.func.attr in SAME_VALUES):
                    return None
                node = node.func.value
            elif node.attr in SAME_VALUES:
                node = node.value
            else:
                base = self._tensor(node.value)
                return None if base is None else f"{base}.{node.attr}"
        if isinstance(node, ast.Name):
            return self.tensors.get(node.id, node.id)
        if isinstance(node, ast.Subscript):
            base = self._tensor(node.value)
            return None if base is None else f"{base}[{ast.unparse(node.slice)}]"
        return None

    def _not_its_own(self, name: str, keys: frozenset) -> frozenset:
        """``keys`` without ``name``'s own gradient, for a change of ``name`` in place. A step
        of gradient descent (W -= lr * W.grad, W.sub_(lr * W.grad)) changes W with its
        gradient; W does not become its gradient: what is computed from W afterwards is a
        forward pass, and a later check of a hand-made dL/dW against W.grad is sound."""
        me = self.tensors.get(name, name)
        return frozenset(k for k in keys if k[1] != me)

    def _with_respect_to(self, node: ast.AST | None, kind: str) -> frozenset:
        found = set()
        for part in node.elts if isinstance(node, (ast.Tuple, ast.List)) else [node]:
            tensor = self._tensor(part)
            if tensor is not None:
                found.add((kind, tensor))
            if self.local and isinstance(part, ast.Name) and part.id in self.local.params:
                found.add((f"param.{kind}", part.id))
        return frozenset(found)

    def _scalar_gradient(self, node: ast.Call) -> frozenset | None:
        """The keys of autograd's gradient of a scalar, or None if ``node`` is not one."""
        if SCALAR_GRADIENTS.get(self._dotted(node.func)) == "inputs":
            if any(k.arg == "grad_outputs" for k in node.keywords) or len(node.args) > 2:
                return None  # a vector-Jacobian product: a local derivative
            given = next((k.value for k in node.keywords if k.arg == "inputs"), None)
            given = given or (node.args[1] if len(node.args) > 1 else None)
            return self._with_respect_to(given, "autograd")
        inner = node.func
        if isinstance(inner, ast.Call) and SCALAR_GRADIENTS.get(self._dotted(inner.func)):
            return self._with_respect_to(ast.Tuple(elts=list(node.args)), "autograd")
        return None

    def view(self, node: ast.AST | None) -> frozenset:
        """The gradients ``node`` is, or is a view or copy of (a check's reference side)."""
        if isinstance(node, ast.Name):
            return self.views.get(node.id, frozenset()) if self.scope is None else frozenset()
        if isinstance(node, ast.Attribute):
            if node.attr == "grad":
                return self._with_respect_to(node.value, "grad")
            return self.view(node.value) if node.attr in VIEWS else frozenset()
        if isinstance(node, ast.Subscript):
            return self.view(node.value)
        if isinstance(node, ast.Call):
            scalar = self._scalar_gradient(node)
            if scalar is not None:
                return scalar
            if isinstance(node.func, ast.Attribute) and node.func.attr in VIEWS:
                return self.view(node.func.value)
        return frozenset()

    def expr(self, node: ast.AST | None) -> frozenset:
        """Every gradient ``node``'s value is computed from."""
        if node is None:
            return frozenset()
        if isinstance(node, ast.Name):
            keys = self._get(node.id)
            if self.local and node.id in self.local.params:
                keys = keys | {("param", node.id)}
            return keys
        if isinstance(node, ast.Attribute):
            if node.attr in SHAPE_ONLY:
                return frozenset()
            if node.attr == "grad":  # autograd's gradient, not computed from W's values
                return self.view(node)
            return self.expr(node.value)
        if isinstance(node, ast.Call):
            return self._call(node)
        if isinstance(node, ast.Lambda):
            self._function(None, node.args, [ast.Return(node.body)])
            return frozenset()
        keys = frozenset()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.comprehension):
                found = self.expr(child.iter)
                self._bind(child.target, None, found, False)
                keys |= found.union(*(self.expr(c) for c in child.ifs))
            elif isinstance(child, ast.expr):
                keys |= self.expr(child)
        return keys

    def _call(self, node: ast.Call) -> frozenset:
        chain = _chain(node.func)
        name = chain[-1] if chain else ""
        if name in SHAPE_ONLY:
            return frozenset()
        if name in PAIRED and (
            isinstance(node.func, ast.Name) or chain[:-1] in ([h] for h in HELPERS)
        ):
            self._check(node, name)
        keys = frozenset().union(
            *(self.expr(a) for a in [*node.args, *(k.value for k in node.keywords)])
        )
        scalar = self._scalar_gradient(node)
        if scalar is not None:
            return keys | scalar
        if isinstance(node.func, ast.Name) and node.func.id in self.functions:
            return self._called(self.functions[node.func.id], node)
        if isinstance(node.func, ast.Attribute):
            receiver = self.expr(node.func.value)
            root = _root(node.func.value)
            if node.func.attr.endswith("_") and isinstance(root, ast.Name):
                # W_g.copy_(W.grad), W_g.add_(...)
                self._set(root.id, self._not_its_own(root.id, keys), False)
            return keys | receiver
        return keys | self.expr(node.func)

    # -- functions the page defines -------------------------------------------------------
    def _function(self, name: str | None, args: ast.arguments, body: list) -> None:
        params = [a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]]
        function = _Function(params)
        saved = self.local, self.scope
        self.local, self.scope = function, {p: frozenset() for p in params}
        try:
            for statement in body:
                self.statement(statement, replace=False)
        finally:
            self.local, self.scope = saved
        if name is not None:
            self.functions[name] = function

    def _return(self, value: ast.AST | None) -> None:
        if self.local is None or value is None:
            return
        self.local.returns |= self.expr(value)
        mine = [self.expr(e) for e in value.elts] if isinstance(value, ast.Tuple) else None
        parts = self.local.parts
        if mine is None or parts == [] or (parts is not None and len(parts) != len(mine)):
            self.local.parts = []
        else:
            self.local.parts = mine if parts is None else [a | b for a, b in zip(parts, mine)]

    def _bound(self, function: _Function, node: ast.Call) -> dict[str, ast.AST]:
        bound = dict(zip(function.params, node.args))
        bound.update({k.arg: k.value for k in node.keywords if k.arg in function.params})
        return bound

    def _resolve(self, keys: frozenset, bound: dict[str, ast.AST]) -> frozenset:
        found = set()
        for kind, what in keys:
            if kind == "param":
                found |= self.expr(bound[what]) if what in bound else set()
            elif kind.startswith("param.") and what in bound:
                found |= self._with_respect_to(bound[what], kind.removeprefix("param."))
            elif not kind.startswith("param."):
                found.add((kind, what))
        return frozenset(found)

    def _parts(self, source: ast.AST | None, count: int) -> list[frozenset] | None:
        """Each element of a call's tuple, when it calls a page function that returns
        tuples of ``count`` elements, or is autograd's gradient for ``count`` tensors."""
        if not isinstance(source, ast.Call):
            return None
        scalar = self._scalar_gradient(source)
        given = source.args[1] if len(source.args) > 1 else None
        if (
            scalar is not None
            and isinstance(given, (ast.Tuple, ast.List))
            and len(given.elts) == count
        ):
            return [self._with_respect_to(e, "autograd") for e in given.elts]
        function = self.functions.get(source.func.id) if isinstance(source.func, ast.Name) else None
        if function is None or not function.parts or len(function.parts) != count:
            return None
        bound = self._bound(function, source)
        return [self._resolve(part, bound) for part in function.parts]

    def _called(self, function: _Function, node: ast.Call) -> frozenset:
        bound = self._bound(function, node)
        for label, manual, reference, default, line in function.checks:
            if any(kind.startswith("param.") or kind == "param" for kind, _ in manual | reference):
                m, r = self._resolve(manual, bound), self._resolve(reference, bound)
                self._judge(label, m, r, default, node.lineno, line)
        return self._resolve(function.returns, bound)

    # -- the checks -------------------------------------------------------------------------
    def _check(self, node: ast.Call, name: str) -> None:
        where = PAIRED[name]
        given = (
            node.args[where]
            if isinstance(where, int) and len(node.args) > where
            else next((k.value for k in node.keywords if k.arg == where), None)
        )
        reference = next((k.value for k in node.keywords if k.arg == "reference"), None)
        default = reference is None or (
            isinstance(reference, ast.Constant) and reference.value == "autograd"
        )
        for label, manual, ref in self._pairs(given):
            same = self._tensor(manual)
            if same is not None and same == self._tensor(ref) and ast.dump(manual) != ast.dump(ref):
                self.problems.append(
                    (
                        node.lineno,
                        f"compares {label} with a copy of itself (both sides hold {same}'s "
                        "values): such a check passes whatever the values",
                    )
                )
            m = self.expr(manual)
            r = self.view(ref)
            if self.local is not None and isinstance(ref, ast.Attribute) and ref.attr == "grad":
                r = r | self._with_respect_to(ref.value, "grad")
            if self.local is not None:
                self.local.checks.append((label, m, r, default, node.lineno))
            self._judge(label, m, r, default, node.lineno)

    def _judge(self, label, manual, reference, default, line, inner=None) -> None:
        where = f" (in the function it calls, at its line {inner})" if inner else ""
        for kind, tensor in sorted(reference):
            if kind not in ("grad", "autograd"):
                continue
            if ("grad", tensor) in manual:
                self.problems.append(
                    (
                        line,
                        f"checks {label}{where} with a manual side computed from "
                        f"{tensor}.grad, the gradient it is compared with: the check "
                        "compares autograd with itself and passes whatever the formula",
                    )
                )
            elif ("autograd", tensor) in manual and default:
                self.problems.append(
                    (
                        line,
                        f"checks {label}{where} against autograd with a manual side that "
                        f"autograd computed itself (the gradient with respect to {tensor}, "
                        "from torch.autograd.grad or torch.func.grad): autograd against "
                        "autograd checks no formula. Compute it by hand, or name what it is "
                        "compared with: check(..., reference='...')",
                    )
                )


def _pair(node: ast.AST | None) -> tuple[ast.AST, ast.AST] | None:
    if isinstance(node, ast.Tuple) and len(node.elts) == 2:
        return node.elts[0], node.elts[1]
    return None


def autograd_against_itself(sources: list[str]) -> list[list[str]]:
    """For each cell of a page (their sources, in order), the checks whose manual side is
    computed from the gradient it is compared with, as ``line N: ...`` problems."""
    flow = _Flow()
    found = []
    for source in sources:
        try:
            tree = ast.parse(python_source(source))
        except SyntaxError:
            found.append([])
            continue
        found.append([f"line {line}: {text}" for line, text in flow.cell(tree)])
    return found


# --- a whole page -----------------------------------------------------------------------


def page_problems(
    page: Path,
    name: str | None = None,
    config: MdParserConfig | None = None,
    metadata_key: str = "mystnb",
    cell_metadata_key: str = "mystnb",
    owned: set[str] | None = None,
) -> list[str]:
    """Every door :mod:`guard_lint` knows of that ``page`` opens, as sentences naming it."""
    name = name or page.name
    text = page.read_text(encoding="utf-8")
    config = config or md_config()
    fences = code_cell_fences(text, config)
    found = [
        f"{name}:{f.line}: a {{code-cell}} inside {f.where} never runs (myst-nb executes "
        "top-level cells only); move it out, tagged hide-cell to fold it"
        for f in fences
        if not f.runs
    ]
    if not fences or not is_myst_markdown_notebook(text):
        return found  # no cells, or no header: guard.problems says so
    try:
        notebook = read_myst_markdown_notebook(text, config, add_source_map=True, path=page)
    except Exception as err:  # noqa: BLE001 - myst-nb's reader errors have no common base
        return [*found, f"{name}: myst-nb cannot read it: {err}"]
    found += [f"{name}: {p}" for p in front_matter_problems(dict(notebook.metadata), metadata_key)]
    owned = byhand_names() if owned is None else owned
    imported: set[str] = set()
    calls: set[str] = set()
    located = located_cells(text, notebook)
    flows = autograd_against_itself([cell.source for cell, _, _ in located])
    for number, (cell, fence, start) in enumerate(located, 1):
        found += [
            f"{name}:{fence}: {p}" for p in cell_option_problems(cell, number, cell_metadata_key)
        ]
        report = lint_code(cell.source, owned, imported)
        imported |= report.imported
        calls |= report.calls
        for problem in report.problems + flows[number - 1]:
            match = re.match(r"line (\d+): (.*)", problem, re.S)
            line, rest = (start + int(match[1]), match[2]) if match else (start, problem)
            found.append(f"{name}:{line}: code cell {number} {rest}")
        if number == 1 and "start_chapter" not in report.calls:
            found.append(
                f"{name}:{fence}: code cell 1 does not call start_chapter(...), which names "
                "the page in errors, seeds and sets float64"
            )
    if not calls & set(CHECKS):
        found.append(f"{name} has code cells but no check(...), fd_check(...) or claim(...) call")
    return found


def located_cells(text: str, notebook) -> list[tuple[nbformat.NotebookNode, int, int]]:
    """The page's code cells (``notebook``: the page read with ``add_source_map=True``),
    each with the page line of its opening fence and the page line before its first line
    of code (after its options): code line n of the cell is page line ``start + n``. The
    one place a cell's line becomes the page's (the guard's messages and annotations)."""
    lines = notebook.metadata.get("source_map", [])
    text_lines = text.splitlines()
    found = []
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type != "code":
            continue
        fence = lines[index] if index < len(lines) else 0  # 1-based line of the fence
        found.append((cell, fence, _body_start(text_lines, fence, cell.source)))
    return found


def page_line(page: Path, cell: int, line: int | None = None) -> int | None:
    """The page line of line ``line`` (1-based) of code cell ``cell`` (1-based), or of the
    cell's first line of code without a line; None if the page has no such cell."""
    text = page.read_text(encoding="utf-8")
    try:
        located = located_cells(text, read_notebook(page))
    except Exception:  # noqa: BLE001 - a page myst-nb cannot read has no cells to point at
        return None
    if not 0 < cell <= len(located):
        return None
    _, fence, start = located[cell - 1]
    return start + (line or 1)


# Columns of code that fit the book's code blocks at 1280 px, measured in Chromium: a
# character of the 13 px monospace font is 7.8 px (DejaVu Sans Mono; Menlo, Consolas and
# SF Mono are as wide). An open block's column is 708 px (90 characters); a folded one
# (hide-input, hide-cell) sits in the fold's box, 690 px (88). A wider line scrolls, which
# the browser tests refuse (test_browser.test_laptop_layout); make check finds it without
# a browser.
CODE_COLUMNS = 90
FOLDED_COLUMNS = {"hide-input": 88, "hide-cell": 88}
UNSEEN_TAGS = {"remove-input", "remove-cell"}  # the reader never sees these cells' code


def code_columns(cell) -> int:
    """How many columns of code fit the block ``cell`` is shown in."""
    return min([CODE_COLUMNS, *(FOLDED_COLUMNS.get(t, CODE_COLUMNS) for t in tags(cell))])


def wide_code_lines(text: str, config: MdParserConfig | None = None) -> list[tuple[int, str, int]]:
    """The lines of code a reader sees (folded ones too: a folded cell is laid out, and
    scrolls, before it is opened) that are wider than their block, as (page line, the line,
    the columns that fit)."""
    if not has_code_cells(text, config) or not is_myst_markdown_notebook(text):
        return []
    notebook = read_myst_markdown_notebook(text, config or md_config(), add_source_map=True)
    return [
        (start + n, line, code_columns(cell))
        for cell, _, start in located_cells(text, notebook)
        if not UNSEEN_TAGS & set(tags(cell))
        for n, line in enumerate(cell.source.splitlines(), 1)
        if len(line) > code_columns(cell)
    ]


def _body_start(lines: list[str], fence: int, source: str) -> int:
    """The line before a cell's first line of code (after its options), 1-based, so that
    code line n is page line ``_body_start + n``."""
    first = source.splitlines()[0] if source.strip() else None
    for index in range(fence, min(fence + 60, len(lines))):
        if first is not None and lines[index] == first:
            return index
    return fence


def stray_files(book: Path) -> list[str]:
    """Files in ``book/`` that would shadow a module every page imports, or a page."""
    found = []
    for path in sorted(book.glob("*.py")):
        if path.stem not in HELPERS:
            found.append(
                f"{path.relative_to(book.parent).as_posix()}: pages run with book/ as their "
                "working directory, so this module would shadow any module of that name "
                "(helpers belong in book/byhand.py, figures in book/figures.py)"
            )
    for path in sorted(book.glob("*.ipynb")):
        if path.with_suffix(".md").is_file():
            found.append(
                f"{path.relative_to(book.parent).as_posix()} sits beside "
                f"{path.with_suffix('.md').name}, and Sphinx could build either; delete it"
            )
    return found
