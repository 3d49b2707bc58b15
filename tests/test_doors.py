"""Every door a page could use to make a failing check pass: opened here, and shut.

The book's promise is that its build fails when a manual gradient is wrong, and a page
must not be able to break it without touching ``byhand.py`` (issue 13 §1). The build
guard (book/_ext/guard.py) closes each door in one of two places:

* before anything runs, ``guard_lint`` refuses what it can see in a page: execution
  settings, tags and options, code cells that would not run, and code that skips,
  swallows, loosens or fakes a check. Those rules are pure functions of a page's text, so
  most tests here call them directly, one door each, without a build;
* after the pages ran, ``guard_run`` checks the guard's own record of execution: every
  page ran, no cell was skipped, every demonstration raised the type it declares, every
  check left its record. Tested on made-up executed notebooks, and where the guard reads
  myst-nb's or byhand's internals, a changed layout must stop the build loudly.

Two small builds prove the rules are wired into real builds: one book full of refused
doors (all reported at once, nothing executed), and one built *without* ``-W`` (the live
preview's path) whose pages pass the lint but fail at run time.
"""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import fields
from types import SimpleNamespace

import nbformat
import pytest

import books
import guard
import guard_kernels
import guard_lint
import guard_run
from books import HEADER, START, code, page
from conftest import ROOT, mini_book, run_build
from guard_run import InternalsChanged

KERNEL = {"name": "python3", "display_name": "Python 3", "language": "python"}


def lint(source: str) -> str:
    return "\n".join(guard_lint.lint_code(textwrap.dedent(source)).problems)


# --- page code: each door, and the message that shuts it --------------------------------

CODE_DOORS = {
    "redefine check": ("def check(pairs):\n    pass", "rebinds 'check'"),
    "assign check": ("check = lambda pairs: None", "rebinds 'check'"),
    "alias check": ("verify = check\nverify({})", "uses check as a value"),
    "partial check": (
        "import functools\nc = functools.partial(check, atol=1)",
        "uses check as a value",
    ),
    "check from elsewhere": ("from helpers import check", "imports check from helpers"),
    "rename on import": ("from byhand import check as verify", "keep byhand's names"),
    "patch byhand": ("import byhand\nbyhand.compare = print", "assigns to byhand.compare"),
    "patch assert_close": (
        "import torch\ntorch.testing.assert_close = print",
        "assigns to torch.testing",
    ),
    "patch a class": ("import torch\nT = torch.Tensor\nT.__sub__ = print", "assigns to T.__sub__"),
    "setattr": ("import byhand\nsetattr(byhand, 'check', print)", "calls setattr()"),
    "getattr of byhand": ("import byhand\nc = getattr(byhand, 'check')", "getattr"),
    "globals": ("globals()['check'] = print", "calls globals()"),
    "exec": ("exec('check = print')", "calls exec()"),
    "dict escape": ("import byhand\nbyhand.__dict__['check'] = print", ".__dict__"),
    "try around check": (
        "try:\n    check({})\nexcept AssertionError:\n    pass",
        "catches AssertionError",
    ),
    "bare except": ("try:\n    check({})\nexcept:\n    pass", "catches everything"),
    "catch GradientMismatch": (
        "try:\n    x = 1\nexcept (ValueError, GradientMismatch):\n    pass",
        "catches GradientMismatch",
    ),
    "catch around a helper": (
        "try:\n    verify()\nexcept GradientMismatch:\n    pass",
        "catches GradientMismatch",
    ),
    "catch around compare and more": (
        "try:\n    compare({})\n    check({})\nexcept GradientMismatch:\n    pass",
        "catches GradientMismatch",
    ),
    "return in finally": (
        "def f():\n    try:\n        check({})\n    finally:\n        return\nf()",
        "leaves a 'finally' block early",
    ),
    "swallowing context manager": (
        "class Quiet:\n    def __exit__(self, *a):\n        return True",
        "defines '__exit__'",
    ),
    "check under if": ("if False:\n    check({})", "where it may not run"),
    "check under and": ("ready and check({})", "where it may not run"),
    "check in a comprehension": ("[check({}) for _ in []]", "where it may not run"),
    "custom exception handler": (
        "get_ipython().set_custom_exc((Exception,), print)",
        "calls get_ipython()",
    ),
    "%%script false": ("%%script false\ncheck({})", "the cell magic %%script"),
    "%%capture": ("%%capture\ncheck({})", "the cell magic %%capture"),
    "%%writefile": ("%%writefile byhand.py\nx = 1", "the cell magic %%writefile"),
    "line magic": ("%run other.py", "the magic %run"),
    "shell": ("!sed -i s/raise/pass/ byhand.py", "runs a shell command"),
    "import importlib": ("import importlib", "imports importlib"),
    "import sys": ("import sys\nsys.modules['byhand'] = None", "imports sys"),
    "import ctypes": ("import ctypes", "imports ctypes"),
    "torch.library": (
        "import torch\nlib = torch.library.Library('aten', 'IMPL')",
        "uses torch.library",
    ),
    "torch function mode": (
        "from torch.overrides import TorchFunctionMode",
        "from torch.overrides",
    ),
    "__torch_function__": (
        "class Liar:\n    def __torch_function__(self, *a):\n        pass",
        "defines '__torch_function__'",
    ),
    "loose atol": ("check({'dL/dW': (W_g, W.grad)}, atol=1)", "passes atol=1"),
    "loose rtol in a variable": ("check({'dL/dW': (W_g, W.grad)}, rtol=tol)", "passes rtol=tol"),
    "loose fd_check": ("fd_check(f, (X,), 'f', atol=0.1)", "passes atol=0.1"),
    "keywords from a dict": ("check({'dL/dW': (W_g, W.grad)}, **loose)", "passes **keywords"),
    "compare with itself": ("check({'dL/dW': (W.grad, W.grad)})", "compares 'dL/dW' with itself"),
    "raise GradientMismatch": (
        "raise GradientMismatch('looks like a check')",
        "raises byhand's error",
    ),
    "a fake GradientMismatch": (
        "E = type('GradientMismatch', (AssertionError,), {})",
        "type(name, bases",
    ),
    ".grad assigned": ("W.grad = W_g", "assigns to .grad"),
    ".grad copied into": ("W.grad.copy_(W_g)", "changes a .grad in place"),
    ".grad indexed": ("W.grad[0] = 0", "changes a .grad in place"),
    "gradient hook": ("W.register_hook(lambda g: W_g)", "register_hook"),
    "warnings ignored": ("import warnings\nwarnings.filterwarnings('ignore')", "silence warnings"),
    "a fake record": (
        "display({'text/plain': '✓'}, raw=True, metadata={'byhand': {}})",
        "writes byhand's record key",
    ),
    "a lower precision": ("torch.set_default_dtype(torch.float16)", "sets the default dtype"),
    "file written": ("open('byhand.py', 'w').write('')", "opens a file for writing"),
    ".grad through getattr": ("W_g = getattr(W, 'grad')", "reads .grad with getattr()"),
    "a claim that cannot fail": (
        "claim('ReLU is fast', True)",
        "claims True, which holds whatever",
    ),
    "a constant claim": ("claim('one is one', 1 == 1)", "claims 1 == 1"),
    # book/figures.py is protected as byhand is
    "redefine a figure": ("def paths_figure(*a):\n    pass", "rebinds 'paths_figure'"),
    "rebind figures": ("figures = None", "rebinds 'figures'"),
    "rename figures": ("import figures as f", "imports figures under another name"),
    "rename a figure": ("from figures import sum_figure as s", "keep figures's names"),
    "patch figures": ("import figures\nfigures.compare = print", "assigns to figures.compare"),
    "getattr of figures": ("import figures\nf = getattr(figures, 'paths_figure')", "getattr"),
    "check through figures": ("import figures\nc = figures.check", "uses figures.check as a value"),
}


