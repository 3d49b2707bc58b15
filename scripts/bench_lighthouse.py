"""Lighthouse figures for every page of the built book, next to the book's goals.

    python scripts/bench_lighthouse.py [HTML_DIR] [--pages book/intro.html ...] [--json OUT]
    python scripts/bench_lighthouse.py _build/preview/html   # the live preview's pages

Serves HTML_DIR (default ``_build/html``; run ``make book`` first) on loopback the way a
static host such as GitHub Pages does (gzip for HTML, CSS, JS, SVG and JSON; a 10-minute
cache lifetime), runs Lighthouse 12 (``node_modules/.bin/lighthouse``, a devDependency:
``npm ci``; or ``$LIGHTHOUSE``, another copy) with its default mobile profile (simulated slow 4G, 4x CPU slowdown) on every
page in ``_toc.yml`` with Debian's Chromium (``$CHROME_PATH``, default /usr/bin/chromium),
and prints a table: performance, accessibility, best practices and SEO scores, FCP, LCP,
TBT, CLS and the bytes a first visit transfers, each the median of ``--runs`` runs (default
3; scores move with the machine's load, printed beside them). The goals (first row) are the book's
targets: performance >= 0.95, accessibility = 1, best practices = 1, SEO >= 0.95 and at
most 300 KB transferred. Marks a figure that misses its goal with "!".

It prints figures; it never asserts (timings depend on the machine). Exit status is 0
unless Lighthouse itself cannot run.
"""

from __future__ import annotations

import argparse
import functools
import gzip
import http.server
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import project
from guard import toc_documents

ROOT = project.ROOT
# $LIGHTHOUSE points at another copy (e.g. a scratch `npm ci` when node_modules omits dev tools)
LIGHTHOUSE = Path(os.environ.get("LIGHTHOUSE", ROOT / "node_modules" / ".bin" / "lighthouse"))
GZIP_TYPES = (
    "text/html",
    "text/css",
    "text/javascript",
    "application/javascript",
    "image/svg+xml",
    "application/json",
    "text/plain",
    "application/xml",
)
CHROME_FLAGS = (
    "--headless=new --no-sandbox --disable-gpu --disable-dev-shm-usage "
    "--disable-background-networking --disable-component-update --disable-sync "
    "--no-first-run"
)
# (key, label, goal, higher is better?, format)
COLUMNS = [
    ("performance", "perf", 0.95, True, "{:.2f}"),
    ("accessibility", "a11y", 1.0, True, "{:.2f}"),
    ("best-practices", "best", 1.0, True, "{:.2f}"),
    ("seo", "seo", 0.95, True, "{:.2f}"),
    ("fcp", "FCP s", None, False, "{:.1f}"),
    ("lcp", "LCP s", None, False, "{:.1f}"),
    ("tbt", "TBT ms", None, False, "{:.0f}"),
    ("cls", "CLS", None, False, "{:.3f}"),
    ("kb", "KB", 300, False, "{:.0f}"),
]


class GzipHandler(http.server.SimpleHTTPRequestHandler):
    """A static host: gzip for text, Cache-Control like GitHub Pages, quiet."""

    cache: dict[Path, bytes] = {}

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if path.is_dir():
            path = path / "index.html"
        ctype = self.guess_type(str(path))
        wants_gzip = "gzip" in self.headers.get("Accept-Encoding", "")
        if not path.is_file() or not wants_gzip or not ctype.startswith(GZIP_TYPES):
            return super().send_head()
        body = self.cache.get(path)
        if body is None:
            body = self.cache[path] = gzip.compress(path.read_bytes(), 6)
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "max-age=600")
        self.end_headers()
        self.wfile.write(body)
        return None

    def end_headers(self):
        if not any(h.startswith(b"Cache-Control") for h in getattr(self, "_headers_buffer", [])):
            self.send_header("Cache-Control", "max-age=600")
        super().end_headers()

    def log_message(self, *args):
        pass


def toc_pages() -> list[str]:
    return [f"{doc}.html" for doc in toc_documents(ROOT / "_toc.yml")]


