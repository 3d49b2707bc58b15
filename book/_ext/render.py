"""How the book's pages are rendered: one path for ``make book`` and ``make preview``.

A Sphinx extension (``sphinx.local_extensions`` in _config.yml) that loads the four parts
of the book's rendering, each a module beside this one, each tested in
tests/test_render.py:

* ``mathsvg``: math typeset to SVG at build time (MathJax's Node API), MathML for
  screen readers; no math JavaScript, no font, no CDN;
* ``pages``: the scripts and stylesheets each page loads, and the theme markup the book
  changes (template overrides in ``templates/``);
* ``icons``: the theme's icons from a web font cut down to the icons in use;
* ``offline``: the build fails if any page loads anything from another host.

It also makes the live preview re-write every page when this code or the book's own
static files change: a digest of ``book/_ext`` and of ``html_static_path``
(``book/_static``: byhand.css goes into every page's stylesheet bundle) is a
configuration value that only the HTML output depends on, so a new digest makes Sphinx
write all pages again (without re-reading or re-executing any).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from sphinx.application import Sphinx

HERE = Path(__file__).resolve().parent
PARTS = ("mathsvg", "pages", "icons", "offline")


def code_digest(*folders: Path) -> str:
    """A digest of every file under ``folders`` (default: the rendering code and templates)."""
    digest = hashlib.sha256()
    for folder in folders or (HERE,):
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                digest.update(path.relative_to(folder).as_posix().encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def set_digest(app: Sphinx, config) -> None:
    static = [
        Path(app.confdir, p) for p in config.html_static_path if Path(app.confdir, p).is_dir()
    ]
    config.render_code_digest = code_digest(HERE, *static)


def setup(app: Sphinx) -> dict:
    for part in PARTS:
        app.setup_extension(part)
    app.add_config_value("render_code_digest", "", "html")
    app.connect("config-inited", set_digest)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
