"""Break each manual gradient on purpose and watch the page fail.

``tests/mutations/<chapter>.yml`` lists, for each chapter, edits that break one
manual gradient each (a factor 1.001, ``.sum(0)`` -> ``.mean(0)``, a dropped
transpose, ...) and the quantity whose check must then fail (or, with ``claim:``, the
sentence whose ``claim`` must then fail)::

    - find: "W_g = X.t() @ G"          # occurs exactly once in the chapter
      replace: "W_g = X.t() @ G * 1.001"
      quantity: "dL/dW"

Each mutation must fail its page the way the build would fail it: the page's first error
is a ``GradientMismatch`` that names the chapter and the quantity (``FalseClaim`` naming
the chapter and the sentence, for a claim).

How: ``scripts/run_chapter.py`` executes each chapter once and forks at the cell each
mutation changes (``chapter_run`` in conftest.py, shared by tests/test_exercises.py).
That this is what the build does is tested here: mutated pages chosen to cover each path
of the runner are built for real, with the script ``make book`` runs, and must fail with
exactly the error line the runner predicted; and the runner is given pages on which it
must report each kind of failure (not caught, wrong quantity, another error, a timeout,
an allowed error, a thread alive at a fork, settings it cannot reproduce).
"""

from __future__ import annotations

import itertools
import json
import re
import textwrap
from pathlib import Path

import pytest

import run_chapter
from conftest import ROOT, by_chapter, chapters, mini_book, run_build
from guard import toc_documents
from run_chapter import (
    CannotSimulate,
    Mutation,
    fork_point,
    load_mutations,
    mutation_problem,
    page_problems,
    plan,
    run,
)

pytestmark = pytest.mark.build

MUTATIONS = ROOT / "tests" / "mutations"
ALL = load_mutations()


def test_every_chapter_has_mutations():
    specs = {p.stem for p in run_chapter.mutation_files()}
    missing = [run_chapter.missing_mutations(c) for c in chapters() if c.stem not in specs]
    assert not missing, "\n".join(missing)
    pages = {Path(doc).name for doc in toc_documents(ROOT / "_toc.yml")}
    orphans = sorted(specs - pages)  # another page of the book may list mutations too
    assert not orphans, f"mutation files for pages that are not in the book: {orphans}"


@pytest.mark.parametrize("mutation", ALL, ids=lambda m: m.id)
def test_mutation_applies_to_exactly_one_place(mutation):
    count = mutation.chapter.read_text().count(mutation.find)
    assert count == 1, (
        f"{mutation.chapter.name}: {mutation.find!r} occurs {count} times; "
        "a mutation must name exactly one place (update tests/mutations/)"
    )
    assert mutation.replace != mutation.find


@pytest.mark.parametrize(
    "chapter", [pytest.param(c, id=c.stem, marks=by_chapter(c)) for c in chapters()]
)
def test_the_chapter_itself_passes_in_the_runner(chapter_run, chapter):
    """The mutations are judged against the chapter as it is: that must pass first."""
    problems = page_problems(chapter_run(chapter))
    assert not problems, f"{chapter.name}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize(
    "mutation", [pytest.param(m, id=m.id, marks=by_chapter(m.chapter)) for m in ALL]
)
def test_mutation_fails_naming_chapter_and_quantity(chapter_run, mutation):
    problem = mutation_problem(chapter_run(mutation.chapter), mutation)
    assert problem is None, problem


# --- the runner agrees with the real build ------------------------------------------------


KERNEL_SECONDS = 2.5  # what one more page costs a build: a kernel that imports torch