@pytest.mark.parametrize("door", CODE_DOORS, ids=str)
def test_page_code_that_would_switch_a_check_off_is_refused(door):
    source, message = CODE_DOORS[door]
    assert message in lint(source), f"{door}: {lint(source)!r}"


def test_ordinary_page_code_is_not_refused():
    source = """
        import math
        import torch
        from byhand import GradientMismatch, check, claim, compare, fd_check, start_chapter
        from torch.func import jacrev
        from figures import paths_figure
        import matplotlib.pyplot as plt
        start_chapter("9 · Fine")
        W = torch.randn(3, 2, requires_grad=True)
        W.grad = None
        W.grad.zero_() if W.grad is not None else None
        plt.rcParams["font.size"] = 12
        for scale in (1, 2):
            check({"dL/dW": (W_g * scale, W.grad * scale)}, rtol=0, atol=0)
        with torch.no_grad():
            claim("ReLU's gradient at 0 is 0", W.grad is None)
        try:
            torch.kron(W.t(), W)
        except RuntimeError:
            rejected = True
        caught = {}
        for bug in ("b1 averaged", "W2 doubled"):
            try:  # a check catches each bug: collected, then claimed
                compare({"dL/dW": (W_g, W.grad)})
            except GradientMismatch as err:
                caught[bug] = str(err)
        claim("a check catches both bugs", len(caught) == 2)
        fd_check(lambda X: X.sum(), (W,), "sum", eps=1e-6)
    """
    assert lint(source) == ""
    assert [name for _, name in guard_lint.call_sites(textwrap.dedent(source))] == [
        "check", "claim", "claim", "fd_check"
    ]  # fmt: skip


# --- a check that compares autograd with itself, across the page's cells ------------------

ITSELF = "with a manual side computed from W.grad, the gradient it is compared with"
AUTOGRAD = "against autograd with a manual side that autograd computed itself"
FLOW_DOORS = {
    "a clone of the reference": (
        ["W_g = W.grad.clone()", "check({'dL/dW': (W_g, W.grad)})"],
        ITSELF,
    ),
    "the reference by another name": (
        ["g = W.grad", "check({'dL/dW': (g * 1.0, W.grad.T.T)})"],
        ITSELF,
    ),
    "copied in place": (
        ["W_g = torch.zeros_like(W)\nW_g.copy_(W.grad)", "check({'dL/dW': (W_g, W.grad)})"],
        ITSELF,
    ),
    "added into a sum": (
        ["W_g = X.t() @ G\nW_g += 0 * W.grad", "check({'dL/dW': (W_g, W.grad)})"],
        ITSELF,
    ),
    "through a function": (
        ["def grad_of(p):\n    return p.grad.detach()", "check({'dL/dW': (grad_of(W), W.grad)})"],
        ITSELF,
    ),
    "a check in a function": (
        ["def verify(p, m):\n    check({'dL/dp': (m, p.grad)})", "verify(W, W.grad * 1)"],
        "(in the function it calls, at its line 2) " + ITSELF,
    ),
    "a dict of pairs built earlier": (
        ["pairs = {}\npairs['dL/dW'] = (W.grad + 0, W.grad)", "check(pairs)"],
        ITSELF,
    ),
    "a figure's pairs": (
        ["paths_figure(X, W, b, G, grads={'dL/dW': (W.grad.clone(), W.grad)})"],
        ITSELF,
    ),
    "a lambda": (["f = lambda: W.grad", "check({'dL/dW': (f(), W.grad)})"], ITSELF),
    "autograd.grad of the loss": (
        ["(W_g,) = torch.autograd.grad(L, (W,))", "check({'dL/dW': (W_g, W.grad)})"],
        AUTOGRAD,
    ),
    "autograd.grad of two": (
        ["W_g, b_g = torch.autograd.grad(L, [W, b])", "check({'dL/db': (b_g, b.grad)})"],
        AUTOGRAD,
    ),
    "torch.func.grad": (
        ["from torch.func import grad", "check({'dL/dW': (grad(loss)(W), W.grad)})"],
        AUTOGRAD,
    ),
    "a copy of the manual side": (
        ["X_g = G @ W.t()", "check({'dL/dX': (X_g, X_g.clone())})"],
        "compares 'dL/dX' with a copy of itself (both sides hold X_g's values)",
    ),
}


