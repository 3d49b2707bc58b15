"""The reader's notebooks (book/_ext/notebooks.py): every page with code runs outside the book.

* Without a build: the MyST converter on small pages (each form it converts, and an error
  naming the file and line for each it cannot), and the setup cell that brings byhand,
  run in a clean folder as a reader's runtime runs it.
* On the book the session builds once (``built_book``): every reader's notebook runs to its
  end in a clean temporary folder, in a kernel that provably has no byhand, myst-nb or
  jupytext; every exercise's stub fails its check with GradientMismatch and its solution
  then passes; every wrong-formula demonstration shows the same error as the book's page; no
  notebook shows raw MyST or a solution; every link, launch button and download names a file
  the build wrote; and Binder's configuration resolves to PyTorch's CPU wheel.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import nbformat
import pytest
import yaml
from nbclient import NotebookClient

import guard_lint
import notebooks
import pages
from conftest import ROOT

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
SITE = CONFIG["html"]["baseurl"].rstrip("/") + "/"
REPO = "/".join(CONFIG["repository"]["url"].rstrip("/").split("/")[-2:])
BRANCH = "notebooks"  # sphinx.config.reader_notebooks_branch's default
PAGES = notebooks.code_pages(ROOT, ROOT / "_toc.yml", guard_lint.md_config(ROOT))
BYHAND = (ROOT / "book" / "byhand.py").read_bytes()


# --- the converter, without a build --------------------------------------------------------


def small_site(**glue) -> notebooks.Site:
    return notebooks.Site(
        url="https://example.org/book/",
        titles={"book/01-a": "1 · A", "book/02-b": "2 · B", "book/glossary": "Glossary"},
        labels={"ch2-batch": ("book/02-b", "a-batch", "A batch")},
        terms={"jacobian": ("book/glossary", "term-Jacobian")},
        images={"imgs/x.svg": "_images/x.svg"},
        glue={"book/02-b": glue},
        srcdir=ROOT,
    )


def convert(text: str, **glue) -> tuple[str, list[str]]:
    conv = notebooks.Converter(small_site(**glue), "book/02-b", "book/02-b.md")
    return conv.markdown(text, 10), conv.problems


def test_roles_become_links_to_the_site_and_values():
    out, problems = convert(
        "(ch2-x)=\n## See {doc}`01-a` and {ref}`ch2-batch`\n\n"
        "A {term}`Jacobian <jacobian>` took {glue:text}`ms:.1f` ms, `{term}` stays code.",
        ms={"text/plain": "3.14159"},
    )
    assert not problems
    assert out == (
        "## See [1 · A](https://example.org/book/book/01-a.html) and "
        "[A batch](https://example.org/book/book/02-b.html#a-batch)\n\n"
        "A [Jacobian](https://example.org/book/book/glossary.html#term-Jacobian) took 3.1 ms, "
        "`{term}` stays code."
    )


def test_directives_become_quotes_sections_and_pictures():
    text = textwrap.dedent(
        """\
        ## A section

        :::{admonition} Coming from $X$
        :class: bridge
        One line, with {term}`Jacobian`.

        $$
        y = x
        $$
        :::

        :::{dropdown} Going further: more
        Tangent.
        :::

        ```{figure} ../imgs/x.svg
        :alt: A picture
        :name: fig-x
        Its caption.
        ```
        """
    )
    out, problems = convert(text)
    assert not problems
    assert "> **Coming from $X$**\n>\n> One line, with [Jacobian](" in out
    assert "> $$\n> y = x\n> $$" in out
    assert "### Going further: more\n\nTangent." in out
    assert "![A picture](https://example.org/book/_images/x.svg)\n\nIts caption." in out
    assert ":::" not in out and "{" not in out.replace("{term}", "")


@pytest.mark.parametrize(
    "text, message",
    [
        ("A {unknownrole}`x` here.", "book/02-b.md:10: unknown role {unknownrole}"),
        ("\n\n:::{tab-set}\nx\n:::", "book/02-b.md:12: unknown directive {tab-set}"),
        ("- item\n\n  :::{note}\n  x\n  :::", "book/02-b.md:12: a directive inside a list"),
        ("See [there](02-b.md).", "book/02-b.md:10: relative link or image '02-b.md'"),
        ("A {term}`Hessian`.", "book/02-b.md:10: unknown term 'Hessian'"),
        ("{glue:text}`missing`", "book/02-b.md:10: no glued value 'missing'"),
    ],
)
def test_what_cannot_be_converted_names_file_and_line(text, message):
    _, problems = convert(text)
    assert any(p.startswith(message) for p in problems), problems


def test_a_figure_cell_must_hold_only_the_figure():
    site = small_site()
    executed = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("from figures import paths_figure\nimport torch"),
            nbformat.v4.new_code_cell("x = 1\npaths_figure(x)"),
        ],
        metadata={"source_map": [3, 9]},
    )
    _, problems = notebooks.reader_notebook(executed, site, "book/02-b", BYHAND)
    assert "book/02-b.md:10: a cell that draws an interactive figure must hold only" in "\n".join(
        problems
    )


# --- the setup cell, as a reader's runtime runs it -----------------------------------------


def run_setup(folder: Path, byhand: bytes = BYHAND, pythonpath: str = "") -> str:
    """The setup cell, run by a clean Python in ``folder``; it prints where byhand came from."""
    code = notebooks.setup_source(byhand, glue=False, raises=False).replace("# @title", "#")
    code += "\nimport byhand\nprint('from', byhand.__file__)\n"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=folder, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.mark.parametrize("glue, raises", [(False, False), (True, True)])
def test_the_setup_cell_is_python(glue, raises):
    ast.parse(notebooks.setup_source(BYHAND, glue=glue, raises=raises))


def test_setup_writes_byhand_where_there_is_none(tmp_path):
    out = run_setup(tmp_path)
    assert (tmp_path / "byhand.py").read_bytes() == BYHAND
    assert f"from {tmp_path / 'byhand.py'}" in out


def test_setup_replaces_an_older_byhand_beside_the_notebook(tmp_path):
    (tmp_path / "byhand.py").write_text("OLD = True\n")
    out = run_setup(tmp_path)
    assert "another version: replaced" in out
    assert (tmp_path / "byhand.py").read_bytes() == BYHAND


def test_setup_uses_the_importable_byhand_when_it_is_the_same(tmp_path):
    elsewhere = tmp_path / "lib"
    elsewhere.mkdir()
    (elsewhere / "byhand.py").write_bytes(BYHAND)
    work = tmp_path / "work"
    work.mkdir()
    out = run_setup(work, pythonpath=str(elsewhere))
    assert f"from {elsewhere / 'byhand.py'}" in out and not (work / "byhand.py").exists()
    # and not when it is another version
    (elsewhere / "byhand.py").write_text("OLD = True\n")
    out = run_setup(work, pythonpath=str(elsewhere))
    assert f"from {work / 'byhand.py'}" in out


# --- the built notebooks: a reader's runtime ------------------------------------------------

# Installed in the kernel before anything runs (an IPython startup file): what the book's
# build has and a reader's runtime does not (myst-nb and its parser, jupytext, Jupyter Book,
# Sphinx, docutils, the test tools) cannot be imported. byhand and figures are in no folder
# on the kernel's path (a clean temporary folder, no PYTHONPATH). The first cell proves it.
# (Blocking every package torch, numpy, matplotlib and scikit-learn do not require breaks
# torch: it probes optional packages, e.g. hypothesis, with importlib.util.find_spec.)
ABSENT = (
    "myst_nb", "myst_parser", "jupytext", "jupyter_book", "sphinx", "docutils", "nbclient",
    "pytest", "playwright",
)  # fmt: skip
BLOCKER = f"""\
import sys


