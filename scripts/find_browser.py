"""Find the Chrome or Chromium that the browser tests drive, on Linux and macOS.

Where it looks, in order:

1. ``$CHROMIUM_PATH``, when set (a path that does not exist is an error, not a fallback);
2. Playwright's ``chrome`` channel: Google Chrome where Playwright itself looks for it
   (``/opt/google/chrome/chrome``; ``/Applications/Google Chrome.app``). GitHub's
   runners have it, so the workflows need no setting;
3. common install paths: Debian's and Ubuntu's ``chromium`` and ``chromium-browser``,
   ``google-chrome``, and Chromium.app or Google Chrome.app in ``~/Applications``.

Playwright's own browser downloads are never used. Standard library only:
``.ci/run`` runs ``python3 scripts/find_browser.py`` before any virtual environment
exists, and installs Debian's ``chromium`` when it exits 1. ``tests/test_browser.py``
imports :func:`find_browser`; it skips the browser tests when there is no browser, except
under ``CI=true``, where they fail instead.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# Where Playwright's `chrome` channel finds Google Chrome (playwright-core's registry).
CHROME_CHANNEL = {
    "linux": ["/opt/google/chrome/chrome"],
    "darwin": ["/Applications/Google Chrome.app/Contents/MacOS/Google Chrome"],
}
COMMON = {
    "linux": [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
        "/usr/bin/google-chrome-stable",
    ],
    "darwin": [
        "/Applications/Chromium.app/Contents/MacOS/Chromium",
        "~/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
        "~/Applications/Chromium.app/Contents/MacOS/Chromium",
    ],
}


class BrowserNotFound(LookupError):
    """No usable browser; the message says where we looked and how to get one."""


@dataclass(frozen=True)
class Browser:
    executable: str
    found_by: str  # "CHROMIUM_PATH", "Playwright's chrome channel" or "a common path"
    channel: str | None = None  # "chrome": let Playwright locate it by channel

    def launch_options(self) -> dict:
        """Keyword arguments for Playwright's ``chromium.launch``."""
        return {"channel": self.channel} if self.channel else {"executable_path": self.executable}


def _platform(name: str) -> str:
    return "darwin" if name == "darwin" else "linux" if name.startswith("linux") else name


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def find_browser(env=None, platform: str | None = None, executable=_executable) -> Browser:
    """The browser to use; raises :class:`BrowserNotFound` when there is none."""
    env = os.environ if env is None else env
    system = _platform(platform or sys.platform)
    explicit = env.get("CHROMIUM_PATH")
    if explicit:
        if not executable(explicit):
            raise BrowserNotFound(f"CHROMIUM_PATH={explicit} is not an executable file")
        return Browser(explicit, "CHROMIUM_PATH")
    for path in CHROME_CHANNEL.get(system, []):
        if executable(path):
            return Browser(path, "Playwright's chrome channel", channel="chrome")
    tried = list(CHROME_CHANNEL.get(system, []))
    for path in COMMON.get(system, []):
        path = str(Path(path).expanduser())
        tried.append(path)
        if executable(path):
            return Browser(path, "a common path")
    how = {
        "linux": "apt-get install chromium",
        "darwin": "install Google Chrome or Chromium",
    }.get(system, "install Chrome or Chromium")
    raise BrowserNotFound(
        f"no Chrome or Chromium found (CHROMIUM_PATH is not set; looked at {', '.join(tried) or 'nothing on ' + system}): "
        f"{how}, or set CHROMIUM_PATH to the browser's executable"
    )


def main() -> int:
    try:
        browser = find_browser()
    except BrowserNotFound as error:
        print(error, file=sys.stderr)
        return 1
    print(f"{browser.executable} (found by {browser.found_by})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
