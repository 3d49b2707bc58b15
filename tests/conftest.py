"""Shared fixtures: the book built once per test session, chapter runs, mini books.

Tests never build into the working tree's ``_build``: each build runs on a copy of the
book's sources in a temporary folder, exactly as ``make book`` would build it.

The suite runs on pytest-xdist workers (``pyproject.toml``). What several tests read is
computed once per session for all workers together (``once``): the first worker to ask
computes it under a file lock in the session's shared temporary folder, the others wait
for it and read the result. That is how the whole book is built once (``built_book``)
and each chapter is run once, with its mutations and without its solutions
(``chapter_run``), whichever workers the tests land on.
"""

from __future__ import annotations

import os
import pickle
import resource
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from filelock import FileLock

import books
import project  # first: puts book/ and book/_ext on sys.path (the one place)
import run_chapter
from books import Build, mini_book, run_build  # noqa: F401  (the tests import them from here)
from build_book import copy_book  # noqa: F401
from guard import chapter_documents, toc_documents

ROOT = project.ROOT
T = TypeVar("T")

# The books the tests build are not CI's book: their failures must not become annotations
# on the pull request or rows of the run's job summary (book/_ext/guard_report.py). The
# tests that check those set the variables for their own build. The suite's own summary
# (pytest_terminal_summary, below) goes to the job summary this run was given.
JOB_SUMMARY = os.environ.pop("GITHUB_STEP_SUMMARY", None)
os.environ.pop("GITHUB_ACTIONS", None)


def toc_docs(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The TOC's documents in reading order, e.g. ``["book/intro", "book/01-chain-rule", ...]``."""
    return toc_documents(toc)


def chapters() -> list[Path]:
    """The chapter files, in TOC order (guard.chapter_documents says what a chapter is)."""
    return [ROOT / f"{doc}.md" for doc in chapter_documents(ROOT / "_toc.yml")]


def by_chapter(chapter: Path):
    """Marks a test that reads ``chapter_run(chapter)``: xdist sends all of them to one
    worker (``--dist loadgroup``), so no worker waits for another's run of the chapter."""
    return pytest.mark.xdist_group(f"chapter-{chapter.stem}")


def stub_pages(root: Path, keep: tuple[str, ...] = ()) -> Path:
    """Make every page of the book at ``root`` one line of prose, but the documents in
    ``keep`` (``"book/13-x"``): a build of it executes nothing but those (e.g. a new chapter
    from the template, placed in the real TOC by ``make chapter``)."""
    for doc in toc_documents(root / "_toc.yml"):
        if doc not in keep:
            (root / f"{doc}.md").write_text(f"# {Path(doc).name}\n\nA stand-in page.\n")
    return root


# What repo_copy leaves out: environments, caches, builds, generated files.
NOT_COPIED = (".git", ".venv", "node_modules", "_build", "__pycache__", ".pytest_cache",
              ".ruff_cache", ".hypothesis", ".ipynb_checkpoints", "*.ipynb", "conf.py")  # fmt: skip


def repo_copy(dest: Path) -> Path:
    """A copy of the whole repository (tests, Makefile, locks included), with this one's
    virtual environment and Node packages linked, for a test that runs ``make`` in it as a
    contributor would. Files keep their times, so make's stamps stay newer than the locks."""
    import shutil

    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns(*NOT_COPIED))
    if (ROOT / "node_modules").exists():
        (dest / "node_modules").symlink_to((ROOT / "node_modules").resolve())
    (dest / ".venv").symlink_to(Path(sys.prefix).resolve())  # the environment under test
    return dest


def mini_build(root: Path, timeout: float = 600) -> Build:
    """``run_build`` for a mini book (the intro and a page or two): one Sphinx worker."""
    return run_build(root, timeout, jobs=1)


# --- computed once per session, whichever xdist worker asks first ---------------------------


def _shared_tmp(factory: pytest.TempPathFactory) -> Path:
    base = factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory) -> Path:
    """A temporary folder all xdist workers of this session share (pytest-xdist's recipe:
    a worker's base folder is a subfolder of the session's)."""
    return _shared_tmp(tmp_path_factory)


