"""The small books the tests build: two books of several pages instead of a build per scenario.

A build pays a fixed cost (Sphinx, the theme, writing every page) before its pages run, so
the scenarios that need a real build share two books, each built once per session
(``conftest.failing_book`` and ``conftest.passing_book``), and each test asserts its own
page's outcome in them:

* the **failing book**, built the live preview's way (no ``-W``: the guard must fail it
  on its own) as GitHub Actions would (``GITHUB_ACTIONS``, ``GITHUB_STEP_SUMMARY``): a
  wrong gradient, a wrong gradient in a function another cell calls, a false claim, a
  cell over the timeout (each stops its page, so each has one), and one page of run-time
  doors (demonstrations that raise the wrong type or nothing, a check that never runs,
  beside demonstrations that are fine): each failure with its own error line, annotation
  and summary row. (Every page that runs costs a kernel and torch's import.)
* the **passing book**, built strictly with an empty matplotlib cache (a new machine),
  then three times by the live preview (everything, nothing, the one page edited), then
  strictly again after a gradient was broken (no cache may hide it). Two pages run code:
  each build pays a kernel (and torch's import) per page that runs.

Each builder is a function of a folder, so that a test can also build a book of its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

from build_book import copy_book

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = (ROOT / "book" / "_template.md").read_text()
HEADER = TEMPLATE.split("---\n", 2)[1]
START = "import torch\nfrom byhand import check, claim, start_chapter\nstart_chapter('9 · Doors')"


def page(title: str, *cells: str, front: str = "") -> str:
    """A MyST page with the jupytext header: a title and code cells (see ``code``)."""
    return f"---\n{HEADER}{front}---\n# {title}\n\n" + "".join(cells)


def code(source: str, options: str = "") -> str:
    """A code cell; ``options``: its option lines (``:tags: [...]\\n``)."""
    return f"```{{code-cell}} ipython3\n{options}{textwrap.dedent(source).strip()}\n```\n\n"


@dataclass
class Build:
    root: Path
    returncode: int
    log: str
    seconds: float

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"


def mini_book(
    dest: Path, pages: dict[str, str], config_edits: dict[str, str] | None = None
) -> Path:
    """A copy of the book whose only pages are the intro and ``pages`` ({stem: MyST text}).

    ``config_edits`` replaces text in the copy's ``_config.yml`` (e.g. a shorter timeout).
    """
    copy_book(dest)
    for old in (dest / "book").glob("*.md"):
        if not old.name.startswith("_"):
            old.unlink()
    # the real intro links to every chapter; a mini book has other pages
    (dest / "book" / "intro.md").write_text("# A small book for a test\n")
    for stem, text in pages.items():
        (dest / "book" / f"{stem}.md").write_text(text)
    entries = "".join(f"  - file: book/{stem}\n" for stem in pages)
    (dest / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}")
    config = dest / "_config.yml"
    text = config.read_text()
    for old, new in (config_edits or {}).items():
        assert old in text, f"{old!r} is not in _config.yml"
        text = text.replace(old, new)
    config.write_text(text)
    return dest


def _run(args: list[str], env: dict | None = None, timeout: float = 1200) -> Build:
    root = Path(args[args.index("--root") + 1] if "--root" in args else args[1])
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", **(env or {})},
    )
    return Build(root, proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start)


def run_build(root: Path, timeout: float = 1200, jobs: int | None = None, env=None) -> Build:
    """Build the book at ``root`` with the script ``make book`` runs (strict, from clean).

    ``jobs`` defaults to the script's own default; a book with one page to run is best
    built with ``jobs=1``: a second Sphinx worker would only cost a fork."""
    args = [str(root / "scripts" / "build_book.py"), str(root)]
    return _run(args + (["--jobs", str(jobs)] if jobs else []), env, timeout)


def preview_build(root: Path, env=None, timeout: float = 1200) -> Build:
    """Build the book at ``root`` once the live preview's way: incrementally, without -W."""
    args = [str(root / "scripts" / "preview.py"), "--root", str(root), "--build-only"]
    return _run(args, env, timeout)


def executed(log: str) -> list[str]:
    """The pages a build's log says it executed."""
    return sorted(Path(p).stem for p in re.findall(r"(\S+)\.md: Executed notebook", log))


