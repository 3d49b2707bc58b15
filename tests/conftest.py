"""Shared fixtures: a copy of the book, built once per test session.

Tests never build into the working tree's ``_build``: each build runs on a copy of
the book's sources in a temporary folder, exactly as ``make book`` would build it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book"))

# What a build reads. node_modules is linked, not copied (math pre-rendering).
BOOK_SOURCES = ("_config.yml", "_toc.yml", "book", "imgs", "scripts", "package.json")
IGNORE = shutil.ignore_patterns("__pycache__", ".ipynb_checkpoints", "*.ipynb")


@dataclass
class Build:
    root: Path
    returncode: int
    log: str
    seconds: float

    @property
    def html(self) -> Path:
        return self.root / "_build" / "html"


def copy_book(dest: Path) -> Path:
    """Copy the book's sources into ``dest`` and return it."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in BOOK_SOURCES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=IGNORE)
        elif src.is_file():
            shutil.copy2(src, dest / name)
    if (ROOT / "node_modules").is_dir():
        (dest / "node_modules").symlink_to(ROOT / "node_modules")
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
