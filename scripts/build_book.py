"""Build the whole book strictly and from clean. ``make book`` runs this.

* every code cell executes: ``_config.yml`` sets ``execute_notebooks: force`` and the
  build starts from an empty ``_build/html`` and a fresh Sphinx environment, so no
  cache and no incremental build can report success over a failing cell;
* warnings are errors, and every one is reported (``-n -W --keep-going``);
* chapters execute in parallel (``--jobs``), one kernel per Sphinx worker;
* then ``scripts/postbuild.py`` makes the HTML self-contained and light.

Usage: ``python scripts/build_book.py [SOURCE_DIR] [--jobs N] [--keep]``.
Exits non-zero when any cell fails, e.g. a manual gradient that differs from autograd.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

from jupyter_book.sphinx import build_sphinx

import postbuild
import project

ROOT = Path(__file__).resolve().parents[1]
# What a build reads. node_modules is linked, not copied (math pre-rendering).
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "imgs", "scripts", "package.json")


def copy_book(dest: Path) -> Path:
    """Copy the book's sources into ``dest`` (for tests and benchmarks); return it."""
    dest.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.ipynb", "_build")
    for name in BOOK_SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    if (ROOT / "node_modules").is_dir():
        (dest / "node_modules").symlink_to(ROOT / "node_modules")
    return dest


def build(source: Path, jobs: int, keep: bool = False) -> int:
    html = source / "_build" / "html"
    if not keep:
        for stale in ("html", ".doctrees", "jupyter_execute", ".jupyter_cache"):
            shutil.rmtree(source / "_build" / stale, ignore_errors=True)
        (source / "_build" / "execution.json").unlink(missing_ok=True)
    result = build_sphinx(
        source,
        html,
        noconfig=True,
        path_config=source / "_config.yml",
        confoverrides={
            "external_toc_path": (source / "_toc.yml").as_posix(),
            "nitpicky": True,
            "latex_individualpages": False,
        },
        freshenv=not keep,
        warningiserror=True,
        keep_going=True,
        jobs=jobs,
    )
    if isinstance(result, Exception) or result:
        return 1
    postbuild.postprocess(html)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=".", type=Path, help="book root (default: .)")
    parser.add_argument(
        "--jobs", type=int, default=project.default_jobs(), help="parallel Sphinx workers"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep _build (incremental; for benchmarks only)"
    )
    args = parser.parse_args(argv)
    source = args.source.resolve()
    start = time.perf_counter()
    status = build(source, args.jobs, args.keep)
    seconds = time.perf_counter() - start
    index = source / "_build" / "html" / "index.html"
    if status:
        print(f"\nBUILD FAILED after {seconds:.0f} s: see the warnings and tracebacks above.", file=sys.stderr)
    else:
        print(f"\nBuilt the book in {seconds:.0f} s. Open {index}")
        print("or serve it on http://127.0.0.1:8000 with: make serve")
    return status


if __name__ == "__main__":
    sys.exit(main())
