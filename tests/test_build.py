"""The build is the proof: the whole book builds from scratch, and bad input stops it.

The full build runs once per session (``built_book`` in conftest.py). The other
tests build small books (the intro plus one page) in temporary folders, with the
same script ``make book`` runs. What a page may not do (structure errors, settings and
code that would switch a check off, demonstrations that fail the wrong way) is
tests/test_doors.py's.
"""

from __future__ import annotations

import json
import re
import textwrap

import pytest

from conftest import ROOT, chapters, mini_book, run_build, toc_docs

pytestmark = pytest.mark.build

HEADER = (ROOT / "book" / "_template.md").read_text().split("---\n", 2)[1]
JUPYTEXT = f"---\n{HEADER}---\n"


def page(title: str, *cells: str, header: bool = True) -> str:
    """A MyST page: a title and code cells (see ``cell``)."""
    return (JUPYTEXT if header else "") + f"# {title}\n\n" + "".join(cells)


def cell(source: str, tags: str = "") -> str:
    meta = f":tags: [{tags}]\n" if tags else ""
    return f"```{{code-cell}} ipython3\n{meta}{textwrap.dedent(source).strip()}\n```\n\n"


def failure(build) -> str:
    return f"exit {build.returncode} after {build.seconds:.0f} s; log tail:\n{build.log[-4000:]}"


# --- the whole book ----------------------------------------------------------------


def test_whole_book_builds_from_scratch(built_book):
    assert built_book.returncode == 0, failure(built_book)
    assert "build succeeded" in built_book.log


@pytest.mark.parametrize("doc", toc_docs())
def test_every_toc_page_has_html(built_book, doc):
    html = built_book.html / f"{doc}.html"
    assert html.is_file(), f"{doc} is in _toc.yml but {html.name} was not built"


@pytest.mark.parametrize("chapter", [c.stem for c in chapters()])
def test_every_chapter_executed_and_shows_its_checks(built_book, chapter):
    text = (built_book.html / "book" / f"{chapter}.html").read_text()
    sources = text.count('class="cell_input')
    outputs = text.count('class="cell_output')
    assert sources and outputs, f"{chapter}: no executed outputs in the HTML"
    assert 'class="grad-check"' in text, f"{chapter}: no gradient-check table in the HTML"
    runs = json.loads((built_book.root / "_build" / "execution.json").read_text())
    assert runs[f"book/{chapter}"]["succeeded"], runs[f"book/{chapter}"]
    assert runs[f"book/{chapter}"]["runtime"] > 0


def _records(notebook: dict) -> list[dict]:
    return [
        output["metadata"]["byhand"]
        for cell in notebook["cells"]
        if cell["cell_type"] == "code"
        for output in cell["outputs"]
        if "byhand" in output.get("metadata", {})
    ]


@pytest.mark.parametrize("doc", toc_docs())
def test_the_page_badge_counts_the_checks_of_its_own_build(built_book, doc):
    """The line under each title: its numbers are the records byhand left in the page's
    executed notebook, and its PyTorch version is the one that ran."""
    html = (built_book.html / f"{doc}.html").read_text()
    executed = built_book.root / "_build" / "jupyter_execute" / f"{doc}.ipynb"
    records = _records(json.loads(executed.read_text())) if executed.is_file() else []
    badge = re.search(r'<p class="byhand-badge">(.*?)</p>', html, re.S)
    if not records:
        assert badge is None, f"{doc} checks nothing but shows {badge[0]}"
        return
    assert badge, f"{doc} has {len(records)} check records but no badge under its title"
    assert re.search(r'</h1>\s*<p class="byhand-badge">', html), (
        "the badge is not right under the title"
    )
    text = re.sub(r"<[^>]+>", "", badge[1])
    autograd = sum(
        len(r["quantities"])
        for r in records
        if r["kind"] == "check" and r["reference"] == "autograd"
    )
    claims = sum(len(r["quantities"]) for r in records if r["kind"] == "claim")
    if autograd:
        assert re.search(rf"\b{autograd} gradients? checked against autograd", text), text
    if claims:
        assert re.search(rf"\b{claims} statements? of the text asserted", text), text
    versions = {r["torch"].split("+")[0] for r in records}
    assert all(f"PyTorch {v}" in text for v in versions), text


def test_every_chapter_is_downloadable_as_executed_notebook(built_book):
    for chapter in chapters():
        notebook = built_book.html / "_sources" / "book" / f"{chapter.stem}.ipynb"
        data = json.loads(notebook.read_text())
        code = [c for c in data["cells"] if c["cell_type"] == "code"]
        assert code and any(c["outputs"] for c in code), f"{notebook.name} has no outputs"


# --- a wrong gradient fails the build, naming chapter and quantity -------------------

WRONG = page(
    "A chapter with one wrong gradient",
    cell(
        """
    import torch
    from byhand import check, start_chapter
    start_chapter("9 · Broken on purpose")
    X = torch.randn(5, 3)                            # (N, n_in)
    W = torch.randn(3, 2, requires_grad=True)        # (n_in, n_out)
    Y = X @ W                                        # (N, n_out)
    Y.pow(2).mean().backward()
    G = 2 * Y.detach() / Y.numel()                   # dL/dY
    """
    ),
    cell('check({"dL/dW": (X.t() @ G * 1.001, W.grad)})'),
)


def test_wrong_gradient_fails_the_build_naming_chapter_and_quantity(tmp_path):
    build = run_build(mini_book(tmp_path, {"09-broken": WRONG}))
    assert build.returncode != 0, failure(build)
    assert "BUILD FAILED" in build.log
    summary = re.search(r"chapter\(s\) failed to execute:\n\s+(.*)", build.log)
    assert summary, failure(build)
    line = summary.group(1)
    assert line.startswith("book/09-broken.md: GradientMismatch: [9 · Broken on purpose] dL/dW")
    assert "largest |difference|" in line and "at index" in line
    # the traceback is in the log too (execute.show_tb), and saved as a report
    assert "Traceback (most recent call last)" in build.log
    assert (tmp_path / "_build" / "html" / "reports" / "book" / "09-broken.err.log").is_file()


def test_a_cell_over_the_timeout_fails_the_build(tmp_path):
    text = page(
        "A slow cell",
        cell("import time\nfrom byhand import claim, start_chapter\nstart_chapter('9 · Slow')"),
        cell("time.sleep(30)\nclaim('a cell can run for 30 s', True)"),
    )
    book = mini_book(tmp_path, {"09-slow": text}, {"timeout: 120": "timeout: 2"})
    build = run_build(book)
    assert build.returncode != 0, failure(build)
    assert "CellTimeoutError" in build.log or "timed out" in build.log
    assert "book/09-slow.md:" in build.log


def test_rebuilding_after_breaking_a_gradient_fails(tmp_path):
    """No cache or incremental build may report success over a failing cell."""
    good = WRONG.replace(" * 1.001", "")
    book = mini_book(tmp_path, {"09-broken": good})
    first = run_build(book)
    assert first.returncode == 0, failure(first)
    (book / "book" / "09-broken.md").write_text(WRONG)
    second = run_build(book)
    assert second.returncode != 0, failure(second)
    assert "[9 · Broken on purpose] dL/dW" in second.log
