"""A Sphinx extension that makes the book's build refuse bad input, loudly.

The book promises that its build fails when a manual gradient is wrong. This extension
keeps that promise against everything a page could do without touching ``byhand.py``.

**Before anything runs** (``builder-inited``), it stops the build with a
``Book structure error`` that lists every problem at once:

* a page in ``book/`` that ``_toc.yml`` does not list (it would never be built), a TOC
  entry without its ``.md`` file, a page listed twice, two chapters with one number, a
  notebook (``.ipynb``) page;
* a page with ``{code-cell}`` blocks but no jupytext header (myst-nb would render it
  without running it), or a code cell that myst-nb would never run (inside a dropdown,
  a list, a ``:::`` fence);
* a module in ``book/`` other than ``byhand.py`` and ``figures.py``, which would shadow an
  import of every page;
* execution settings that weaken the build, in ``_config.yml`` or in a page, a cell tag
  that skips a cell, a kernel other than ``python3``, and the page code that skips,
  swallows, loosens or rewrites a check (``guard_lint.py`` lists every rule and why).

**After the pages ran** (``build-finished``), from its own record of execution rather than
from myst-nb's warnings (the live preview builds without ``-W``), it fails the build when
a TOC page with code cells was not executed or failed, a cell was skipped, a cell tagged
``raises-exception`` did not raise the type it declares, or a ``check``, ``fd_check`` or
``claim`` call site never ran (``guard_run.py``); and when ``book/``'s modules changed
while the pages ran. It prints which pages failed and why, and writes every page's
execution time to ``_build/execution.json`` (``scripts/bench_build.py`` reads it).

**On every page** with checks (``doctree-read``), it adds a line under the title: how many
gradients were checked against autograd (and claims asserted) when the page was built,
with the PyTorch version and the date, counted from the records ``byhand`` attaches to
each passing check (``guard_run.tally``).

It also starts every kernel over IPC with a generous output timeout, so that a build
cannot fail for no reason of its own (``guard_kernels.py``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import nbformat
import yaml
from docutils import nodes
from myst_nb.core.read import is_myst_markdown_notebook
from sphinx.application import Sphinx
from sphinx.errors import SphinxError
from sphinx.util import logging

# book/_ext is on sys.path wherever the guard is imported (Sphinx's local_extensions,
# the preview's conf.py, the tests and scripts).
import guard_kernels
import guard_lint
import guard_report
import guard_run
from guard_lint import code_cells, has_code_cells  # noqa: F401  (the one definition)
from guard_run import InternalsChanged

logger = logging.getLogger(__name__)


class BookStructureError(SphinxError):
    category = "Book structure error"


class BuildRefused(SphinxError):
    category = "Build guard"


# --- the table of contents: what the book is ----------------------------------------


def _toc_files(entry) -> list[str]:
    """Every ``file:`` named anywhere in a parsed ``_toc.yml`` node, in order."""
    found = []
    if isinstance(entry, dict):
        for key, value in entry.items():
            if key == "file" and isinstance(value, str):
                found.append(value)
            else:
                found += _toc_files(value)
    elif isinstance(entry, list):
        for item in entry:
            found += _toc_files(item)
    return found


def _strip_suffix(name: str) -> str:
    return re.sub(r"\.(md|ipynb)$", "", name)


def toc_documents(toc_path: Path) -> list[str]:
    """The documents ``_toc.yml`` lists, in reading order: ``["book/intro", ...]``."""
    toc = yaml.safe_load(toc_path.read_text(encoding="utf-8"))
    rest = _toc_files({key: value for key, value in toc.items() if key != "root"})
    return [_strip_suffix(name) for name in [toc["root"], *rest]]


CHAPTER_NAME = re.compile(r"^\d\d-")


def chapter_documents(toc_path: Path) -> list[str]:
    """The book's chapters, in reading order: the TOC documents whose file name starts with
    two digits and a dash (``book/01-chain-rule``). Every chapter has exercises and
    broken-gradient tests; other pages (the intro, the reference pages) need neither."""
    return [doc for doc in toc_documents(toc_path) if CHAPTER_NAME.match(Path(doc).name)]


def book_pages(srcdir: Path, book_dir: str = "book") -> list[Path]:
    """The ``.md`` pages in ``book/`` (files starting with ``_``, such as the template, and
    READMEs are not pages)."""
    return sorted(
        p for p in (srcdir / book_dir).glob("*.md") if not p.name.startswith(("_", "README"))
    )


# --- the rules, all at once, before anything runs --------------------------------------


def toc_problems(srcdir: Path, toc_path: Path, book_dir: str = "book") -> list[str]:
    """The TOC and the pages in ``book/`` disagree."""
    found: list[str] = []
    listed = toc_documents(toc_path)
    for doc in sorted({d for d in listed if listed.count(d) > 1}):
        found.append(f"{toc_path.name} lists '{doc}' more than once")
    numbers: dict[str, list[str]] = {}
    for doc in dict.fromkeys(chapter_documents(toc_path)):
        numbers.setdefault(Path(doc).name[:2], []).append(doc)
    for number, docs in sorted(numbers.items()):
        if len(docs) > 1:
            found.append(
                f"{toc_path.name} lists {len(docs)} chapters numbered {number} "
                f"({', '.join(docs)}); each chapter has a number of its own"
            )
    for doc in dict.fromkeys(listed):
        if (srcdir / f"{doc}.md").is_file():
            continue
        if (srcdir / f"{doc}.ipynb").is_file():
            found.append(
                f"{doc}.ipynb is a notebook; pages are MyST Markdown (start from book/_template.md)"
            )
        else:
            found.append(f"{toc_path.name} lists '{doc}', but there is no {doc}.md")
    for page in book_pages(srcdir, book_dir):
        doc = page.relative_to(srcdir).with_suffix("").as_posix()
        if doc not in listed:
            found.append(f"{doc}.md is not listed in {toc_path.name}, so it would never be built")
    return found


def problems(
    srcdir: Path,
    toc_path: Path,
    book_dir: str = "book",
    config=None,
    metadata_key: str = "mystnb",
    cell_metadata_key: str = "mystnb",
) -> list[str]:
    """Everything wrong with the book's structure and pages, as sentences a contributor
    can act on (the TOC, the headers, and every rule of ``guard_lint``)."""
    config = config or guard_lint.md_config(srcdir)
    found = toc_problems(srcdir, toc_path, book_dir)
    found += guard_lint.stray_files(srcdir / book_dir)
    book = srcdir / book_dir
    owned = guard_lint.byhand_names(
        book if all((book / f"{m}.py").is_file() for m in guard_lint.HELPERS) else guard_lint.BOOK
    )
    for doc in dict.fromkeys(toc_documents(toc_path)):
        page = srcdir / f"{doc}.md"
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        if has_code_cells(text, config) and not is_myst_markdown_notebook(text):
            found.append(
                f"{doc}.md has code cells but no jupytext header, so its cells would never run "
                "(copy the header from book/_template.md)"
            )
        found += guard_lint.page_problems(
            page, f"{doc}.md", config, metadata_key, cell_metadata_key, owned
        )
    return found


def _setting(nb_config, name: str):
    if not hasattr(nb_config, name):
        raise InternalsChanged(f"myst-nb's configuration has no '{name}'")
    return getattr(nb_config, name)


STDERR_FAILS = ("warn", "error", "severe", "remove-warn")  # each at least warns
# Builders that write no page, so execute nothing (make linkcheck sets nb_execution_mode
# to 'off'): the execution settings and the post-run record do not apply to them.
NON_EXECUTING_BUILDERS = ("linkcheck",)


def config_problems(nb_config) -> list[str]:
    """Book-wide execution settings (``_config.yml``'s ``execute:``, or ``nb_*`` in its
    ``sphinx: config:``) that would let a failing page pass."""
    found = []
    where = "_config.yml"
    mode = _setting(nb_config, "execution_mode")
    if mode != "force":
        found.append(
            f"{where}: execute_notebooks is {mode!r}; the book executes every page "
            "on every build ('force'), so that no cache can hide a failing cell"
        )
    if _setting(nb_config, "execution_allow_errors"):
        found.append(f"{where}: allow_errors is true; a cell that raises must fail the build")
    if _setting(nb_config, "execution_excludepatterns"):
        found.append(f"{where}: exclude_patterns under execute: would leave pages unexecuted")
    if _setting(nb_config, "kernel_rgx_aliases"):
        found.append(f"{where}: kernel aliases would run pages in another kernel")
    timeout = _setting(nb_config, "execution_timeout")
    if not isinstance(timeout, int) or not 0 < timeout <= 600:
        found.append(
            f"{where}: timeout is {timeout!r}; a cell gets at most 600 s (0 or -1 "
            "would let a hung cell hang the build)"
        )
    stderr = _setting(nb_config, "output_stderr")
    if stderr not in STDERR_FAILS:
        found.append(
            f"{where}: stderr_output is {stderr!r}; output on stderr must at least "
            f"warn ({', '.join(STDERR_FAILS)})"
        )
    return found


def _modules(srcdir: Path, book_dir: str = "book") -> dict[str, str]:
    """book/'s Python modules (the guard's own folder aside), with hashes: what every page
    imports from. (Bytecode caches are left out: Python rewrites them whenever it likes.)"""
    book = srcdir / book_dir
    found = {}
    for path in sorted(book.rglob("*.py")):
        rel = path.relative_to(book)
        if path.is_file() and rel.parts[0] != "_ext":
            found[rel.as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def check_structure(app: Sphinx) -> None:
    srcdir = Path(app.srcdir)
    toc = srcdir / app.config.external_toc_path
    nb_config = getattr(app.env, "mystnb_config", None)
    md_config = getattr(app.env, "myst_config", None)
    if nb_config is None or md_config is None:
        raise BuildRefused(
            str(
                InternalsChanged(
                    "the Sphinx environment has no mystnb_config/myst_config at builder-inited"
                )
            )
        )
    executes = app.builder.name not in NON_EXECUTING_BUILDERS
    try:
        found = config_problems(nb_config) if executes else []
        found += problems(
            srcdir,
            toc,
            config=md_config,
            metadata_key=_setting(nb_config, "metadata_key"),
            cell_metadata_key=_setting(nb_config, "cell_metadata_key"),
        )
    except InternalsChanged as err:
        raise BuildRefused(str(err)) from None
    if found:
        failures = [guard_report.Failure.parse(problem) for problem in found]
        if os.environ.get("GITHUB_ACTIONS") == "true":  # the message below says it elsewhere
            for failure in failures:
                logger.info(failure.annotation())
        guard_report.write_summary(
            guard_report.summary([], failures, "The book was refused before any page ran")
        )
        raise BookStructureError("\n  - " + "\n  - ".join(found))
    # What build-finished checks against: the pages that must run, book/'s modules now.
    app._byhand_guard = {
        "run": [
            doc
            for doc in toc_documents(toc)
            if (srcdir / f"{doc}.md").is_file()
            and any(
                f.runs
                for f in guard_lint.code_cell_fences(
                    (srcdir / f"{doc}.md").read_text(encoding="utf-8"), md_config
                )
            )
        ],
        "modules": _modules(srcdir),
        "mode": nb_config.execution_mode,
    }


# --- while reading: the badge, and the helpers as every page's dependency --------------


def executed_notebook(app: Sphinx, docname: str) -> Path:
    try:
        from myst_nb.sphinx_ext import OUTPUT_FOLDER
    except ImportError as err:
        raise InternalsChanged("myst_nb.sphinx_ext.OUTPUT_FOLDER is gone") from err
    return Path(app.outdir).parent / OUTPUT_FOLDER / f"{docname}.ipynb"


def _exec_data(app: Sphinx, docname: str):
    return getattr(app.env, "nb_metadata", {}).get(docname, {}).get("exec_data")


def depend_on_helpers(app: Sphinx, doctree) -> None:
    """Every page that runs code depends on byhand.py and figures.py: when one changes, an
    incremental build (the live preview) re-executes the chapters, not just the edited ones."""
    if not _exec_data(app, app.env.docname):
        return
    for module in guard_lint.HELPERS:
        helpers = Path(app.srcdir) / "book" / f"{module}.py"
        if helpers.is_file():
            app.env.note_dependency(str(helpers))


def add_badge(app: Sphinx, doctree: nodes.document) -> None:
    """Under the page's title: what was checked when the page was built (from byhand's
    records in the executed notebook), the PyTorch version, the date."""
    run = guard_run.exec_record(_exec_data(app, app.env.docname))
    if run is None:
        return  # a page without code (or not executed: build-finished says so)
    path = executed_notebook(app, app.env.docname)
    if not path.is_file():
        raise InternalsChanged(f"myst-nb ran {app.env.docname} but wrote no {path}")
    count = guard_run.tally(nbformat.read(path, as_version=4))
    if not count.total:
        return
    title = next(iter(doctree.findall(nodes.title)), None)
    if title is None:
        return
    badge = nodes.raw(
        "", guard_run.badge_html(count, guard_run.build_date(run["mtime"])), format="html"
    )
    title.parent.insert(title.parent.index(title) + 1, badge)


# --- after the build: the guard's own record of execution ------------------------------


def report_execution(app: Sphinx) -> dict:
    """Write ``_build/execution.json``: each page's run time, and its error line."""
    metadata = getattr(app.env, "nb_metadata", {})
    results = {}
    for docname, data in sorted(metadata.items()):
        run = guard_run.exec_record(data.get("exec_data"))
        if run is None:
            continue
        results[docname] = {
            "runtime": run["runtime"],
            "succeeded": run["succeeded"],
            "error": None if run["succeeded"] else guard_run.error_line(run["traceback"]),
        }
    out = Path(app.outdir).parent / "execution.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    return results


