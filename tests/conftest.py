"""Shared fixtures: a copy of the book, built once per test session.

Tests never build into the working tree's ``_build``: each build runs on a copy of
the book's sources in a temporary folder, exactly as ``make book`` would build it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
for _path in ("book", "book/_ext", "scripts"):
    sys.path.insert(0, str(ROOT / _path))

from build_book import copy_book  # noqa: E402
from guard import chapter_documents, toc_documents  # noqa: E402


@dataclass
class Build:
    root: Path
    returncode: int
    log: str
    seconds: float

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"


def toc_docs(toc: Path = ROOT / "_toc.yml") -> list[str]:
    """The TOC's documents in reading order, e.g. ``["book/intro", "book/01-chain-rule", ...]``."""
    return toc_documents(toc)


def chapters() -> list[Path]:
    """The chapter files, in TOC order (guard.chapter_documents says what a chapter is)."""
    return [ROOT / f"{doc}.md" for doc in chapter_documents(ROOT / "_toc.yml")]


def mini_book(dest: Path, pages: dict[str, str], config_edits: dict[str, str] | None = None) -> Path:
    """A copy of the book whose only pages are the intro and ``pages`` ({stem: MyST text}).

    ``config_edits`` replaces text in the copy's ``_config.yml`` (e.g. a shorter timeout).
    """
    copy_book(dest)
    for old in (dest / "book").glob("*.md"):
        if not old.name.startswith("_"):
            old.unlink()
    # the real intro links to every chapter; a mini book has other pages
    (dest / "book" / "intro.md").write_text("# A small book for a test\n")
    for stem, text in pages.items():
        (dest / "book" / f"{stem}.md").write_text(text)
    entries = "".join(f"  - file: book/{stem}\n" for stem in pages)
    (dest / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}")
    config = dest / "_config.yml"
    text = config.read_text()
    for old, new in (config_edits or {}).items():
        assert old in text, f"{old!r} is not in _config.yml"
        text = text.replace(old, new)
    config.write_text(text)
    return dest


def run_build(root: Path, timeout: float = 1200) -> Build:
    """Build the book at ``root`` with the same script ``make book`` runs."""
    start = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1"}
    proc = subprocess.run(
        [sys.executable, str(root / "scripts" / "build_book.py"), str(root)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    return Build(root, proc.returncode, proc.stdout + proc.stderr, time.perf_counter() - start)


@pytest.fixture(scope="session")
def built_book(tmp_path_factory) -> Build:
    """The whole book, built from scratch once for the session."""
    return run_build(copy_book(tmp_path_factory.mktemp("book")))
