"""``make chapter`` (scripts/new_chapter.py): a new chapter, filled in the way the template
asks, passes ``make check`` and ``make book`` on the first try; the scaffold numbers it,
places it after the last chapter and writes its mutations; and ``make preview``
re-executes only the chapter that was edited.

Every build here runs on a copy of the book (tests/conftest.py). The end-to-end test runs
``make`` itself in a copy of the whole repository, as a contributor would, and builds the
book with every other page made a line of prose (the whole book is built, and every
chapter executed, once per session by ``built_book``)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

import books
import new_chapter as new_chapter_script
import preview
from books import executed
from conftest import ROOT, chapters, copy_book, repo_copy, stub_pages, toc_docs

NEXT = max(int(c.name[:2]) for c in chapters()) + 1  # the number a new chapter gets
NAME = f"{NEXT:02d}-weight-decay"
TITLE = f"{NEXT} · Weight decay"


def new_chapter(root: Path, *args: str) -> SimpleNamespace:
    """``python scripts/new_chapter.py ARGS --root ROOT``, in this process (the end-to-end
    test below runs it as ``make chapter``): its exit status, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = new_chapter_script.main([*args, "--root", str(root)])
    return SimpleNamespace(returncode=status, stdout=out.getvalue(), stderr=err.getvalue())


@pytest.fixture
def book(tmp_path) -> Path:
    """The book's sources, and the mutations' folder with its template."""
    root = copy_book(tmp_path / "book")
    (root / "tests" / "mutations").mkdir(parents=True)
    template = (ROOT / "tests" / "mutations" / "_template.yml").read_text()
    (root / "tests" / "mutations" / "_template.yml").write_text(template)
    return root


def test_a_new_chapter_gets_the_next_number_and_its_place_after_the_last_chapter(book):
    before = (book / "_toc.yml").read_text()
    result = new_chapter(book, "weight-decay", "--title", "Weight decay")
    assert result.returncode == 0, result.stderr
    page = (book / "book" / f"{NAME}.md").read_text()
    assert f"# {TITLE}\n" in page and f'start_chapter("{TITLE}")' in page
    assert "{{" not in page
    docs = toc_docs(book / "_toc.yml")
    last = f"book/{chapters()[-1].stem}"
    assert docs.index(f"book/{NAME}") == docs.index(last) + 1, docs  # not after the reference
    assert f"after {last}" in result.stdout
    # exactly one line inserted, in the part of the last chapter: comments and layout kept
    after = (book / "_toc.yml").read_text()
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert [line.strip() for line in added] == [f"- file: book/{NAME}"]
    assert len(after.splitlines()) == len(before.splitlines()) + 1
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert all(c in after.splitlines() for c in comments)
    parts = yaml.safe_load(after)["parts"]
    part = next(p for p in parts if {"file": last} in p["chapters"])
    assert {"file": f"book/{NAME}"} in part["chapters"]
    # its broken-gradient tests: every find occurs once in the page
    mutations = yaml.safe_load((book / "tests" / "mutations" / f"{NAME}.yml").read_text())
    assert [m["quantity"] for m in mutations] == ["dL/dW", "dL/db"]
    assert all(page.count(m["find"]) == 1 for m in mutations)
    assert f"book/{NAME}.md" in (book / "tests" / "mutations" / f"{NAME}.yml").read_text()


def test_title_defaults_to_the_name(book):
    assert new_chapter(book, "learning-rate-warmup").returncode == 0
    page = (book / "book" / f"{NEXT:02d}-learning-rate-warmup.md").read_text()
    assert f"# {NEXT} · Learning rate warmup\n" in page