# GitHub Actions' workflow command for an error, as the build prints it (guard_report.py)
ANNOTATION = re.compile(
    r"^::error file=(?P<file>[^,:]+)(?:,line=(?P<line>\d+))?(?:,title=(?P<title>[^:]*))?"
    r"::(?P<message>.*)$",
    re.M,
)


def annotations(log: str) -> dict[str, list[tuple[int | None, str]]]:
    """Every ``::error`` annotation in a build's log: {file: [(line, message), ...]}."""
    found: dict[str, list[tuple[int | None, str]]] = {}
    for m in ANNOTATION.finditer(log):
        line = int(m["line"]) if m["line"] else None
        found.setdefault(m["file"], []).append((line, m["message"]))
    return found


def line_of(text: str, needle: str) -> int:
    """The 1-based line of ``text`` on which ``needle`` (which occurs once) is."""
    assert text.count(needle) == 1, f"{needle!r} occurs {text.count(needle)} times"
    return text[: text.index(needle)].count("\n") + 1


# --- the failing book ----------------------------------------------------------------------

WRONG = page(
    "A chapter with one wrong gradient",
    code(
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
    code('check({"dL/dW": (X.t() @ G * 1.001, W.grad)})'),
)
GOOD = WRONG.replace(" * 1.001", "")
# The failing check is in a function cell 2 defines; cell 3 calls it. The error is on
# the line of the check, in cell 2, where the reader must look.
DEEP = page(
    "A wrong gradient in a function",
    code(
        """
    import torch
    from byhand import check, start_chapter
    start_chapter("10 · Deep")
    X = torch.randn(5, 3)                            # (N, n_in)
    W = torch.randn(3, 2, requires_grad=True)        # (n_in, n_out)
    (X @ W).pow(2).mean().backward()
    """
    ),
    code(
        """
    def verify(G):
        W_g = X.t() @ G                              # dL/dW, (n_in, n_out)
        check({"dL/dW (deep)": (W_g, W.grad)})
    """
    ),
    code("verify(2 * (X @ W).detach() / 10 * 1.001)"),
)
FALSE_CLAIM = page(
    "A false claim",
    code(START.replace("9 · Doors", "11 · Claims")),
    code("claim('a sum of three ones is four', torch.ones(3).sum() == 4)"),
)
SLOW = page(
    "A slow cell",
    code("import time\nfrom byhand import claim, start_chapter\nstart_chapter('12 · Slow')"),
    code("time.sleep(600)\nclaim('a cell can run for ten minutes', time.time() > 0)"),
)
SLOW_TIMEOUT = 20  # seconds: the book's timeout, far above what its other cells need
GOOD_CELL = code(
    "x = torch.ones(3)\ncheck({'dL/dx': (x * 2, x + x), 'dL/dy': (x, x * 1.0)})\n"
    "claim('ones are ones', torch.equal(x, torch.ones(3)))"
)
# Doors a page could use that only the run shows (tests/test_doors.py asserts them): cells
# that do not stop the page, so they share one, each found on its own line.
RUN_TIME_DOORS = {
    "a NameError for a demonstration": code("undefined_name", ":tags: [raises-exception]\n"),
    "an AssertionError not declared": code(
        "assert torch.equal(torch.ones(2), torch.zeros(2))", ":tags: [raises-exception]\n"
    ),
    "a demonstration that does not raise": code(
        "check({'dL/dx': (torch.ones(2), torch.ones(2) * 1.0)})", ":tags: [raises-exception]\n"
    ),
    "a declared AssertionError (fine)": code(
        "assert torch.equal(torch.ones(1), torch.ones(()))",
        "---\ntags: [raises-exception]\nraises: AssertionError\n---\n",
    ),
    "a demonstration failing its check (fine)": code(
        "check({'dL/dx': (torch.zeros(2), torch.ones(2))})", ":tags: [raises-exception]\n"
    ),
    "a check nobody calls": code(
        "def verify():\n    check({'dL/dx': (torch.ones(2), torch.full((2,), 1.0))})"
    ),
}
DOORS = page("13-doors", code(START), *RUN_TIME_DOORS.values(), GOOD_CELL)
FAILING_PAGES = {
    "09-broken": WRONG,
    "10-deep": DEEP,
    "11-false-claim": FALSE_CLAIM,
    "12-slow": SLOW,
    "13-doors": DOORS,
}


@dataclass
class FailingBook:
    build: Build
    summary: str  # what the build wrote to GITHUB_STEP_SUMMARY

    @property
    def out(self) -> Path:
        return self.build.root / "_build" / "preview"


def build_failing_book(dest: Path) -> FailingBook:
    root = mini_book(dest, FAILING_PAGES, {"timeout: 120": f"timeout: {SLOW_TIMEOUT}"})
    summary = dest / "job-summary.md"
    env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)}
    build = preview_build(root, env)
    return FailingBook(build, summary.read_text() if summary.is_file() else "")


