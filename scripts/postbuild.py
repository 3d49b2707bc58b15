"""Post-build step for the HTML book (run by scripts/build_book.py)."""

from __future__ import annotations

from pathlib import Path


def postprocess(html: Path) -> None:
    """Rewrite the built pages in ``html`` in place."""
