"""The whole book as one PDF (``make pdf``, scripts/build_pdf.py), read back with poppler.

The PDF is printed once per session from the session's built book (``built_pdf``): every
chapter's title in order, each on the page its contents entry names; a page count in
proportion to the book; every font embedded; no text past the right margin; each page's
badge as the site shows it; the folds moved to the appendices, not cut; the site's links
to it. The checks are functions of a PDF file, and the tests at the end break each promise
on purpose with a small printed page, to show that the check sees it.

Needs Chrome or Chromium and poppler-utils (``pdfinfo``, ``pdftotext``, ``pdffonts``):
without them the tests skip, saying so, except under ``CI=true``, where they fail.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Build, toc_docs
from pages import BOOK_PDF

pytestmark = [pytest.mark.build, pytest.mark.browser]

POPPLER = ("pdfinfo", "pdftotext", "pdffonts")
MARGIN = 17 * 72 / 25.4  # points: scripts/book_pdf.css's @page margin, left and right
# Pages of paper per page of the site: the book has about 8 (97 pages for 12 pages in
# December 2026). Far below or far above means pages went missing or the layout broke.
PAGES_PER_DOC = (3, 25)


def need_tools() -> None:
    in_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
    missing = [tool for tool in POPPLER if shutil.which(tool) is None]
    if missing:
        (pytest.fail if in_ci else pytest.skip)(
            f"the PDF's tests need poppler-utils ({', '.join(missing)} missing)"
        )


def flat(text: str) -> str:
    """Text compared across HTML and PDF: ligatures undone, one space for any whitespace."""
    return " ".join(unicodedata.normalize("NFKC", text).split())


@dataclass
class Printed:
    build: Build
    returncode: int
    log: str

    @property
    def pdf(self) -> Path:
        return self.build.html / BOOK_PDF


@pytest.fixture(scope="session")
def built_pdf(once, built_book) -> Printed:
    def compute() -> Printed:
        proc = subprocess.run(
            [sys.executable, str(built_book.root / "scripts" / "build_pdf.py"), str(built_book.root)],
            capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        return Printed(built_book, proc.returncode, proc.stdout + proc.stderr)

    need_tools()
    assert built_book.returncode == 0, "the book did not build:\n" + built_book.log[-4000:]
    printed = once("built-pdf", compute)
    if printed.returncode and "Chrome or Chromium" in printed.log:
        in_ci = os.environ.get("CI", "").lower() not in ("", "0", "false")
        (pytest.fail if in_ci else pytest.skip)(printed.log[-500:])
    assert printed.returncode == 0, "make pdf failed:\n" + printed.log[-4000:]
    return printed


# --- reading a PDF -------------------------------------------------------------------------
def page_count(pdf: Path) -> int:
    info = subprocess.run(["pdfinfo", str(pdf)], capture_output=True, text=True, check=True)
    return int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.M).group(1))


def page_text(pdf: Path, first: int, last: int | None = None) -> str:
    args = ["pdftotext", "-f", str(first), "-l", str(last or first), str(pdf), "-"]
    return subprocess.run(args, capture_output=True, text=True, check=True).stdout


def destinations(pdf: Path) -> dict[str, int]:
    import build_pdf

    return build_pdf.destinations(pdf)


def unembedded(listing: str) -> list[str]:
    """The fonts of a ``pdffonts`` listing whose "emb" column is not "yes"."""
    rows = listing.splitlines()[2:]  # a header and a rule
    # name, type, encoding, then emb sub uni (yes/no each) and the object's number
    embedded = re.compile(r"\byes\s+(?:yes|no)\s+(?:yes|no)\s+\d+\s+\d+\s*$")
    return [row for row in rows if not embedded.search(row)]


def unembedded_fonts(pdf: Path) -> list[str]:
    listing = subprocess.run(["pdffonts", str(pdf)], capture_output=True, text=True, check=True)
    return unembedded(listing.stdout)


WORD = re.compile(
    r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">(.*?)</word>'
)


def words_past(pdf: Path, margin: float) -> list[str]:
    """Words that start less than ``margin`` (points) from the page's left edge or end less
    than that from its right edge, by page."""
    out = subprocess.run(
        ["pdftotext", "-bbox", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    found = []
    for number, page in enumerate(out.split("<page ")[1:], start=1):
        width = float(re.match(r'width="([\d.]+)"', page).group(1))
        for x0, _y0, x1, _y1, word in WORD.findall(page):
            if float(x0) < margin - 1 or float(x1) > width - margin + 1:
                found.append(f"page {number}: {html.unescape(word)!r} at x {x0}-{x1}")
    return found


def site_title(site: Path, doc: str) -> tuple[str, str]:
    """A page's title as the site shows it, and the id of its section."""
    text = (site / f"{doc}.html").read_text(encoding="utf-8")
    found = re.search(
        r'<section[^>]* id="([^"]+)">\s*(?:<span id="[^"]*"></span>\s*)*<h1[^>]*>(.*?)<a class="headerlink"',
        text, re.S,
    )  # fmt: skip
    return flat(html.unescape(re.sub(r"<[^>]+>", "", found.group(2)))), found.group(1)


