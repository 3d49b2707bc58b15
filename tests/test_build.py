"""The build is the proof: the whole book builds from scratch, and bad input stops it.

The full build runs once per session (``built_book`` in conftest.py). The failures a
page can cause are each a page of one small book (tests/books.py's failing book), built
once, and each test asserts its own page's error line and where it is reported; the
rebuild after a gradient broke uses the passing book. What a page may not do (structure errors, settings and
code that would switch a check off, demonstrations that fail the wrong way) is
tests/test_doors.py's.
"""

from __future__ import annotations

import json
import re

import pytest

import books
from conftest import chapters, toc_docs

pytestmark = pytest.mark.build


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


def test_the_site_keeps_each_chapter_as_an_executed_notebook(built_book):
    """myst-nb's copy of each chapter in the site's _sources, with the outputs the build
    computed. (Not what the download button gives a reader: that is the reader's notebook,
    tests/test_notebooks.py.)"""
    for chapter in chapters():
        notebook = built_book.html / "_sources" / "book" / f"{chapter.stem}.ipynb"
        data = json.loads(notebook.read_text())
        code = [c for c in data["cells"] if c["cell_type"] == "code"]
        assert code and any(c["outputs"] for c in code), f"{notebook.name} has no outputs"


# --- failures, each on its page's line, in the failing book (tests/books.py) ---------------


def failed_lines(log: str) -> list[str]:
    """The lines the build prints under "N chapter(s) failed to execute:"."""
    match = re.search(
        r"(\d+) chapter\(s\) failed to execute:\n((?:::error .*\n|\S+:\d*:? .*\n)+)", log
    )
    assert match, "no summary of the failed chapters in the log"
    return match.group(2).splitlines()


def test_a_wrong_gradient_fails_the_build_on_the_line_of_its_check(failing_book):
    """The failing check's page and line, as a GitHub annotation on the pull request's
    diff (the page's line, not the cell's), with the error line that names the chapter,
    the quantity and the difference."""
    build = failing_book.build
    assert build.returncode != 0, build.log[-3000:]
    found = books.annotations(build.log)
    line, message = found["book/09-broken.md"][0]
    assert line == books.line_of(books.WRONG, 'check({"dL/dW": (X.t() @ G * 1.001')
    assert message.startswith("GradientMismatch: [9 · Broken on purpose] dL/dW does not match")
    assert "largest |difference|" in message and "at index" in message
    assert any(
        line.startswith("::error file=book/09-broken.md,") for line in failed_lines(build.log)
    )
    # the traceback is in the log too (execute.show_tb), and saved as a report
    assert "Traceback (most recent call last)" in build.log
    assert (failing_book.out / "html" / "reports" / "book" / "09-broken.err.log").is_file()
    runs = json.loads((failing_book.out / "execution.json").read_text())
    assert runs["book/09-broken"]["error"] == message


def test_a_failing_call_in_a_function_is_found_where_it_is(failing_book):
    """A check in a function that cell 2 defines and cell 3 calls: the annotation is on the
    check's own line, in cell 2, where the formula must be fixed."""
    found = books.annotations(failing_book.build.log)
    line, message = found["book/10-deep.md"][0]
    assert line == books.line_of(books.DEEP, 'check({"dL/dW (deep)"')
    assert message.startswith("GradientMismatch: [10 · Deep] dL/dW (deep)")


def test_a_false_claim_fails_on_its_line(failing_book):
    found = books.annotations(failing_book.build.log)
    (line, message), *_ = found["book/11-false-claim.md"]
    assert line == books.line_of(books.FALSE_CLAIM, "claim('a sum of three ones is four'")
    assert message.startswith("FalseClaim: [11 · Claims] the book says: 'a sum of three ones")
    title = re.search(
        r"^::error file=book/11-false-claim\.md,line=\d+,title=(\w+)::",
        failing_book.build.log,
        re.M,
    )
    assert title and title[1] == "FalseClaim"


def test_a_cell_over_the_timeout_fails_the_build(failing_book):
    log = failing_book.build.log
    assert "CellTimeoutError" in log or "timed out" in log
    assert "book/12-slow.md" in books.annotations(log)


def test_the_job_summary_has_a_row_per_page_and_each_failure_on_its_line(failing_book):
    """What a pull request's run shows on its summary page (GITHUB_STEP_SUMMARY)."""
    summary = failing_book.summary
    rows = dict(re.findall(r"^\| `book/([\w-]+)\.md` \| (.*) \|$", summary, re.M))
    assert set(rows) == {"intro", *books.FAILING_PAGES}, rows
    assert rows["intro"] == "0 | 0 | 0 | no code"
    assert rows["09-broken"] == "0 | 0 | 0 | ❌ failed"
    # 3 checked (the silent demonstration's check passed), 1 claim, 2 demonstrations that
    # failed as they declare; refused for the guard's findings
    assert rows["13-doors"] == "3 | 1 | 2 | ❌ refused"
    failures = re.findall(r"^- `(book/[\w-]+\.md):?(\d*)`: (.*)$", summary, re.M)
    broken = books.line_of(books.WRONG, 'check({"dL/dW": (X.t() @ G * 1.001')
    assert ("book/09-broken.md", str(broken)) in {(f, n) for f, n, _ in failures}
    assert summary.startswith("## The book's build\n\n1 of 6 pages pass: ")


def test_rebuilding_after_breaking_a_gradient_fails(passing_book):
    """No cache or incremental build may report success over a failing cell. Outside
    GitHub Actions, the failing check's line is ``file:line: message``, as editors link it."""
    first, second = passing_book.book, passing_book.rebuilt
    assert first.returncode == 0, failure(first)
    assert second.returncode != 0, failure(second)
    assert "BUILD FAILED" in second.log
    line = books.line_of(books.WRONG, 'check({"dL/dW": (X.t() @ G * 1.001')
    assert (
        f"book/{books.BROKEN_PAGE}.md:{line}: GradientMismatch: [9 · Broken on purpose] dL/dW"
        in failed_lines(second.log)[0]
    )
    assert "::error" not in second.log