def test_a_number_in_use_is_refused_and_a_free_one_keeps_the_order(book):
    taken = chapters()[0].stem  # e.g. 01-chain-rule
    result = new_chapter(book, f"{taken[:2]}-other", "--title", "Other")
    assert result.returncode == 1
    assert f"chapter {taken[:2]} exists already (book/{taken}.md)" in result.stderr
    assert f"The next free one is {NEXT:02d}" in result.stderr
    assert not list((book / "book").glob(f"{taken[:2]}-other*"))
    # a free number below the last one goes after the chapter numbered just below it
    gap = chapters()[1]
    (book / "book" / f"{gap.stem}.md").unlink()
    toc = re.sub(rf"^ *- file: book/{gap.stem}\n", "", (book / "_toc.yml").read_text(), flags=re.M)
    (book / "_toc.yml").write_text(toc)
    assert new_chapter(book, f"{gap.name[:2]}-filler").returncode == 0
    docs = toc_docs(book / "_toc.yml")
    assert docs.index(f"book/{gap.name[:2]}-filler") == docs.index(f"book/{taken}") + 1


@pytest.mark.parametrize(
    "name", ["7-topic", "07_topic", "07-Topic", "07-", "Topic", "07-topic/../x", "../07-x", ""]
)
def test_bad_names_are_refused(book, name):
    result = new_chapter(book, name, "--title", "T")
    assert result.returncode == 1
    assert "lower-case words joined by dashes" in result.stderr
    assert sorted(p.name for p in (book / "book").glob("*.md")) == sorted(
        p.name for p in (ROOT / "book").glob("*.md")
    )


def test_existing_files_are_never_overwritten(book):
    assert new_chapter(book, NAME).returncode == 0
    page, toc = (book / "book" / f"{NAME}.md"), (book / "_toc.yml").read_text()
    page.write_text("mine")
    again = new_chapter(book, NAME)
    assert again.returncode == 1 and "exists already" in again.stderr
    assert page.read_text() == "mine" and (book / "_toc.yml").read_text() == toc
    # a mutations file of the same name, left from an earlier attempt, is kept too
    (book / "tests" / "mutations" / f"{NEXT + 1:02d}-other.yml").write_text("mine")
    kept = new_chapter(book, "other")
    assert kept.returncode == 1 and f"{NEXT + 1:02d}-other.yml already exists" in kept.stderr
    assert not (book / "book" / f"{NEXT + 1:02d}-other.md").exists()


def test_titles_that_would_break_the_code_are_refused(book):
    result = new_chapter(book, NAME, "--title", 'say "hi"')
    assert result.returncode == 1 and not (book / "book" / f"{NAME}.md").exists()
    long = "A title much too long for the code line of the template that names the chapter"
    result = new_chapter(book, NAME, "--title", long)
    assert result.returncode == 1 and "is too long" in result.stderr and "fits 90" in result.stderr
    assert new_chapter(book, NAME, "--title", long[:60]).returncode == 0


# Where the documentation shows `make chapter` and a new chapter's files.
DOCS = [
    "README.md",
    "CONTRIBUTING.md",
    "Makefile",
    ".github/ISSUE_TEMPLATE/new-chapter.yml",
    "scripts/new_chapter.py",
    "book/_template.md",
    "tests/mutations/_template.yml",
]


def test_examples_of_a_new_chapter_use_no_number_a_chapter_has():
    """An example such as ``book/13-weight-decay.md`` names a chapter that does not exist:
    its number must be free, or a contributor copying it meets an existing chapter."""
    used = {c.name[:2]: c.stem for c in chapters()}
    found = []
    for name in DOCS:
        for n, line in enumerate((ROOT / name).read_text().splitlines(), 1):
            for match in re.finditer(
                r"(?<![\w/.-])(?:book/|mutations/)?(\d\d)-([a-z][\w-]*)", line
            ):
                stem = f"{match[1]}-{match[2]}"
                if match[1] in used and not used[match[1]].startswith(stem):
                    found.append(f"{name}:{n}: {stem} (chapter {match[1]} is {used[match[1]]})")
    assert not found, "examples that collide with a chapter:\n" + "\n".join(found)


# --- end to end: what a contributor does, with make ---------------------------------------