def site_badge(site: Path, doc: str) -> str | None:
    text = (site / f"{doc}.html").read_text(encoding="utf-8")
    badge = re.search(r'<p class="byhand-badge">(.*?)</p>', text, re.S)
    if badge is None:
        return None
    return flat(html.unescape(re.sub(r"<[^>]+>", "", badge.group(1))))


# --- the book's PDF ------------------------------------------------------------------------
def test_every_page_in_toc_order_on_the_page_its_entry_names(built_pdf):
    site, pdf = built_pdf.build.html, built_pdf.pdf
    dests = destinations(pdf)
    contents = flat(page_text(pdf, 2))
    previous = 0
    for doc in toc_docs():
        title, section = site_title(site, doc)
        page = dests.get(f"pdf-{section}")
        assert page, f"{doc}: no page of the PDF starts it (destination pdf-{section})"
        assert title in flat(page_text(pdf, page)), f"{doc}: {title!r} is not on page {page}"
        assert page > previous, f"{doc}: on page {page}, not after the page before ({previous})"
        assert re.search(re.escape(title) + r"[ .]*" + str(page) + r"\b", contents), (
            f"{doc}: the contents do not list {title!r} at page {page}"
        )
        previous = page


def test_page_count_in_proportion_to_the_book(built_pdf):
    pages, docs = page_count(built_pdf.pdf), len(toc_docs())
    low, high = (n * docs for n in PAGES_PER_DOC)
    assert low <= pages <= high, f"{pages} pages for {docs} pages of the site: not in {low}-{high}"


def test_every_font_is_embedded(built_pdf):
    assert not unembedded_fonts(built_pdf.pdf), unembedded_fonts(built_pdf.pdf)


def test_no_text_past_the_margins(built_pdf):
    found = words_past(built_pdf.pdf, MARGIN)
    assert not found, "text outside the margins:\n" + "\n".join(found[:20])


def test_each_badge_as_the_site_shows_it(built_pdf):
    site, pdf = built_pdf.build.html, built_pdf.pdf
    text = flat(page_text(pdf, 1, page_count(pdf)))
    badges = {doc: site_badge(site, doc) for doc in toc_docs()}
    assert any(badges.values()), "no page of the site has a badge"
    missing = [doc for doc, badge in badges.items() if badge and badge not in text]
    assert not missing, f"badges not in the PDF as on the site: {missing}"
    version = re.search(r"PyTorch (\d[\w.]*)", next(b for b in badges.values() if b)).group(1)
    assert f"with PyTorch {version}" in flat(page_text(pdf, 1)), "the title page lacks PyTorch"


