"""A Sphinx extension that makes the book's build refuse bad input, loudly.

Jupyter Book 1 quietly skips two mistakes a contributor easily makes:

* a page in ``book/`` that ``_toc.yml`` does not list is never built
  (``only_build_toc_files``), and a TOC entry whose file is missing is a warning;
* a ``.md`` page with ``{code-cell}`` blocks but no jupytext header is rendered as
  plain Markdown: myst-nb never executes it, so none of its checks run.

Both stop the build here with an error that says what to fix. After the build it also

* fails the build when a cell tagged ``raises-exception`` (a demonstration of a
  wrong formula) did not raise: such a demonstration must really fail;
* prints which chapters failed to execute and why (the error line of each
  traceback), and writes every chapter's execution time to ``_build/execution.json``,
  which ``scripts/bench_build.py`` reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import nbformat
import yaml
from myst_nb.core.read import is_myst_markdown_notebook
from sphinx.application import Sphinx
from sphinx.errors import SphinxError
from sphinx.util import logging

logger = logging.getLogger(__name__)

CODE_CELL = re.compile(r"^\s*(```|~~~|:::)\{code-cell\}", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class BookStructureError(SphinxError):
    category = "Book structure error"


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


def problems(srcdir: Path, toc_path: Path, book_dir: str = "book") -> list[str]:
    """Everything wrong with the book's structure, as sentences a contributor can act on."""
    found: list[str] = []
    listed = toc_documents(toc_path)
    for doc in listed:
        if not any((srcdir / f"{doc}{ext}").is_file() for ext in (".md", ".ipynb")):
            found.append(f"{toc_path.name} lists '{doc}', but there is no {doc}.md")
    pages = sorted(
        p for p in (srcdir / book_dir).glob("*.md") if not p.name.startswith(("_", "README"))
    )
    for page in pages:
        doc = page.relative_to(srcdir).with_suffix("").as_posix()
        if doc not in listed:
            found.append(f"{doc}.md is not listed in {toc_path.name}, so it would never be built")
    for doc in listed:
        page = srcdir / f"{doc}.md"
        if not page.is_file():
            continue
        text = page.read_text(encoding="utf-8")
        if CODE_CELL.search(text) and not is_myst_markdown_notebook(text):
            found.append(
                f"{doc}.md has code cells but no jupytext header, so its cells would never run "
                "(copy the header from book/_template.md)"
            )
    return found


def depend_on_helpers(app: Sphinx, doctree) -> None:
    """Every page that runs code depends on byhand.py: when it changes, an incremental
    build (the live preview) re-executes the chapters, not just the edited ones."""
    helpers = Path(app.srcdir) / "book" / "byhand.py"
    ran_code = "exec_data" in getattr(app.env, "nb_metadata", {}).get(app.env.docname, {})
    if helpers.is_file() and ran_code:
        app.env.note_dependency(str(helpers))


def check_structure(app: Sphinx) -> None:
    srcdir = Path(app.srcdir)
    toc = srcdir / app.config.external_toc_path
    found = problems(srcdir, toc)
    if found:
        raise BookStructureError("\n  - " + "\n  - ".join(found))


def _error_line(traceback: str | None) -> str:
    lines = [ANSI.sub("", line).strip() for line in (traceback or "").splitlines()]
    errors = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Mismatch)\b", line)]
    return errors[-1] if errors else (lines[-1] if lines else "unknown error")


def silent_raises(notebook: Path) -> list[int]:
    """Numbers (1-based, code cells only) of ``raises-exception`` cells that did not raise."""
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if c.cell_type == "code"]
    return [
        number
        for number, cell in enumerate(cells, 1)
        if "raises-exception" in cell.metadata.get("tags", [])
        and not any(out.get("output_type") == "error" for out in cell.get("outputs", []))
    ]


def check_raises(app: Sphinx, exception: Exception | None) -> None:
    executed = Path(app.outdir).parent / "jupyter_execute"
    for docname in sorted(getattr(app.env, "nb_metadata", {})):
        notebook = executed / f"{docname}.ipynb"
        if not notebook.is_file():
            continue
        for number in silent_raises(notebook):
            logger.warning(
                f"code cell {number} is tagged raises-exception but did not raise: a "
                "demonstration of a wrong formula must really fail its check",
                location=docname,
            )


def report_execution(app: Sphinx, exception: Exception | None) -> None:
    metadata = getattr(app.env, "nb_metadata", {})
    results = {
        docname: {
            "runtime": data["exec_data"].get("runtime"),
            "succeeded": data["exec_data"].get("succeeded"),
            "error": None
            if data["exec_data"].get("succeeded")
            else _error_line(data["exec_data"].get("traceback")),
        }
        for docname, data in sorted(metadata.items())
        if data.get("exec_data")
    }
    out = Path(app.outdir).parent / "execution.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    failed = {doc: r for doc, r in results.items() if not r["succeeded"]}
    if failed:
        logger.info("")
        logger.info(f"{len(failed)} chapter(s) failed to execute:")
        for doc, r in failed.items():
            logger.info(f"  {doc}.md: {r['error']}")


def setup(app: Sphinx) -> dict:
    # sphinx-external-toc always loads sphinx_multitoc_numbering, which does not declare
    # whether it is parallel-safe, so Sphinx warns (an error under -W) and reads serially.
    # It only renumbers sections after reading, in the main process: safe in parallel.
    multitoc = app.extensions.get("sphinx_multitoc_numbering")
    if multitoc is not None:
        multitoc.parallel_read_safe = True
    app.connect("builder-inited", check_structure)
    app.connect("doctree-read", depend_on_helpers)
    app.connect("build-finished", check_raises)
    app.connect("build-finished", report_execution)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
