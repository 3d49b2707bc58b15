"""What changed between two versions of a lock file, one Markdown line per package.

``python scripts/lock_changes.py OLD NEW`` prints e.g. ``- numpy 2.4.6 → 2.4.7``,
``- tzdata (new) 2026.6``, ``- wheel 0.48.0 (removed)``, or nothing when no version
changed. The weekly job puts this list into its issue; the full diff is in its artifact.
A package that a universal lock pins twice (once per Python version, under markers)
shows all its versions.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(text: str) -> dict[str, list[str]]:
    """{package: [versions]} of a lock's text (comments and hash lines skipped)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        match = PIN.match(line)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            found.setdefault(name, []).append(match.group(2))
    return found


def changes(old: str, new: str) -> list[str]:
    before, after = pins(old), pins(new)
    lines = []
    for name in sorted(before.keys() | after.keys()):
        was, now = ", ".join(before.get(name, [])), ", ".join(after.get(name, []))
        if was == now:
            continue
        if not was:
            lines.append(f"- {name} (new) {now}")
        elif not now:
            lines.append(f"- {name} {was} (removed)")
        else:
            lines.append(f"- {name} {was} → {now}")
    return lines


def main(argv: list[str] | None = None) -> int:
    old, new = (Path(p) for p in (argv or sys.argv[1:]))
    print("\n".join(changes(old.read_text(), new.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