def test_folds_go_to_the_appendices_not_cut(built_pdf):
    site, pdf = built_pdf.build.html, built_pdf.pdf
    lines = page_text(pdf, 1, page_count(pdf))
    for fold in ("Show code cell source", "Show code cell content", "How close?", "Show solution"):
        assert not re.search(rf"^\s*{re.escape(fold)}\s*$", lines, re.M), (
            f"a fold {fold!r} is printed"
        )
    text = flat(lines)
    further = []
    for doc in toc_docs():
        page = (site / f"{doc}.html").read_text(encoding="utf-8")
        further += re.findall(
            r'<summary class="sd-summary-title[^"]*">\s*(?:<span[^>]*>)?\s*(Going further[^<]*)',
            page,
        )
    appendix = text[text.rindex("Appendix A · Going further") :] if further else ""
    for title in further:
        name = flat(html.unescape(title)).split(":", 1)[-1].strip()
        assert name in appendix, f"'Going further: {name}' is not in appendix A"


def test_the_site_links_the_pdf(built_pdf):
    site = built_pdf.build.html
    for doc in toc_docs():
        page = (site / f"{doc}.html").read_text(encoding="utf-8")
        links = re.findall(r'href="([^"]*' + re.escape(BOOK_PDF) + ')"', page)
        assert links, f"{doc}: no link to {BOOK_PDF} (the download menu)"
        for link in links:
            assert ((site / doc).parent / link).resolve() == built_pdf.pdf.resolve(), link
    intro = (site / f"{toc_docs()[0]}.html").read_text(encoding="utf-8")
    assert 'class="bh-book-pdf"' in intro, "the intro does not link the PDF"


# --- the checks see what they look for -------------------------------------------------------
@pytest.fixture(scope="module")
def chromium():
    need_tools()
    from test_browser import CHROMIUM_ARGS

    playwright = pytest.importorskip("playwright.sync_api")
    from find_browser import BrowserNotFound, find_browser

    try:
        found = find_browser()
    except BrowserNotFound as error:
        pytest.skip(str(error))
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(**found.launch_options(), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


WIDE = "W_g = X.t() @ G  # " + "a comment that runs on and on past the edge of the paper " * 3


def test_text_in_the_margin_is_found(chromium, tmp_path):
    """Words in the margin are found (here a margin box's; Chromium scales a page down
    rather than print its text past the margin, which the next test covers)."""
    page = chromium.new_page()
    for name, box in (("in", ""), ("out", '@right-middle { content: "words in the margin" }')):
        page.set_content(
            f"<style>@page {{ size: A4; margin: 17mm; {box} }} body {{ margin: 0 }}</style>"
            f"<p>{WIDE}</p>"
        )
        page.pdf(path=str(tmp_path / f"{name}.pdf"))
    page.close()
    assert not words_past(tmp_path / "in.pdf", MARGIN)
    assert words_past(tmp_path / "out.pdf", MARGIN)


def test_a_code_line_that_would_be_clipped_stops_the_pdf(chromium):
    """Chromium drops what a box clips and shrinks a page that is too wide, so the PDF
    itself cannot show a clipped line: build_pdf.py asks book_pdf.js for every box wider
    than the text before printing, and refuses to print if there is one."""
    import build_pdf

    page = chromium.new_page(viewport=build_pdf.TEXT_WIDTH)
    try:
        page.set_content(f'<main class="pdf-book"><pre style="overflow: auto">{WIDE}</pre></main>')
        page.add_script_tag(path=str(build_pdf.JS))
        page.emulate_media(media="print")
        assert page.evaluate("() => window.bookPdf.overflowing()")
        page.add_style_tag(path=str(build_pdf.CSS))
        assert not page.evaluate("() => window.bookPdf.overflowing()")
    finally:
        page.close()


def test_an_unembedded_font_is_found():
    listing = (
        "name                                 type              encoding         emb sub uni object ID\n"
        "------------------------------------ ----------------- ---------------- --- --- --- ---------\n"
        "AAAAAA+DejaVuSans                    CID TrueType      Identity-H       yes yes yes      5  0\n"
        "Helvetica                            Type 1            Standard         no  no  no       9  0\n"
    )
    assert unembedded(listing) == [listing.splitlines()[3]]