class ReaderRuntime:
    \"\"\"A reader's Jupyter has torch, numpy, matplotlib and scikit-learn, and not these.\"\"\"

    absent = {ABSENT!r}

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.absent:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)


sys.meta_path.insert(0, ReaderRuntime())
"""


PROOF = """\
import importlib.util, sys
assert importlib.util.find_spec("byhand") is None, importlib.util.find_spec("byhand")
for name in ("byhand", "figures", "myst_nb", "jupytext", "sphinx"):
    try:
        __import__(name)
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError(f"{name} can be imported")
import torch, numpy, matplotlib, sklearn  # and these can
print(sys.path)
"""


def kernel_env(tmp: Path) -> dict:
    startup = tmp / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-reader-runtime.py").write_text(BLOCKER)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONSTARTUP")}
    return {**env, "IPYTHONDIR": str(tmp / "ipython"), "MPLBACKEND": "agg"}


def error_of(cell) -> dict | None:
    return next((o for o in cell.get("outputs", []) if o.output_type == "error"), None)


ANSI = re.compile(r"\x1b\[[0-9;]*m")


def shown_as(error) -> str:
    """What a reader sees of an error output (colours aside; cell numbers differ)."""
    return re.sub(r"In\[\d+\]", "In[ ]", ANSI.sub("", "\n".join(error.traceback)))


def assert_readers_traceback(error, name: str) -> None:
    """byhand's failing checks show the reader's line and the message: no byhand frame, no
    file path (book/byhand.py's ``_render_traceback_``), in a reader's Jupyter too."""
    text = shown_as(error)
    assert f"{error.ename}: " in text, f"{name}: {text}"
    before = text.split(f"{error.ename}: ")[0]
    assert "byhand" not in before and not re.search(r"\.py\b", before), (
        f"{name}: the traceback shows byhand's frames or a path:\n{text}"
    )


def run_extra(client: NotebookClient, nb, source: str, tags=()):
    """Run a cell that is not the notebook's, in its kernel (nbclient stores an executed
    cell at its index, so it runs at an index of its own, then leaves)."""
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)})
    nb.cells.append(cell)
    try:
        client.execute_cell(cell, len(nb.cells) - 1)
    finally:
        nb.cells.pop()
    return cell


def run_as_a_reader(notebook_path: Path, tmp: Path) -> dict:
    """Run a reader's notebook as a reader would, in ``tmp/work`` (which holds nothing but
    the notebook): every cell in order, and before each exercise's solution, its check
    with the stub. Returns what the tests read."""
    work = tmp / "work"
    work.mkdir()
    shutil.copy(notebook_path, work)
    nb = nbformat.read(work / notebook_path.name, as_version=4)
    client = NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}
    )
    stub_errors, path = [], None
    with client.setup_kernel(env=kernel_env(tmp), cwd=str(work)):
        proof = run_extra(client, nb, PROOF)
        path = "".join(o.get("text", "") for o in proof.outputs)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code":
                continue
            if "solution" in cell.metadata.get("tags", []):
                check = next(
                    c
                    for c in nb.cells[index + 1 :]
                    if "exercise-check" in c.metadata.get("tags", [])
                )
                trial = run_extra(client, nb, check.source, tags=["raises-exception"])
                stub_errors.append(error_of(trial))
            client.execute_cell(cell, index)
    return {"notebook": nb, "stub_errors": stub_errors, "sys_path": path, "work": work}


@pytest.fixture(scope="module")
def built(built_book):
    assert built_book.returncode == 0, built_book.log[-3000:]
    return built_book


@pytest.mark.build
@pytest.mark.parametrize("doc", PAGES)
def test_each_notebook_runs_alone_and_its_exercises_judge(built, doc, tmp_path):
    name = notebooks.notebook_name(doc)
    result = run_as_a_reader(built.html / notebooks.OUT / name, tmp_path)
    on_path = [Path(p) for p in ast.literal_eval(result["sys_path"]) if p]  # "": the work folder
    assert not [p for p in on_path if (p / "byhand.py").exists()], "byhand was on the path"
    nb = result["notebook"]
    ran = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in ran), f"{name}: not every cell ran"
    # byhand came from the notebook itself, the build's very file
    assert (result["work"] / "byhand.py").read_bytes() == BYHAND
    # each stub fails its check with the check's own error; each solution then passes
    for error in result["stub_errors"]:
        assert error and error.ename == "GradientMismatch", f"{name}: a stub's check gave {error}"
        assert_readers_traceback(error, name)
    checks = [c for c in ran if "exercise-check" in c.metadata.get("tags", [])]
    assert len(result["stub_errors"]) == len(checks)
    assert not [c for c in checks if error_of(c)], f"{name}: a solution fails its check"
    # a wrong formula fails as on the book's page: same error, same message
    book = nbformat.read(built.root / "_build" / "jupyter_execute" / f"{doc}.ipynb", as_version=4)
    shown = {c.source: error_of(c) for c in book.cells if c.cell_type == "code"}
    for cell in ran:
        if cell.source.startswith("%%raises"):
            mine, theirs = error_of(cell), shown[cell.source.split("\n", 1)[1]]
            assert mine and theirs, f"{name}: a demonstration did not fail"
            assert (mine.ename, mine.evalue) == (theirs.ename, theirs.evalue)
            if mine.ename in ("GradientMismatch", "FalseClaim"):
                assert_readers_traceback(mine, name)
                assert shown_as(mine) == shown_as(theirs), (
                    f"{name}: shown otherwise than on the page"
                )


@pytest.mark.build
def test_the_raises_magic_fails_a_cell_that_does_not_raise(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(notebooks.setup_source(BYHAND, glue=False, raises=True)),
            nbformat.v4.new_code_cell("%%raises GradientMismatch\nx = 1"),
        ]
    )
    path = tmp_path / "t.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(Exception, match="should fail with GradientMismatch"):
        run_as_a_reader(path, tmp_path)


# --- the built notebooks: what they contain ------------------------------------------------


def reader_notebooks(built) -> dict[str, nbformat.NotebookNode]:
    return {
        doc: nbformat.read(built.html / notebooks.OUT / notebooks.notebook_name(doc), as_version=4)
        for doc in PAGES
    }


def raw_myst(markdown: str) -> list[str]:
    """MyST that Jupyter would show as it is, found by MyST's own parser (the book's
    configuration): roles, directives, ``:::`` fences, targets, comments, block breaks."""
    from markdown_it.renderer import RendererHTML
    from myst_parser.parsers.mdit import create_md_parser

    found = []
    for token in create_md_parser(guard_lint.md_config(ROOT), RendererHTML).parse(markdown):
        if token.type in ("colon_fence", "myst_target", "myst_block_break", "myst_line_comment"):
            found.append(f"{token.type}: {token.markup}{token.info or token.content}")
        elif token.type == "fence" and token.info.strip().startswith("{"):
            found.append(f"directive: {token.info}")
        found += [f"role: {c.meta['name']}" for c in token.children or () if c.type == "myst_role"]
    return found


@pytest.mark.build
def test_no_raw_myst_and_no_visible_solution(built):
    for doc, nb in reader_notebooks(built).items():
        solutions = []
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                assert not raw_myst(cell.source), f"{doc}: raw MyST {raw_myst(cell.source)}"
            elif "solution" in cell.metadata.get("tags", []):
                assert cell.source.startswith(f"# @title {notebooks.SOLUTION_TITLE}\n")
                assert cell.metadata["cellView"] == "form"
                assert cell.metadata["jupyter"]["source_hidden"] is True
                solutions.append(cell.source.split("\n", 1)[1].strip())
        markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        for solution in solutions:
            assert solution not in markdown, f"{doc}: a solution is visible in the text"


def test_raw_myst_is_found():
    assert raw_myst("see {term}`x`") and raw_myst(":::{note}") and raw_myst("(label)=")
    assert raw_myst("```{figure} a.svg\n```") and raw_myst("+++") and raw_myst("% note")
    assert not raw_myst("`{term}` is a role\n```\n:::\n```")


@pytest.mark.build
def test_the_first_code_cell_brings_this_builds_byhand(built):
    import hashlib

    digest = hashlib.sha256(BYHAND).hexdigest()
    for doc, nb in reader_notebooks(built).items():
        first = next(c for c in nb.cells if c.cell_type == "code")
        assert first.metadata["tags"] == ["setup"] and first.metadata["cellView"] == "form"
        assert first.metadata["jupyter"]["source_hidden"] is True
        assert f'BYHAND_SHA256 = "{digest}"' in first.source, doc
        assert not any(c.get("outputs") for c in nb.cells if c.cell_type == "code"), doc


def site_file(built, url: str) -> Path:
    assert url.startswith(SITE), url
    return built.html / urlsplit(url).path.removeprefix(urlsplit(SITE).path)


@pytest.mark.build
def test_every_link_and_picture_names_a_file_the_build_wrote(built):
    for doc, nb in reader_notebooks(built).items():
        text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
        links = re.findall(r"\]\((https?://[^)\s]+)\)", text)
        links += re.findall(r'\b(?:href|src)="([^"]+)"', text)
        assert not [u for u in links if not re.match(r"https?:|#|mailto:", u)], f"{doc}: relative"
        for url in links:
            if not url.startswith(SITE) or url == SITE + pages.BOOK_PDF:
                continue  # the PDF is made by make pdf, after the build (tests/test_pdf.py)
            path = site_file(built, url)
            assert path.is_file(), f"{doc}: {url} names no file of the site"
            anchor = urlsplit(url).fragment
            if anchor:
                assert f'id="{anchor}"' in path.read_text(encoding="utf-8"), f"{doc}: {url}"


def header_links(page: Path) -> list[str]:
    return re.findall(r'href="([^"]+)"', page.read_text(encoding="utf-8"))


@pytest.mark.build
def test_launch_buttons_and_downloads_open_the_readers_notebook(built):
    tree = built.html / notebooks.OUT
    for doc in PAGES:
        page = built.html / f"{doc}.html"
        links = [h.replace("&amp;", "&") for h in header_links(page)]
        name = notebooks.notebook_name(doc)
        colab = [h for h in links if h.startswith("https://colab.research.google.com/")]
        binder = [h for h in links if h.startswith("https://mybinder.org/")]
        assert colab == [f"https://colab.research.google.com/github/{REPO}/blob/{BRANCH}/{name}"], (
            f"{doc}: Colab {colab}"
        )
        assert len(binder) == 1, f"{doc}: Binder {binder}"
        split = urlsplit(binder[0])
        assert split.path == f"/v2/gh/{REPO}/{BRANCH}", binder
        assert parse_qs(split.query) == {"labpath": [name]}, binder
        assert (tree / name).is_file()
        local = [h for h in links if h.endswith(f"{notebooks.OUT}/{name}") and "//" not in h]
        assert local and (page.parent / local[0]).resolve() == (tree / name).resolve()
        archive = [h for h in links if h.endswith(f"{notebooks.ARCHIVE}.zip")]
        assert archive and (page.parent / archive[0]).resolve().is_file()
    without = [
        p for p in built.html.rglob("*.html") if "mybinder.org" in p.read_text(encoding="utf-8")
    ]
    assert len(without) == len(PAGES), "a page without code offers a launch button"


@pytest.mark.build
def test_the_tree_and_the_archive(built):
    tree = built.html / notebooks.OUT
    names = sorted(notebooks.notebook_name(d) for d in PAGES)
    assert sorted(p.name for p in tree.glob("*.ipynb")) == names
    assert (tree / "byhand.py").read_bytes() == BYHAND
    assert (tree / ".binder" / "requirements.txt").read_bytes() == (
        ROOT / ".binder" / "requirements.txt"
    ).read_bytes()
    with zipfile.ZipFile(built.html / f"{notebooks.ARCHIVE}.zip") as zf:
        members = sorted(zf.namelist())
        assert members == sorted(
            f"{notebooks.ARCHIVE}/{n}" for n in [*names, "README.md", "byhand.py"]
        )
        assert zf.read(f"{notebooks.ARCHIVE}/byhand.py") == BYHAND
        for n in names:
            assert zf.read(f"{notebooks.ARCHIVE}/{n}") == (tree / n).read_bytes()


# --- Binder ---------------------------------------------------------------------------------

BINDER = ROOT / ".binder" / "requirements.txt"


def test_binder_pins_what_the_book_pins():
    wanted = {
        line.split("==")[0].split("~=")[0]: line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if re.match(r"^(torch|numpy|matplotlib|scikit-learn)\b", line)
    }
    lines = [x for x in BINDER.read_text().splitlines() if x and not x.startswith("#")]
    cpu_index = re.search(r"PYTORCH_CPU_INDEX := (\S+)", (ROOT / "Makefile").read_text()).group(1)
    assert lines[0] == f"--extra-index-url {cpu_index}"
    assert lines[1] == wanted["torch"] + "+cpu", "Binder's torch is the book's, CPU build"
    assert sorted(lines[2:]) == sorted(v for k, v in wanted.items() if k != "torch")
    assert (ROOT / ".binder" / "runtime.txt").read_text().strip() == "python-3.11"


@pytest.mark.build
def test_binder_resolves_to_the_cpu_wheel(tmp_path):
    """pip's resolver, given Binder's file, picks torch's CPU build, whose dependencies name
    no CUDA package (the four packages alone: their own dependencies come from PyPI as
    usual). Where PyTorch's index is out of reach, pip resolves from a local copy of the
    wheel when the machine has one (its find-links); with neither, the test says so."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--ignore-installed",
            "--no-deps",
            "--only-binary=:all:",
            "--quiet",
            "--retries",
            "0",
            "--timeout",
            "15",
            "--report",
            str(report),
            "-r",
            str(BINDER),
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode and "torch==2.13.0+cpu" in proc.stderr and "No matching" in proc.stderr:
        pytest.skip(f"PyTorch's CPU index is unreachable and no local wheel: {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    chosen = {
        item["metadata"]["name"].lower(): item["metadata"]
        for item in json.loads(report.read_text())["install"]
    }
    assert sorted(chosen) == ["matplotlib", "numpy", "scikit-learn", "torch"], sorted(chosen)
    assert chosen["torch"]["version"] == "2.13.0+cpu", chosen["torch"]["version"]
    needs = chosen["torch"].get("requires_dist", [])
    cuda = [r for r in needs if r.lower().startswith(("nvidia", "triton", "cuda"))]
    assert needs and not cuda, f"Binder's torch would pull CUDA packages: {cuda}"


def test_an_interactive_figure_offers_its_first_state_as_a_picture():
    """A reader's notebook shows the figure's ``image/svg+xml``; the site its HTML."""
    import torch

    from byhand import start_chapter
    from figures import paths_figure

    start_chapter("test")
    X = torch.randn(4, 3, requires_grad=True)  # (N, n_in)
    W = torch.randn(3, 2, requires_grad=True)  # (n_in, n_out)
    b = torch.randn(2, requires_grad=True)  # (n_out,)
    Y = X @ W + b  # (N, n_out)
    Y.retain_grad()
    Y.pow(2).mean().backward()
    G = Y.grad
    grads = {
        "dL/dX": (G @ W.t(), X.grad),
        "dL/dW": (X.t() @ G, W.grad),
        "dL/db": (G.sum(0), b.grad),
    }
    data, _ = paths_figure(X, W, b, G, grads=grads)._repr_mimebundle_()
    svg = data["image/svg+xml"]
    assert svg.startswith("<svg") and "<title>" in svg and 'fill="#ffffff"' in svg
    biggest = f"{float((X.t() @ G).detach().abs().max()):.2f}"
    assert biggest in svg.replace("\u2212", "-"), "the selected weight's gradient is shown"