def witnesses(runs: dict) -> list[Mutation]:
    """The mutations to build for real: few and cheap pages that, together, take every
    path through the runner (the cheapest cover; a page costs a kernel plus the cells a
    build would run, by the runner's own timing).

    Paths: a check and a claim; the failure in the edited cell and in a later one; run by
    replay from a snapshot (after a cell left a thread running). The page without its
    solutions is compared with a Jupyter kernel in tests/test_exercises.py."""
    cheapest: dict[frozenset[str], tuple[float, Mutation]] = {}  # per set of paths
    for m in ALL:
        out = runs[m.chapter.stem].mutations[m.id]
        if not out.cells or out.failed_at is None:
            continue
        fork = out.cells[0]["index"]  # a real build also runs every cell before it
        before = sum(c["seconds"] for c in runs[m.chapter.stem].itself.cells[:fork])
        paths = {"claim" if m.claim else "check"}
        paths.add("same cell" if out.failed_at == fork else "later cell")
        if out.replayed is not None:
            paths.add("replayed")
        cost = KERNEL_SECONDS + before + out.seconds
        if cost < cheapest.get(frozenset(paths), (float("inf"),))[0]:
            cheapest[frozenset(paths)] = (cost, m)
    every = frozenset().union(*cheapest)
    covers = [
        combo
        for size in range(1, len(cheapest) + 1)
        for combo in itertools.combinations(cheapest, size)
        if frozenset().union(*combo) == every
    ]
    best = min(covers, key=lambda combo: sum(cheapest[paths][0] for paths in combo), default=())
    chosen = [cheapest[paths][1] for paths in best]
    return chosen or ALL[:1]


@pytest.mark.late  # it reads every chapter's run: by then they are done
def test_the_runner_agrees_with_the_real_build(chapter_run, tmp_path):
    runs = {p.stem: chapter_run(p) for p in {*chapters(), *(m.chapter for m in ALL)}}
    chosen = witnesses(runs)
    pages = {m.stem: m.chapter.read_text().replace(m.find, m.replace, 1) for m in chosen}
    build = run_build(mini_book(tmp_path, pages))
    assert build.returncode != 0, build.log[-3000:]
    assert "BUILD FAILED" in build.log
    executed = json.loads((build.root / "_build" / "execution.json").read_text())
    for m in chosen:
        predicted = runs[m.chapter.stem].mutations[m.id]
        built = executed.get(f"book/{m.stem}")
        assert built is not None, f"{m.stem} was not executed"
        assert not built["succeeded"], f"{m.id}: the runner says it fails, the build passed"
        assert built["error"] == predicted.error, (
            f"{m.id}: the build's error line differs from the runner's:\n"
            f"  build:  {built['error']}\n  runner: {predicted.error}"
        )
        # the line the build prints for it, on the line of its failing call (guard_report)
        assert re.search(rf"^book/{m.stem}\.md:\d+: {re.escape(built['error'])}$", build.log, re.M)


# --- the runner reports every way a mutation can go wrong ---------------------------------

HEADER = (ROOT / "book" / "_template.md").read_text().split("---\n", 2)[1]


def cells(*sources: str) -> str:
    """Code cells; a source starting with ``:tags:`` keeps that line as the cell's options."""
    return "".join(
        f"```{{code-cell}} ipython3\n{textwrap.dedent(s).strip()}\n```\n\n" for s in sources
    )


PAGE = f"---\n{HEADER}---\n# Runner test\n\n" + cells(
    """
    import threading, time
    import torch
    from byhand import check, claim, measure, start_chapter
    start_chapter("9 · Runner")
    X = torch.randn(4, 3)                      # (N, n_in)
    W = torch.randn(3, 2, requires_grad=True)  # (n_in, n_out)
    Y = X @ W                                  # (N, n_out)
    Y.pow(2).mean().backward()
    """,
    """
    G = 2 * Y.detach() / Y.numel()  # dL/dY
    W_g = X.t() @ G                 # dL/dW
    """,
    'check({"dL/dW": (W_g, W.grad)})',
    """
    :tags: [raises-exception]
    check({"dL/dW": (W_g.t(), W.grad)})  # a wrong formula, on purpose
    """,
    'claim("a sum of ones counts them", torch.ones(3).sum() == 3)',
    "time.sleep(0)",
    # PyTorch's profiler leaves a native thread asleep for good: forking goes on beside it
    "timing = measure(lambda: X @ W.detach())",
    'check({"dL/dW (beside the profiler)": ((G.t() @ X).t(), W.grad)})',
    # a Python thread alive from here on: later mutations are replayed from a snapshot.
    # (Pages may not import threading, so the runner's own test page is let through.)
    "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()",
    'X_g = G @ W.detach().t()  # dL/dX\ncheck({"dL/dX (after a thread)": (X_g, G @ W.detach().t())})',
    'check({"dL/dW (after a thread)": (X.t() @ G, W.grad)})',
)