class Once:
    """``once(name, compute)``: ``compute()``'s result, computed by one worker of the session
    and pickled for the others. An exception is kept too, and raised to every caller."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.memo: dict[str, object] = {}

    def __call__(self, name: str, compute: Callable[[], T]) -> T:
        if name not in self.memo:
            path = self.folder / f"once-{name}.pickle"
            with FileLock(f"{path}.lock"):
                if not path.is_file():
                    try:
                        value = ("ok", compute())
                    except Exception as error:  # kept for every caller, with its traceback
                        value = (
                            "error",
                            f"{type(error).__name__}: {error}\n{traceback.format_exc()}",
                        )
                    path.write_bytes(pickle.dumps(value))
                self.memo[name] = pickle.loads(path.read_bytes())
        status, value = self.memo[name]
        if status == "error":
            pytest.fail(f"{name} could not be computed:\n{value}", pytrace=False)
        return value


@pytest.fixture(scope="session")
def once(shared_tmp) -> Once:
    return Once(shared_tmp)


# The whole book is built in the background from the moment the tests are collected (when
# any of them needs it), so that no worker sits idle waiting for it later: the build runs
# beside the first tests, and is usually done before the first test that reads it starts.
BOOK_BUILD = "built-book"


def start_book_build(shared: Path) -> None:
    """Start ``build_book.py`` on a copy of the book in ``shared/built-book``, once per
    session, in the background; ``built_book`` waits for it. Beside the copy, in
    ``built-book.run/``: the build's log, its process id, and, written last, when the
    build has finished, its exit status."""
    root, run = shared / BOOK_BUILD, shared / f"{BOOK_BUILD}.run"
    with FileLock(f"{run}.lock"):
        if run.exists():
            return
        run.mkdir()
        copy_book(root)
        (run / "started").write_text(str(time.time()))
        script = (
            f'"{sys.executable}" "{root / "scripts" / "build_book.py"}" "{root}" '
            f'> "{run / "build.log"}" 2>&1; echo $? > "{run / "exit-status.tmp"}"; '
            f'mv "{run / "exit-status.tmp"}" "{run / "exit-status"}"'
        )
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
        proc = subprocess.Popen(
            ["sh", "-c", script], env=env, stdin=subprocess.DEVNULL, start_new_session=True
        )
        (run / "pid").write_text(str(proc.pid))
        _BACKGROUND.append(proc)


_BACKGROUND: list[subprocess.Popen] = []


def pytest_sessionfinish(session, exitstatus):
    """Reap the background build (another worker may still need it); stop it if the
    session was interrupted (Ctrl+C)."""
    for proc in _BACKGROUND:
        if proc.poll() is None and exitstatus == pytest.ExitCode.INTERRUPTED:
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait()


def wait_for_book_build(shared: Path, timeout: float = 1200) -> Build:
    start_book_build(shared)  # unless it was started at collection
    root, run = shared / BOOK_BUILD, shared / f"{BOOK_BUILD}.run"
    status, pid = run / "exit-status", int((run / "pid").read_text())
    deadline = time.monotonic() + timeout
    while not status.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"the book's build in {root} did not finish in {timeout:.0f} s")
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            if not status.exists():  # it may have ended just now
                raise RuntimeError(f"the book's build in {root} stopped without a result") from None
        time.sleep(0.5)
    seconds = status.stat().st_mtime - float((run / "started").read_text())
    log = (run / "build.log").read_text(errors="replace")
    return Build(root, int(status.read_text()), log, seconds)


def schedule_rank(item) -> int:
    """Where a test goes in the order xdist hands tests out (it follows collection order):
    the long runs first, so that no worker is left with one at the end; the tests that read
    the built book once it has had time to build; the ``late`` ones last."""
    names = getattr(item, "fixturenames", ())
    if item.get_closest_marker("late"):
        return 4
    if "built_book" in names:
        return 3
    if "chapter_run" in names or set(SHARED) & set(names):
        return 0
    return 1 if item.get_closest_marker("build") else 2


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups
def pytest_itemcollected(item):
    """The tests of a shared fixture on one worker: it computes, they read."""
    for name in SHARED:
        if name in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group(name))


@pytest.hookimpl(trylast=True)  # after -k and -m have deselected what will not run
def pytest_collection_modifyitems(session, config, items):
    items.sort(key=schedule_rank)  # stable: the order within each rank is kept
    if config.option.collectonly:
        return
    if any("built_book" in getattr(item, "fixturenames", ()) for item in items):
        start_book_build(_shared_tmp(config._tmp_path_factory))


@pytest.fixture(scope="session")
def built_book(once, shared_tmp) -> Build:
    """The whole book, built from scratch once for the session (for every worker), with
    the script ``make book`` runs (started in the background at collection)."""
    return once("built-book", lambda: wait_for_book_build(shared_tmp))


@pytest.fixture(scope="session")
def failing_book(once, shared_tmp) -> books.FailingBook:
    """tests/books.py's failing book, built once for the session: every page fails (or
    passes) on its own, and the tests assert each page's outcome."""
    return once("failing-book", lambda: books.build_failing_book(shared_tmp / "failing-book"))