def flow(*cells: str) -> str:
    return "\n".join(p for c in guard_lint.autograd_against_itself(list(cells)) for p in c)


@pytest.mark.parametrize("door", FLOW_DOORS, ids=str)
def test_a_check_that_compares_autograd_with_itself_is_refused(door):
    cells, message = FLOW_DOORS[door]
    assert message in flow(*cells), f"{door}: {flow(*cells)!r}"


def test_checks_that_compare_with_autograd_honestly_are_not_refused():
    assert (
        flow(
            "G = Y.grad  # the upstream gradient, from autograd",
            "check({'dL/dW': (X.t() @ G, W.grad), 'dL/dX': (G @ W.t(), X.grad)})",
            "W_g = torch.zeros_like(W.grad)\nW_g += X.t() @ G",  # the shape only
            "check({'dL/dW': (W_g, W.grad)})",
            "W_g = W.grad.clone()\nW_g = X.t() @ G",  # rebound before the check
            "check({'dL/dW': (W_g, W.grad)})",
            "from torch.func import jacrev, vjp\n_, f = vjp(layer, X, W)\nX_v, W_v = f(G)",
            "check({'dL/dW (vjp)': (W_g, W_v)})",  # local derivatives, chained
            "J = jacrev(layer)(X)\ncheck({'dL/dX': (G.reshape(-1) @ J.reshape(8, 12), X.grad)})",
            "per_sample = torch.autograd.grad(L0, W)[0] + torch.autograd.grad(L1, W)[0]",
            "check({'dL/dW': (per_sample, W.grad)}, reference='the whole batch')",  # named
            "def verify(p, m):\n    check({'dL/dp': (m, p.grad)})",
            "verify(W, X.t() @ G)",
        )
        == ""
    )


def test_a_step_of_gradient_descent_does_not_make_a_weight_its_own_gradient():
    """After W -= lr * W.grad (or W.sub_(...)) and a new backward pass, a hand-made dL/dW
    computed from the new W is a forward pass and a formula, not autograd's answer; and a
    sum into an accumulator (acc += ...) is not a copy of what it adds."""
    steps = ("with torch.no_grad():\n    W -= 0.1 * W.grad", "W.sub_(0.1 * W.grad)")
    for step in steps:
        assert (
            flow(
                "L = ((X @ W - T) ** 2).mean()\nL.backward()",
                f"{step}\nW.grad = None",
                "Y = X @ W\nL = ((Y - T) ** 2).mean()\nL.backward()",
                "W_g = X.t() @ (2 * (Y - T) / Y.numel())",
                "check({'dL/dW': (W_g, W.grad)})",
            )
            == ""
        ), step
    # the door stays shut for a manual side that adds the gradient in
    assert ITSELF in flow("W_g = X.t() @ G\nW_g += W.grad * 0", "check({'dL/dW': (W_g, W.grad)})")
    # a sum into an accumulator is not a copy of what it adds: only the .grad door applies
    found = flow("acc = torch.zeros(3, 2)", "acc += W.grad", "check({'dL/dW': (acc, W.grad)})")
    assert ITSELF in found and "copy of itself" not in found, found
    # and an accumulator of hand-made per-sample gradients is sound
    assert (
        flow(
            "acc = torch.zeros(3, 2)",
            "for n in range(4):\n    acc += X[n:n + 1].t() @ G[n:n + 1]",
            "check({'dL/dW': (acc, W.grad)})",
        )
        == ""
    )


# --- cell tags and options, front matter, the book's configuration ---------------------


def cell(source="x = 1", **metadata):
    return nbformat.from_dict(
        {
            "cell_type": "code",
            "source": source,
            "metadata": metadata,
            "outputs": [],
            "execution_count": None,
        }
    )


CELL_DOORS = {
    "skip-execution": ({"tags": ["skip-execution"]}, "would never run"),
    "remove-stderr": ({"tags": ["remove-stderr"]}, "hides a warning"),
    "stderr hidden by an option": (
        {"mystnb": {"output_stderr": "remove"}},
        "'mystnb: output_stderr'",
    ),
    "old render key": ({"render": {"output_stderr": "remove"}}, "old 'render:' option"),
    "code loaded from a file": ({"load": "fake.py"}, "loads its code from a file"),
    "raises without the tag": ({"raises": "AssertionError"}, "not tagged raises-exception"),
    "raises NameError": (
        {"tags": ["raises-exception"], "raises": "NameError"},
        "'raises: NameError'",
    ),
    "raises Exception": (
        {"tags": ["raises-exception"], "raises": ["Exception"]},
        "'raises: Exception'",
    ),
    "raises nonsense": (
        {"tags": ["raises-exception"], "raises": "not a name"},
        "must name an exception",
    ),
    "a typo for raises": (
        {"tags": ["raises-exception"], "raise": "AssertionError"},
        "unknown option 'raise'",
    ),
}


@pytest.mark.parametrize("door", CELL_DOORS, ids=str)
def test_cell_options_that_skip_or_hide_are_refused(door):
    metadata, message = CELL_DOORS[door]
    assert message in "\n".join(guard_lint.cell_option_problems(cell(**metadata), 3))