def mutation(find: str, replace: str, **expect) -> Mutation:
    return Mutation(ROOT / "book" / "runner-test.md", find, replace, 0, **expect)


CASES = {
    "caught in a later cell": mutation("W_g = X.t() @ G ", "W_g = X.t() @ G * 1.001 ", quantity="dL/dW"),
    "not caught": mutation("# dL/dW", "# dL/dW, unchanged", quantity="dL/dW"),
    "wrong quantity": mutation("W_g = X.t() @ G ", "W_g = X.t() @ G * 2 ", quantity="dL/dX"),
    "another error": mutation("W_g = X.t() @ G ", "W_g = X.t() @ G_missing ", quantity="dL/dW"),
    "an allowed error": mutation("W_g.t(), W.grad", "W_g.t() * 2, W.grad", quantity="dL/dW"),
    "a false claim": mutation("sum() == 3", "sum() == 4", claim="a sum of ones counts them"),
    "a timeout": mutation("time.sleep(0)", "time.sleep(30)", quantity="dL/dW"),
    "beside the profiler, caught": mutation("(G.t() @ X).t()", "(G.t() @ X).t() * 1.001",
                                            quantity="dL/dW (beside the profiler)"),
    "replayed, caught": mutation('thread)": (X.t() @ G, W.grad)', 'thread)": (X.t() @ G * 1.001, W.grad)',
                                 quantity="dL/dW (after a thread)"),
    "replayed, not caught": mutation("# dL/dX", "# dL/dX, unchanged", quantity="dL/dX (after a thread)"),
    "refused by the guard": mutation("jupytext:\n", "jupyter_text:\n", quantity="dL/dW"),
}  # fmt: skip


@pytest.fixture(scope="session")  # a module's fixtures go when xdist interleaves modules
def runner_test(tmp_path_factory):
    page = tmp_path_factory.mktemp("runner") / "runner-test.md"
    page.write_text(PAGE)
    cases = {
        name: Mutation(page, m.find, m.replace, number, m.quantity, m.claim)
        for number, (name, m) in enumerate(CASES.items(), 1)
    }
    for m in cases.values():
        assert PAGE.count(m.find) == 1, m.find
    refusals = run_chapter.guard_refusals

    def but_threading(name, text):  # the one rule this test page breaks, on purpose
        return [p for p in refusals(name, text) if "imports threading" not in p]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_chapter, "guard_refusals", but_threading)
        # 10 s per cell: "a timeout" sleeps 30 s; the profiler's first use in cell 7 took
        # over 3 s on a loaded machine, and the whole page failed there
        return run(page, list(cases.values()), cwd=ROOT / "book", timeout=10), cases


def test_the_test_page_passes(runner_test):
    result, _ = runner_test
    assert page_problems(result) == []
    assert result.itself.counts() == {"check": 4, "fd_check": 0, "claim": 1}


@pytest.mark.parametrize(
    "case, expected",
    [
        ("caught in a later cell", None),
        ("beside the profiler, caught", None),
        ("replayed, caught", None),
        ("not caught", "did not fail the build"),
        ("replayed, not caught", "did not fail the build"),
        ("an allowed error", "did not fail the build"),
        ("wrong quantity", "expected 'GradientMismatch: [9 · Runner] dL/dX', got 'GradientMismatch: [9 · Runner] dL/dW"),
        ("another error", "got \"NameError: name 'G_missing' is not defined\""),
        ("a timeout", "got 'nbclient.exceptions.CellTimeoutError"),
        ("refused by the guard", "the build would refuse the mutated page before running it: "
                                 "book/runner-test.md has code cells but no jupytext header"),
    ],
)  # fmt: skip
def test_the_runner_reports_what_the_build_would(runner_test, case, expected):
    result, cases = runner_test
    problem = mutation_problem(result, cases[case])
    if expected is None:
        assert problem is None, problem
    else:
        assert problem and expected in problem, problem


def test_the_runner_forks_at_the_edited_cell_and_replays_after_a_thread(runner_test):
    result, cases = runner_test
    later = result.mutations[cases["caught in a later cell"].id]
    assert [c["index"] for c in later.cells] == [1, 2] and later.failed_at == 2
    assert later.replayed is None
    beside = result.mutations[cases["beside the profiler, caught"].id]
    assert beside.replayed is None and beside.failed_at == 7  # forked beside the profiler
    replayed = result.mutations[cases["replayed, caught"].id]
    assert replayed.replayed == 8 and replayed.failed_at == 10
    assert result.itself.threads > 2  # the profiler's thread and the Python thread


