"""Build-speed figures for the book. ``make bench-build`` runs this.

Works on a temporary copy of the book (the sources ``make book`` reads), so it never
touches the working tree or its ``_build``. It measures, and prints next to the goals:

1. the clean, strict build of the whole book (``scripts/build_book.py``: what
   ``make book`` and CI run), and each chapter's execution time from
   ``_build/execution.json``;
2. the live preview's incremental builds (``scripts/preview.py --build-only``, the
   very build ``make preview`` runs after each save): after a first full build,
   a rebuild with nothing changed (median of 3), and a rebuild after editing one
   chapter's prose,
   with the chapters each one re-executed.

Goals, on a 2-core machine: clean build well under a minute; a no-change rebuild
under 5 s; an edit to one chapter re-executes that chapter only. The figures depend
on the machine and its load: they are printed, never asserted by the tests.

Usage: ``python scripts/bench_build.py [--chapter book/01-chain-rule.md] [--jobs N]``.
Exits non-zero only when a build fails.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import project
from build_book import copy_book

ROOT = Path(__file__).resolve().parents[1]
GOAL_CLEAN = 60.0  # seconds, whole book, strict, from clean
GOAL_NOCHANGE = 5.0  # seconds, preview rebuild with nothing changed
EXECUTED = re.compile(r"(?P<page>[\w./-]+)\.md: Executed notebook in (?P<s>[\d.]+) seconds")


def timed(cmd: list[str], cwd: Path, log: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=cwd, capture_output=True, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"},
    )  # fmt: skip
    seconds = time.perf_counter() - start
    out = proc.stdout + proc.stderr
    log.write_text(out)
    if proc.returncode:
        print(out[-4000:], file=sys.stderr)
        raise SystemExit(f"bench: `{' '.join(cmd[1:3])}` failed; full log in {log}")
    return seconds, out


def executed(log: str, root: Path) -> list[str]:
    return [
        Path(m["page"]).relative_to(root).as_posix() if m["page"].startswith("/") else m["page"]
        for m in EXECUTED.finditer(log)
    ]


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def edit_prose(page: Path) -> str:
    """Add a sentence of prose under the chapter's title; return where."""
    lines = page.read_text(encoding="utf-8").splitlines(keepends=True)
    heading = next(i for i, line in enumerate(lines) if line.startswith("# "))
    lines.insert(heading + 1, "\nA sentence added by the benchmark.\n")
    page.write_text("".join(lines), encoding="utf-8")
    return f"after line {heading + 1}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chapter", default=None, help="chapter to edit (default: the first)")
    parser.add_argument("--jobs", type=int, default=project.default_jobs())
    parser.add_argument("--keep", action="store_true", help="keep the temporary copy")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bench-book-"))
    book = copy_book(tmp / "book")
    py = sys.executable
    print(f"Benchmarking a copy of the book in {book} ({os.cpu_count()} CPU cores, "
          f"load average {os.getloadavg()[0]:.1f})\n")  # fmt: skip
    try:
        # 1. the strict clean build
        clean, _ = timed(
            [py, "scripts/build_book.py", ".", "--jobs", str(args.jobs)], book, tmp / "clean.log"
        )
        runtimes = json.loads((book / "_build" / "execution.json").read_text())
        chapters = sorted(runtimes)

        # 2. the preview loop
        preview = [
            py,
            "scripts/preview.py",
            "--root",
            ".",
            "--jobs",
            str(args.jobs),
            "--build-only",
        ]
        first, _ = timed(preview, book, tmp / "preview-first.log")
        repeats = [timed(preview, book, tmp / f"preview-nochange-{i}.log") for i in range(3)]
        nochange = statistics.median(seconds for seconds, _ in repeats)
        nochange_log = "".join(log for _, log in repeats)
        target = args.chapter or next(f"{c}.md" for c in chapters if re.search(r"/\d\d-", c))
        where = edit_prose(book / target)
        edited, edited_log = timed(preview, book, tmp / "preview-edit.log")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)

    nochange_runs = executed(nochange_log, book)
    edited_runs = executed(edited_log, book)
    width = max(len(c) for c in chapters) + 2
    print("Clean strict build of the whole book (make book, CI)")
    print(f"  {'whole book':<{width}} {clean:6.1f} s   goal < {GOAL_CLEAN:.0f} s   "
          f"{verdict(clean < GOAL_CLEAN)}")  # fmt: skip
    print("  execution time per chapter (from _build/execution.json; chapters run in parallel):")
    for chapter in chapters:
        r = runtimes[chapter]
        status = "" if r["succeeded"] else f"   FAILED: {r['error']}"
        print(f"    {chapter:<{width - 2}} {r['runtime'] or 0:6.1f} s{status}")
    print(f"    {'sum':<{width - 2}} {sum(r['runtime'] or 0 for r in runtimes.values()):6.1f} s")
    print()
    print("Live preview (make preview): incremental builds")
    print(f"  {'first build':<{width}} {first:6.1f} s   (every chapter; once per preview)")
    print(f"  {'no-change rebuild':<{width}} {nochange:6.1f} s   goal < {GOAL_NOCHANGE:.0f} s    "
          f"{verdict(nochange < GOAL_NOCHANGE and not nochange_runs)}"
          f"   re-executed: {', '.join(nochange_runs) or 'nothing'}")  # fmt: skip
    only_that = [Path(r).with_suffix("").as_posix() for r in edited_runs] == [
        Path(target).with_suffix("").as_posix()
    ]
    print(f"  {'edit one chapter':<{width}} {edited:6.1f} s   goal: only {target} re-executes   "
          f"{verdict(only_that)}")  # fmt: skip
    print(f"    (edited the prose of {target}, {where}; re-executed: "
          f"{', '.join(edited_runs) or 'nothing'})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