def test_ordinary_cell_options_are_not_refused():
    ok = [
        cell(tags=["raises-exception"]),
        cell(tags=["raises-exception"], raises="AssertionError"),
        cell(tags=["hide-input", "solution"], mystnb={"code_prompt_show": "Show solution"}),
        cell(tags=["remove-input"], mystnb={"image": {"alt": "A plot"}, "markdown_format": "gfm"}),
        cell(editable=False, jupyter={"source_hidden": True}),
    ]
    assert [guard_lint.cell_option_problems(c, 1) for c in ok] == [[], [], [], [], []]


def _fields(section: str) -> list:
    from myst_nb.core.config import NbParserConfig

    return [
        f
        for f in fields(NbParserConfig)
        if section in {s.value for s in f.metadata.get("sections", ())}
    ]


def _all_fields() -> list:
    from myst_nb.core.config import NbParserConfig

    return list(fields(NbParserConfig))


@pytest.mark.parametrize("name", [f.name for f in _all_fields()])
def test_every_page_setting_but_a_render_option_is_refused(name):
    """Every key of myst-nb's configuration, today's and any a future myst-nb adds: a page's
    front matter reaches all of them (myst-nb copies its ``mystnb:`` into the settings
    whatever their documented level), and only the allow-listed render options may pass."""
    problems = guard_lint.front_matter_problems({"kernelspec": KERNEL, "mystnb": {name: 0}})
    if name in guard_lint.PAGE_RENDER_OPTIONS:
        assert problems == []
        sections = {
            s.value for s in next(f for f in _all_fields() if f.name == name).metadata["sections"]
        }
        assert "render" in sections, f"{name} is allow-listed but is not a render option"
    else:
        assert f"'mystnb: {name}'" in "\n".join(problems)


def test_cell_render_options_are_render_options():
    keys = {
        f.metadata.get("cell_key", f.name)
        for f in _fields("cell")
        if "render" in {s.value for s in f.metadata["sections"]}
    }
    assert keys >= guard_lint.CELL_RENDER_OPTIONS
    assert "output_stderr" in keys - guard_lint.CELL_RENDER_OPTIONS


@pytest.mark.parametrize(
    "metadata, message",
    [
        ({"kernelspec": KERNEL, "execution": {"allow_errors": True}}, "'execution' section"),
        ({"kernelspec": {**KERNEL, "name": "bash"}}, "kernelspec is 'bash'"),
        ({}, "kernelspec is None"),
        ({"kernelspec": KERNEL, "mystnb": "off"}, "'mystnb: 'off''"),
    ],
)
def test_front_matter_that_changes_execution_is_refused(metadata, message):
    assert message in "\n".join(guard_lint.front_matter_problems(metadata))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"execution_mode": "cache"}, "execute_notebooks is 'cache'"),
        ({"execution_mode": "off"}, "execute_notebooks is 'off'"),
        ({"execution_allow_errors": True}, "allow_errors is true"),
        ({"execution_excludepatterns": ["book/0*"]}, "exclude_patterns under execute"),
        ({"kernel_rgx_aliases": {"python3": "other"}}, "kernel aliases"),
        ({"execution_timeout": -1}, "timeout is -1"),
        ({"output_stderr": "remove"}, "stderr_output is 'remove'"),
    ],
)
def test_book_settings_that_weaken_execution_are_refused(change, message):
    from myst_nb.core.config import NbParserConfig

    book = NbParserConfig(execution_mode="force", execution_timeout=120, output_stderr="warn")
    assert guard.config_problems(book) == []
    assert message in "\n".join(guard.config_problems(book.copy(**change)))


HIDDEN = {
    "in a dropdown": ":::{dropdown} More\n```{code-cell} ipython3\ncheck({})\n```\n:::\n",
    "in an admonition": "````{note}\n```{code-cell} ipython3\ncheck({})\n```\n````\n",
    "in a list": "- a step\n\n  ```{code-cell} ipython3\n  check({})\n  ```\n",
    "as a ::: fence": ":::{code-cell} ipython3\ncheck({})\n:::\n",
}


@pytest.mark.parametrize("where", HIDDEN, ids=str)
def test_a_code_cell_myst_nb_would_never_run_is_found(where):
    fences = guard_lint.code_cell_fences("# Page\n\n" + HIDDEN[where], guard_lint.md_config(ROOT))
    assert [f.runs for f in fences] == [False]


def test_code_cell_examples_in_literal_blocks_are_not_cells():
    text = "# Page\n\n````md\n```{code-cell} ipython3\nx = 1\n```\n````\n\n```{code-cell} ipython3\nx\n```\n"
    assert [f.runs for f in guard_lint.code_cell_fences(text)] == [True]


def test_a_module_beside_byhand_is_refused(tmp_path):
    (tmp_path / "book").mkdir()
    for name in ("byhand.py", "figures.py", "torch.py", "01-a.md", "01-a.ipynb"):
        (tmp_path / "book" / name).write_text("")
    found = "\n".join(guard_lint.stray_files(tmp_path / "book"))
    assert "book/torch.py: pages run with book/ as their working directory" in found
    assert "book/01-a.ipynb sits beside 01-a.md" in found
    assert not any(
        line.startswith(("book/byhand.py", "book/figures.py")) for line in found.splitlines()
    )


def test_the_names_of_both_helper_modules_are_owned():
    owned = guard_lint.byhand_names()
    assert {"check", "fd_check", "GradientMismatch", "paths_figure", "sum_figure"} <= owned
    assert guard_lint.HELPERS == ("byhand", "figures")


