"""Every exercise is a real exercise: its stub, as given to the reader, fails the check.

A chapter's exercise is three cells: a stub (a function returning a wrong
placeholder), a hidden solution tagged ``solution``, and a check tagged
``exercise-check``. The build runs all three, so every solution is checked against
autograd there. Here each chapter is executed with its solution cells removed:
every ``exercise-check`` cell must then raise ``GradientMismatch``, so no exercise
is accidentally solved already or left unverifiable. (That every chapter has at least
two exercises of that shape is a repository check: tests/test_repo.py.)

The run without solutions is a variant of the chapter's run (``chapter_run`` in
conftest.py, scripts/run_chapter.py): forked from the chapter's own execution at its
first solution cell, it runs every later cell as a kernel with ``allow_errors`` would.
That it agrees with a real Jupyter kernel is tested below.
"""

from __future__ import annotations

import jupytext
import pytest
from nbclient import NotebookClient

from conftest import ROOT, by_chapter, chapters
from run_chapter import exercise_problems, run

pytestmark = pytest.mark.build

TEMPLATE = (ROOT / "book" / "_template.md").read_text()
STUB = "return torch.zeros(G.shape[1])  # your code here"


def stub_problems(page) -> list[str]:
    """Run ``page`` (in book/, as a chapter would run) without its solutions; say what is
    wrong with its exercises."""
    return exercise_problems(run(page, exercises=True, cwd=ROOT / "book"))


@pytest.mark.parametrize(
    "chapter", [pytest.param(c, id=c.stem, marks=by_chapter(c)) for c in chapters()]
)
def test_every_stub_fails_its_check(chapter_run, chapter):
    problems = exercise_problems(chapter_run(chapter))
    assert not problems, f"{chapter.name}:\n" + "\n".join(problems)


# --- the test catches each way an exercise can be broken --------------------------------
# One page made from the template, with three broken exercises: the first stub already
# solved, the second stub crashing, and a later cell that needs the first solution.
STUB_2 = "return torch.zeros(X.shape[1], G.shape[1])  # your code here"
SOLUTION_1 = "def bias_grad(G):\n    return torch.ones(G.shape[0]) @ G\n"


@pytest.fixture(scope="session")  # a module's fixtures go when xdist interleaves modules
def broken(tmp_path_factory):
    for part in (STUB, STUB_2, SOLUTION_1):
        assert part in TEMPLATE, f"the template changed ({part!r}); update this test"
    text = (
        TEMPLATE.replace("{{TITLE}}", "9 · Broken exercises")
        .replace(STUB, "return G.sum(0)")
        .replace(STUB_2, "raise NotImplementedError")
        .replace(SOLUTION_1, SOLUTION_1 + "only_in_the_solution = 1\n")
    )
    text += "\n```{code-cell} ipython3\nprint(only_in_the_solution)\n```\n"
    page = tmp_path_factory.mktemp("exercises") / "broken.md"
    page.write_text(text)
    return page, run(page, exercises=True, cwd=ROOT / "book")


def test_a_stub_that_is_already_solved_is_caught(broken):
    problems = exercise_problems(broken[1])
    assert [p for p in problems if p.startswith("exercise 1's stub passes its check")], problems


def test_a_stub_that_crashes_is_caught(broken):
    problems = exercise_problems(broken[1])
    assert [
        p for p in problems if p.startswith("exercise 2's check failed with NotImplementedError")
    ], problems


def test_a_later_cell_that_needs_a_solution_is_caught(broken):
    """Exercises must not change what later cells rely on: without the solution, a later
    cell that uses what only the solution defines fails, and that is reported."""
    problems = exercise_problems(broken[1])
    assert [
        p for p in problems if p.startswith("cell 8 failed without the solutions: NameError")
    ], problems
    assert len(problems) == 3, problems  # and nothing else


def test_the_runner_agrees_with_a_kernel(broken):
    """The page without its solutions, run by a real Jupyter kernel (nbclient, with
    allow_errors, as this test did before the runner existed) and by the runner: every
    cell raises the same error, or none."""
    page, result = broken
    notebook = jupytext.read(page)
    notebook.cells = [c for c in notebook.cells if "solution" not in c.metadata.get("tags", [])]
    NotebookClient(
        notebook,
        timeout=120,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "book")}},
    ).execute()
    kernel = [
        next((f"{o.ename}: {o.evalue}" for o in c.outputs if o.output_type == "error"), None)
        for c in notebook.cells
        if c.cell_type == "code"
    ]
    # the cells before the first solution ran once, in the page's own run; the rest in
    # the run without solutions
    first = result.without_solutions.cells[0]["index"]
    records = result.itself.cells[:first] + result.without_solutions.cells
    runner = [
        f"{r['error']['ename']}: {r['error']['evalue']}" if r["error"] else None for r in records
    ]
    assert kernel == runner
    # exercise 1 (solved) passes; exercise 2 crashes; the last cell misses a name
    assert [e.split(":")[0] for e in kernel if e] == ["NotImplementedError", "NameError"]