@pytest.fixture(scope="session")
def passing_book(once, shared_tmp) -> books.PassingBook:
    """tests/books.py's passing book, built once for the session, strictly and by the
    preview, then rebuilt with a gradient broken."""
    return once("passing-book", lambda: books.build_passing_book(shared_tmp / "passing-book"))


# Fixtures whose tests go to one xdist worker (their xdist_group), first: the worker that
# computes one (a book, or a module's runner page) runs every test that reads it, so that
# no other worker computes it again, or waits for it.
SHARED = ("failing_book", "passing_book", "runner_test", "broken")


@pytest.fixture(scope="session")
def chapter_run(once) -> Callable[[Path], run_chapter.PageRun]:
    """``chapter_run(chapter)``: the chapter executed once (scripts/run_chapter.py), with
    every mutation of tests/mutations/<chapter>.yml and without its solutions."""

    def run(chapter: Path) -> run_chapter.PageRun:
        def compute():
            return run_chapter.run(chapter, run_chapter.load_mutations(chapter), exercises=True)

        return once(f"chapter-{chapter.stem}", compute)

    return run


# --- CPU time per test: where the suite's time goes (make bench) ---------------------------


def pytest_addoption(parser):
    parser.addoption(
        "--cpu-durations",
        type=int,
        default=0,
        metavar="N",
        help="list the N tests (setup, call, teardown) that used the most CPU time, their "
        "subprocesses included (wall time depends on the machine's load; CPU time much less)",
    )


def _cpu_seconds() -> float:
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    runners = run_chapter.CPU_SECONDS  # long-lived children, not in RUSAGE_CHILDREN yet
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime + runners


def _timed(phase: str):
    @pytest.hookimpl(hookwrapper=True)
    def hook(item, *args):
        start = _cpu_seconds()
        yield
        item.user_properties.append((f"cpu_{phase}", _cpu_seconds() - start))

    return hook


pytest_runtest_setup = _timed("setup")
pytest_runtest_call = _timed("call")
pytest_runtest_teardown = _timed("teardown")

_CPU: list[tuple[float, str, str]] = []


def pytest_runtest_logreport(report):
    for key, seconds in report.user_properties:
        if key == f"cpu_{report.when}":
            _CPU.append((seconds, report.when, report.nodeid))


def pytest_terminal_summary(terminalreporter, config):
    if JOB_SUMMARY and not hasattr(config, "workerinput"):
        write_job_summary(Path(JOB_SUMMARY), terminalreporter.stats)
    count = config.getoption("--cpu-durations")
    if not count or not _CPU:
        return
    terminalreporter.write_sep(
        "=", f"most CPU time: {count} of {len(_CPU)} (all {sum(s for s, _, _ in _CPU):.0f} s)"
    )
    for seconds, when, nodeid in sorted(_CPU, reverse=True)[:count]:
        terminalreporter.write_line(f"{seconds:8.2f}s {when:<8} {nodeid}")


def job_summary(stats: dict) -> str:
    """The test suite's part of the CI run's job summary: the counts, and each failing
    test with the first line of what failed."""
    counts = {k: len(stats.get(k, [])) for k in ("passed", "failed", "error", "skipped")}
    lines = ["## The tests", ""]
    lines.append(", ".join(f"{n} {k}" for k, n in counts.items() if n) or "no tests ran")
    broken = [r for k in ("failed", "error") for r in stats.get(k, [])]
    if broken:
        lines += ["", f"### {len(broken)} failing", ""]
        for report in broken:
            crash = getattr(getattr(report, "longrepr", None), "reprcrash", None)
            message = crash.message.splitlines()[0] if crash and crash.message else ""
            lines.append(f"- `{report.nodeid}` ({report.when}): {message[:300]}")
    return "\n".join(lines) + "\n"


def write_job_summary(path: Path, stats: dict) -> None:
    with path.open("a", encoding="utf-8") as out:
        out.write(job_summary(stats) + "\n")