def execution_problems(app: Sphinx) -> dict[str, list[str]]:
    """Every TOC page's problems after the build, from myst-nb's record of execution and
    the executed notebooks; and book/'s modules compared with before the build."""
    state = getattr(app, "_byhand_guard", None)
    if state is None:
        return {}
    metadata = getattr(app.env, "nb_metadata", None)
    if state["run"] and (
        metadata is None or not any("exec_data" in metadata.get(d, {}) for d in state["run"])
    ):
        raise InternalsChanged(
            f"none of the {len(state['run'])} pages with code cells has 'exec_data' in "
            "env.nb_metadata"
        )
    found: dict[str, list[str]] = {}
    for doc in state["run"]:
        path = executed_notebook(app, doc)
        notebook = nbformat.read(path, as_version=4) if path.is_file() else None
        page = guard_run.page_problems(_exec_data(app, doc), notebook, state["mode"])
        if page:
            found[f"{doc}.md"] = page
    after = _modules(Path(app.srcdir))
    for name in sorted(set(after) | set(state["modules"])):
        if after.get(name) != state["modules"].get(name):
            change = (
                "appeared"
                if name not in state["modules"]
                else ("disappeared" if name not in after else "changed")
            )
            found.setdefault(f"book/{name}", []).append(
                f"{change} while the pages ran: every page imports from book/, so no page "
                "may write there"
            )
    return found


