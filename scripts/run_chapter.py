"""Execute one page the way the build does, and say what failed: the fast inner loop.

``python scripts/run_chapter.py book/02-batched-backprop.md`` runs the page's code cells
the way the build does (same cell reader as myst-nb, ``book/`` as working directory, a cell
that raises stops the page unless it is tagged ``raises-exception``), then prints

* the cell that raised although it is not tagged ``raises-exception`` (the build would
  fail there), with its error line;
* every ``raises-exception`` cell that did not raise (the build would fail there too), and
  whatever else the build guard finds in an executed page, by the guard's own checks
  (``guard_run.page_problems``, when the guard has them);
* how many quantities passed ``check``, ``fd_check`` and ``claim``.

``--exercises`` also runs the page without its ``solution`` cells: every ``exercise-check``
cell must then fail with ``GradientMismatch`` (tests/test_exercises.py). ``--mutations``
also applies each of the page's broken-gradient mutations (``tests/mutations/<page>.yml``)
and requires the page to fail with the ``GradientMismatch`` that names the quantity (or
the ``FalseClaim`` that names the sentence) (tests/test_broken_gradients.py). ``make check
CHAPTER=...`` runs all three.

How it is fast: ``scripts/fork_kernel.py`` executes the page once, in one process, and
forks a child at the first cell a mutation (or the removal of the solutions) changes; the
child runs the changed cells from there. Nothing is executed twice (except the cells after
one that leaves a thread running, which are replayed: see fork_kernel.Snapshot), and no
Jupyter kernel or Sphinx build is started. Before anything runs, the build guard's own
checks are applied to the page and to each mutated page: what the build would refuse
without running it is reported as such. The tests prove that the runner agrees with the
real build (tests/test_broken_gradients.py builds mutated pages for real and compares),
and the runner refuses, with an error, what it cannot reproduce faithfully (page-level
execution settings, another kernel, a mutation of the header).

Exits non-zero when the build would fail on this page (or a mutation is not caught, or a
stub passes its check). It does not render HTML; run ``scripts/build_book.py`` for that.
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import yaml

import fontcache
import fork_kernel
import project

ROOT = project.ROOT
MUTATIONS = ROOT / "tests" / "mutations"
ENGINE = Path(__file__).resolve().parent / "fork_kernel.py"
# Forking is only safe without thread pools: every BLAS/OpenMP runtime torch, numpy and
# scikit-learn may load runs single-threaded in the runner (results agree with the build's
# to rounding; the checks' float64 tolerances are far wider).
SINGLE_THREADED = {
    name: "1"
    for name in (
        "OMP_NUM_THREADS",
        "MKL_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
    )
}
# What an ipykernel sets before the page runs (ipykernel/kernelapp.py): figures are shown
# by matplotlib's inline backend.
KERNEL_ENV = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
# Run once before the page (fork_kernel.Runner.warm_up): a page's first check imports
# sympy (through torch.unravel_index), and its first failing check formats IPython's first
# traceback; each costs about a second, which every child forked before that point would
# otherwise pay again. Neither draws random numbers, changes a default or binds a name.
WARMUP = """
import torch
import byhand
byhand.compare({"warm-up": (torch.zeros(2), torch.zeros(2))})
"""
WARMUP_CELL = (
    '__import__("byhand").compare({"warm-up": '
    '(__import__("torch").zeros(2), __import__("torch").ones(2))})'
)


class CannotSimulate(RuntimeError):
    """The page does something the runner cannot reproduce faithfully: use a real build."""


def error_line(traceback_text: str | None) -> str:
    """The error line the build prints for a failed page (the guard's own function)."""
    from guard_run import error_line as line

    return line(traceback_text)


def _config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8")) or {}


def cell_timeout() -> float:
    """Seconds a cell may run before the build fails it (``execute.timeout``)."""
    return float((_config().get("execute") or {}).get("timeout") or 30)


def read_notebook(text: str, path: Path | None = None) -> nbformat.NotebookNode:
    """A MyST page as myst-nb reads it for execution (its own reader, the book's syntax)."""
    from myst_nb.core.read import read_myst_markdown_notebook
    from myst_parser.config.main import MdParserConfig

    extensions = (_config().get("parse") or {}).get("myst_enable_extensions") or []
    config = MdParserConfig(enable_extensions=set(extensions))
    return read_myst_markdown_notebook(text, config=config, path=path)


def code_cells(notebook) -> list[dict]:
    return [
        {"source": c.source, "metadata": json.loads(json.dumps(c.metadata))}
        for c in notebook.cells
        if c.cell_type == "code"
    ]


def tags(cell: dict) -> list[str]:
    return list(cell["metadata"].get("tags", []))


def refuse_what_cannot_be_simulated(notebook, where: str) -> None:
    meta = notebook.metadata
    kernel = (meta.get("kernelspec") or {}).get("name", "python3")
    if kernel != "python3":
        raise CannotSimulate(f"{where}: runs on kernel {kernel!r}, not python3")
    for key in ("execution", "mystnb", "myst_nb"):
        if key in meta:
            raise CannotSimulate(
                f"{where}: page-level {key!r} settings change how the page is executed; the "
                "runner only reproduces the book's own settings (build the book instead)"
            )


# --- mutations ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    """One entry of ``tests/mutations/<chapter>.yml``: an edit that must fail the page."""

    chapter: Path
    find: str
    replace: str
    number: int
    quantity: str | None = None
    claim: str | None = None

    @property
    def stem(self) -> str:
        return f"{self.chapter.stem}-mutant-{self.number}"

    @property
    def id(self) -> str:
        return f"{self.chapter.stem}:{self.quantity or 'claim'}:{self.number}"

    def expected(self, title: str) -> str:
        """How the page's error line must start."""
        if self.claim is not None:
            return f"FalseClaim: [{title}] "
        return f"GradientMismatch: [{title}] {self.quantity}"

    def caught_by(self, line: str | None, title: str) -> bool:
        """Whether ``line`` (the page's error line) is the failure this mutation must cause."""
        if not line or not line.startswith(self.expected(title)):
            return False
        if self.claim is None:
            return True
        rest = line[len(self.expected(title)) :]
        return self.claim in rest or repr(self.claim) in rest

    def describe(self, title: str) -> str:
        if self.claim is not None:
            return f"FalseClaim: [{title}] ... {self.claim!r}"
        return self.expected(title)


def mutation_files() -> list[Path]:
    """``tests/mutations/<page>.yml``, one per page (``_template.yml`` is ``make chapter``'s
    template, not a page's)."""
    return sorted(p for p in MUTATIONS.glob("*.yml") if not p.name.startswith("_"))


def missing_mutations(page: Path) -> str:
    """What to say when a chapter has no mutations file."""
    spec = (MUTATIONS / f"{page.stem}.yml").relative_to(ROOT)
    return (
        f"no {spec}: every chapter lists its broken-gradient tests there, one per manual "
        "gradient (the format: tests/mutations/_template.yml, and CONTRIBUTING.md, "
        "'Broken-gradient tests for your chapter'; `make chapter` writes the file)"
    )


def load_mutations(chapter: Path | None = None) -> list[Mutation]:
    """Every mutation (or one chapter's), in file order, numbered from 1 per chapter."""
    specs = [MUTATIONS / f"{chapter.stem}.yml"] if chapter else mutation_files()
    found = []
    for spec in specs:
        if not spec.is_file():
            continue
        page = chapter.resolve() if chapter else ROOT / "book" / f"{spec.stem}.md"
        for number, entry in enumerate(yaml.safe_load(spec.read_text(encoding="utf-8")) or [], 1):
            unknown = set(entry) - {"find", "replace", "quantity", "claim"}
            if unknown or ("quantity" in entry) == ("claim" in entry):
                raise ValueError(
                    f"{spec.name} entry {number}: needs find, replace and exactly one of "
                    f"quantity or claim (unknown keys: {sorted(unknown)})"
                )
            found.append(
                Mutation(
                    page,
                    entry["find"],
                    entry["replace"],
                    number,
                    entry.get("quantity"),
                    entry.get("claim"),
                )
            )
    return found


def is_chapter(page: Path) -> bool:
    """Whether ``page`` is one of the book's chapters (the guard says what a chapter is)."""
    from guard import chapter_documents

    page = page.resolve()
    return any((ROOT / f"{doc}.md") == page for doc in chapter_documents(ROOT / "_toc.yml"))


def chapter_title(text: str) -> str:
    """The title the page passes to ``start_chapter`` (its error messages name it)."""
    match = re.search(r"""start_chapter\(\s*["'](.+?)["']""", text)
    return match.group(1) if match else ""


# --- the plan, the run, the outcome -------------------------------------------------------


def guard_refusals(name: str, text: str) -> list[str]:
    """What the build guard (book/_ext/guard.py) refuses, before anything runs, in a page
    with this text: the guard's own checks, on a book whose only pages are an intro and
    this one. A mutated page the guard would refuse never runs in a real build, so its
    mutation is not caught by a check, whatever the runner would find."""
    import guard

    stem = Path(name).stem
    with tempfile.TemporaryDirectory(prefix="guard-") as tmp:
        root = Path(tmp)
        (root / "book").mkdir()
        # an intro, the TOC's root; the page replaces it when the page is the intro
        (root / "book" / "intro.md").write_text("# Intro\n", encoding="utf-8")
        (root / "book" / f"{stem}.md").write_text(text, encoding="utf-8")
        toc = root / "_toc.yml"
        rest = "" if stem == "intro" else f"chapters:\n  - file: book/{stem}\n"
        toc.write_text(f"format: jb-book\nroot: book/intro\n{rest}")
        return [problem for problem in guard.problems(root, toc) if stem in problem]


def fork_point(base: list[dict], changed: list[dict]) -> int:
    """The first code cell at which ``changed`` differs from ``base`` (source or metadata)."""
    for k, (a, b) in enumerate(zip(base, changed, strict=False)):
        if a != b:
            return k
    return min(len(base), len(changed))


@dataclass
class Outcome:
    """One execution: the page itself, a mutated page, or the page without its solutions."""

    cells: list[dict] = field(default_factory=list)  # executed cells, in order, with "index"
    failed_at: int | None = None  # code cell index (0-based) of the failure, if any
    error: str | None = None  # the error line the build would print
    problem: str | None = None  # the runner could not run it (and why)
    seconds: float = 0.0  # wall time of the run (of a variant: with its replay)
    replayed: int | None = None  # a variant replayed from this code cell (see fork_kernel)
    replay_seconds: float = 0.0
    threads: int = 1  # threads alive at the end (the page itself)
    replays: int = 0  # variants that had to replay cells (the page itself)

    @property
    def succeeded(self) -> bool:
        return self.failed_at is None and self.problem is None

    def counts(self) -> dict[str, int]:
        counts = {"check": 0, "fd_check": 0, "claim": 0}
        for cell in self.cells:
            for out in cell.get("outputs", []):
                record = (out.get("metadata") or {}).get(fork_kernel.RECORD_KEY)
                if record:
                    counts[record["kind"]] = counts.get(record["kind"], 0) + len(
                        record["quantities"]
                    )
        return counts


def build_traceback(cell: dict) -> str:
    """The traceback text myst-nb stores for a failed page (jupyter-cache formats nbclient's
    CellExecutionError, or CellTimeoutError, with ``traceback.format_exc()``)."""
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    node = nbformat.from_dict(
        {
            "cell_type": "code",
            "source": cell["source"],
            "metadata": {},
            "outputs": cell["outputs"],
            "execution_count": None,
        }
    )
    error = cell["error"]
    if error.get("timeout"):
        exc = CellTimeoutError.error_from_timeout_and_cell(
            "Cell execution timed out", cell_timeout(), node
        )
    else:
        exc = CellExecutionError.from_cell_and_msg(node, error)
    try:
        raise exc
    except Exception:
        return traceback.format_exc()


def outcome(result: dict) -> Outcome:
    if "not_run" in result or "crashed" in result:
        return Outcome(problem=result.get("not_run") or result["crashed"])
    replay = result.get("replayed") or {}
    out = Outcome(
        cells=result["cells"],
        failed_at=result["failed_at"],
        seconds=result.get("seconds") or result.get("timing", {}).get("total", 0.0),
        replayed=replay.get("from"),
        replay_seconds=replay.get("seconds", 0.0),
        threads=result.get("threads", 1),
        replays=result.get("timing", {}).get("replayed", 0),
    )
    if out.failed_at is not None:
        failed = next(c for c in out.cells if c["index"] == out.failed_at)
        out.error = error_line(build_traceback(failed))
    return out


@dataclass
class PageRun:
    page: Path
    title: str
    itself: Outcome
    mutations: dict[str, Outcome]  # by Mutation.id
    without_solutions: Outcome | None
    seconds: float
    cells: list[dict]  # the page's code cells
    stub_cells: list[dict] | None


def plan(
    page: Path,
    mutations: list[Mutation],
    exercises: bool,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> tuple[dict, list[dict], dict]:
    text = page.read_text(encoding="utf-8")
    notebook = read_notebook(text, page)
    refuse_what_cannot_be_simulated(notebook, page.name)
    refused = guard_refusals(page.name, text)
    if refused:
        raise CannotSimulate(f"{page.name}: the build refuses it before running it: {refused}")
    base = code_cells(notebook)
    variants, extra = [], {}
    for m in mutations:
        if text.count(m.find) != 1:
            extra[m.id] = f"{m.find!r} occurs {text.count(m.find)} times in {page.name}, not once"
            continue
        refused = guard_refusals(page.name, text.replace(m.find, m.replace, 1))
        if refused:
            extra[m.id] = "the build would refuse the mutated page before running it: " + "; ".join(
                refused
            )
            continue
        mutated = read_notebook(text.replace(m.find, m.replace, 1), page)
        if mutated.metadata != notebook.metadata:
            raise CannotSimulate(
                f"{m.id}: the mutation changes the page's header; build it instead"
            )
        cells = code_cells(mutated)
        k = fork_point(base, cells)
        variants.append({"id": m.id, "fork_at": k, "allow_errors": False, "cells": cells[k:]})
    stub_cells = None
    if exercises:
        stub_cells = [c for c in base if "solution" not in tags(c)]
        k = fork_point(base, stub_cells)
        variants.append(
            {"id": "without-solutions", "fork_at": k, "allow_errors": True, "cells": stub_cells[k:]}
        )
    return (
        {
            "cwd": str(cwd or page.parent),  # myst-nb runs a page in its own folder
            "timeout": timeout or cell_timeout(),
            "warmup": WARMUP,
            "warmup_cell": WARMUP_CELL,
            "cells": base,
            "variants": variants,
        },
        stub_cells,
        extra,
    )


class Server:
    """A ``fork_kernel.py`` process that runs the pages of one folder, each in a process
    forked from its warmed-up start. One per folder, for the life of this process (one per
    pytest-xdist worker): its start-up (Python, IPython, torch, the warm-up) is paid once,
    not once per page."""

    def __init__(self, cwd: str):
        if not hasattr(os, "fork"):
            raise CannotSimulate("the runner needs os.fork (Linux or macOS); build the book")
        fontcache.warm()  # as the build does: the page must not build it (stderr)
        env = {**os.environ, **SINGLE_THREADED, **KERNEL_ENV, "PYTHONUNBUFFERED": "1"}
        self.cpu = 0.0
        self.log = tempfile.TemporaryFile()  # noqa: SIM115  (lives as long as the server)
        self.proc = subprocess.Popen(
            [sys.executable, str(ENGINE), cwd],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            cwd=cwd,
            env=env,
        )

    def run(self, the_plan: dict) -> dict:
        cells = len(the_plan["cells"]) + sum(len(v["cells"]) for v in the_plan["variants"])
        seconds = the_plan["timeout"] * max(1, cells) + 2 * fork_kernel.FORK_SLACK
        fork_kernel.send(self.proc.stdin.fileno(), the_plan)
        result = fork_kernel.receive(self.proc.stdout.fileno(), seconds, None)
        if "cpu" in result:  # the server's CPU time so far, its pages' included
            global CPU_SECONDS
            CPU_SECONDS += result["cpu"] - self.cpu
            self.cpu = result["cpu"]
        if "crashed" in result and "page" not in result:
            self.close(kill=True)
            self.log.seek(0)
            log = self.log.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"scripts/fork_kernel.py failed: {result['crashed']}\n{log}")
        return result

    def close(self, kill: bool = False) -> None:
        if self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.stdin.close()
            self.proc.wait()
        _SERVERS.pop(self.proc.args[-1], None)


_SERVERS: dict[str, Server] = {}
CPU_SECONDS = 0.0
"""CPU time the runners of this process have used (they are long-lived children, which
``resource.RUSAGE_CHILDREN`` counts only once they end; tests/conftest.py adds this)."""


@atexit.register
def _close_servers() -> None:
    for server in list(_SERVERS.values()):
        server.close()


def execute(the_plan: dict) -> dict:
    """Run the plan on this process's runner for the plan's folder (started on first use)."""
    cwd = the_plan["cwd"]
    if cwd not in _SERVERS:
        _SERVERS[cwd] = Server(cwd)
    return _SERVERS[cwd].run(the_plan)


def run(
    page: Path,
    mutations: list[Mutation] = (),
    exercises: bool = False,
    cwd: Path | None = None,
    timeout: float | None = None,
) -> PageRun:
    """Execute ``page``, and each mutation of it, and (``exercises``) it without solutions.

    ``cwd`` (default: the page's folder, as in the build) and ``timeout`` (default:
    ``execute.timeout`` of ``_config.yml``) are for tests of the runner itself."""
    page = page.resolve()
    the_plan, stub_cells, not_applied = plan(page, list(mutations), exercises, cwd, timeout)
    start = time.perf_counter()
    results = execute(the_plan)
    seconds = time.perf_counter() - start
    variants = {k: outcome(v) for k, v in results["variants"].items()}
    for mid, why in not_applied.items():
        variants[mid] = Outcome(problem=why)
    return PageRun(
        page=page,
        title=chapter_title(page.read_text(encoding="utf-8")),
        itself=outcome(results["page"]),
        mutations={m.id: variants[m.id] for m in mutations},
        without_solutions=variants.get("without-solutions"),
        seconds=seconds,
        cells=the_plan["cells"],
        stub_cells=stub_cells,
    )


# --- what is wrong ------------------------------------------------------------------------


def executed_notebook(result: PageRun) -> nbformat.NotebookNode:
    """The page as the build would have executed it: its code cells, each with its
    execution count (None if it never ran) and its outputs (streams, errors, and the
    byhand records of what passed), for the guard's own checks."""
    ran = {c["index"]: c for c in result.itself.cells if not c.get("skipped")}
    cells, count = [], 0
    for k, cell in enumerate(result.cells):
        record = ran.get(k)
        count += record is not None
        outputs = [] if record is None else record.get("outputs", [])
        cells.append(
            {
                "cell_type": "code",
                "source": cell["source"],
                "metadata": cell["metadata"],
                "execution_count": count if record is not None else None,
                "outputs": [
                    o if o["output_type"] in ("stream", "error") else {"data": {}, **o}
                    for o in outputs
                ],
            }
        )
    kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.from_dict(
        {"cells": cells, "metadata": {"kernelspec": kernelspec}, "nbformat": 4, "nbformat_minor": 5}
    )


def guard_page_problems(result: PageRun) -> list[str]:
    """The build guard's own checks of an executed page (``guard_run.page_problems``: a
    demonstration that raised another type than it declares, a cell that never ran, a check
    call site that never ran, ...), applied to the runner's run of it."""
    import guard_run

    out = result.itself
    failed = out.failed_at is not None
    failed_cell = next((c for c in out.cells if c["index"] == out.failed_at), None)
    exec_data = {
        "mtime": time.time(),
        "runtime": out.seconds,
        "method": "force",
        "succeeded": not failed,
        "error": "CellExecutionError" if failed else None,
        "traceback": build_traceback(failed_cell) if failed_cell else None,
    }
    return guard_run.page_problems(exec_data, executed_notebook(result))


def page_problems(result: PageRun) -> list[str]:
    """Where the build would fail on the page itself."""
    if result.itself.problem:
        return [result.itself.problem]
    return guard_page_problems(result)


def mutation_problem(result: PageRun, mutation: Mutation) -> str | None:
    """Why ``mutation`` is not caught the way it must be (None when it is)."""
    out = result.mutations[mutation.id]
    where = f"{mutation.chapter.name}: replacing {mutation.find!r} with {mutation.replace!r}"
    if out.problem:
        return f"{where} could not be run: {out.problem}"
    if out.succeeded:
        return f"{where} did not fail the build"
    if not mutation.caught_by(out.error, result.title):
        return f"{where}: expected {mutation.describe(result.title)!r}, got {out.error!r}"
    return None


def exercise_problems(result: PageRun) -> list[str]:
    """Without its solutions, every exercise-check cell of the page must fail with
    GradientMismatch, and no other cell may fail."""
    out = result.without_solutions
    if out is None:
        return []
    if out.problem:
        return [f"the page without its solutions could not be run: {out.problem}"]
    ran = {c["index"]: c for c in out.cells}
    checks = [k for k, c in enumerate(result.stub_cells) if "exercise-check" in tags(c)]
    problems = [] if checks else ["no exercise-check cells"]
    for number, k in enumerate(checks, 1):
        cell = ran.get(k)
        error = cell and cell["error"]
        if cell is None:
            problems.append(f"exercise {number}'s check never ran")
        elif not error:
            problems.append(
                f"exercise {number}'s stub passes its check as given:\n{cell['source']}"
            )
        elif error.get("timeout") or error["ename"] != "GradientMismatch":
            problems.append(
                f"exercise {number}'s check failed with {error['ename']}: {error['evalue']} "
                "(the stub should return a wrong answer, not crash)"
            )
    problems += [
        f"cell {k + 1} failed without the solutions: {c['error']['ename']}: {c['error']['evalue']}"
        for k, c in sorted(ran.items())
        if c["error"] and not {"exercise-check", "raises-exception"} & set(c["tags"])
    ]
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="+", type=Path)
    parser.add_argument("--exercises", action="store_true", help="also run without solutions")
    parser.add_argument("--mutations", action="store_true", help="also run every mutation")
    args = parser.parse_args(argv)
    status = 0
    for page in args.pages:
        chapter = is_chapter(page)  # other pages have no exercises; mutations if listed
        mutations = load_mutations(page) if args.mutations else []
        try:
            result = run(page, mutations, args.exercises and chapter)
        except CannotSimulate as error:
            print(f"{page}:\n  FAIL {error}")
            status = 1
            continue
        counts = ", ".join(f"{n} {kind}" for kind, n in result.itself.counts().items())
        problems = page_problems(result)
        print(f"{page}: ran in {result.seconds:.1f} s")
        print(f"  the page: {'fails' if problems else 'passes'} ({counts} passed)")
        spec = MUTATIONS / f"{page.stem}.yml"
        if args.exercises and not chapter:
            print("  not a chapter: no exercises to run")
        if args.mutations and not chapter and not spec.is_file():
            print(f"  not a chapter: no {spec.relative_to(ROOT)}, no mutations to run")
        if args.mutations and (chapter or spec.is_file()):
            if not spec.is_file():
                problems.append(missing_mutations(page))
            caught = 0
            for m in mutations:
                problem = mutation_problem(result, m)
                caught += problem is None
                if problem:
                    problems.append(Located(f"mutation {m.id}: {problem}", find_line(page, m)))
            replayed = sum(out.replayed is not None for out in result.mutations.values())
            note = (
                f" ({replayed} replayed after a cell that leaves a thread running)"
                if replayed
                else ""
            )
            print(f"  mutations: {caught} of {len(mutations)} caught{note}")
        if args.exercises and chapter:
            found = exercise_problems(result)
            problems += found
            verdict = "every stub fails its check" if not found else "PROBLEMS"
            print(f"  without the solutions: {verdict}")
        for problem in problems:
            print(located(page, problem))
        status |= bool(problems)
    return status


class Located(str):
    """A problem and the page line it is about."""

    def __new__(cls, text: str, line: int | None):
        found = super().__new__(cls, text)
        found.page_line = line
        return found


def find_line(page: Path, mutation: Mutation) -> int | None:
    """The page line where a mutation's ``find`` starts."""
    text = page.read_text(encoding="utf-8")
    return text.count("\n", 0, text.index(mutation.find)) + 1 if mutation.find in text else None


def located(page: Path, problem: str) -> str:
    """A problem as the build reports it (book/_ext/guard_report.py): on the page's line,
    ``book/x.md:12: ...`` (editors link it), or GitHub's ``::error`` in GitHub Actions."""
    from guard_lint import page_line
    from guard_report import Failure

    line = getattr(problem, "page_line", None)
    if line is None and getattr(problem, "cell", None):
        line = page_line(page, problem.cell, problem.line)
    try:
        where = page.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        where = str(page)
    first, *rest = f"FAIL {problem.removeprefix('failed: ')}".splitlines()
    return "\n".join([Failure(where, line, first).annotation(), *(f"    {r}" for r in rest)])


if __name__ == "__main__":
    sys.exit(main())
