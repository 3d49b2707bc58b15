"""Execute one page the way the build does, and say what failed: the fast inner loop.

``python scripts/run_chapter.py book/02-batched-backprop.md`` runs the page's code cells
in a fresh kernel with ``book/`` as the working directory (as myst-nb does), then prints

* every cell that raised although it is not tagged ``raises-exception`` (the build would
  fail there), with its error line;
* every ``raises-exception`` cell that did not raise (the build would fail there too);
* how many quantities passed ``check``, ``fd_check`` and ``claim``.

Exits non-zero when the build would fail on this page. It does not render HTML; run
``scripts/build_book.py`` for that.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jupytext
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))
from byhand import RECORD_KEY  # noqa: E402


def run(page: Path, timeout: int = 120) -> tuple[list[str], dict[str, int], float]:
    """Execute ``page``; return (problems, counts of checked things, seconds)."""
    notebook = jupytext.read(page, fmt="md:myst")
    start = time.perf_counter()
    NotebookClient(
        notebook,
        timeout=timeout,
        allow_errors=True,
        kernel_name="python3",
        resources={"metadata": {"path": str(page.parent)}},
    ).execute()
    seconds = time.perf_counter() - start
    problems: list[str] = []
    counts = {"check": 0, "fd_check": 0, "claim": 0}
    code = [c for c in notebook.cells if c.cell_type == "code"]
    for number, cell in enumerate(code, 1):
        tags = cell.metadata.get("tags", [])
        errors = [o for o in cell.get("outputs", []) if o.output_type == "error"]
        first = cell.source.strip().splitlines()[0][:70] if cell.source.strip() else ""
        if errors and "raises-exception" not in tags:
            problems.append(f"code cell {number} ({first!r}) raised {errors[0].ename}: {errors[0].evalue}")
        if not errors and "raises-exception" in tags:
            problems.append(f"code cell {number} ({first!r}) is tagged raises-exception but did not raise")
        for out in cell.get("outputs", []):
            record = out.get("metadata", {}).get(RECORD_KEY)
            if record:
                counts[record["kind"]] = counts.get(record["kind"], 0) + len(record["quantities"])
    return problems, counts, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pages", nargs="+", type=Path)
    args = parser.parse_args(argv)
    status = 0
    for page in args.pages:
        problems, counts, seconds = run(page.resolve())
        summary = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        print(f"{page}: executed in {seconds:.1f} s; passed: {summary}")
        for problem in problems:
            print(f"  FAIL {problem}")
        status |= bool(problems)
    return status


if __name__ == "__main__":
    sys.exit(main())