def located(app: Sphinx, where: str, problem: str) -> guard_report.Failure:
    """A problem of ``where`` (``book/x.md``) on the page's line: the line of the cell the
    finding names (``guard_run.Finding``), or the page itself."""
    cell, line = getattr(problem, "cell", None), getattr(problem, "line", None)
    page = Path(app.srcdir) / where
    at = guard_lint.page_line(page, cell, line) if cell and page.suffix == ".md" else None
    return guard_report.Failure(where, at, str(problem).removeprefix("failed: "))


def summary_rows(app: Sphinx, found: dict[str, list[str]]) -> list[guard_report.Row]:
    """One row per TOC page, counted from its executed notebook."""
    state = getattr(app, "_byhand_guard", None) or {"run": []}
    rows = []
    for doc in toc_documents(Path(app.srcdir) / app.config.external_toc_path):
        path = executed_notebook(app, doc)
        if doc not in state["run"]:
            rows.append(guard_report.Row(doc, 0, 0, 0, "no code"))
            continue
        count = guard_run.tally(nbformat.read(path, as_version=4)) if path.is_file() else None
        problems = found.get(f"{doc}.md", [])
        result = (
            "passed"
            if not problems
            else ("failed" if any(p.startswith("failed: ") for p in problems) else "refused")
        )
        rows.append(
            guard_report.Row(
                doc,
                count.autograd + count.other + count.fd if count else 0,
                count.claims if count else 0,
                count.demonstrations if count else 0,
                result,
            )
        )
    return rows


