"""Start a new chapter from the template. ``make chapter NAME=weight-decay TITLE='Weight decay'``
runs this.

Creates, from the templates beside them:

* ``book/NN-NAME.md`` from ``book/_template.md`` (the title replaces ``{{TITLE}}``);
* ``tests/mutations/NN-NAME.yml`` from ``tests/mutations/_template.yml``: the chapter's
  broken-gradient tests, one per manual gradient of the template (CONTRIBUTING.md,
  "Broken-gradient tests for your chapter"), so that ``make check`` passes at once;

and adds ``- file: book/NN-NAME`` to ``_toc.yml`` right after the last numbered chapter
(before the reference pages), edited as text so that its comments and layout stay.

* NAME is lower-case words joined by dashes (``weight-decay``); the chapter gets the next
  free number (one more than the last chapter's). ``13-weight-decay`` asks for number 13,
  which must be free: two chapters never share a number.
* The title gets the chapter's number in front, as in the other chapters
  (``13 · Weight decay``), unless it already starts with a digit. Without a title, it is
  made from NAME. It must fit the template's code block (guard_lint.code_columns).
* An existing file, or a chapter already in ``_toc.yml``, is never overwritten.

The new chapter builds and passes ``make check`` as it stands; then replace the template's
text and code with yours, and its mutations with yours (CONTRIBUTING.md says how).

Usage: ``python scripts/new_chapter.py NAME --title TITLE [--root BOOK_ROOT]``.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import yaml

import project  # noqa: F401  (puts book/_ext on sys.path)
from guard import CHAPTER_NAME, chapter_documents, toc_documents
from guard_lint import wide_code_lines

NAME = re.compile(r"^(?:(?P<number>\d\d)-)?(?P<words>[a-z][a-z0-9]*(?:-[a-z0-9]+)*)$")
CHAPTERS = re.compile(r"^(?P<indent>[ ]*)chapters:[ ]*(#.*)?$")
ITEM = re.compile(r"^(?P<indent>[ ]*)- ")
MUTATIONS = Path("tests") / "mutations"


class ChapterError(Exception):
    """A reason not to create the chapter, in words a contributor can act on."""


def _number(doc: str) -> int:
    return int(Path(doc).name[:2])


def existing_chapters(root: Path) -> dict[int, list[str]]:
    """Every chapter number in use, with the chapters using it: those ``_toc.yml`` lists
    and the ``book/NN-*.md`` files (a file not yet listed still takes its number)."""
    found: dict[int, list[str]] = {}
    docs = chapter_documents(root / "_toc.yml")
    files = [
        f"book/{p.stem}" for p in sorted((root / "book").glob("*.md")) if CHAPTER_NAME.match(p.name)
    ]
    for doc in dict.fromkeys([*docs, *files]):
        found.setdefault(_number(doc), []).append(doc)
    return found


def chapter_name(root: Path, name: str) -> str:
    """``NN-words`` for NAME: its own number if it has one (which must be free), else the
    next free one."""
    name = re.sub(r"\.md$", "", re.sub(r"^book/", "", name.strip()))
    match = NAME.match(name)
    if not match:
        raise ChapterError(
            f"NAME {name!r} must be lower-case words joined by dashes, e.g. weight-decay "
            "(the chapter gets the next free number), or two digits, a dash and those "
            "words, e.g. 13-weight-decay"
        )
    used = existing_chapters(root)
    following = max(used, default=0) + 1
    if match["number"] is None:
        if following > 99:
            raise ChapterError("chapter numbers have two digits, and 99 is taken")
        return f"{following:02d}-{match['words']}"
    number = int(match["number"])
    if number in used:
        taken = ", ".join(f"{doc}.md" for doc in used[number])
        raise ChapterError(
            f"chapter {number:02d} exists already ({taken}); two chapters never share a "
            f"number. The next free one is {following:02d}: "
            f"make chapter NAME={match['words']} (numbers it for you)"
        )
    if number == 0:
        raise ChapterError("chapters are numbered from 01")
    return name


def chapter_title(name: str, title: str) -> str:
    title = " ".join(title.split())
    if not title:  # from the name: 13-weight-decay -> Weight decay
        title = name[3:].replace("-", " ").capitalize()
    if any(c in title for c in '"\\{}'):
        raise ChapterError('the title must not contain ", \\, { or }')
    if not title[0].isdigit():
        title = f"{int(name[:2])} · {title}"
    return title


def _item_end(lines: list[str], start: int) -> int:
    """The last line of the TOC item that starts at ``lines[start]`` (its nested keys and
    sections included)."""
    indent = len(lines[start]) - len(lines[start].lstrip(" "))
    last = start
    for i in range(start + 1, len(lines)):
        stripped = lines[i].strip()
        if not stripped or stripped.startswith("#"):
            continue
        if len(lines[i]) - len(lines[i].lstrip(" ")) <= indent:
            break
        last = i
    return last


def add_to_toc(toc_text: str, entry: str) -> str:
    """``toc_text`` with ``- file: entry`` right after the last chapter numbered below
    ``entry``'s number (the last numbered chapter, for a new last chapter); in a TOC
    without numbered chapters, at the end of the last ``chapters:`` list."""
    lines = toc_text.splitlines(keepends=True)
    number = _number(entry)
    file_line = re.compile(r"^(?P<indent>[ ]*)-?[ ]*file:[ ]*(?P<doc>\S+?)(\.md)?[ ]*(#.*)?$")
    numbered = [
        (i, m)
        for i, line in enumerate(lines)
        if (m := file_line.match(line.rstrip("\n"))) and CHAPTER_NAME.match(Path(m["doc"]).name)
    ]
    if numbered:
        before = [(i, m) for i, m in numbered if _number(m["doc"]) < number]
        if before:
            i, m = before[-1]
            at, indent = _item_end(lines, i) + 1, len(m["indent"])
        else:  # a number below every chapter's: before the first
            at, indent = numbered[0][0], len(numbered[0][1]["indent"])
        if not lines[at - 1].endswith("\n"):
            lines[at - 1] += "\n"
        lines.insert(at, " " * indent + f"- file: {entry}\n")
        return "".join(lines)
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


def create(root: Path, name: str, title: str) -> tuple[Path, Path]:
    """Write the chapter and its mutations, list it in the TOC; return both paths."""
    name = chapter_name(root, name)
    title = chapter_title(name, title)
    page = root / "book" / f"{name}.md"
    mutations = root / MUTATIONS / f"{name}.yml"
    toc_path = root / "_toc.yml"
    entry = f"book/{name}"
    for path in (page, mutations):
        if path.exists():
            raise ChapterError(f"{path.relative_to(root)} already exists; not overwriting it")
    if entry in toc_documents(toc_path):
        raise ChapterError(f"_toc.yml already lists {entry}")
    text = (root / "book" / "_template.md").read_text(encoding="utf-8").replace("{{TITLE}}", title)
    wide = wide_code_lines(text)
    if wide:
        _, line, fits = wide[0]
        raise ChapterError(
            f"the title {title!r} is too long: the template's line {line!r} would be "
            f"{len(line)} columns, and its code block fits {fits} (shorten the title)"
        )
    new_toc = add_to_toc(toc_path.read_text(encoding="utf-8"), entry)
    parsed = yaml.safe_load(new_toc)  # the edit must leave valid YAML listing the page
    if entry not in yaml.safe_dump(parsed):
        raise ChapterError("could not add the chapter to _toc.yml; add it by hand")
    spec = (root / MUTATIONS / "_template.yml").read_text(encoding="utf-8")
    page.write_text(text, encoding="utf-8")
    mutations.parent.mkdir(parents=True, exist_ok=True)
    mutations.write_text(
        spec.replace("{{TITLE}}", title).replace("{{PAGE}}", f"{entry}.md"), encoding="utf-8"
    )
    toc_path.write_text(new_toc, encoding="utf-8")
    return page, mutations


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "name", help="e.g. weight-decay (becomes book/NN-weight-decay.md, NN the next number)"
    )
    parser.add_argument("--title", default="", help="e.g. 'Weight decay'")
    parser.add_argument(
        "--root", type=Path, default=Path(__file__).resolve().parents[1], help="book root"
    )
    args = parser.parse_args(argv)
    root = args.root.resolve()
    try:
        page, mutations = create(root, args.name, args.title)
    except ChapterError as err:
        print(f"new_chapter: {err}", file=sys.stderr)
        return 1
    rel, spec = page.relative_to(root), mutations.relative_to(root)
    docs = toc_documents(root / "_toc.yml")
    after = docs[docs.index(f"book/{page.stem}") - 1]
    print(f"Created {rel}, listed in _toc.yml after {after},")
    print(f"and {spec}, its broken-gradient tests (one per manual gradient).")
    print(f"Next: `make preview` to watch it, `make check CHAPTER={rel}` after each change,")
    print(f"and update {spec} whenever you change a gradient's line (CONTRIBUTING.md).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