def test_page_problems_name_the_page_line_and_cell(tmp_path):
    page = tmp_path / "09-doors.md"
    page.write_text(
        f"---\n{HEADER}mystnb:\n  execution_allow_errors: true\n---\n# Doors\n\n"
        f"```{{code-cell}} ipython3\n{START}\n```\n\n"
        "```{code-cell} ipython3\n---\ntags: [skip-execution]\n---\nx = 1\ncheck = print\n```\n"
    )
    found = guard_lint.page_problems(page, "book/09-doors.md")
    text = page.read_text().splitlines()
    line = text.index("check = print") + 1
    assert f"book/09-doors.md:{line}: code cell 2 line 2: " not in "\n".join(found)
    assert f"book/09-doors.md:{line}: code cell 2 rebinds 'check'" in "\n".join(found)
    assert "book/09-doors.md: its front matter sets 'mystnb: execution_allow_errors'" in "\n".join(
        found
    )
    assert any(p.startswith("book/09-doors.md:") and "tagged skip-execution" in p for p in found)


def test_a_page_must_start_its_chapter_and_check_something(tmp_path):
    page = tmp_path / "09-bare.md"
    page.write_text(f"---\n{HEADER}---\n# Bare\n\n```{{code-cell}} ipython3\nimport torch\n```\n")
    found = "\n".join(guard_lint.page_problems(page, "book/09-bare.md"))
    assert "code cell 1 does not call start_chapter" in found
    assert "book/09-bare.md has code cells but no check(...)" in found


# --- after the build: the guard's own record of execution ------------------------------