def finish(app: Sphinx, exception: Exception | None) -> None:
    if app.builder.name in NON_EXECUTING_BUILDERS:
        return
    try:
        report_execution(app)
        found = execution_problems(app)
        rows = summary_rows(app, found)
    except InternalsChanged as err:
        if exception is not None:
            return  # Sphinx's own error says what went wrong
        raise BuildRefused(str(err)) from None
    if exception is not None:  # Sphinx stopped half-way: only what failed is certain
        found = {w: [p for p in page if p.startswith("failed: ")] for w, page in found.items()}
        found = {w: page for w, page in found.items() if page}
    problems = [(p, located(app, where, p)) for where, page in found.items() for p in page]
    failed = [f for p, f in problems if p.startswith("failed: ")]
    if failed:  # a failing check, claim or demonstration: on the line of the failing call
        logger.info("")
        logger.info(f"{len(failed)} chapter(s) failed to execute:")
        for failure in failed:
            logger.info(failure.annotation())
    for problem, failure in problems:  # the guard's own findings
        if not problem.startswith("failed: "):
            logger.info(failure.annotation())
    failures = [f for _, f in problems]
    guard_report.write_summary(guard_report.summary(rows, failures, "The book's build"))
    if not found or exception is not None:
        return
    logger.info(
        f"The build guard refuses {len(found)} page(s): "
        + ", ".join(found)
        + " (the errors and tracebacks above say why)."
    )
    app.statuscode = 1  # fail without -W too (the live preview, a plain sphinx-build)


def setup(app: Sphinx) -> dict:
    # sphinx-external-toc always loads sphinx_multitoc_numbering, which does not declare
    # whether it is parallel-safe, so Sphinx warns (an error under -W) and reads serially.
    # It only renumbers sections after reading, in the main process: safe in parallel.
    multitoc = app.extensions.get("sphinx_multitoc_numbering")
    if multitoc is not None:
        multitoc.parallel_read_safe = True
    guard_kernels.configure()
    # after myst-parser's and myst-nb's own builder-inited handlers (their configs)
    app.connect("builder-inited", check_structure, priority=900)
    app.connect("doctree-read", depend_on_helpers)
    app.connect("doctree-read", add_badge)
    app.connect("build-finished", finish)
    return {"version": "2.0", "parallel_read_safe": True, "parallel_write_safe": True}