def test_a_false_claim_fails_the_page_with_false_claim(runner_test):
    result, cases = runner_test
    out = result.mutations[cases["a false claim"].id]
    assert out.failed_at == 4
    error = out.cells[-1]["error"]
    assert error["ename"] == "FalseClaim" and "[9 · Runner]" in error["evalue"]
    assert "a sum of ones counts them" in error["evalue"]


def test_a_page_whose_demonstration_does_not_raise_fails(tmp_path):
    page = tmp_path / "silent.md"
    page.write_text(
        f"---\n{HEADER}---\n# Silent\n\n"
        + cells(
            "import torch\nfrom byhand import check, start_chapter\nstart_chapter('9 · Silent')",
            ':tags: [raises-exception]\ncheck({"dL/dx": (torch.ones(2), torch.full((2,), 1.0))})',
        )
    )
    problems = page_problems(run(page, cwd=ROOT / "book"))
    assert len(problems) == 1 and "code cell 2" in problems[0], problems
    assert "raises-exception but did not raise" in problems[0], problems


def test_what_a_claim_mutation_must_produce():
    m = mutation("x", "y", claim="torch.relu's gradient at exactly 0 is 0")
    title = "1 · The chain rule"
    line = 'FalseClaim: [1 · The chain rule] the book says: "torch.relu\'s gradient at exactly 0 is 0", but'
    assert m.caught_by(line, title)
    assert not m.caught_by(line.replace("1 · The", "2 · The"), title)
    assert not m.caught_by(line.replace("exactly 0", "exactly 1"), title)
    assert not m.caught_by("GradientMismatch: [1 · The chain rule] dL/dW", title)


def test_the_runner_refuses_what_it_cannot_reproduce(tmp_path):
    page = tmp_path / "p.md"
    weakened = HEADER + "execution:\n  allow_errors: true\n"
    page.write_text(f"---\n{weakened}---\n# P\n\n" + cells("1 + 1"))
    with pytest.raises(CannotSimulate, match="page-level 'execution' settings"):
        plan(page, [], exercises=False)
    page.write_text(
        f"---\n{HEADER.replace('name: python3', 'name: julia')}---\n# P\n\n" + cells("1")
    )
    with pytest.raises(CannotSimulate, match="kernel 'julia'"):
        plan(page, [], exercises=False)
    valid = "from byhand import claim, start_chapter\nstart_chapter('9 · P')\ntwo = 1 + 1\nclaim('1 + 1 is 2', two == 2)"
    page.write_text(f"---\n{HEADER}---\n# P\n\n" + cells(valid))
    header = mutation(
        "format_version: 0.13",
        "format_version: 0.13\n  notebook_metadata_filter: all",
        quantity="x",
    )
    with pytest.raises(CannotSimulate, match="changes the page's header"):
        plan(page, [Mutation(page, header.find, header.replace, 1, "x")], exercises=False)


def test_the_runner_reads_byhands_records():
    import byhand
    import fork_kernel

    assert fork_kernel.RECORD_KEY == byhand.RECORD_KEY


def test_fork_point():
    a, b, c = ({"source": s, "metadata": {}} for s in "abc")
    assert fork_point([a, b, c], [a, b, c]) == 3
    assert fork_point([a, b, c], [a, c, c]) == 1
    assert fork_point([a, b, c], [a, b]) == 2
    assert fork_point([a, b], [a, {"source": "b", "metadata": {"tags": ["x"]}}]) == 1


def test_the_guard_judges_the_intro_like_any_page():
    """The runner asks the guard about the intro as about any page (the intro is the TOC's
    root, and the runner's small TOC once listed it twice, which the guard refused)."""
    intro = ROOT / "book" / "intro.md"
    assert run_chapter.guard_refusals(intro.name, intro.read_text()) == []
    forbidden = intro.read_text() + "\n```{code-cell} ipython3\nimport os\n```\n"
    assert run_chapter.guard_refusals(intro.name, forbidden)
