"""The whole book as one PDF. ``make pdf`` runs this, after ``make book``.

    python scripts/build_pdf.py [SOURCE_DIR] [--jobs N]

Writes ``_build/html/backprop-by-hand.pdf`` (``pages.BOOK_PDF``: the site links it from
the intro and from every page's download menu, and publishes it with the site) in three
steps:

1. **One HTML page of the whole book.** Sphinx's ``singlehtml`` builder writes every page
   of ``_toc.yml``, in order, into ``_build/singlehtml/index.html``, from the environment
   ``make book`` left in ``_build/.doctrees``: nothing runs again, so the PDF shows the
   outputs, checks and page badges of the site's own build, rendered by the book's own
   extension (math as the site's SVG, the same figures). Without a previous ``make book``
   Sphinx reads and executes the book first (a full build's time).
2. **Laid out for paper.** Chromium (the browser the tests use, found by
   ``find_browser.py``, driven by Playwright) opens that page and ``book_pdf.js`` turns it
   into a book: a title page (the PyTorch version and the date of the build), a table of
   contents, one chapter per page; "Going further" folds and exercise solutions move to
   two appendices at the end, each with a line at its place that says where it went;
   folded plotting code and the "How close?" tables are left out (the title page says
   so). ``book_pdf.css`` is the print stylesheet: A4, page numbers, code wrapped at the
   margin instead of clipped, interactive figures in their first state.
3. **Page numbers in the table of contents.** Chromium's printing has no
   ``target-counter()``, so the book is printed more than once: a print's named
   destinations (poppler's ``pdfinfo -dests``) say on which page each entry starts, the
   next print carries those numbers, until a print's numbers are its own (two or three
   prints; the numbers sit in boxes of a fixed width, so lines rarely move).

Why not Jupyter Book's own PDF builders: ``jb build --builder pdfhtml`` prints with
pyppeteer, which downloads a Chromium of its own at first use (impossible offline, and a
second browser); ``--builder pdflatex`` needs a TeX installation of several hundred MB
and typesets from the doctree without the site's HTML outputs: the page badges, the check
lines and the interactive figures are raw HTML, which LaTeX drops.

Needs: Playwright (the test requirements), Chrome or Chromium, and poppler's ``pdfinfo``
(Debian: poppler-utils; macOS: brew install poppler). Exits non-zero, saying what is
missing, without them.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

import project
from build_book import sphinx
from find_browser import BrowserNotFound, find_browser
from guard import toc_documents
from pages import BOOK_PDF

ROOT = project.ROOT
HERE = Path(__file__).resolve().parent
CSS = HERE / "book_pdf.css"
JS = HERE / "book_pdf.js"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
ONE_PAGE = "book.html"
# A4's width less book_pdf.css's margins (17 mm each side), in CSS pixels: the layout
# width of the printed text, where the overflow check runs.
TEXT_WIDTH = {"width": round((210 - 2 * 17) / 25.4 * 96), "height": 1000}
# Prints until the contents' page numbers are those of the print itself (usually two).
PRINTS = 4
# A 3 MB page, laid out and printed several times: minutes on a busy machine.
TIMEOUT_MS = 600_000
PAPER = {"format": "A4", "margin": {"top": "0", "bottom": "0", "left": "0", "right": "0"}}


class PdfError(RuntimeError):
    """What the PDF needs and does not have, said in one line."""


def singlehtml(source: Path, jobs: int) -> Path:
    """The book as one HTML page, from the last build's environment: ``book.html``, at the
    output's root, where its links point from (Sphinx writes it under the root document's
    name, ``book/intro.html``, with links relative to the root)."""
    out = source / "_build" / "singlehtml"
    shutil.rmtree(out, ignore_errors=True)
    status = sphinx(
        source, out, {"nitpicky": True}, builder="singlehtml", warningiserror=True, jobs=jobs
    )
    if status:
        raise PdfError("Sphinx could not write the book as one page (see above)")
    root = toc_documents(source / "_toc.yml")[0]
    shutil.copyfile(out / f"{root}.html", out / ONE_PAGE)
    return out


def toc_parts(source: Path) -> list[dict]:
    """``_toc.yml``'s parts: ``[{"caption": ..., "docs": [...]}, ...]`` (the root first)."""
    toc = yaml.safe_load((source / "_toc.yml").read_text(encoding="utf-8"))
    parts = [{"caption": "", "docs": [toc["root"]]}]
    for part in toc.get("parts", []):
        docs = toc_documents_of(part)
        parts.append({"caption": part.get("caption", ""), "docs": docs})
    listed = [doc for part in parts for doc in part["docs"]]
    if listed != toc_documents(source / "_toc.yml"):
        raise PdfError(f"{source / '_toc.yml'}: parts read as {listed}, not in the TOC's order")
    return parts


