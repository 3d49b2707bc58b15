"""What the build says about its pages, where a contributor looks.

* **On the page's line.** Every failure the build finds in a page (a failing check, claim
  or demonstration, and every refusal of the build guard) is reported on the line of the
  ``.md`` file where the failing call is: the page's line, not the notebook cell's (the
  cell's line comes from IPython's ``Cell In[N], line K``, read by ``guard_run``, and
  ``guard_lint.page_line`` turns it into the page's). In GitHub Actions
  (``GITHUB_ACTIONS=true``) each is a workflow command,
  ``::error file=book/02-x.md,line=120,title=...::message``, which GitHub shows on the
  pull request's diff at that line; elsewhere it is ``book/02-x.md:120: message``, the form
  editors and terminals link.
* **A job summary.** When ``GITHUB_STEP_SUMMARY`` names a file (every GitHub Actions step
  has one), the build appends a Markdown summary to it: one row per page (gradients
  checked, claims asserted, demonstrations, result) and each failure as its one-line
  message on its line. The workflow adds the link to the preview of the site.

Pure functions of their inputs and the environment, so that the tests can call them; the
build guard (``guard.py``) calls them at the end of a build, and when it refuses a book
before running it.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

# "book/x.md:12: message", "book/x.md: message", "_toc.yml lists ..." (guard_lint's form)
# (re.S: a message may go on over several lines, e.g. a YAML error quoted whole)
LOCATED = re.compile(
    r"^(?P<path>[\w./-]+\.(?:md|yml|py))(?::(?P<line>\d+))?:? (?P<message>.*)$", re.S
)


@dataclass(frozen=True)
class Failure:
    """One failure, where it is: ``path`` from the book's root, ``line`` in it (or None)."""

    path: str
    line: int | None
    message: str

    @classmethod
    def parse(cls, problem: str) -> Failure:
        """A guard sentence that starts with where it is (``book/x.md:12: ...``)."""
        match = LOCATED.match(problem)
        if not match:
            return cls("", None, problem)
        line = int(match["line"]) if match["line"] else None
        return cls(match["path"], line, match["message"])

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}" if self.line else self.path

    def annotation(self) -> str:
        """The failure as GitHub Actions' ``::error`` command, or as ``path:line: message``."""
        message = self.message.split("\n")[0].strip()  # one line
        if os.environ.get("GITHUB_ACTIONS") != "true":
            return f"{self.where}: {message}" if self.path else message
        title = message.split(":")[0] if re.match(r"^\w+(Error|Mismatch|Claim):", message) else ""
        properties = [f"file={_property(self.path)}"] if self.path else []
        properties += [f"line={self.line}"] if self.line else []
        properties += [f"title={_property(title or 'Build guard')}"]
        return f"::error {','.join(properties)}::{_data(message)}"


def _n(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def _data(text: str) -> str:
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _property(text: str) -> str:
    return _data(text).replace(":", "%3A").replace(",", "%2C")


@dataclass(frozen=True)
class Row:
    """One page in the summary."""

    doc: str
    checked: int  # gradients and results checked (check, fd_check)
    claims: int
    demonstrations: int
    result: str  # "passed", "failed", "refused", "no code"


def summary(rows: list[Row], failures: list[Failure], title: str) -> str:
    """The job summary's Markdown."""
    lines = [f"## {title}", ""]
    if rows:
        failed = [r for r in rows if r.result not in ("passed", "no code")]
        totals = [sum(getattr(r, f) for r in rows) for f in ("checked", "claims", "demonstrations")]
        lines += [
            f"{len(rows) - len(failed)} of {len(rows)} pages pass: "
            f"{_n(totals[0], 'gradient')} checked, {_n(totals[1], 'claim')} asserted, "
            f"{_n(totals[2], 'wrong formula')} demonstrated.",
            "",
            "| page | gradients checked | claims asserted | demonstrations | result |",
            "| --- | ---: | ---: | ---: | --- |",
        ]
        mark = {"passed": "✅ passed", "no code": "no code"}
        lines += [
            f"| `{r.doc}.md` | {r.checked} | {r.claims} | {r.demonstrations} | "
            f"{mark.get(r.result, '❌ ' + r.result)} |"
            for r in rows
        ]
    if failures:
        lines += ["", f"### {len(failures)} failure(s), each on its line", ""]
        lines += [
            f"- `{f.where}`: {f.message.splitlines()[0].strip()}" if f.path else f"- {f.message}"
            for f in failures
        ]
    return "\n".join(lines) + "\n"


def write_summary(markdown: str) -> Path | None:
    """Append ``markdown`` to the job summary, when there is one (``GITHUB_STEP_SUMMARY``)."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as out:
        out.write(markdown + "\n")
    return Path(target)
