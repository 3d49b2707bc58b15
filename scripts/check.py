"""The fast inner loop: ``make check CHAPTER=book/02-batched-backprop.md`` runs this.

Everything that needs no build, in under a minute:

1. ruff: ``ruff check`` and ``ruff format --check`` (``make format`` fixes most findings);
2. the tests that need no build (``pytest -m "not build"``): the helper units, the
   repository checks, the workflow lint, the scaffold's units;
3. each chapter given, through ``scripts/run_chapter.py --exercises --mutations``: the
   chapter as the build runs it, without its solutions, and with each of its mutations.

The chapters run beside the tests (in a process of their own), so the two cores are both
busy; their report is printed after the tests'. Exits non-zero if anything failed.

Usage: ``python scripts/check.py [CHAPTER ...] [-- PYTEST_ARGS]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

import project

ROOT = project.ROOT


def ruff_command() -> list[str]:
    """ruff from this Python's packages (requirements-test.txt), else from the PATH."""
    if importlib.util.find_spec("ruff"):
        return [sys.executable, "-m", "ruff"]
    found = shutil.which("ruff")
    if not found:
        raise SystemExit("check: ruff is not installed: pip install -r requirements-test.txt")
    return [found]


def step(title: str) -> None:
    print(f"\n--- {title}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("chapters", nargs="*", type=Path, help="e.g. book/02-batched-backprop.md")
    parser.add_argument("--pytest", nargs=argparse.REMAINDER, default=[], help="extra pytest args")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    py = sys.executable
    failed: list[str] = []

    chapters = None
    if args.chapters:
        missing = [str(c) for c in args.chapters if not c.is_file()]
        if missing:
            print(f"check: no such chapter: {', '.join(missing)}", file=sys.stderr)
            return 2
        cmd = [py, str(ROOT / "scripts" / "run_chapter.py"), "--exercises", "--mutations"]
        chapters = subprocess.Popen(
            [*cmd, *map(str, args.chapters)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    ruff = ruff_command()
    for title, cmd in (
        ("ruff check", [*ruff, "check", "."]),
        ("ruff format --check", [*ruff, "format", "--check", "."]),
        ("pytest -m 'not build'", [py, "-m", "pytest", "-m", "not build", *args.pytest]),
    ):
        step(title)
        if subprocess.run(cmd, cwd=ROOT).returncode:
            failed.append(title)

    if chapters is not None:
        step("run_chapter.py --exercises --mutations " + " ".join(map(str, args.chapters)))
        out, _ = chapters.communicate()
        print(out, end="")
        if chapters.returncode:
            failed.append("the chapter")
    else:
        step("no chapter given: make check CHAPTER=book/NN-name.md also runs one")

    seconds = time.perf_counter() - start
    verdict = f"FAILED: {', '.join(failed)}" if failed else "all passed"
    print(f"\ncheck: {verdict} in {seconds:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