def toc_documents_of(part: dict) -> list[str]:
    docs = []
    for entry in part.get("chapters", []):
        docs.append(re.sub(r"\.(md|ipynb)$", "", entry["file"]))
        docs.extend(toc_documents_of({"chapters": entry.get("sections", [])}))
    return docs


def destinations(pdf: Path) -> dict[str, int]:
    """Named destination -> page number (1-based), from poppler's ``pdfinfo -dests``."""
    pdfinfo = shutil.which("pdfinfo")
    if pdfinfo is None:
        raise PdfError("poppler's pdfinfo is missing (Debian: apt install poppler-utils)")
    out = subprocess.run(
        [pdfinfo, "-dests", str(pdf)], capture_output=True, text=True, check=True
    ).stdout
    found = {}
    for line in out.splitlines():
        m = re.match(r"\s*(\d+)\s+\[.*?\]\s+\"(.*)\"\s*$", line)
        if m:
            found[m.group(2)] = int(m.group(1))
    return found


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # the browser closing a connection early is no news


def book_facts(source: Path) -> dict:
    """What the title page names besides the badges' PyTorch and date: the site, the commit."""
    config = yaml.safe_load((source / "_config.yml").read_text(encoding="utf-8"))
    commit = ""
    if shutil.which("git") and (source / ".git").exists():
        git = ["git", "-C", str(source), "rev-parse", "--short", "HEAD"]
        commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()
    return {"site": config["html"]["baseurl"], "commit": commit}


def print_book(html: Path, parts: list[dict], out: Path, facts: dict) -> dict:
    """Print the one-page book to ``out`` (until its contents' page numbers hold: see the
    module's docstring); return what book_pdf.js reported, with each entry's page."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise PdfError("Playwright is not installed (make pdf installs it)") from None
    try:
        found = find_browser()
    except BrowserNotFound as error:
        raise PdfError(f"the PDF is printed by Chrome or Chromium: {error}") from None
    handler = functools.partial(QuietHandler, directory=str(html))
    server = QuietServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(**found.launch_options(), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 794, "height": 1123})
            page.set_default_timeout(TIMEOUT_MS)
            # No script of the site runs: the figures print in their first state, and no
            # handler (the theme's beforeprint) changes the page between two prints.
            page.route("**/*.js*", lambda route: route.abort())
            page.goto(f"http://127.0.0.1:{server.server_address[1]}/{ONE_PAGE}")
            page.add_style_tag(path=str(CSS)).evaluate("(s) => { s.id = 'book-pdf-css'; }")
            page.add_script_tag(path=str(JS))
            report = page.evaluate("(b) => window.bookPdf.prepare(b)", {"parts": parts, **facts})
            page.emulate_media(media="print")
            page.set_viewport_size(TEXT_WIDTH)
            page.evaluate("() => window.bookPdf.settle()")
            clipped = page.evaluate("() => window.bookPdf.overflowing()")
            if clipped:
                raise PdfError(
                    f"{len(clipped)} boxes are wider than the page's text (Chromium would clip "
                    "or shrink them):\n  " + "\n  ".join(clipped[:20])
                )
            numbers: dict[str, int] = {}
            for _ in range(PRINTS):
                page.pdf(path=str(out), outline=True, tagged=True, **PAPER)
                pages = destinations(out)
                missing = [e["dest"] for e in report["entries"] if e["dest"] not in pages]
                if missing:
                    raise PdfError(f"the print has no destination for {missing}")
                printed = {e["dest"]: pages[e["dest"]] for e in report["entries"]}
                if printed == numbers:
                    break
                numbers = printed
                page.evaluate("(numbers) => window.bookPdf.number(numbers)", numbers)
            else:
                raise PdfError(f"the page numbers did not settle in {PRINTS} prints")
            browser.close()
    finally:
        server.shutdown()
        server.server_close()
    report["pages"] = numbers
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", default=ROOT, type=Path, help="book root")
    parser.add_argument("--jobs", type=int, default=project.default_jobs())
    args = parser.parse_args(argv)
    source = args.source.resolve()
    start = time.perf_counter()
    try:
        parts = toc_parts(source)
        html = singlehtml(source, args.jobs)
        out = source / "_build" / "html" / BOOK_PDF
        out.parent.mkdir(parents=True, exist_ok=True)
        print_book(html, parts, out, book_facts(source))
    except PdfError as error:
        print(f"\nPDF FAILED: {error}", file=sys.stderr)
        return 1
    pages = subprocess.run(["pdfinfo", str(out)], capture_output=True, text=True).stdout
    count = re.search(r"^Pages:\s+(\d+)", pages, re.M)
    print(
        f"\nWrote {out}: {count.group(1) if count else '?'} pages, "
        f"{out.stat().st_size / 2**20:.1f} MB, in {time.perf_counter() - start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