# --- the passing book ----------------------------------------------------------------------

# A page that plots, run with MPLCONFIGDIR an empty folder: matplotlib has never run here.
# If the kernel were the first to import matplotlib it would scan the fonts and, when that
# takes over 5 s, say so on stderr, which fails the strict build. (Pages may not import os,
# so the page cannot look for the cache itself; the tests check that the build or the
# runner left it there, and that the page passed.)
COLD_CACHE_PAGE = page(
    "Plots on a new machine",
    code(
        """
    from byhand import claim, start_chapter

    start_chapter("Plots on a new machine")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 2), facecolor="white")
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    plt.show()
    claim("the figure has one set of axes", len(fig.axes) == 1)
    """
    ),
)
PREVIEW_PAGE = r"""# A preview page

Inline $X^\top G$ and a display formula:

$$
\frac{\partial L}{\partial W} = X^\top G
$$

:::{dropdown} Going further
Folded text with $W$.
:::

```python
W_g = X.t() @ G  # (n_in, n_out): a code block that fits at 1280 px without scrolling
```
"""
PASSING_PAGES = {
    "01-plots": COLD_CACHE_PAGE,  # the page the test edits between two preview builds
    "02-good": GOOD,  # the page that gets its wrong gradient back before the last build
    "preview-page": PREVIEW_PAGE,
}
EDITED_PAGE, BROKEN_PAGE = "01-plots", "02-good"
EDITED = "A sentence added by the test."


@dataclass
class PassingBook:
    root: Path
    mpl: Path  # the matplotlib cache folder the builds started with, empty
    book: Build  # make book's build
    book_html: Path  # a copy of its HTML (the rebuild below replaces _build/html)
    book_runs: dict  # its _build/execution.json
    previews: list[Build]  # everything, nothing, the edited page
    first_preview_html: Path  # a copy of the first preview's HTML, as a fresh preview shows
    rebuilt: Build  # make book's build after 02-good got its wrong gradient back

    @property
    def preview_html(self) -> Path:
        return self.root / "_build" / "preview" / "html"


def build_passing_book(dest: Path) -> PassingBook:
    root = mini_book(dest / "book", PASSING_PAGES)
    mpl = dest / "mpl"
    mpl.mkdir()
    env = {"MPLCONFIGDIR": str(mpl)}
    book = run_build(root, env=env)
    book_html = dest / "book-html"
    if book.html.is_dir():
        shutil.copytree(book.html, book_html)
    runs = root / "_build" / "execution.json"
    book_runs = json.loads(runs.read_text()) if runs.is_file() else {}
    previews = [preview_build(root, env)]
    first_preview_html = dest / "preview-html"
    if (root / "_build" / "preview" / "html").is_dir():
        shutil.copytree(root / "_build" / "preview" / "html", first_preview_html)
    previews.append(preview_build(root, env))
    edited = root / "book" / f"{EDITED_PAGE}.md"
    text = edited.read_text()
    heading = re.search(r"^# .*\n", text, re.M).end()
    edited.write_text(text[:heading] + f"\n{EDITED}\n" + text[heading:])
    previews.append(preview_build(root, env))
    (root / "book" / f"{BROKEN_PAGE}.md").write_text(WRONG)
    rebuilt = run_build(root, env=env)
    return PassingBook(root, mpl, book, book_html, book_runs, previews, first_preview_html, rebuilt)
