"""What the scripts and the tests share: where the book's Python code lives, and how many
parallel jobs a build uses by default. The one definition of both.

Importing this module puts ``book/`` (``byhand``) and ``book/_ext`` (the build guard) on
``sys.path``, after ``scripts/``. A script run as ``python scripts/x.py`` has ``scripts/`` on
its path already and starts with ``import project``; the tests get ``scripts/`` from
``pythonpath`` in ``pyproject.toml``, and ``tests/conftest.py`` imports this module.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The folders whose modules the scripts and tests import, in import-precedence order.
IMPORT_PATHS = ("scripts", "book", "book/_ext")

for _path in reversed(IMPORT_PATHS):
    if str(ROOT / _path) not in sys.path:
        sys.path.insert(0, str(ROOT / _path))


def default_jobs() -> int:
    """Parallel Sphinx workers (one kernel each) for a build, unless ``--jobs`` says
    otherwise (``make book JOBS=4``): one per CPU core, at most 4."""
    return min(os.cpu_count() or 1, 4)
