"""Build matplotlib's font cache before any chapter executes.

On a machine where matplotlib has never run, the first ``import matplotlib.pyplot`` scans
the system's fonts and, when that takes more than 5 s, writes "Matplotlib is building the
font cache; this may take a moment." to stderr. Inside a chapter's kernel that is output
on stderr, which the strict build (``stderr_output: warn`` plus ``-W``) turns into an
error: a first build on a new machine could fail for no fault of the book. So every path
that executes chapters (``scripts/build_book.py``, ``scripts/preview.py``,
``scripts/run_chapter.py``) calls :func:`warm` first, in its own process, where the
message is harmless; the kernels it then starts find the cache ready.

If matplotlib's usual config directory is not writable, matplotlib falls back to a new
temporary directory per process (and says so on stderr, in every kernel).
:func:`warm` then sets ``MPLCONFIGDIR`` to its own temporary directory, so that the
kernels it starts share that one, with the cache already in it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def warm() -> Path:
    """Make sure matplotlib's font cache exists; return matplotlib's cache directory."""
    import matplotlib
    from matplotlib import font_manager  # noqa: F401  (importing it builds the cache)

    cache = Path(matplotlib.get_cachedir())
    if "MPLCONFIGDIR" not in os.environ and cache.is_relative_to(tempfile.gettempdir()):
        os.environ["MPLCONFIGDIR"] = str(cache)
    return cache
