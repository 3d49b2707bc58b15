"""Words and visible code lines per page: how long each page is to read.

``python scripts/chapter_stats.py`` prints one row per TOC page:

* **main words**: prose a reader meets in the main line (Markdown outside code cells,
  math, code blocks, directive options and folded asides);
* **folded words**: prose inside collapsed asides (``{dropdown}`` and ``{admonition}``
  blocks with the ``dropdown`` class), which a reader opens only if they want to;
* **visible code**: lines of code cells a reader sees without clicking
  (cells tagged ``remove-input``, ``remove-cell``, ``hide-input`` or ``hide-cell`` are
  not counted), and **hidden code**: the lines of the other cells;
* **minutes**: main words at 200 words a minute, plus visible code at 15 lines a minute.

With ``--html _build/html`` (after ``make book``) it also reads each built page and prints
what a reader meets there:

* **rendered words**: words of the article as rendered, outside folds, counting code,
  outputs, tables and the badge. A fold is any collapsed ``<details>``: a dropdown, a
  hidden cell, a check's "How close?". Each formula counts as one word; what is hidden from
  everyone (``aria-hidden``, such as a figure's invisible sizers) does not count;
* **footnotes**: notes repeated under outputs (a check's "How close?" note) and real
  footnotes;
* **traceback lines**: lines of error output the page shows, folded or not.

The figures are for people (the second-edition goal: each chapter's main line readable
in about 15 minutes); no test asserts them.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import jupytext
from bs4 import BeautifulSoup

import project
from guard import toc_documents

ROOT = project.ROOT

HIDDEN = {"remove-input", "remove-cell", "hide-input", "hide-cell"}
FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,}|~{3,})\s*(?:\{(?P<name>[\w:-]+)\})?(?P<rest>.*)$")
FOLDED = {"dropdown"}
WORD = re.compile(r"[A-Za-z][\w'’-]*|\d[\d,.]*")
WORDS_PER_MINUTE = 200
CODE_LINES_PER_MINUTE = 15


def prose_words(markdown: str) -> tuple[int, int]:
    """(main, folded) word counts of one Markdown cell."""
    main = folded = 0
    stack: list[dict] = []  # open fences, innermost last
    in_math = in_options = in_yaml = False
    for line in markdown.splitlines():
        stripped = line.strip()
        m = FENCE.match(stripped)
        if (
            m
            and stack
            and m["fence"] == stack[-1]["fence"]
            and not m["name"]
            and not m["rest"].strip()
        ):
            stack.pop()
            continue
        if stack and stack[-1]["code"]:
            continue  # inside a code block or a math directive
        if m and (m["name"] or m["fence"][0] in "`~"):
            name = m["name"] or ""
            stack.append(
                {
                    "fence": m["fence"],
                    "code": m["fence"][0] in "`~"
                    and name in ("", "code", "code-block", "literalinclude", "math"),
                    "folded": name in FOLDED
                    or "dropdown" in m["rest"]
                    or any(f["folded"] for f in stack),
                }
            )
            in_options = True
            continue
        if (in_options or in_yaml) and stripped == "---":
            in_yaml, in_options = not in_yaml, False
            continue
        if in_yaml:
            continue  # the YAML options block of a directive
        in_options = False
        if stripped.startswith("$$"):
            if stripped.count("$$") == 1:
                in_math = not in_math
            continue
        if in_math or re.match(r"^:[\w-]+:", stripped):  # display math, directive option
            if re.match(r"^:class:.*dropdown", stripped) and stack:
                stack[-1]["folded"] = True
            continue
        text = re.sub(r"\$[^$]*\$", " ", line)  # inline math
        text = re.sub(r"`[^`]*`", " x ", text)  # inline code: one word
        text = re.sub(r"\{[\w:-]+\}", "", text)  # roles
        text = re.sub(r"\]\([^)]*\)", "]", text)  # link targets
        count = len(WORD.findall(text))
        if any(f["folded"] for f in stack):
            folded += count
        else:
            main += count
    return main, folded


def page_stats(path: Path) -> dict[str, float]:
    notebook = jupytext.read(path, fmt="md:myst")
    main = folded = visible = hidden = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            m, f = prose_words(cell.source)
            main, folded = main + m, folded + f
        elif cell.cell_type == "code":
            lines = cell.source.splitlines()
            if HIDDEN & set(cell.metadata.get("tags", [])):
                hidden += len(lines)
            else:
                visible += len(lines)
    minutes = main / WORDS_PER_MINUTE + visible / CODE_LINES_PER_MINUTE
    return {
        "main": main,
        "folded": folded,
        "visible": visible,
        "hidden": hidden,
        "minutes": minutes,
    }


def rendered_stats(page: Path) -> dict[str, int]:
    """What a reader meets on one built page (see the module's docstring)."""
    soup = BeautifulSoup(page.read_text(encoding="utf-8"), "html.parser")
    article = soup.find("article")
    if article is None:
        raise SystemExit(f"{page}: no <article> element; is this a page of the book?")
    traceback = sum(
        len(t.get_text().strip().splitlines()) for t in article.select(".output.traceback")
    )
    footnotes = len(article.select(".grad-check details p")) + len(
        article.select(".footnote, aside.footnote")
    )
    for math in article.select(".math, mjx-container"):
        math.replace_with(" formula ")
    for fold in article.find_all("details"):
        fold.decompose()
    for hidden in article.select('.headerlink, .visually-hidden, .sr-only, [aria-hidden="true"]'):
        hidden.decompose()
    words = len(WORD.findall(article.get_text(" ")))
    return {"rendered": words, "footnotes": footnotes, "traceback": traceback}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    parser.add_argument(
        "--html", type=Path, help="a built site (_build/html): also count what its pages show"
    )
    args = parser.parse_args(argv)
    docs = toc_documents(args.root / "_toc.yml")
    rows = [(doc, page_stats(args.root / f"{doc}.md")) for doc in docs]
    if args.html:
        for doc, s in rows:
            built = args.html / f"{doc}.html"
            if not built.exists():
                raise SystemExit(f"{built}: not built; run make book first")
            s.update(rendered_stats(built))
    width = max(len(doc) for doc, _ in rows) + 2
    columns = [
        ("main", "main words", 10),
        ("folded", "folded words", 12),
        ("visible", "visible code", 12),
        ("hidden", "hidden code", 11),
        ("minutes", "minutes", 7),
    ]
    if args.html:
        columns += [
            ("rendered", "rendered words", 14),
            ("footnotes", "footnotes", 9),
            ("traceback", "traceback lines", 15),
        ]

    def line(label: str, s: dict) -> str:
        cells = [
            f"{s[key]:>{w}.0f}" if key == "minutes" else f"{int(s[key]):>{w},}"
            for key, _, w in columns
        ]
        return f"{label:<{width}} " + " ".join(cells)

    head = f"{'page':<{width}} " + " ".join(f"{title:>{w}}" for _, title, w in columns)
    print(head)
    print("-" * len(head))
    totals = dict.fromkeys(rows[0][1], 0.0)
    for doc, s in rows:
        print(line(doc, s))
        for key in totals:
            totals[key] += s[key]
    print("-" * len(head))
    print(line("total", totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