# A contributor's one-page chapter ("tanh, backwards"), written into the scaffold the way
# the template asks: its own text and code after the first cell, its own mutations.
FILLED = r'''
A layer with a smooth activation, $H = \tanh(XW + b)$: its backward pass is the linear
layer's, with ReLU's mask replaced by tanh's slope.

## One element first

Each output goes through tanh on its own: $h_{nj} = \tanh(y_{nj})$, so
$\partial h_{nj} / \partial y_{nj} = 1 - h_{nj}^2$, and $G$ is the upstream gradient times
that slope, element by element.

```{code-cell} ipython3
N, n_in, n_out = 4, 3, 2
X = torch.randn(N, n_in, requires_grad=True)      # (N, n_in)
W = torch.randn(n_in, n_out, requires_grad=True)  # (n_in, n_out)
b = torch.randn(n_out, requires_grad=True)        # (n_out,)
T = torch.randn(N, n_out)                         # (N, n_out)
Y = X @ W + b                                     # (N, n_out)
Y.retain_grad()
H = torch.tanh(Y)                                 # (N, n_out)
L = (H - T).pow(2).mean()                         # ()
L.backward()
```

```{code-cell} ipython3
H_g = 2 * (H.detach() - T) / H.numel()  # dL/dH, (N, n_out)
G = H_g * (1 - H.detach() ** 2)         # dL/dY, (N, n_out)
check({"dL/dY": (G, Y.grad)})
```

## Then the layer, as in the linear chapters

```{code-cell} ipython3
W_g = X.t() @ G  # dL/dW, (n_in, n_out)
b_g = G.sum(0)   # dL/db, (n_out,)
check({"dL/dW": (W_g, W.grad), "dL/db": (b_g, b.grad)})
```

## Exercises

### Exercise 1: tanh's slope from exponentials

Write $1 - \tanh(y)^2$ with `torch.exp` only.

```{code-cell} ipython3
def tanh_slope(Y):
    """d tanh(y)/dy for every element of Y (N, n_out); returns (N, n_out)."""
    return torch.ones_like(Y)  # your code here
```

```{code-cell} ipython3
---
tags: [hide-input, solution]
mystnb:
  code_prompt_show: "Show solution"
  code_prompt_hide: "Hide solution"
---
def tanh_slope(Y):
    return 4 / (torch.exp(Y) + torch.exp(-Y)) ** 2
```

```{code-cell} ipython3
:tags: [exercise-check]
check({"dL/dY": (H_g * tanh_slope(Y.detach()), Y.grad)})
```

### Exercise 2: the input's gradient

Write `dL/dX` from `G` and `W`.

```{code-cell} ipython3
def input_grad(G, W):
    """dL/dX from dL/dY (N, n_out) and W (n_in, n_out); returns (N, n_in)."""
    return torch.zeros(G.shape[0], W.shape[0])  # your code here
```

```{code-cell} ipython3
---
tags: [hide-input, solution]
mystnb:
  code_prompt_show: "Show solution"
  code_prompt_hide: "Hide solution"
---
def input_grad(G, W):
    return G @ W.detach().t()
```

```{code-cell} ipython3
:tags: [exercise-check]
check({"dL/dX": (input_grad(G, W), X.grad)})
```
'''

FILLED_MUTATIONS = """\
- find: "G = H_g * (1 - H.detach() ** 2)"
  replace: "G = H_g * (1 - H.detach())"
  quantity: "dL/dY"
- find: "H_g = 2 * (H.detach() - T) / H.numel()"
  replace: "H_g = 2 * (H.detach() - T) / len(H)"
  quantity: "dL/dY"
- find: "W_g = X.t() @ G "
  replace: "W_g = X.t() @ G * 1.001 "
  quantity: "dL/dW"
- find: "b_g = G.sum(0)"
  replace: "b_g = G.mean(0)"
  quantity: "dL/db"
"""


def make(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "PYTEST_"))}
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(root), *args],
        capture_output=True,
        text=True,
        timeout=900,
        env={**env, "NO_COLOR": "1"},
    )


