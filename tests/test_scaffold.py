"""``make chapter`` (scripts/new_chapter.py): a new chapter builds on the first try, and
a wrong gradient in it turns the build red with a message naming the chapter and the
quantity; and ``make preview`` re-executes only the chapter that was edited.

Every build here runs on a copy of the book (tests/conftest.py). The builds use a *stub*
copy: the real ``_toc.yml`` and configuration, every existing page replaced by a line of
prose, so that only the chapters the test adds are executed (the whole book is built, and
every chapter executed, once per session by ``built_book``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import preview
from conftest import ROOT, copy_book, mini_book, mini_build, stub_book, toc_docs

NAME = "08-weight-decay"
TITLE = "8 · Weight decay"
SCRIPT = "scripts/new_chapter.py"


def new_chapter(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / SCRIPT), *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def book(tmp_path) -> Path:
    return copy_book(tmp_path / "book")


def test_new_chapter_is_created_and_listed_last_with_comments_kept(book):
    before = (book / "_toc.yml").read_text()
    result = new_chapter(book, NAME, "--title", "Weight decay")
    assert result.returncode == 0, result.stderr
    page = (book / "book" / f"{NAME}.md").read_text()
    assert f"# {TITLE}\n" in page and f'start_chapter("{TITLE}")' in page
    assert "{{" not in page
    after = (book / "_toc.yml").read_text()
    assert toc_docs(book / "_toc.yml")[-1] == f"book/{NAME}"
    # exactly one line inserted: comments and layout untouched
    added = [line for line in after.splitlines() if line not in before.splitlines()]
    assert [line.strip() for line in added] == [f"- file: book/{NAME}"]
    assert len(after.splitlines()) == len(before.splitlines()) + 1
    comments = [line for line in before.splitlines() if line.lstrip().startswith("#")]
    assert all(c in after.splitlines() for c in comments)


def test_title_defaults_to_the_name(book):
    assert new_chapter(book, "08-learning-rate-warmup").returncode == 0
    page = (book / "book" / "08-learning-rate-warmup.md").read_text()
    assert "# 8 · Learning rate warmup\n" in page


@pytest.mark.parametrize(
    "name", ["7-topic", "07_topic", "07-Topic", "07-", "topic", "07-topic/../x", "../07-x", ""]
)
def test_bad_names_are_refused(book, name):
    result = new_chapter(book, name, "--title", "T")
    assert result.returncode == 1
    assert "two digits" in result.stderr
    assert sorted(p.name for p in (book / "book").glob("*.md")) == sorted(
        p.name for p in (ROOT / "book").glob("*.md")
    )


def test_existing_chapters_are_never_overwritten(book):
    existing = book / "book" / "01-chain-rule.md"
    text, toc = existing.read_text(), (book / "_toc.yml").read_text()
    result = new_chapter(book, "01-chain-rule", "--title", "Other")
    assert result.returncode == 1 and "already exists" in result.stderr
    assert existing.read_text() == text and (book / "_toc.yml").read_text() == toc
    # twice in a row: the second call refuses
    assert new_chapter(book, NAME).returncode == 0
    again = new_chapter(book, NAME)
    assert again.returncode == 1 and "already exists" in again.stderr


def test_titles_that_would_break_the_code_are_refused(book):
    result = new_chapter(book, NAME, "--title", 'say "hi"')
    assert result.returncode == 1 and not (book / "book" / f"{NAME}.md").exists()


@pytest.fixture
def stub(tmp_path) -> Path:
    return stub_book(tmp_path / "book")


@pytest.mark.build
def test_new_chapter_builds_on_the_first_try(stub):
    assert new_chapter(stub, NAME, "--title", "Weight decay").returncode == 0
    build = mini_build(stub)
    assert build.returncode == 0, build.log[-5000:]
    assert (build.html / "book" / f"{NAME}.html").is_file()
    assert f"book/{NAME}.md: Executed notebook" in build.log  # it really ran


@pytest.mark.build
def test_a_wrong_gradient_in_the_new_chapter_fails_the_build(stub):
    assert new_chapter(stub, NAME, "--title", "Weight decay").returncode == 0
    page = stub / "book" / f"{NAME}.md"
    text = page.read_text()
    line = "W_g = X.t() @ G"
    assert text.count(line) == 1, "the template's dL/dW line changed; update this test"
    page.write_text(text.replace(line, f"{line} * 1.001"))
    build = mini_build(stub)
    assert build.returncode != 0, "a gradient off by 0.1% must fail the build"
    assert TITLE in build.log and "dL/dW" in build.log, build.log[-5000:]
    assert "GradientMismatch" in build.log


def preview_build(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(root / "scripts" / "preview.py"), "--root", str(root), "--build-only"],
        capture_output=True,
        text=True,
        timeout=1200,
    )


def executed(log: str) -> list[str]:
    return sorted(Path(p).stem for p in re.findall(r"(\S+)\.md: Executed notebook", log))


def test_preview_config_loads_the_book_extensions(book):
    conf = preview.write_conf(book).read_text()
    assert "book/_ext" in conf and "'guard'" in conf
    assert "nb_execution_mode = 'force'" in conf
    assert "external_toc_path = '_toc.yml'" in conf


@pytest.mark.build
def test_preview_re_executes_only_the_edited_chapter(tmp_path):
    template = (ROOT / "book" / "_template.md").read_text()
    chapters = ["01-first", "02-second"]
    pages = {
        stem: template.replace("{{TITLE}}", f"{n} · A chapter")
        for n, stem in enumerate(chapters, 1)
    }
    book = mini_book(tmp_path / "book", pages)
    first = preview_build(book)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert executed(first.stdout + first.stderr) == chapters
    assert (book / "_build" / "preview" / "html" / "book" / f"{chapters[0]}.html").is_file()
    again = preview_build(book)
    assert again.returncode == 0 and executed(again.stdout + again.stderr) == []
    page = book / "book" / f"{chapters[-1]}.md"
    text = page.read_text()
    heading = re.search(r"^# .*\n", text, re.M).end()
    page.write_text(text[:heading] + "\nA sentence added by the test.\n" + text[heading:])
    edited = preview_build(book)
    assert edited.returncode == 0, edited.stderr[-3000:]
    assert executed(edited.stdout + edited.stderr) == [chapters[-1]]
    html = (book / "_build" / "preview" / "html" / "book" / f"{chapters[-1]}.html").read_text()
    assert "A sentence added by the test." in html
