"""Render the link-preview card, ``book/_static/og-card.png`` (1200 x 630), from the logo.

Social sites (and most chat apps) show an ``og:image`` only when it is a bitmap; they do
not render SVG. ``_config.yml`` points ``ogp_image`` at this PNG. It is committed, not
built: rerun this after changing ``imgs/logo.svg`` or the book's title, then look at it.

It lays the logo and the title out in HTML and screenshots that with headless Chromium
(the browser ``scripts/find_browser.py`` finds), so the text is real text in a real font.

Usage: ``python scripts/og_card.py [OUT.png]``.
"""

from __future__ import annotations

import html
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from find_browser import find_browser  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "book" / "_static" / "og-card.png"
WIDTH, HEIGHT = 1200, 630  # the size Facebook, LinkedIn, Mastodon and X crop to
TAGLINE = "Every gradient derived by hand, then checked against autograd."

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><style>
  html, body {{ margin: 0; width: {w}px; height: {h}px; overflow: hidden; }}
  body {{ background: #ffffff; font-family: "DejaVu Sans", "Helvetica Neue", Arial, sans-serif;
         display: flex; align-items: center; gap: 56px; padding: 0 80px; box-sizing: border-box;
         border-bottom: 24px solid #1f4e79; }}
  img {{ width: 220px; height: 220px; flex: none; }}
  h1 {{ margin: 0 0 28px; font-size: 68px; white-space: nowrap; line-height: 1.05; color: #1f4e79; }}
  p {{ margin: 0; font-size: 36px; line-height: 1.35; color: #333333; }}
</style></head>
<body><img src="{logo}" alt=""><div><h1>{title}</h1><p>{tagline}</p></div></body></html>
"""


def render(out: Path = OUT) -> Path:
    config = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    page = PAGE.format(
        w=WIDTH,
        h=HEIGHT,
        logo=(ROOT / "imgs" / "logo.svg").as_uri(),
        title=html.escape(config["title"]),
        tagline=html.escape(TAGLINE),
    )
    browser = find_browser()
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "card.html"
        source.write_text(page, encoding="utf-8")
        subprocess.run(
            [
                browser.executable, "--headless", "--no-sandbox", "--disable-gpu",
                "--hide-scrollbars", "--force-device-scale-factor=1",
                f"--window-size={WIDTH},{HEIGHT}", f"--screenshot={out}", source.as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=120,
        )  # fmt: skip
    return out


if __name__ == "__main__":
    print(render(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT))