def lighthouse(url: str) -> dict:
    env = {**os.environ, "CHROME_PATH": os.environ.get("CHROME_PATH", "/usr/bin/chromium")}
    proc = subprocess.run(
        [
            str(LIGHTHOUSE),
            url,
            "--output=json",
            "--output-path=stdout",
            "--quiet",
            f"--chrome-flags={CHROME_FLAGS}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    if proc.returncode:
        raise RuntimeError(f"lighthouse failed on {url}:\n{proc.stderr[-2000:]}")
    report = json.loads(proc.stdout)
    audits, cats = report["audits"], report["categories"]
    figures = {
        key: cats[key]["score"] for key in ("performance", "accessibility", "best-practices", "seo")
    }
    figures.update(
        fcp=audits["first-contentful-paint"]["numericValue"] / 1000,
        lcp=audits["largest-contentful-paint"]["numericValue"] / 1000,
        tbt=audits["total-blocking-time"]["numericValue"],
        cls=audits["cumulative-layout-shift"]["numericValue"],
        kb=audits["total-byte-weight"]["numericValue"] / 1024,
    )
    # What cost points: failing audits of the four categories, for the notes under the table.
    failing = []
    for cat in cats.values():
        for ref in cat["auditRefs"]:
            audit = audits[ref["id"]]
            if ref.get("weight", 0) > 0 and audit.get("score") is not None and audit["score"] < 0.9:
                failing.append(f"{ref['id']} ({audit['score']:.2f})")
    figures["failing"] = failing
    return figures


def row(label: str, values: dict) -> str:
    cells = [f"{label:<34}"]
    for key, _, goal, higher, fmt in COLUMNS:
        value = values.get(key)
        if value is None:
            cells.append(f"{'-':>8}")
            continue
        text = fmt.format(value)
        if goal is not None and (value < goal if higher else value > goal):
            text += "!"
        cells.append(f"{text:>8}")
    return " ".join(cells)


def median_of(runs: list[dict]) -> dict:
    """Each figure's median over the runs; the failing audits of the median-scoring run."""
    figures = {key: statistics.median(run[key] for run in runs) for key, *_ in COLUMNS}
    by_score = sorted(runs, key=lambda run: run["performance"])
    figures["failing"] = by_score[len(by_score) // 2]["failing"]
    return figures


def load() -> str:
    return "load {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", nargs="?", type=Path, default=ROOT / "_build" / "html")
    parser.add_argument(
        "--pages", nargs="*", help="pages to measure (default: every page in _toc.yml)"
    )
    parser.add_argument("--runs", type=int, default=3, help="runs per page; figures are medians")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if not (args.html / "index.html").is_file():
        print(f"no build in {args.html}: run make book first", file=sys.stderr)
        return 2
    if not LIGHTHOUSE.exists():
        print("Lighthouse is missing: run npm ci (it is a devDependency)", file=sys.stderr)
        return 2
    handler = functools.partial(GzipHandler, directory=str(args.html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    pages = args.pages or [page for page in toc_pages() if (args.html / page).is_file()]
    print(
        f"Lighthouse {subprocess.run([str(LIGHTHOUSE), '--version'], capture_output=True, text=True).stdout.strip()}"
        f", mobile profile, {base}, median of {args.runs} runs per page, {load()} at start"
    )
    header = f"{'page':<34} " + " ".join(f"{label:>8}" for _, label, *_ in COLUMNS) + "  load"
    goals = {key: goal for key, _, goal, *_ in COLUMNS}
    print(header)
    print(row("goal", goals).replace("!", " "))
    results, notes = {}, []
    try:
        for page in pages:
            figures = median_of([lighthouse(base + page) for _ in range(args.runs)])
            figures["load"] = os.getloadavg()[0]
            results[page] = figures
            print(f"{row(page, figures)}  {figures['load']:.1f}", flush=True)
            if figures["failing"]:
                notes.append(f"  {page}: " + ", ".join(figures["failing"]))
    finally:
        server.shutdown()
    if notes:
        print("\nAudits scoring below 0.9:")
        print("\n".join(notes))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
