"""What the build checks after the pages ran: the guard's own record of execution.

``guard_lint`` refuses, before anything runs, the doors it can see in a page. This module
checks the result, so that a door the lint missed still cannot turn a failing check into
a green build. From myst-nb's record of each page's execution and the executed notebook
it wrote (``_build/jupyter_execute/<page>.ipynb``), for every TOC page with code cells:

* the page was executed, in the book's execution mode, and succeeded;
* every non-empty code cell ran (none was skipped);
* every cell tagged ``raises-exception`` raised, and raised the type it declares
  (``GradientMismatch`` unless its options say ``raises: ...``); no other cell raised;
* every ``check``, ``fd_check`` and ``claim`` call in the page's code ran at least once, at
  any depth (in a function, a loop, a lambda): each passing call leaves a record
  (byhand's ``output.metadata["byhand"]``) that names its line (``Cell In[5], line 3``, as
  IPython's tracebacks name it), and a demonstration's failing call is in its traceback.
  A check in a function nobody calls, in a loop that never turns, or after a ``return``
  leaves neither;
* the page ran in the book's kernel.

It also counts those records for the page badge. The functions are pure (a notebook and
a dict in, sentences out) so that the tests can feed them broken inputs; ``guard.py``
calls them from Sphinx. Where they read myst-nb's or byhand's internals and the shape
is not what they expect, they raise :class:`InternalsChanged` instead of checking
nothing.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape

import guard_lint

RECORD_KEY = "byhand"  # book/byhand.py RECORD_KEY
RECORD_KINDS = ("check", "fd_check", "claim")
EXEC_KEYS = ("succeeded", "method", "error", "traceback", "runtime", "mtime")
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# How IPython names a line of a cell, in a traceback and in byhand's records.
CELL_LINE = re.compile(r"\bCell In\[(\d+)\], line (\d+)")


class Finding(str):
    """A sentence about a page, and where in it: code cell ``cell`` (1-based) and, when
    known, line ``line`` of that cell. A ``str``, so it prints and joins as the sentence."""

    cell: int | None
    line: int | None

    def __new__(cls, text: str, cell: int | None = None, line: int | None = None):
        found = super().__new__(cls, text)
        found.cell, found.line = cell, line
        return found


def cell_lines(text: str | None) -> list[tuple[int, int]]:
    """Every ``Cell In[N], line K`` in a traceback or a record, as (N, K): the cell by its
    execution count, the line within it. The one place the build reads that form."""
    return [(int(n), int(k)) for n, k in CELL_LINE.findall(ANSI.sub("", text or ""))]


class InternalsChanged(RuntimeError):
    """myst-nb, nbclient or byhand no longer stores what the guard reads."""

    def __init__(self, what: str):
        super().__init__(
            f"myst-nb internals changed: {what}. The build guard (book/_ext/guard_run.py) "
            "reads them to prove every page ran; update it to the new layout rather than "
            "let it check nothing."
        )


def exec_record(exec_data: object) -> dict | None:
    """myst-nb's record of one page's execution (``env.nb_metadata[doc]["exec_data"]``)."""
    if exec_data is None:
        return None
    if not isinstance(exec_data, dict) or not set(EXEC_KEYS) <= set(exec_data):
        keys = sorted(exec_data) if isinstance(exec_data, dict) else type(exec_data).__name__
        raise InternalsChanged(f"a page's exec_data has {keys}, not {list(EXEC_KEYS)}")
    return exec_data


def error_line(traceback: str | None) -> str:
    """The ``SomeError: message`` line of a traceback (the last one that looks like it)."""
    lines = [ANSI.sub("", line).strip() for line in (traceback or "").splitlines()]
    errors = [
        line
        for line in lines
        if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Mismatch|Claim)\b", line)
    ]
    return errors[-1] if errors else (lines[-1] if lines else "unknown error")


def records(cell) -> list[dict]:
    """byhand's records in one executed cell's outputs, checked for shape."""
    found = []
    for output in cell.get("outputs", []):
        record = (output.get("metadata") or {}).get(RECORD_KEY)
        if record is None:
            continue
        if not (
            isinstance(record, dict)
            and record.get("kind") in RECORD_KINDS
            and isinstance(record.get("quantities"), list)
            and isinstance(record.get("torch"), str)
            and isinstance(record.get("site", 0), str | None)
            and "site" in record
        ):
            raise InternalsChanged(
                f"a byhand record reads {record!r}; expected {{'kind': 'check'|'fd_check'|"
                "'claim', 'quantities': [...], 'torch': '...', 'site': 'Cell In[N], line K'}"
            )
        found.append(record)
    return found


def _code(notebook) -> list:
    cells = notebook.get("cells")
    if not isinstance(cells, list):
        raise InternalsChanged("an executed notebook has no list of cells")
    code = [c for c in cells if c.get("cell_type") == "code"]
    for cell in code:
        if "outputs" not in cell or "execution_count" not in cell:
            raise InternalsChanged("an executed code cell has no 'outputs' or 'execution_count'")
    return code


def _errors(cell) -> list[dict]:
    errors = [o for o in cell["outputs"] if o.get("output_type") == "error"]
    for error in errors:
        if "ename" not in error:
            raise InternalsChanged("an error output has no 'ename'")
    return errors


def _traceback(error: dict) -> str:
    lines = error.get("traceback") or []
    return "\n".join(lines) if isinstance(lines, list) else str(lines)


def page_problems(exec_data: dict | None, notebook, mode: str = "force") -> list[Finding]:
    """Everything wrong with one page's execution, as sentences (the caller names the page),
    each a :class:`Finding` that knows its cell and line where there is one."""
    run = exec_record(exec_data)
    if run is None:
        return [
            Finding("has code cells but was not executed (myst-nb has no record of running it)")
        ]
    found: list[Finding] = []
    if run["method"] != mode:
        found.append(Finding(f"was executed in {run['method']!r} mode, not the book's {mode!r}"))
    if not run["succeeded"]:
        found.append(failure(run["traceback"], notebook))
    if notebook is None:
        raise InternalsChanged("myst-nb ran a page but wrote no executed notebook for it")
    kernel = (notebook.get("metadata", {}).get("kernelspec") or {}).get("name")
    if kernel != guard_lint.KERNEL:
        found.append(Finding(f"ran in the kernel {kernel!r}, not {guard_lint.KERNEL!r}"))
    succeeded = bool(run["succeeded"])
    code = _code(notebook)
    ran_lines: set[tuple[int, int]] = set()  # (execution count, line) of every call that ran
    for cell in code:
        for record in records(cell):
            ran_lines.update(cell_lines(record["site"]))
        for error in _errors(cell):
            ran_lines.update(cell_lines(_traceback(error)))
    for number, cell in enumerate(code, 1):
        ran = cell["execution_count"] is not None
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if not ran:
            if succeeded and source.strip():
                found.append(Finding(f"code cell {number} never ran", number))
            continue
        errors = _errors(cell)
        raised = errors[0]["ename"] if errors else None
        if "raises-exception" in guard_lint.tags(cell):
            allowed = guard_lint.declared_raises(cell)
            if raised is None:
                found.append(
                    Finding(
                        f"code cell {number} is tagged raises-exception but did not raise: a "
                        "demonstration of a wrong formula must really fail its check",
                        number,
                    )
                )
            elif raised not in allowed:
                found.append(
                    Finding(
                        f"code cell {number} should fail with {' or '.join(allowed)} but raised "
                        f"{raised}: {ANSI.sub('', str(errors[0].get('evalue', '')))[:200]}"
                        + (
                            ""
                            if raised in guard_lint.UNDECLARABLE
                            else f" (if that is the point, declare it: 'raises: {raised}' in "
                            "the cell's options)"
                        ),
                        number,
                        _line_in(errors[0], cell["execution_count"]),
                    )
                )
        elif raised is not None and succeeded:
            found.append(
                Finding(
                    f"code cell {number} raised {raised} and the page went on",
                    number,
                    _line_in(errors[0], cell["execution_count"]),
                )
            )
        if not succeeded:
            continue  # a page that failed: its failure is the problem (the rest never ran)
        for line, name in guard_lint.call_sites(source):
            if (cell["execution_count"], line) not in ran_lines:
                found.append(
                    Finding(
                        f"code cell {number}, line {line}: {name}(...) never ran, so it "
                        "checks nothing (is it in a function nobody calls, a loop that never "
                        "turns, after a return?). Every check on a page must run at least "
                        f"once: its record ('{RECORD_KEY}' in the output metadata) names the "
                        "line it ran from",
                        number,
                        line,
                    )
                )
    return found


def _line_in(error: dict, count: int | None) -> int | None:
    """The line of cell ``count`` (its execution count) where ``error`` was raised: the
    innermost frame of that cell in its traceback."""
    lines = [k for n, k in cell_lines(_traceback(error)) if n == count]
    return lines[-1] if lines else None


def failure(traceback: str | None, notebook=None) -> Finding:
    """The page failed: its error line, and where. The cell is the one that raised (in
    ``notebook``, the executed notebook); the line is the innermost line of a cell in the
    traceback, which is where the failing call is, also when it sits in a function another
    cell defined."""
    text = f"failed: {error_line(traceback)}"
    frames = cell_lines(traceback)
    if not frames or notebook is None:
        return Finding(text)
    count, line = frames[-1]
    numbers = [n for n, c in enumerate(_code(notebook), 1) if c["execution_count"] == count]
    return Finding(text, numbers[0], line) if numbers else Finding(text)


# --- the badge ------------------------------------------------------------------


@dataclass
class Tally:
    """What one page checked, from its records."""

    autograd: int = 0  # gradients compared with autograd by check()
    other: int = 0  # other results compared with a second computation by check()
    fd: int = 0  # backward passes compared with finite differences by fd_check()
    claims: int = 0  # sentences of the prose asserted by claim()
    demonstrations: int = 0  # raises-exception cells that failed as they declare
    torch: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.autograd + self.other + self.fd + self.claims


def tally(notebook) -> Tally:
    count = Tally()
    versions = []
    for cell in _code(notebook):
        errors = _errors(cell)
        if "raises-exception" in guard_lint.tags(cell) and errors:
            count.demonstrations += errors[0]["ename"] in guard_lint.declared_raises(cell)
        for record in records(cell):
            n = len(record["quantities"])
            if record["kind"] == "check" and record.get("reference") == "autograd":
                count.autograd += n
            elif record["kind"] == "check":
                count.other += n
            elif record["kind"] == "fd_check":
                count.fd += n
            else:
                count.claims += n
            versions.append(record["torch"])
    count.torch = tuple(dict.fromkeys(versions))
    return count


MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)


def build_date(executed_at: float | None = None) -> datetime:
    """When the page was built: ``SOURCE_DATE_EPOCH`` if set (reproducible builds), else
    when myst-nb executed it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch:
        return datetime.fromtimestamp(int(epoch), tz=UTC)
    if executed_at is not None:
        return datetime.fromtimestamp(executed_at, tz=UTC)
    return datetime.now(UTC)


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def badge_text(count: Tally, when: datetime) -> str:
    """``✓ 27 gradients checked against autograd and 4 statements of the text asserted
    when this page was built · PyTorch 2.13.0 · 2 December 2026``."""
    parts = []
    if count.autograd:
        parts.append(_n(count.autograd, "gradient", "gradients") + " checked against autograd")
    if count.other:
        parts.append(
            _n(count.other, "other result", "other results")
            + " checked against a second computation"
        )
    if count.fd:
        parts.append(
            _n(count.fd, "backward pass", "backward passes") + " checked against finite differences"
        )
    if count.claims:
        parts.append(_n(count.claims, "statement", "statements") + " of the text asserted")
    what = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    versions = ", ".join(v.split("+")[0] for v in count.torch)
    day = f"{when.day} {MONTHS[when.month - 1]} {when.year}"
    return f"✓ {what} when this page was built · PyTorch {versions} · {day}"


def badge_html(count: Tally, when: datetime) -> str:
    text = badge_text(count, when)
    mark, what, torch_part, day = re.match(r"(✓) (.*) · (PyTorch .*) · (.*)$", text).groups()
    # The version and the date on a line of their own (byhand.css), never a line that
    # starts with "·" where a phone wraps the badge.
    return (
        f'<p class="byhand-badge"><span class="byhand-badge-mark" aria-hidden="true">{mark}</span> '
        f'{escape(what)} <span class="byhand-badge-meta">{escape(torch_part)}&nbsp;· '
        f'<time datetime="{when:%Y-%m-%d}">{escape(day)}</time></span></p>'
    )
