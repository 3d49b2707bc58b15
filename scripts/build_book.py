"""Build the whole book strictly and from clean. ``make book`` runs this.

* every code cell executes: ``_config.yml`` sets ``execute_notebooks: force`` and the
  build starts from an empty ``_build/html`` and a fresh Sphinx environment, so no
  cache and no incremental build can report success over a failing cell;
* warnings are errors, and every one is reported (``-n -W --keep-going``);
* chapters execute in parallel (``--jobs``), one kernel per Sphinx worker;
* the pages are rendered by the book's own Sphinx extension (``book/_ext/render.py``:
  math to SVG, page assets, icon font, no request to another host), exactly as
  ``make preview`` renders them.

Usage: ``python scripts/build_book.py [SOURCE_DIR] [--jobs N] [--keep]``.
Exits non-zero when any cell fails, e.g. a manual gradient that differs from autograd.

``--linkcheck`` instead checks every link of the book (``make linkcheck``, the weekly job)
with Sphinx's linkcheck builder and **no cell executed** (``nb_execution_mode: off`` for
that build only): links do not depend on outputs, and the strict HTML build above is
where execution is checked. It builds a copy of the sources in a temporary folder, so the
last HTML build and its ``_build/execution.json`` stay as they were, and writes the report
to ``_build/linkcheck/output.txt`` (and ``output.json``). Exits non-zero on a broken link.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from jupyter_book.sphinx import build_sphinx

import fontcache
import project

ROOT = Path(__file__).resolve().parents[1]
# What a build reads. node_modules is linked, not copied (math pre-rendering).
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "imgs", "scripts", "package.json", ".binder")


def copy_book(dest: Path, root: Path = ROOT) -> Path:
    """Copy the book's sources (of ``root``) into ``dest`` (for tests and benchmarks); return it."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.ipynb", "_build")
    for name in BOOK_SOURCES:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    if (root / "node_modules").is_dir():
        (dest / "node_modules").symlink_to((root / "node_modules").resolve())
    return dest


def build(source: Path, jobs: int, keep: bool = False) -> int:
    html = source / "_build" / "html"
    if not keep:
        for stale in ("html", ".doctrees", "jupyter_execute", ".jupyter_cache"):
            shutil.rmtree(source / "_build" / stale, ignore_errors=True)
        (source / "_build" / "execution.json").unlink(missing_ok=True)
    fontcache.warm()  # before any kernel starts: a first build must not fail on its stderr
    return sphinx(
        source, html, {"nitpicky": True}, freshenv=not keep, warningiserror=True, jobs=jobs
    )


def sphinx(source: Path, out: Path, overrides: dict, **options) -> int:
    """Jupyter Book's Sphinx build of the book at ``source`` (its _config.yml and _toc.yml)
    into ``out``, with ``overrides`` on top of the configuration; 1 if it failed."""
    result = build_sphinx(
        source,
        out,
        noconfig=True,
        path_config=source / "_config.yml",
        confoverrides={
            "external_toc_path": (source / "_toc.yml").as_posix(),
            "latex_individualpages": False,
            **overrides,
        },
        keep_going=True,
        **options,
    )
    return 1 if isinstance(result, Exception) or result else 0


def linkcheck(source: Path, jobs: int) -> int:
    """Check the book's links without executing it; the report goes to _build/linkcheck."""
    report = source / "_build" / "linkcheck"
    shutil.rmtree(report, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="linkcheck-") as tmp:
        copy = copy_book(Path(tmp) / "book", root=source)
        out = copy / "_build" / "linkcheck"
        status = sphinx(
            copy,
            out,
            {
                "nb_execution_mode": "off",
                # a slow server is reported as "timeout", not as a broken link
                "linkcheck_report_timeouts_as_broken": False,
            },
            doctreedir=out / ".doctrees",
            builder="linkcheck",
            freshenv=True,
            jobs=jobs,
        )
        report.mkdir(parents=True, exist_ok=True)
        for name in ("output.txt", "output.json"):
            if (out / name).is_file():
                shutil.copy2(out / name, report / name)
    return status


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=".", type=Path, help="book root (default: .)")
    parser.add_argument(
        "--jobs", type=int, default=project.default_jobs(), help="parallel Sphinx workers"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep _build (incremental; for benchmarks only)"
    )
    parser.add_argument(
        "--linkcheck", action="store_true", help="check links instead, executing nothing"
    )
    args = parser.parse_args(argv)
    source = args.source.resolve()
    if args.linkcheck:
        status = linkcheck(source, args.jobs)
        report = source / "_build" / "linkcheck" / "output.txt"
        print(f"\nLink check {'FAILED' if status else 'passed'}; report: {report}")
        return status
    start = time.perf_counter()
    status = build(source, args.jobs, args.keep)
    seconds = time.perf_counter() - start
    index = source / "_build" / "html" / "index.html"
    if status:
        print(
            f"\nBUILD FAILED after {seconds:.0f} s: see the warnings and tracebacks above.",
            file=sys.stderr,
        )
    else:
        print(f"\nBuilt the book in {seconds:.0f} s. Open {index}")
        print("or serve it on http://127.0.0.1:8000 with: make serve")
    return status


if __name__ == "__main__":
    sys.exit(main())