@pytest.fixture
def contributor(tmp_path) -> Path:
    for stamp in (".book-deps", ".test-deps"):
        if not (Path(sys.prefix) / stamp).is_file():
            (pytest.fail if os.environ.get("CI") else pytest.skip)(
                f"this environment ({sys.prefix}) was not installed by make: no {stamp}"
            )
    return repo_copy(tmp_path / "repo")


@pytest.mark.build
def test_a_scaffolded_chapter_filled_in_passes_make_check_and_make_book(contributor):
    """The contributor's loop, by hand: ``make chapter``, write the chapter the way the
    template asks, ``make check CHAPTER=...``, ``make book``: each passes the first time."""
    repo = contributor
    made = make(repo, "chapter", "NAME=tanh-backwards", "TITLE=tanh, backwards")
    assert made.returncode == 0, made.stdout + made.stderr
    name = f"{NEXT:02d}-tanh-backwards"
    page = repo / "book" / f"{name}.md"
    text = page.read_text()
    first_cell = text.index("```\n", text.index("```{code-cell}")) + len("```\n")
    page.write_text(text[:first_cell] + FILLED)
    spec = repo / "tests" / "mutations" / f"{name}.yml"
    comments = "".join(line for line in spec.read_text().splitlines(True) if line[0] == "#")
    spec.write_text(comments + FILLED_MUTATIONS)

    check = make(repo, "check", f"CHAPTER=book/{name}.md", "PYTEST_ARGS=tests/test_repo.py -n 0")
    out = check.stdout + check.stderr
    assert check.returncode == 0, out[-5000:]
    assert "check: all passed" in out
    assert "the page: passes (5 check, 0 fd_check, 0 claim passed)" in out, out[-3000:]
    assert "mutations: 4 of 4 caught" in out and "every stub fails its check" in out

    stub_pages(repo, keep=(f"book/{name}",))
    book = make(repo, "book", "JOBS=1")
    log = book.stdout + book.stderr
    assert book.returncode == 0, log[-5000:]
    assert f"book/{name}.md: Executed notebook" in log  # it really ran
    html = (repo / "_build" / "html" / "book" / f"{name}.html").read_text()
    assert f"{NEXT} · tanh, backwards" in html
    assert "5 gradients checked against autograd" in html


def test_the_scaffold_template_is_what_a_contributor_starts_from():
    """The template shows what the book requires of a chapter (two exercises, each a stub,
    a hidden solution and a check), and each of its manual gradients has a mutation."""
    template = (ROOT / "book" / "_template.md").read_text()
    assert template.count("tags: [hide-input, solution]") == 2
    assert template.count(":tags: [exercise-check]") == 2
    mutations = yaml.safe_load((ROOT / "tests" / "mutations" / "_template.yml").read_text())
    assert all(template.count(m["find"]) == 1 for m in mutations)


# --- the live preview ----------------------------------------------------------------------


def test_preview_config_loads_the_book_extensions(book):
    conf = preview.write_conf(book).read_text()
    assert "book/_ext" in conf and "'guard'" in conf
    assert "nb_execution_mode = 'force'" in conf
    assert "external_toc_path = '_toc.yml'" in conf


@pytest.mark.build
def test_preview_re_executes_only_the_edited_chapter(passing_book):
    """tests/books.py's passing book, built three times by the preview: everything, then
    nothing (nothing changed), then only the chapter the test edited."""
    first, again, edited = passing_book.previews
    assert first.returncode == 0, first.log[-3000:]
    assert executed(first.log) == [books.EDITED_PAGE, books.BROKEN_PAGE]
    assert (passing_book.preview_html / "book" / f"{books.BROKEN_PAGE}.html").is_file()
    assert again.returncode == 0 and executed(again.log) == []
    assert edited.returncode == 0, edited.log[-3000:]
    assert executed(edited.log) == [books.EDITED_PAGE]
    html = (passing_book.preview_html / "book" / f"{books.EDITED_PAGE}.html").read_text()
    assert books.EDITED in html