def executed(*cells, kernel="python3"):
    """An executed notebook as myst-nb writes it (not validated: tests break it on purpose)."""
    return nbformat.from_dict(
        {
            "cells": list(cells),
            "metadata": {"kernelspec": {**KERNEL, "name": kernel}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


def ran(source="x = 1", outputs=(), tags=(), count=1, **metadata):
    c = cell(source, tags=list(tags), **metadata)
    c.outputs, c.execution_count = [nbformat.from_dict(o) for o in outputs], count
    return c


def error(ename, evalue="...", *frames):
    """An error output; ``frames``: the cells' lines its traceback names, as (count, line)."""
    traceback = [f"\x1b[0;32mCell In[{n}], line {k}\x1b[0m" for n, k in frames]
    return {"output_type": "error", "ename": ename, "evalue": evalue, "traceback": traceback}


def record(kind="check", quantities=("dL/dW",), reference="autograd", site="Cell In[1], line 1"):
    meta = {
        "byhand": {
            "kind": kind,
            "quantities": list(quantities),
            "reference": reference,
            "torch": "2.13.0+cpu",
            "site": site,
        }
    }
    return {"output_type": "display_data", "data": {"text/plain": "✓"}, "metadata": meta}


RUN = {
    "succeeded": True,
    "method": "force",
    "error": None,
    "traceback": None,
    "runtime": 1.0,
    "mtime": 0.0,
}


def run_problems(notebook, exec_data=RUN) -> str:
    return "\n".join(guard_run.page_problems(exec_data, notebook))


RUN_DOORS = {
    "a NameError in a demonstration": (
        ran(
            "undefined_name",
            [error("NameError", "name 'undefined_name' is not defined")],
            tags=["raises-exception"],
        ),
        "code cell 1 should fail with GradientMismatch but raised NameError",
    ),
    "a demonstration that does not raise": (
        ran("check({})", [record()], tags=["raises-exception"]),
        "code cell 1 is tagged raises-exception but did not raise",
    ),
    "another type than declared": (
        ran(
            "check({})",
            [error("GradientMismatch")],
            tags=["raises-exception"],
            raises="RuntimeError",
        ),
        "code cell 1 should fail with RuntimeError but raised GradientMismatch",
    ),
    "a skipped cell": (ran("check({})", count=None), "code cell 1 never ran"),
    "an error let through": (
        ran("1 / 0", [error("ZeroDivisionError")]),
        "code cell 1 raised ZeroDivisionError and the page went on",
    ),
    "a check that left no record": (
        ran("check({'a': (x, y)})"),
        "code cell 1, line 1: check(...) never ran, so it checks nothing",
    ),
    "a loop that never ran": (
        ran("for _ in []:\n    check({})"),
        "code cell 1, line 2: check(...) never ran",
    ),
    "a check in a function nobody calls": (
        ran("def verify():\n    check({'a': (x, y)})"),
        "code cell 1, line 2: check(...) never ran",
    ),
    "a claim in a lambda nobody calls": (
        ran("later = lambda: claim('true', True)"),
        "code cell 1, line 1: claim(...) never ran",
    ),
    "a check after a return": (
        ran("def f():\n    return 1\n    fd_check(g, (x,), 'g')\nf()"),
        "code cell 1, line 3: fd_check(...) never ran",
    ),
    "a record from another line": (
        ran("check({'a': (x, y)})\n\ncheck({'b': (x, y)})", [record(site="Cell In[1], line 3")]),
        "code cell 1, line 1: check(...) never ran",
    ),
    "a check a demonstration never reached": (
        ran(
            "compare({'a': (x, y)})\ncheck({'a': (x, y)})",
            [error("GradientMismatch", "...", (1, 1))],
            tags=["raises-exception"],
        ),
        "code cell 1, line 2: check(...) never ran",
    ),
}


@pytest.mark.parametrize("door", RUN_DOORS, ids=str)
def test_what_ran_is_checked_from_the_executed_notebook(door):
    notebook_cell, message = RUN_DOORS[door]
    assert message in run_problems(executed(notebook_cell))


def test_a_page_that_did_not_run_or_ran_elsewhere_is_refused():
    assert "was not executed" in run_problems(executed(ran()), None)
    assert "executed in 'cache' mode" in run_problems(executed(ran()), {**RUN, "method": "cache"})
    assert "ran in the kernel 'bash'" in run_problems(executed(ran(), kernel="bash"))
    failed = {**RUN, "succeeded": False, "traceback": "GradientMismatch: [9] dL/dW does not match"}
    assert "failed: GradientMismatch: [9] dL/dW" in run_problems(executed(ran()), failed)


def test_a_healthy_page_passes():
    notebook = executed(
        ran(
            "check({'a': (x, y)})\nclaim('true', x)",
            [record(), record("claim", ["true"], site="Cell In[1], line 2")],
        ),
        ran(
            "check({'a': (x, z)})",
            [error("GradientMismatch", "...", (2, 1))],
            tags=["raises-exception"],
            count=2,
        ),
        ran(
            "assert False",
            [error("AssertionError")],
            tags=["raises-exception"],
            raises="AssertionError",
            count=3,
        ),
        ran("", count=None),  # an empty cell is not run, and that is fine
        # a check in a function: it ran when cell 5 called it (its record is there), and a
        # demonstration that fails inside a function defined in cell 5
        ran("def verify(a):\n    check({'a': (a, x)})", count=4),
        ran(
            "verify(x)",
            [record(site="Cell In[4], line 2")],
            count=5,
        ),
        ran(
            "verify(y)",
            [error("GradientMismatch", "...", (6, 1), (4, 2))],
            tags=["raises-exception"],
            count=6,
        ),
    )
    assert run_problems(notebook) == ""


def test_each_finding_knows_its_cell_and_line():
    """Where a finding is, for the annotation on the page's line (guard.py maps it)."""
    notebook = executed(
        ran("x = 1", count=1),
        ran("def f():\n    check({'a': (x, y)})", count=2),
        ran("y = 2\nundefined", [error("NameError", "...", (3, 2))], count=3),
    )
    failed = {**RUN, "succeeded": False, "traceback": "Cell In[3], line 2\nNameError: no"}
    found = guard_run.page_problems(failed, notebook)
    assert [(f, f.cell, f.line) for f in found] == [("failed: NameError: no", 3, 2)]
    ok = guard_run.page_problems(
        RUN, executed(ran("x = 1"), ran("for _ in []:\n    claim('a', x)", count=2))
    )
    assert [(f.cell, f.line) for f in ok] == [(2, 2)]
    assert guard_run.cell_lines(
        "\x1b[0;32mCell In[12], line 7\x1b[0m, in f()\nCell In[3], line 1"
    ) == [
        (12, 7),
        (3, 1),
    ]


# --- where the guard reads internals, a changed layout stops the build ------------------


def test_a_renamed_exec_data_key_is_internals_changed():
    renamed = {("ok" if k == "succeeded" else k): v for k, v in RUN.items()}
    with pytest.raises(InternalsChanged, match="myst-nb internals changed: a page's exec_data"):
        guard_run.page_problems(renamed, executed(ran()))


def test_a_changed_record_format_is_internals_changed():
    bad = record()
    bad["metadata"]["byhand"] = {"type": "check", "names": ["dL/dW"]}
    with pytest.raises(InternalsChanged, match="byhand record"):
        guard_run.page_problems(RUN, executed(ran("check({})", [bad])))
    no_site = record()
    del no_site["metadata"]["byhand"]["site"]
    with pytest.raises(InternalsChanged, match="'site': 'Cell In"):
        guard_run.page_problems(RUN, executed(ran("check({})", [no_site])))
    with pytest.raises(InternalsChanged, match="error output has no 'ename'"):
        guard_run.page_problems(RUN, executed(ran("x", [{"output_type": "error"}])))


def fake_app(tmp_path, nb_metadata, run=("book/09-a",)):
    (tmp_path / "book").mkdir(exist_ok=True)
    (tmp_path / "_build" / "html").mkdir(parents=True, exist_ok=True)
    return SimpleNamespace(
        srcdir=str(tmp_path),
        outdir=str(tmp_path / "_build" / "html"),
        statuscode=0,
        builder=SimpleNamespace(name="html"),
        env=SimpleNamespace(nb_metadata=nb_metadata, docname="book/09-a"),
        _byhand_guard={"run": list(run), "modules": {}, "mode": "force"},
    )


def test_no_exec_data_anywhere_is_internals_changed(tmp_path):
    app = fake_app(tmp_path, {"book/09-a": {"execution": RUN}})  # exec_data renamed
    with pytest.raises(InternalsChanged, match="has 'exec_data'"):
        guard.execution_problems(app)
    with pytest.raises(guard.BuildRefused, match="myst-nb internals changed"):
        guard.finish(app, None)


def test_only_the_link_check_skips_the_post_run_checks(tmp_path):
    """make linkcheck executes nothing (nb_execution_mode 'off'), so the post-run record
    does not apply to it; every other builder is held to it."""
    app = fake_app(tmp_path, {"book/09-a": {"execution": RUN}})
    app.builder.name = "linkcheck"
    guard.finish(app, None)  # nothing to check, nothing raised
    app.builder.name = "dirhtml"
    with pytest.raises(guard.BuildRefused, match="myst-nb internals changed"):
        guard.finish(app, None)


def test_a_missing_executed_notebook_is_internals_changed(tmp_path):
    app = fake_app(tmp_path, {"book/09-a": {"exec_data": RUN}})
    with pytest.raises(InternalsChanged, match="wrote no executed notebook"):
        guard.execution_problems(app)
    with pytest.raises(InternalsChanged, match="wrote no"):
        guard.add_badge(app, None)


def test_a_page_module_changed_during_the_build_is_refused(tmp_path):
    app = fake_app(tmp_path, {}, run=())
    app._byhand_guard["modules"] = {"byhand.py": "0" * 64}
    (tmp_path / "book" / "byhand.py").write_text("def check(pairs): pass\n")
    (tmp_path / "book" / "torch.py").write_text("")
    found = guard.execution_problems(app)
    assert found["book/byhand.py"][0].startswith("changed while the pages ran")
    assert found["book/torch.py"][0].startswith("appeared while the pages ran")


def test_missing_myst_configuration_is_internals_changed(tmp_path):
    app = SimpleNamespace(
        srcdir=str(tmp_path),
        config=SimpleNamespace(external_toc_path="_toc.yml"),
        env=SimpleNamespace(),
    )
    with pytest.raises(guard.BuildRefused, match="myst-nb internals changed"):
        guard.check_structure(app)
    with pytest.raises(InternalsChanged, match="no 'execution_mode'"):
        guard.config_problems(SimpleNamespace())


def test_kernels_use_ipc_and_wait_for_their_outputs(monkeypatch):
    from nbclient.client import NotebookClient

    sockets = guard_kernels.configure()
    client = NotebookClient(executed(ran()), kernel_name="python3")
    manager = client.create_kernel_manager()
    assert (manager.transport, client.raise_on_iopub_timeout) == ("ipc", True)
    assert manager.ip.startswith(str(sockets)) and client.iopub_timeout >= 60
    monkeypatch.delattr(NotebookClient, "create_kernel_manager")
    with pytest.raises(InternalsChanged, match="NotebookClient has no create_kernel_manager"):
        guard_kernels.configure()


# --- the badge ----------------------------------------------------------------------------


def test_the_badge_counts_every_record_and_dates_the_build(monkeypatch):
    notebook = executed(
        ran("check(...)", [record(quantities=["dL/dW", "dL/db"])]),
        ran("check(...)", [record(reference="sum_to_size")]),
        ran("fd_check(...)", [record("fd_check", ["Linear.backward"], "finite differences")]),
        ran("claim(...)\nclaim(...)", [record("claim", ["a"], "PyTorch"), record("claim", ["b"])]),
    )
    count = guard_run.tally(notebook)
    assert (count.autograd, count.other, count.fd, count.claims, count.total) == (2, 1, 1, 2, 6)
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1796169600")  # 2 December 2026, 00:00 UTC
    when = guard_run.build_date(executed_at=0.0)
    assert guard_run.badge_text(count, when) == (
        "✓ 2 gradients checked against autograd, 1 other result checked against a second "
        "computation, 1 backward pass checked against finite differences and 2 statements "
        "of the text asserted when this page was built · PyTorch 2.13.0 · 2 December 2026"
    )
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert guard_run.build_date(executed_at=0.0).year == 1970  # else: when the page ran


# --- the doors in real builds ---------------------------------------------------------------


REFUSED_PAGES = {
    "09-mode": (
        page("Mode", code(START), front="mystnb:\n  execution_mode: 'off'\n"),
        "'mystnb: execution_mode'",
    ),
    "10-errors": (
        page("Errors", code(START), front="execution:\n  allow_errors: true\n"),
        "'execution' section",
    ),
    "11-skip": (
        page("Skip", code(START), code("check({})", ":tags: [skip-execution]\n")),
        "tagged skip-execution",
    ),
    "12-nested": (
        page("Nested", code(START), ":::{dropdown} More\n" + code("check({})") + ":::\n"),
        "inside a {dropdown} directive never runs",
    ),
    "13-script": (
        page("Script", code(START), code("%%script false\ncheck({})")),
        "the cell magic %%script",
    ),
    "14-swallow": (
        page("Swallow", code(START), code("try:\n    check({})\nexcept Exception:\n    pass")),
        "catches Exception",
    ),
    "15-patched": (
        page("Patched", code(START), code("import byhand\nbyhand.compare = print")),
        "assigns to byhand.compare",
    ),
    "16-name": (
        page(
            "Name",
            code(START),
            code("undefined\n", "---\ntags: [raises-exception]\nraises: NameError\n---\n"),
        ),
        "'raises: NameError'",
    ),
    "18-itself": (
        page(
            "Itself",
            code(START),
            code("W = torch.ones(3, requires_grad=True)\n(W * 2).sum().backward()"),
            code("W_g = W.grad.clone()  # 'by hand'"),
            code("check({'dL/dW': (W_g, W.grad)})"),
        ),
        "code cell 4 checks 'dL/dW' with a manual side computed from W.grad",
    ),
}


@pytest.mark.build
def test_refused_doors_stop_the_build_before_anything_runs(tmp_path):
    """Every refusal at once, in one build, before a single cell runs: the doors above,
    and the book's structure (a page missing from the TOC would never be built, a page
    without the jupytext header would never run, a TOC entry without its file)."""
    pages = {stem: text for stem, (text, _) in REFUSED_PAGES.items()}
    pages["17-no-header"] = "# No header\n\n" + code(START)
    book = mini_book(tmp_path, pages)
    (book / "book" / "helpers.py").write_text("def check(pairs): pass\n")
    (book / "book" / "20-orphan.md").write_text("# Not in the TOC\n")
    with (book / "_toc.yml").open("a") as toc:
        toc.write("  - file: book/21-gone\n")
    summary = tmp_path / "job-summary.md"
    build = run_build(book, env={"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(summary)})
    assert build.returncode != 0 and "Book structure error" in build.log, build.log[-3000:]
    # on the pull request: each refusal an annotation on its page's line, and the summary
    found = books.annotations(build.log)
    itself = (book / "book" / "18-itself.md").read_text()
    assert (
        books.line_of(itself, "check({'dL/dW': (W_g, W.grad)})"),
        "code cell 4 checks 'dL/dW' with a manual side computed from W.grad, the gradient it "
        "is compared with: the check compares autograd with itself and passes whatever the "
        "formula",
    ) in found["book/18-itself.md"]
    assert found["book/17-no-header.md"] == [
        (None, "has code cells but no jupytext header, so its cells would never run (copy the "
         "header from book/_template.md)")
    ]  # fmt: skip
    assert set(found) >= {f"book/{stem}.md" for stem in REFUSED_PAGES}
    text = summary.read_text()
    assert text.startswith("## The book was refused before any page ran")
    assert "- `book/17-no-header.md`: has code cells but no jupytext header" in text
    for stem, (_, message) in REFUSED_PAGES.items():
        assert re.search(rf"book/{stem}\.md(:\d+)?: .*{re.escape(message)}", build.log), (
            stem,
            message,
        )
    for message in (
        "book/helpers.py: pages run with book/ as their working directory",
        "book/17-no-header.md has code cells but no jupytext header",
        "book/20-orphan.md is not listed in _toc.yml, so it would never be built",
        "_toc.yml lists 'book/21-gone', but there is no book/21-gone.md",
    ):
        assert message in build.log, message
    assert not (book / "_build" / "jupyter_execute").exists(), "a page ran before the refusal"


def test_prose_pages_need_no_header_and_pass(tmp_path):
    book = mini_book(tmp_path, {"09-prose": "# Just prose\n\nNo code here.\n"})
    assert guard.problems(book, book / "_toc.yml") == []


@pytest.mark.build
def test_run_time_doors_fail_the_build_without_W(failing_book):
    """The live preview's build (no -W) of tests/books.py's failing book: the guard fails
    it from its own record, each page on the line where its door is."""
    build, out = failing_book.build, failing_book.out
    assert build.returncode != 0, build.log[-3000:]
    found = dict(books.annotations(build.log)["book/13-doors.md"])
    text = books.DOORS

    def at(needle: str) -> int:
        return books.line_of(text, needle)

    assert found.pop(at("undefined_name")) == (
        "code cell 2 should fail with GradientMismatch but raised NameError: name "
        "'undefined_name' is not defined"
    )
    message = found.pop(at("assert torch.equal(torch.ones(2)"))
    assert message.startswith(
        "code cell 3 should fail with GradientMismatch but raised AssertionError"
    )
    assert "declare it: 'raises: AssertionError'" in message
    assert found.pop(at("check({'dL/dx': (torch.ones(2), torch.ones(2) * 1.0)})")) == (
        "code cell 4 is tagged raises-exception but did not raise: a demonstration of a "
        "wrong formula must really fail its check"
    )
    message = found.pop(at("    check({'dL/dx': (torch.ones(2), torch.full((2,), 1.0))})"))
    assert message.startswith("code cell 7, line 2: check(...) never ran, so it checks nothing")
    # and nothing else: the declared AssertionError (cell 5) and the demonstration that
    # fails its check (cell 6) are fine
    assert found == {}, found
    assert not re.search(r"13-doors\.md:\d*:? ?WARNING", build.log), (
        "myst-nb warned about 'raises:'"
    )
    # the page still got its badge, counted from its own records
    html = (out / "html" / "book" / "13-doors.html").read_text()
    notebook = nbformat.read(out / "jupyter_execute" / "book" / "13-doors.ipynb", as_version=4)
    records = [
        o.metadata["byhand"]
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "byhand" in o.get("metadata", {})
    ]
    # the last cell's check (2 quantities) and claim, and the silent demonstration's check
    assert len(records) == 3
    assert (
        "✓</span> 3 gradients checked against autograd and 1 statement of the text asserted" in html
    )
    assert sum(len(r["quantities"]) for r in records if r["kind"] == "check") == 3
    runs = json.loads((out / "execution.json").read_text())
    assert runs["book/13-doors"]["succeeded"], runs  # myst-nb ran it: the guard refuses it


# --- where a failure is reported ------------------------------------------------------------


def test_a_failure_is_an_annotation_in_github_actions_and_file_line_elsewhere(monkeypatch):
    import guard_report

    failure = guard_report.Failure(
        "book/02-x.md", 120, "GradientMismatch: [2 · X] dL/dW: 50% off, a:b\nthe rest"
    )
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    assert failure.annotation() == "book/02-x.md:120: GradientMismatch: [2 · X] dL/dW: 50% off, a:b"
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    assert failure.annotation() == (
        "::error file=book/02-x.md,line=120,title=GradientMismatch::"
        "GradientMismatch: [2 · X] dL/dW: 50%25 off, a:b"
    )
    refused = guard_report.Failure.parse("book/09-a.md:7: code cell 2 rebinds 'check'")
    assert (refused.path, refused.line, refused.message) == (
        "book/09-a.md",
        7,
        "code cell 2 rebinds 'check'",
    )
    assert refused.annotation() == (
        "::error file=book/09-a.md,line=7,title=Build guard::code cell 2 rebinds 'check'"
    )
    toc = guard_report.Failure.parse(
        "_toc.yml lists 'book/21-gone', but there is no book/21-gone.md"
    )
    assert (toc.path, toc.line) == ("_toc.yml", None)
    assert toc.annotation().startswith("::error file=_toc.yml,title=Build guard::lists ")
    # a message over several lines (myst-nb's YAML error, quoted whole) keeps its file
    yaml_error = guard_report.Failure.parse(
        "book/09-a.md: myst-nb cannot read it: mapping values are not allowed here\n"
        '  in "<unicode string>", line 3, column 9'
    )
    assert (yaml_error.path, yaml_error.line) == ("book/09-a.md", None)
    assert yaml_error.annotation() == (
        "::error file=book/09-a.md,title=Build guard::"
        "myst-nb cannot read it: mapping values are not allowed here"
    )
