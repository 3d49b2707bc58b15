"""Every exercise is a real exercise: its stub, as given to the reader, fails the check.

A chapter's exercise is three cells: a stub (a function returning a wrong
placeholder), a hidden solution tagged ``solution``, and a check tagged
``exercise-check``. The build runs all three, so every solution is checked against
autograd there. Here each chapter is executed with its solution cells removed:
every ``exercise-check`` cell must then raise ``GradientMismatch``, so no exercise
is accidentally solved already or left unverifiable. (That every chapter has at least
two exercises of that shape is a repository check: tests/test_repo.py.)
"""

from __future__ import annotations

import jupytext
import pytest
from conftest import ROOT, chapters
from nbclient import NotebookClient

pytestmark = pytest.mark.build


def tags(cell) -> list[str]:
    return cell.metadata.get("tags", [])


def code_cells(notebook):
    return [c for c in notebook.cells if c.cell_type == "code"]


def stub_problems(chapter) -> list[str]:
    """Execute ``chapter`` without its solutions; say what is wrong with its exercises."""
    notebook = jupytext.read(chapter)
    notebook.cells = [c for c in notebook.cells if "solution" not in tags(c)]
    NotebookClient(
        notebook,
        timeout=120,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(ROOT / "book")}},
    ).execute()
    checks = [c for c in code_cells(notebook) if "exercise-check" in tags(c)]
    problems = [] if checks else ["no exercise-check cells"]
    for number, cell in enumerate(checks, 1):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        if not errors:
            problems.append(f"exercise {number}'s stub passes its check as given:\n{cell.source}")
        elif errors[0].ename != "GradientMismatch":
            problems.append(
                f"exercise {number}'s check failed with {errors[0].ename}: {errors[0].evalue} "
                "(the stub should return a wrong answer, not crash)"
            )
    problems += [
        f"cell {n} failed without the solutions: {o.ename}: {o.evalue}"
        for n, c in enumerate(code_cells(notebook), 1)
        if not {"exercise-check", "raises-exception"} & set(tags(c))
        for o in c.outputs
        if o.output_type == "error"
    ]
    return problems


@pytest.mark.parametrize("chapter", chapters(), ids=lambda p: p.stem)
def test_every_stub_fails_its_check(chapter):
    problems = stub_problems(chapter)
    assert not problems, f"{chapter.name}:\n" + "\n".join(problems)


def test_a_stub_that_is_already_solved_is_caught(tmp_path):
    template = (ROOT / "book" / "_template.md").read_text()
    solved = template.replace(
        "return torch.zeros(Y_g.shape[1])  # your code here", "return Y_g.sum(0)"
    )
    assert solved != template
    (tmp_path / "solved.md").write_text(solved)
    problems = stub_problems(tmp_path / "solved.md")
    assert len(problems) == 1 and problems[0].startswith("exercise 1's stub passes")


def test_a_stub_that_crashes_is_caught(tmp_path):
    template = (ROOT / "book" / "_template.md").read_text()
    crashing = template.replace(
        "return torch.zeros(Y_g.shape[1])  # your code here", "raise NotImplementedError"
    )
    (tmp_path / "crashing.md").write_text(crashing)
    problems = stub_problems(tmp_path / "crashing.md")
    assert len(problems) == 1 and "failed with NotImplementedError" in problems[0]
