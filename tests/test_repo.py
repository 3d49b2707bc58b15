"""Fast repository checks (no build): what a reviewer would otherwise have to catch by eye.

* the build guard's rules (book/_ext/guard.py: the TOC, the jupytext headers, the code
  cells that would not run, the execution settings and page code that would switch a
  check off) find nothing wrong. They are the guard's, written once there; the build runs
  them too, and tests/test_doors.py opens each door;
* every image exists and has alt text: MyST ``{figure}``/``{image}`` directives,
  Markdown images, and matplotlib cells (``mystnb: image: alt:`` metadata);
* no tracked .ipynb carries outputs;
* every chapter has >= 2 ``solution`` cells, each followed by an ``exercise-check`` cell;
* no measured number is typed in the prose;
* no code line a reader sees (folded or not) is wider than the code column at 1280 px;
* every learner's question in the intro's table "Your question, answered" links a ``q-...``
  label that exists once, outside any fold, with the chapter the link names; every ``q-...``
  label of the book is in that table;
* ``_config.yml`` loads the guard (a build without it would check nothing of the above).

Each check is a function of the book's root that returns a list of problems, so the
tests below can also run it on a deliberately broken book and watch it fail.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import nbformat
import pytest
import yaml
from myst_nb.core.read import is_myst_markdown_notebook

import guard
from conftest import ROOT
from guard import code_cells  # the one definition of a page's code cells
from guard_lint import tags, wide_code_lines

DIRECTIVE = re.compile(r"^\s*(?P<fence>`{3,}|:{3,})\{(?P<kind>figure|image)\}\s*(?P<target>\S*)")
MD_IMAGE = re.compile(r"!\[(?P<alt>[^\]]*)\]\((?P<target>[^)\s]+)(?:\s+\"[^\"]*\")?\)")
HTML_IMG = re.compile(r"<img\b[^>]*>", re.I)


def pages(root: Path) -> list[Path]:
    """book/*.md pages (not ``_template.md`` and other ``_`` files)."""
    return guard.book_pages(root)


def chapters(root: Path) -> list[Path]:
    """The chapters listed in the TOC (guard.chapter_documents says what a chapter is)."""
    return [
        root / f"{doc}.md"
        for doc in guard.chapter_documents(root / "_toc.yml")
        if (root / f"{doc}.md").is_file()
    ]


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


# --- the checks ------------------------------------------------------------------


def _directive_alt(lines: list[str], start: int) -> bool:
    """Whether the directive opening at ``lines[start]`` has a non-empty alt option."""
    for line in lines[start + 1 :]:
        stripped = line.strip()
        if re.match(r"^:?alt:\s*\S", stripped):
            return True
        if not stripped or stripped.startswith(("```", ":::", "~~~")):
            break
        if not (stripped.startswith(":") or stripped == "---" or re.match(r"^[\w-]+:", stripped)):
            break  # options have ended: this is the caption
    return False


def _exists(page: Path, root: Path, target: str) -> bool:
    target = target.split("#")[0].split("?")[0]
    if target.startswith("/"):
        return (root / target.lstrip("/")).is_file()
    return (page.parent / target).is_file()


def image_problems(root: Path) -> list[str]:
    found = []
    for page in pages(root):
        where = rel(root, page)
        lines = page.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, 1):
            targets = []
            match = DIRECTIVE.match(line)
            if match:
                targets.append(match["target"])
                if not _directive_alt(lines, number - 1):
                    kind, target = match["kind"], match["target"]
                    found.append(f"{where}:{number}: {{{kind}}} {target} has no :alt:")
            for image in MD_IMAGE.finditer(line):
                targets.append(image["target"])
                if not image["alt"].strip():
                    found.append(f"{where}:{number}: image {image['target']} has empty alt text")
            for tag in HTML_IMG.finditer(line):
                src = re.search(r'src="([^"]+)"', tag[0])
                if src:
                    targets.append(src[1])
                if not re.search(r'alt="[^"]+"', tag[0]):
                    found.append(f"{where}:{number}: <img> has no alt text")
            for target in targets:
                if not target:
                    found.append(f"{where}:{number}: image directive without a file")
                elif not re.match(r"^[a-z]+:", target) and not _exists(page, root, target):
                    found.append(f"{where}:{number}: image {target} does not exist")
        text = "\n".join(lines)
        if is_myst_markdown_notebook(text):
            for index, cell in enumerate(code_cells(page), 1):
                if re.search(r"\bplt\.show\(|\.savefig\(", cell.source):
                    alt = cell.metadata.get("mystnb", {}).get("image", {}).get("alt", "")
                    if not str(alt).strip():
                        found.append(
                            f"{where}: code cell {index} draws a figure but has no alt text "
                            "(cell metadata mystnb: image: alt: ...)"
                        )
    return found


# Not notebooks anyone commits: build output, environments, editor checkpoints.
GENERATED = {"_build", ".venv", "node_modules", ".ipynb_checkpoints", ".git", ".pytest_cache"}


def notebook_files(root: Path) -> list[str]:
    """The notebooks (``.ipynb``) that are part of the repository, relative to ``root``: in a
    git checkout, those git tracks; outside one (an unpacked release, say), every notebook
    on disk except generated folders (GENERATED). A git checkout without a working ``git``
    is an error, not an empty list."""
    if (root / ".git").exists():
        try:
            listed = subprocess.run(
                ["git", "ls-files", "-z", "--", "*.ipynb"],
                cwd=root,
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split("\0")
        except (OSError, subprocess.CalledProcessError) as error:
            raise RuntimeError(
                f"{root} is a git checkout, but git cannot list it: {error}"
            ) from error
        return sorted(filter(None, listed))
    return sorted(
        rel(root, p)
        for p in root.rglob("*.ipynb")
        if not GENERATED & set(p.relative_to(root).parts)
    )


def notebook_output_problems(root: Path) -> list[str]:
    found = []
    for name in notebook_files(root):
        path = root / name
        if not path.is_file():
            continue
        notebook = nbformat.read(path, as_version=4)
        code = [c for c in notebook.cells if c.cell_type == "code"]
        if any(c.get("outputs") or c.get("execution_count") for c in code):
            found.append(
                f"{name} is tracked with outputs (clear them, or better, write MyST Markdown)"
            )
    return found


def exercise_problems(root: Path) -> list[str]:
    found = []
    for page in chapters(root):
        where = rel(root, page)
        text = page.read_text(encoding="utf-8")
        if not is_myst_markdown_notebook(text):
            found.append(f"{where} has no exercises (no jupytext header, so no code cells)")
            continue
        cells = code_cells(page)
        solutions = [i for i, c in enumerate(cells) if "solution" in tags(c)]
        if len(solutions) < 2:
            found.append(
                f"{where} has {len(solutions)} solution cell(s); "
                "a chapter needs at least 2 exercises"
            )
        for i in solutions:
            nxt = cells[i + 1] if i + 1 < len(cells) else None
            if nxt is None or "exercise-check" not in tags(nxt):
                found.append(
                    f"{where}: solution cell {i + 1} is not followed by an exercise-check cell"
                )
            if "hide-input" not in tags(cells[i]):
                found.append(f"{where}: solution cell {i + 1} is not tagged hide-input")
            if i == 0 or {"solution", "exercise-check"} & set(tags(cells[i - 1])):
                found.append(f"{where}: solution cell {i + 1} has no stub cell before it")
        for i, c in enumerate(cells):
            if "exercise-check" in tags(c) and not re.search(r"\bcheck\(", c.source):
                found.append(f"{where}: exercise-check cell {i + 1} does not call check(...)")
    return found


# --- numbers in prose are computed, never typed --------------------------------------
# A measured or computed figure in the text (a time, a ratio, bytes, an accuracy, a count)
# comes from the cell that computed it, through myst-nb's glue ({glue:text}`name`). A
# number followed by a unit of measurement in prose, outside math and code, is an error,
# and so is a number in scientific notation (2.2e-16): both look measured.
MEASURE_UNIT = (
    r"(?:×|%|ms\b|µs\b|us\b|ns\b|s\b|[kKMGT]i?B\b|B\b|bytes?\b|times\b|x\b|seconds?\b"
    r"|minutes?\b|hours?\b|steps?\b|epochs?\b|images?\b|entries\b|non-?zeros?\b|percent\b)"
)
TYPED_NUMBER = re.compile(
    r"(?<![\w.\-/^_])\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?\s?"
    + MEASURE_UNIT
    + r"|(?<![\w.])\d(?:\.\d+)?e[-+]?\d+\b"
)
# Definitional constants that may be typed, each with the reason (keep this list short).
TYPED_NUMBER_ALLOWED = {
    "8×8": "the size of scikit-learn's digit images, a property of the data set",
}
CODE_DIRECTIVES = {"", "code", "code-block", "code-cell", "math", "literalinclude", "raw"}
OPENING_FENCE = re.compile(r"^(?P<fence>`{3,}|~{3,}|:{3,})\s*(?:\{(?P<name>[\w:-]+)\})?")


def closes(stripped: str, match: re.Match | None, fence: str | None) -> bool:
    """Whether the line ``stripped`` (its ``OPENING_FENCE`` match) closes the open ``fence``:
    a bare fence of the same character, at least as long (CommonMark's rule)."""
    return bool(
        fence
        and match
        and not match["name"]
        and stripped == match["fence"]
        and match["fence"][0] == fence[0]
        and len(match["fence"]) >= len(fence)
    )


def prose_lines(text: str):
    """(line number, text) of every line of prose in a MyST page: not in front matter, a
    code cell, a code block, display math or a directive's options; inline math, inline
    code and glue roles are blanked out."""
    lines = text.splitlines()
    first = 0
    if lines and lines[0].strip() == "---" and "---" in lines[1:]:
        first = lines.index("---", 1) + 1  # the jupytext header
    stack: list[tuple[str, bool]] = []  # open fences, innermost last: (fence, skip its body?)
    options = None  # None, "start" (a directive just opened) or "yaml" (inside its --- block)
    in_math = ""
    for number, line in enumerate(lines[first:], first + 1):
        stripped = line.strip()
        if options == "yaml":
            options = None if stripped == "---" else "yaml"
            continue
        if options == "start":
            options = None
            if stripped == "---":
                options = "yaml"
                continue
        m = OPENING_FENCE.match(stripped)
        if closes(stripped, m, stack[-1][0] if stack else None):
            stack.pop()
            continue
        if stack and stack[-1][1]:
            continue  # inside a code cell, a code block or a math directive
        if m:
            name = m["name"] or ""
            stack.append((m["fence"], name in CODE_DIRECTIVES and (name or m["fence"][0] != ":")))
            options = "start"
            continue
        if re.match(r"^:[\w-]+:", stripped):
            continue  # a directive option
        if in_math:  # inside display math: "$$" or the environment it was opened with
            if (
                in_math == "$$"
                and stripped.endswith("$$")
                or stripped.startswith(f"\\end{{{in_math}}}")
            ):
                in_math = ""
            continue
        if stripped.startswith("$$"):
            in_math = "" if len(stripped) > 2 and stripped.endswith("$$") else "$$"
            continue
        if stripped.startswith("\\begin{"):
            in_math = stripped[len("\\begin{") :].split("}")[0]
            continue
        clean = re.sub(r"\{glue(?::\w+)?\}`[^`]*`", " ", line)
        clean = re.sub(r"\$[^$]*\$", " ", clean)
        clean = re.sub(r"`[^`]*`", " ", clean)
        yield number, clean


def prose_number_problems(root: Path) -> list[str]:
    found = []
    for page in pages(root):
        where = rel(root, page)
        for number, line in prose_lines(page.read_text(encoding="utf-8")):
            for allowed in TYPED_NUMBER_ALLOWED:
                line = line.replace(allowed, " ")
            for m in TYPED_NUMBER.finditer(line):
                word = m.group(0).strip()
                found.append(
                    f"{where}:{number}: '{word}' is typed in the prose; glue it from the cell "
                    "that computed it ({glue:text}`name`), or write it in math or code if it "
                    "is not a measurement"
                )
    return found


# --- the learners' questions are answered in sight ------------------------------------
# The intro's table "Your question, answered" links each learner's question to the label
# placed right before its answer: ``{ref}`chapter 2 <q-is-wg-a-vector>```. The answer must
# be where a reader sees it: the label outside every fold (a dropdown, an admonition with
# the dropdown class, a toggle, <details>), and not followed by a fold or a hidden cell.
QUESTIONS_HEADING = "## Your question, answered"
QUESTION_LINK = re.compile(r"\{ref\}`(?P<text>[^`<]*?)\s*<(?P<label>q-[\w-]+)>`")
QUESTION_LABEL = re.compile(r"^\((?P<label>q-[\w-]+)\)=\s*$")
FOLDS = {"dropdown", "toggle"}
HIDDEN_CELL = {"hide-cell", "remove-cell", "hide-input", "remove-input", "hide-output"}


def _options(lines: list[str], k: int) -> str:
    """The options of the directive whose opening fence is line ``k - 1``: a YAML block
    between ``---`` lines, or ``:name: value`` lines."""
    if k < len(lines) and lines[k].strip() == "---":
        end = next((j for j in range(k + 1, len(lines)) if lines[j].strip() == "---"), k)
        return "\n".join(lines[k + 1 : end])
    options = []
    while k < len(lines) and re.match(r"^\s*:[\w-]+:", lines[k]):
        options.append(lines[k])
        k += 1
    return "\n".join(options)


def _blocks(text: str):
    """(line number, line, folded, opening) for each line of a MyST page outside code
    cells and code blocks. ``folded``: the line is inside a fold, or opens one. ``opening``:
    for a line that opens a fence, ``{"name": directive, "tags": the cell's tags}``."""
    lines = text.splitlines()
    stack: list[dict] = []  # open fences, innermost last
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        m = OPENING_FENCE.match(stripped)
        if closes(stripped, m, stack[-1]["fence"] if stack else None):
            stack.pop()
            continue
        if stack and stack[-1]["code"]:
            continue
        folded = any(f["folded"] for f in stack) or "<details" in stripped
        if not m:
            yield number, line, folded, None
            continue
        name, options = m["name"] or "", _options(lines, number)
        tags = re.search(r"tags:\s*\[([^\]]*)\]", options)
        fence = {
            "fence": m["fence"],
            "code": name in CODE_DIRECTIVES and (name != "" or m["fence"][0] != ":"),
            "folded": folded or name in FOLDS or bool(re.search(r":?class:.*dropdown", options)),
            "name": name,
            "tags": set(re.findall(r"[\w-]+", tags[1])) if tags else set(),
        }
        stack.append(fence)
        yield number, line, fence["folded"], fence


def question_problems(root: Path) -> list[str]:
    intro = root / "book" / "intro.md"
    text = intro.read_text(encoding="utf-8") if intro.is_file() else ""
    table = (
        text.split(QUESTIONS_HEADING, 1)[1].split("\n#", 1)[0] if QUESTIONS_HEADING in text else ""
    )
    links = [(m["text"], m["label"]) for m in QUESTION_LINK.finditer(table)]
    placed: dict[str, list[tuple[Path, int, bool, dict | None]]] = {}
    for page in pages(root):
        blocks = list(_blocks(page.read_text(encoding="utf-8")))
        for k, (number, line, folded, _) in enumerate(blocks):
            m = QUESTION_LABEL.match(line.strip())
            if m:
                after = next(((f, o) for _, s, f, o in blocks[k + 1 :] if s.strip()), (False, None))
                placed.setdefault(m["label"], []).append((page, number, folded, after))
    found = []
    for label in sorted(set(placed) - {label for _, label in links}):
        page, number, _, _ = placed[label][0]
        found.append(
            f"{rel(root, page)}:{number}: ({label})= is a learner's question missing from the "
            f"intro's table ({QUESTIONS_HEADING!r})"
        )
    for link_text, label in links:
        where = placed.get(label, [])
        if len(where) != 1:
            found.append(
                f"book/intro.md: the question table links {label}, which "
                + ("no page places" if not where else f"{len(where)} pages place")
                + f" as ({label})="
            )
            continue
        page, number, folded, (next_folded, opening) = where[0]
        at = f"{rel(root, page)}:{number}: ({label})="
        if folded:
            found.append(f"{at} is inside a fold; a learner's answer must be in sight")
        elif next_folded or (opening and HIDDEN_CELL & opening["tags"]):
            found.append(f"{at} is followed by a fold or a hidden cell; put the answer in sight")
        chapter = re.search(r"chapter (\d+)", link_text)
        if chapter and not page.name.startswith(f"{int(chapter[1]):02d}-"):
            found.append(
                f"book/intro.md: the question table says {label} is in {link_text!r}, but it is "
                f"in {rel(root, page)}"
            )
    return found


def guard_problems(root: Path) -> list[str]:
    """The build guard's rules (the build runs the same function when it starts)."""
    return guard.problems(root, root / "_toc.yml")


def wide_code_problems(root: Path) -> list[str]:
    """Code a reader sees fits the code column at 1280 px (guard_lint.CODE_COLUMNS): what
    the browser tests would find, found without a browser."""
    return [
        f"{rel(root, page)}:{line}: a code line of {len(text)} columns; its block fits "
        f"{fits} (wrap it, or move a comment to its own line)"
        for page in pages(root)
        for line, text, fits in wide_code_lines(page.read_text(encoding="utf-8"))
    ]


def config_problems(root: Path) -> list[str]:
    """_config.yml loads the guard: without it the build would check none of its rules."""
    config = yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8")) or {}
    local = (config.get("sphinx") or {}).get("local_extensions") or {}
    if local.get("guard") != "book/_ext":
        return [
            "_config.yml does not load the build guard (sphinx: local_extensions: guard: book/_ext)"
        ]
    return []


CHECKS = [
    guard_problems,
    config_problems,
    image_problems,
    notebook_output_problems,
    exercise_problems,
    prose_number_problems,
    wide_code_problems,
    question_problems,
]


# --- the repository passes -------------------------------------------------------


@pytest.mark.parametrize("check", CHECKS, ids=lambda f: f.__name__)
def test_repository(check):
    found = check(ROOT)
    assert not found, f"{check.__name__}:\n  - " + "\n  - ".join(found)


def test_there_are_chapters():
    assert chapters(ROOT), "no book/NN-*.md chapters found"


# --- and each check can fail -----------------------------------------------------

HEADER = (ROOT / "book" / "_template.md").read_text(encoding="utf-8").split("---\n", 2)[1]


def make_book(tmp: Path, files: dict[str, str], toc: list[str]) -> Path:
    (tmp / "book").mkdir(parents=True)
    (tmp / "imgs").mkdir()
    (tmp / "_config.yml").write_text((ROOT / "_config.yml").read_text(encoding="utf-8"))
    for name, text in files.items():
        (tmp / name).write_text(text, encoding="utf-8")
    entries = "\n".join(f"  - file: {t}" for t in toc)
    (tmp / "_toc.yml").write_text(f"format: jb-book\nroot: book/intro\nchapters:\n{entries}\n")
    return tmp


def test_checks_accept_the_template(tmp_path):
    template = (ROOT / "book" / "_template.md").read_text(encoding="utf-8")
    book = make_book(
        tmp_path,
        {"book/intro.md": "# Intro\n", "book/01-x.md": template.replace("{{TITLE}}", "1 · X")},
        ["book/01-x"],
    )
    for check in CHECKS:
        assert check(book) == [], check.__name__


def test_checks_name_every_offending_file(tmp_path):
    no_header = "# Two\n\n```{code-cell} ipython3\nprint(1)\n```\n"
    no_check = f"---\n{HEADER}---\n# Three\n\n```{{code-cell}} ipython3\nprint(1)\n```\n"
    bad_images = (
        "# Four\n\n![](../imgs/a.svg)\n\n![A plot](../imgs/missing.svg)\n\n"
        "```{figure} ../imgs/a.svg\n:width: 50%\n\nA caption, but no alt.\n```\n"
    )
    unchecked_solution = (
        f"---\n{HEADER}---\n# Five\n\n```{{code-cell}} ipython3\ncheck({{}})\n```\n\n"
        "```{code-cell} ipython3\n:tags: [hide-input, solution]\nx = 1\n```\n\n"
        "```{code-cell} ipython3\nplt.show()\n```\n\n"
        "```{code-cell} ipython3\n:tags: [hide-input]\n"
        f"x = {'1' * 87}\n"  # 91 columns, folded: a reader who unfolds it sees it scroll
        "```\n\n"
        "```{code-cell} ipython3\n:tags: [remove-input]\n"
        f"y = {'1' * 87}\n"  # never shown
        "```\n"
    )
    book = make_book(
        tmp_path,
        {
            "book/intro.md": "# Intro\n",
            "book/01-orphan.md": "# Not in the TOC\n",
            "book/02-no-header.md": no_header,
            "book/03-no-check.md": no_check,
            "book/04-images.md": bad_images,
            "book/05-solution.md": unchecked_solution,
            "book/05-again.md": "# Another chapter five\n",
            "imgs/a.svg": "<svg/>",
        },
        [
            f"book/{n}"
            for n in (
                "02-no-header",
                "03-no-check",
                "04-images",
                "05-solution",
                "05-again",
                "99-gone",
            )
        ],  # fmt: skip
    )
    text = {check.__name__: "\n".join(check(book)) for check in CHECKS}
    guard_text = text["guard_problems"]
    assert "book/01-orphan.md is not listed" in guard_text
    assert "_toc.yml lists 'book/99-gone', but there is no book/99-gone.md" in guard_text
    assert "book/02-no-header.md has code cells but no jupytext header" in guard_text
    assert "book/03-no-check.md has code cells but no check" in guard_text
    assert "_toc.yml lists 2 chapters numbered 05 (book/05-solution, book/05-again)" in guard_text
    line = unchecked_solution.splitlines().index(f"x = {'1' * 87}") + 1
    assert text["wide_code_problems"] == (
        f"book/05-solution.md:{line}: a code line of 91 columns; its block fits 88 (wrap it, "
        "or move a comment to its own line)"
    )
    images = text["image_problems"]
    assert "04-images.md:3: image ../imgs/a.svg has empty alt text" in images
    assert "04-images.md:5: image ../imgs/missing.svg does not exist" in images
    assert "04-images.md:7: {figure} ../imgs/a.svg has no :alt:" in images
    assert "05-solution.md: code cell 3 draws a figure but has no alt text" in images
    exercises = text["exercise_problems"]
    assert "book/05-solution.md has 1 solution cell(s)" in exercises
    assert "05-solution.md: solution cell 2 is not followed by an exercise-check cell" in exercises
    assert "book/04-images.md has no exercises" in exercises


def test_alt_text_in_directive_options_is_found(tmp_path):
    good = (
        "# P\n\n```{figure} ../imgs/a.svg\n:width: 50%\n:alt: Two boxes and an arrow\n\n"
        "Caption.\n```\n"
    )
    book = make_book(tmp_path, {"book/intro.md": good, "imgs/a.svg": "<svg/>"}, [])
    assert image_problems(book) == []


def test_tracked_notebooks_with_outputs_are_found(tmp_path):
    output = nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", outputs=[output])])
    nbformat.write(notebook, tmp_path / "scratch.ipynb")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run([*git, "add", "-f", "scratch.ipynb"], cwd=tmp_path, check=True)
    assert notebook_output_problems(tmp_path) == [
        "scratch.ipynb is tracked with outputs (clear them, or better, write MyST Markdown)"
    ]


def test_notebooks_with_outputs_are_found_outside_a_git_checkout(tmp_path):
    output = nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=1)
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", outputs=[output])])
    (tmp_path / "book").mkdir()
    (tmp_path / "_build" / "jupyter_execute").mkdir(parents=True)
    nbformat.write(notebook, tmp_path / "book" / "scratch.ipynb")
    nbformat.write(notebook, tmp_path / "_build" / "jupyter_execute" / "built.ipynb")
    assert not (tmp_path / ".git").exists()
    assert notebook_output_problems(tmp_path) == [
        "book/scratch.ipynb is tracked with outputs (clear them, or better, write MyST Markdown)"
    ]


def test_a_git_checkout_that_git_cannot_read_is_an_error(tmp_path):
    (tmp_path / ".git").write_text("gitdir: /nowhere\n")
    with pytest.raises(RuntimeError, match="git cannot list it"):
        notebook_output_problems(tmp_path)


def test_a_typed_measurement_in_prose_is_found(tmp_path):
    page = (
        "# P\n\nThe broadcast form is 56 times slower and takes 2.3 GB; the check differed by "
        "2.2e-16.\n\nIn math, $16\\,\\text{GB}$ is fine, as is `1.5 s` in code, an 8×8 image, and\n"
        "{glue:text}`ratio` glued.\n\n$$\n3 \\times 4\\text{ GB}\n$$\n\n```python\nt = 5 ms\n```\n"
    )
    book = make_book(tmp_path, {"book/intro.md": page}, [])
    found = prose_number_problems(book)
    assert [f.split("'")[1] for f in found] == ["56 times", "2.3 GB", "2.2e-16"], found
    assert all(f.startswith("book/intro.md:3: ") for f in found)


def test_a_book_without_the_guard_is_found(tmp_path):
    config = (ROOT / "_config.yml").read_text(encoding="utf-8")
    (tmp_path / "_config.yml").write_text(config.replace("guard: book/_ext", "other: book/_ext"))
    assert config_problems(tmp_path) and not config_problems(ROOT)


def test_a_question_out_of_sight_is_found(tmp_path):
    intro = (
        "# Intro\n\n## Your question, answered\n\n| your question | answered in |\n"
        "| --- | --- |\n"
        + "".join(
            f"| {label}? | {{ref}}`{where} <{label}>` |\n"
            for label, where in [
                ("q-open", "chapter 1"),
                ("q-dropdown", "chapter 1"),
                ("q-admonition", "chapter 1"),
                ("q-hidden-cell", "chapter 1"),
                ("q-then-fold", "chapter 1"),
                ("q-missing", "chapter 1"),
                ("q-elsewhere", "chapter 2"),
            ]
        )
        + "\n## Notation\n\n(q-below-the-table)=\nNot a question of the table.\n"
    )
    page = (
        f"---\n{HEADER}---\n# One\n\n(q-open)=\n## In sight\n\nThe answer.\n\n"
        "(q-elsewhere)=\nThe answer, in chapter 1.\n\n"
        ":::{dropdown} Going further\n(q-dropdown)=\nFolded.\n:::\n\n"
        "````{admonition} Aside\n:class: dropdown\n(q-admonition)=\nFolded too.\n````\n\n"
        "(q-hidden-cell)=\n```{code-cell} ipython3\n:tags: [hide-cell]\nx = 1\n```\n\n"
        "(q-then-fold)=\n:::{dropdown} The answer\nFolded.\n:::\n\n"
        "(q-unlisted)=\n## A question the table forgot\n\n```python\n(q-in-code)=\n```\n"
    )
    book = make_book(tmp_path, {"book/intro.md": intro, "book/01-one.md": page}, ["book/01-one"])
    found = "\n".join(question_problems(book))
    assert "q-open" not in found and "q-in-code" not in found, found
    assert "01-one.md:23: (q-dropdown)= is inside a fold" in found, found
    assert "01-one.md:29: (q-admonition)= is inside a fold" in found, found
    assert "01-one.md:33: (q-hidden-cell)= is followed by a fold or a hidden cell" in found, found
    assert "01-one.md:39: (q-then-fold)= is followed by a fold or a hidden cell" in found, found
    assert "links q-missing, which no page places" in found, found
    assert "q-elsewhere is in 'chapter 2', but it is in book/01-one.md" in found, found
    assert "01-one.md:44: (q-unlisted)= is a learner's question missing from" in found, found
    assert "intro.md:17: (q-below-the-table)= is a learner's question missing" in found, found
    assert len(found.splitlines()) == 8, found
