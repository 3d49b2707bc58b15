"""Start a new chapter from the template. ``make chapter NAME=08-topic TITLE='Topic'`` runs this.

Creates ``book/NAME.md`` from ``book/_template.md`` (the title replaces ``{{TITLE}}``)
and appends ``- file: book/NAME`` to the chapters of the last part in ``_toc.yml``.
``_toc.yml`` is edited as text, so its comments and layout stay as they are.

* NAME is two digits, a dash and lower-case words joined by dashes: ``08-weight-decay``.
* The title gets the chapter's number in front, as in the other chapters
  (``7 · Weight decay``), unless it already starts with a digit. Without a title,
  it is made from NAME.
* An existing file, or a NAME already in ``_toc.yml``, is never overwritten.

The new chapter builds and passes as it stands; then replace the template's text and
code with yours (CONTRIBUTING.md says how).

Usage: ``python scripts/new_chapter.py NAME --title TITLE [--root BOOK_ROOT]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

NAME = re.compile(r"^\d\d-[a-z0-9]+(-[a-z0-9]+)*$")
CHAPTERS = re.compile(r"^(?P<indent>[ ]*)chapters:[ ]*(#.*)?$")
ITEM = re.compile(r"^(?P<indent>[ ]*)- ")


class ChapterError(Exception):
    """A reason not to create the chapter, in words a contributor can act on."""


def normalise_name(name: str) -> str:
    name = name.strip()
    name = re.sub(r"^book/", "", name)
    name = re.sub(r"\.md$", "", name)
    if not NAME.match(name):
        raise ChapterError(
            f"NAME {name!r} must be two digits, a dash and lower-case words joined by dashes, "
            "e.g. 08-weight-decay"
        )
    return name


def chapter_title(name: str, title: str) -> str:
    title = " ".join(title.split())
    if not title:  # from the name: 08-weight-decay -> Weight decay
        title = name[3:].replace("-", " ").capitalize()
    if any(c in title for c in '"\\{}'):
        raise ChapterError('the title must not contain ", \\, { or }')
    if not title[0].isdigit():
        title = f"{int(name[:2])} · {title}"
    return title


def add_to_toc(toc_text: str, entry: str) -> str:
    """``toc_text`` with ``- file: entry`` appended to the last ``chapters:`` list."""
    lines = toc_text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if CHAPTERS.match(line.rstrip("\n"))]
    if not starts:
        raise ChapterError("_toc.yml has no `chapters:` list to add the chapter to")
    start = starts[-1]
    outer = len(CHAPTERS.match(lines[start].rstrip("\n"))["indent"])
    item_indent = None
    last = start  # the last line that belongs to this chapters: list
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(lines[i]) - len(lines[i].lstrip(" "))
        if item_indent is None:
            if not (ITEM.match(lines[i]) and indent >= outer):
                break  # an empty `chapters:`
            item_indent = indent
        elif indent < item_indent or (indent == item_indent and not stripped.startswith("- ")):
            break  # the list has ended
        last = i
    if item_indent is None:
        item_indent = outer + 2
    if not lines[last].endswith("\n"):
        lines[last] += "\n"
    lines.insert(last + 1, " " * item_indent + f"- file: {entry}\n")
    return "".join(lines)


def create(root: Path, name: str, title: str) -> Path:
    name = normalise_name(name)
    title = chapter_title(name, title)
    template = root / "book" / "_template.md"
    page = root / "book" / f"{name}.md"
    toc_path = root / "_toc.yml"
    entry = f"book/{name}"
    if page.exists():
        raise ChapterError(f"{page.relative_to(root)} already exists; not overwriting it")
    toc_text = toc_path.read_text(encoding="utf-8")
    if re.search(rf"^\s*-?\s*file:\s*{re.escape(entry)}(\.md)?\s*(#.*)?$", toc_text, re.M):
        raise ChapterError(f"_toc.yml already lists {entry}")
    new_toc = add_to_toc(toc_text, entry)
    parsed = yaml.safe_load(new_toc)  # the edit must leave valid YAML listing the page
    if entry not in yaml.safe_dump(parsed):
        raise ChapterError("could not add the chapter to _toc.yml; add it by hand")
    text = template.read_text(encoding="utf-8").replace("{{TITLE}}", title)
    page.write_text(text, encoding="utf-8")
    toc_path.write_text(new_toc, encoding="utf-8")
    return page


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", help="e.g. 08-weight-decay (becomes book/08-weight-decay.md)")
    parser.add_argument("--title", default="", help="e.g. 'Weight decay'")
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parents[1], help="book root"
    )
    args = parser.parse_args(argv)
    try:
        page = create(args.root.resolve(), args.name, args.title)
    except ChapterError as err:
        print(f"new_chapter: {err}", file=sys.stderr)
        return 1
    rel = page.relative_to(args.root.resolve())
    print(f"Created {rel} and added it to _toc.yml.")
    print(f"Next: edit {rel}, then `make preview` to watch it, and `make book` before committing.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
