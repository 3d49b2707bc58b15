"""The reader's helpers for *Backprop by Hand*: check a gradient you wrote by hand.

Every chapter imports this module (it sits next to the chapters, and myst-nb runs each
chapter with ``book/`` as its working directory); a downloaded notebook needs only this
file and torch. What it offers:

* :func:`start_chapter` names the chapter for error messages, seeds the random
  generators and makes float64 the default dtype, so every chapter starts alike.
* :func:`check` compares named manual gradients with autograd's. On success it shows one
  ✓ line per quantity under the cell; on a mismatch it raises :class:`GradientMismatch`,
  which fails the book's build, and :func:`diagnose` adds what the mismatch looks like
  (a constant factor, a transpose, ...). :func:`compare` checks without showing anything.
* :func:`fd_check` runs :func:`torch.autograd.gradcheck` (finite differences) as a
  second, independent witness.
* :func:`claim` asserts a sentence of the prose about how PyTorch behaves; it raises
  :class:`FalseClaim` when the sentence is false.
* :func:`unbroadcast`, :func:`einsum_backward` and :func:`measure` are small tools that
  some chapters use: the broadcasting sum, the index-swap rule, a time and a peak memory.

Chapter 2's interactive figures are in ``figures.py``. ``tests/test_byhand.py`` unit-tests
this module.
"""

from __future__ import annotations

import contextlib
import html
import itertools
import linecache
import os
import random
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch.autograd.gradcheck import GradcheckError
from torch.testing import assert_close

__all__ = [
    "GradientMismatch",
    "Report",
    "Row",
    "FalseClaim",
    "RECORD_KEY",
    "check",
    "claim",
    "compare",
    "diagnose",
    "einsum_backward",
    "fd_check",
    "Measurement",
    "measure",
    "start_chapter",
    "unbroadcast",
]

_chapter: str | None = None


class _ReadersError(AssertionError):
    """What a failing check raises. In Jupyter, Colab and the book, it shows the line of the
    reader's cell that raised and the message, without byhand's frames or file paths:
    IPython calls ``_render_traceback_`` when an exception has one (its documented hook)
    and still records an ``error`` output with ``ename`` and ``evalue``. Plain Python
    prints the usual traceback."""

    def _render_traceback_(self) -> list[str]:
        return [*_readers_lines(self.__traceback__), f"{type(self).__name__}: {self}"]


class GradientMismatch(_ReadersError):
    """A manual gradient differs from its reference (normally autograd's)."""


class FalseClaim(_ReadersError):
    """A sentence of the book about how PyTorch (or the maths) behaves is false."""


def start_chapter(title: str, seed: int = 0, dtype: torch.dtype = torch.float64) -> None:
    """Name the chapter in every later error message, seed, and set the dtype.

    float64 is the default so that a check's tolerance measures the formula, not
    float32 rounding; a section about float32 says so and passes its own dtype.
    """
    global _chapter
    _chapter = title
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_default_dtype(dtype)
    torch.set_printoptions(precision=4, sci_mode=False, linewidth=100)


def _where(chapter: str | None) -> str:
    chapter = chapter or _chapter
    return f"[{chapter}] " if chapter else ""


# --- check and compare: manual gradients against autograd --------------------------------


@dataclass(frozen=True)
class Row:
    """One checked quantity: what the table under a check shows."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    max_abs_diff: float
    exact: bool

    @property
    def shape_text(self) -> str:
        return "(" + ", ".join(map(str, self.shape)) + ("," if len(self.shape) == 1 else "") + ")"


RECORD_KEY = "byhand"
"""Where the machine-readable record of every passing check, finite-difference check and
claim goes: the ``metadata`` of the output it displays (``output.metadata["byhand"]``).
The build counts these records in each executed page (book/_ext/guard.py) to print, under
the page's title, how many gradients on it were checked when it was built. (Output
metadata rather than a mime type of its own: myst-nb warns about unknown mime types.)"""


def _record(kind: str, names: Sequence[str], reference: str, site: str | None) -> dict:
    return {
        "kind": kind,
        "quantities": list(names),
        "reference": reference,
        "torch": torch.__version__,
        "site": site,
    }


def _call_site() -> str | None:
    """Where the page called check, fd_check or claim, as IPython names a line of a cell in
    a traceback (``Cell In[5], line 3``); None outside IPython. The build checks that every
    such call on a page ran (book/_ext/guard_run.py)."""
    name = _cell_name()
    frame = sys._getframe(1)
    while frame is not None:
        cell = name(frame.f_code.co_filename)
        if cell:
            return f"{' '.join(cell)}, line {frame.f_lineno}"
        frame = frame.f_back
    return None


def _cell_name():
    """IPython's name for the file of a cell's code (``("Cell", "In[5]")``), as a function
    of the file name; it returns None for other files, and always outside IPython."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    return getattr(getattr(shell, "compile", None), "format_code_name", lambda file: None)


@dataclass(frozen=True)
class Report:
    """The rows of one successful :func:`check`.

    Shown as one line per quantity (``✓ dL/dW (3, 2) matches autograd``, followed by
    ``within rtol 1e-04, atol 0`` when the check was given its own tolerance), with the
    numbers behind each ✓ (largest difference, or bit-for-bit equality) folded away.
    """

    rows: tuple[Row, ...]
    reference: str = "autograd"
    kind: str = "check"
    tolerance: str | None = None
    """The tolerance the check was given (``"rtol 1e-04, atol 0"``), or None for
    :func:`torch.testing.assert_close`'s default for the dtype."""
    site: str | None = None
    """Where the page called (see :func:`_call_site`)."""

    def _matches(self) -> str:
        within = f" within {self.tolerance}" if self.tolerance else ""
        return f"matches {self.reference}{within}"

    def _line(self, row: Row) -> str:
        return f"✓ {row.name} {row.shape_text} {self._matches()}"

    def _detail(self, row: Row) -> str:
        if row.exact:
            return "identical, bit for bit"
        return f"largest difference {row.max_abs_diff:.1e}"

    def __str__(self) -> str:
        width = max(len(self._line(r)) for r in self.rows)
        return "\n".join(f"{self._line(r):<{width}}   {self._detail(r)}" for r in self.rows)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        lines = "".join(
            f'<li><span class="grad-check-mark" aria-hidden="true">✓</span> '
            f"<code>{html.escape(r.name)}</code> {r.shape_text} "
            f"{html.escape(self._matches())}</li>"
            for r in self.rows
        )
        details = "".join(
            f"<tr><td><code>{html.escape(r.name)}</code></td><td>{html.escape(self._detail(r))}</td></tr>"
            for r in self.rows
        )
        return (
            f'<div class="grad-check"><ul>{lines}</ul>'
            f"<details><summary>How close?</summary><table><tbody>{details}</tbody></table>"
            "</details></div>"
        )

    @property
    def record(self) -> dict:
        return _record(self.kind, [r.name for r in self.rows], self.reference, self.site)

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        data = {"text/plain": str(self), "text/html": self._repr_html_()}
        return data, {RECORD_KEY: self.record}


Pairs = Mapping[str, tuple[torch.Tensor, torch.Tensor]]


def _mismatch(name: str, manual, reference, rtol, atol, label: str) -> Row | str:
    """A :class:`Row` when ``manual`` matches ``reference``, else what is wrong."""
    for which, value in (("manual", manual), ("reference", reference)):
        if not isinstance(value, torch.Tensor):
            hint = (
                " (autograd fills .grad only for leaf tensors after .backward();"
                " call .retain_grad() on an intermediate first)"
                if value is None
                else ""
            )
            return f"{name}: the {which} gradient is {type(value).__name__}, not a tensor{hint}"
    if manual.shape != reference.shape:
        return (
            f"{name}: manual gradient has shape {tuple(manual.shape)} but {label}'s "
            f"has shape {tuple(reference.shape)}. A gradient always has the shape of the "
            "quantity it belongs to."
        )
    if manual.dtype != reference.dtype:
        return (
            f"{name}: manual gradient has dtype {manual.dtype} but {label}'s has {reference.dtype}"
        )
    manual, reference = manual.detach(), reference.detach()
    diff = (manual - reference).abs()
    if diff.numel():
        flat = int(torch.nan_to_num(diff, nan=float("inf")).argmax())
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), diff.shape))
        max_diff = float(diff.reshape(-1)[flat])
    else:
        index, max_diff = (), 0.0
    try:
        assert_close(manual, reference, rtol=rtol, atol=atol)
    except AssertionError as err:
        at = f" at index {index}" if index else ""
        return (
            f"{name} does not match {label}: shape {tuple(manual.shape)}, "
            f"largest |difference| {max_diff:.3g}{at} "
            f"(manual {float(manual.reshape(-1)[flat]):.6g}, {label} "
            f"{float(reference.reshape(-1)[flat]):.6g}).\n"
            + str(err).replace("Tensor-likes are not close!\n\n", "")
        )
    return Row(
        name, tuple(manual.shape), manual.dtype, max_diff, bool(torch.equal(manual, reference))
    )


def compare(
    pairs: Pairs,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    chapter: str | None = None,
    reference: str = "autograd",
) -> Report:
    """Compare ``{name: (manual, reference)}``; return a :class:`Report` or raise.

    Tolerances default to :func:`torch.testing.assert_close`'s for the dtype
    (``rtol=atol=1e-7`` for float64). Raises :class:`GradientMismatch` naming the
    chapter, the quantity, its shape, and the largest difference with its index.
    """
    __tracebackhide__ = True  # the reader's traceback stops above byhand's frames
    if not pairs:
        raise ValueError("check() needs at least one {name: (manual, reference)} pair")
    rows = []
    for name, (manual, ref) in pairs.items():
        row = _mismatch(name, manual, ref, rtol, atol, reference)
        if isinstance(row, str):
            # The message names the chapter, the quantity and the difference, and ends
            # with what the mismatch looks like when it has a pattern.
            looks = diagnose(manual, ref, reference)
            raise GradientMismatch(_where(chapter) + row + (f"\n{looks}" if looks else ""))
        rows.append(row)
    # assert_close takes both tolerances or neither. Only its default is small enough
    # that a difference within it is rounding; a wider one must be named.
    tolerance = None if rtol is None else f"rtol {_number(rtol)}, atol {_number(atol)}"
    return Report(tuple(rows), reference, tolerance=tolerance, site=_call_site())


def _number(x: float) -> str:
    return "0" if x == 0 else f"{x:.0e}"


def _show(report) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with the book's kernel
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(report)
    else:
        print(report)


def check(pairs: Pairs, **kwargs) -> None:
    """:func:`compare`, then show the table under the cell."""
    __tracebackhide__ = True
    _show(compare(pairs, **kwargs))


# --- what a mismatch looks like ----------------------------------------------------------


def diagnose(manual, reference, label: str = "autograd") -> str | None:
    """What a mismatch looks like, in one line, or None when it has no pattern known here.

    The patterns, tried in turn on the whole tensor: a constant factor (a sign flip is the
    factor −1); a match except where one side is exactly 0 (a mask); axes in another order
    (a transpose); an axis summed or not summed (a missing ``keepdim``). The line says
    "looks like": other mistakes can leave the same pattern. None for a match, for tensors
    of different dtypes and for values that are not finite: no pattern, no guess.
    """
    if not (isinstance(manual, torch.Tensor) and isinstance(reference, torch.Tensor)):
        return None
    m, r = manual.detach(), reference.detach()
    if (
        m.dtype != r.dtype
        or not m.is_floating_point()
        or not (m.isfinite().all() and r.isfinite().all())
    ):
        return None
    tol = torch.finfo(m.dtype).eps ** (2 / 3)  # 2/3 of the dtype's digits: above rounding
    m, r = m.double(), r.double()
    if _same(m, r, tol):
        return None
    for pattern in (_factor, _mask, _axes, _sums):
        found = pattern(m, r, label, tol)
        if found:
            return "looks like " + found
    return None


def _same(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    """``a`` equals ``b`` to ``tol`` of itself plus ``tol`` of ``b``'s largest value."""
    scale = float(b.abs().max()) if b.numel() else 0.0
    return a.shape == b.shape and bool(torch.isclose(a, b, rtol=tol, atol=tol * scale).all())


def _whole(c: float, tol: float) -> str | None:
    """``c`` written as ``3``, ``1/4`` or ``−2`` when it is one of those, else None."""
    for value, text in ((abs(c), "{}"), (1 / abs(c), "1/{}")):
        if 1 <= round(value) <= 10_000 and abs(value - round(value)) <= tol * value:
            return ("−" if c < 0 else "") + text.format(round(value))
    return None


def _factor(m, r, label, tol):
    if m.shape != r.shape or not r.any():
        return None
    s = r.abs().max()  # scaled to 1 first, so that no square underflows or overflows
    c = float((m / s * r / s).sum() / (r / s).square().sum())  # the best c in m ≈ c r
    if c == 0 or not _same(m, c * r, tol):
        return None
    whole = _whole(c, tol)
    if r.count_nonzero() < 2 and not whole:
        return None  # one number is some factor times any other: name only a whole one
    if whole == "−1":
        return f"a sign flip: manual = −{label} everywhere"
    near_1 = f"(1 {'+' if c > 1 else '−'} {abs(c - 1):.2g})"  # 1.00001 is not "1"
    text = whole or (near_1 if f"{c:.4g}" == "1" else f"{c:.4g}".replace("-", "−", 1))
    k = int(whole.strip("−").removeprefix("1/")) if whole else 0
    dims = [str(d) for d, size in enumerate(r.shape) if size == k > 1]
    why = (
        f" ({k} is the size of dimension{'s' * (len(dims) > 1)} {' and '.join(dims)})"
        if dims
        else f" ({k} is the number of elements)"
        if k == r.numel() > 1
        else ""
    )
    return f"a constant factor: manual = {text} × {label} everywhere{why}"


def _mask(m, r, label, tol):
    if m.shape != r.shape:
        return None
    off = ~torch.isclose(m, r, rtol=tol, atol=tol * float(r.abs().max()))
    if not ((m[off] == 0) | (r[off] == 0)).all() or not m[~off].any():
        return None  # off where neither is 0, or nothing but zeros agrees
    where = (
        f"{label}'s is 0 and manual's is not"
        if (r[off] == 0).all()
        else f"manual's is 0 and {label}'s is not"
        if (m[off] == 0).all()
        else "one is 0 and the other is not"
    )
    return f"a mask: manual matches {label} except at {int(off.sum())} of {off.numel()} elements, where {where}"


def _axes(m, r, label, tol):
    if m.dim() != r.dim() or not 2 <= m.dim() <= 5:
        return None
    for order in itertools.permutations(range(m.dim())):
        if order != tuple(range(m.dim())) and _same(m.permute(order), r, tol):
            if m.dim() == 2:
                return f"a transpose: manual.T matches {label}"
            return f"axes in another order: manual.permute{order} matches {label}"
    return None


def _sums(m, r, label, tol):
    for d in range(m.dim()):  # manual has an axis too many, or at more than size 1
        if m.dim() == r.dim() + 1 and _same(m.sum(d), r, tol):
            return f"an axis left unsummed: manual.sum({d}) matches {label}"
        kept = m.dim() == r.dim() and r.shape[d] == 1 < m.shape[d]
        if kept and _same(m.sum(d, keepdim=True), r, tol):
            return f"an axis left unsummed: manual.sum({d}, keepdim=True) matches {label}"
    for d in range(r.dim()):  # manual lacks an axis, or has it at size 1
        if m.dim() + 1 == r.dim() and r.shape[d] == 1 and _same(m.unsqueeze(d), r, tol):
            return f"a missing keepdim=True: manual.unsqueeze({d}) matches {label}"
        keep = m.dim() == r.dim()
        summed = m.dim() + 1 == r.dim() or (keep and m.shape[d] == 1 < r.shape[d])
        if summed and _same(r.sum(d, keepdim=keep), m, tol):
            return (
                f"a sum over an axis {label} keeps: {label}'s, summed over axis {d}, matches manual"
            )
    return None


# --- finite differences ------------------------------------------------------------------

# fd_check's float64 defaults. gradcheck's own (eps 1e-6, atol 1e-5, rtol 1e-3) let a
# backward that is off by a factor 1.001 pass, and so does any absolute atol once the
# gradients are small enough (with gradients around 1e-5, atol 1e-7 is 1 %). So an entry of
# the Jacobian passes within rtol of itself plus atol times the Jacobian's largest entry
# (its scale): the same test at every scale. A central difference with step eps errs by
# about eps**2 * f''' / 6 (truncation: ~1e-12 of the scale here) plus about
# 1e-16 * |f| / eps (rounding: ~1e-10 |f|), so for the book's functions an entry is good to
# ~1e-9 of the scale. rtol 1e-5 and atol 1e-7 leave a margin of 100 over that, and make an
# error of 1e-3 of the largest entry (a backward off by a factor 1.001) 100 times too large
# to pass. eps stays at 1e-6, near the step where the two errors balance. (A function whose
# values are over a thousand times its largest derivative can fail with a right backward:
# its rounding is that large. The check then fails loudly; it cannot pass because of it.)
FD_EPS = 1e-6
FD_ATOL = 1e-7  # times the Jacobian's largest entry
FD_RTOL = 1e-5
# The loosest tolerances a page may ask for: a factor 1.001 must still fail.
FD_LOOSEST = {"eps": 1e-4, "atol": 1e-6, "rtol": 1e-4}
# gradcheck options that only add checks, and the values each may take.
FD_STRICTER = {
    "check_undefined_grad": (True,),
    "check_backward_ad": (True,),
    "check_batched_grad": (True, False),
    "check_grad_dtypes": (True, False),
    "check_forward_ad": (True, False),
    "check_batched_forward_grad": (True, False),
    "nondet_tol": (0, 0.0),
}


def _outputs(fn: Callable[..., object], inputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """``fn(*inputs)`` as one flat vector (a tuple of outputs concatenated)."""
    out = fn(*inputs)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    return torch.cat([o.reshape(-1) for o in outs if isinstance(o, torch.Tensor)])


def _copies(inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    return [t.detach().clone().requires_grad_(t.requires_grad) for t in inputs]


def _slope(fn, inputs, base: torch.Tensor, i: int, k: int, step: float) -> torch.Tensor:
    """One-sided difference quotient of every output for element ``k`` of input ``i``:
    forward for ``step`` > 0, backward for ``step`` < 0 (the inputs stay untouched)."""
    moved = _copies(inputs)
    with torch.no_grad():
        moved[i].view(-1)[k] += step
    return (_outputs(fn, moved).detach() - base) / step


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, rtol: float) -> torch.Tensor:
    return (a - b).abs() <= atol + rtol * b.abs()


def _kinks(fn, inputs, eps: float, atol: float, rtol: float):
    """The Jacobian's scale (its largest entry, from central differences), and the input
    elements with a kink (a ReLU input at 0, an abs, a max) within ``eps``.

    There a central difference straddles the kink and averages two slopes, so it agrees
    with no backward, right or wrong. On a smooth function the slope from the right and
    the slope from the left, each extrapolated to a zero step from steps eps and eps/2
    (Richardson), agree to about eps², and so do the central differences with steps eps
    and eps/2; across a kink one pair or the other differs by about the jump in slope.
    Returns ``(scale, {input index: mask of those elements})``; the dict is usually empty
    (an element lies that close to a kink with a probability of about eps).
    """
    base = _outputs(fn, _copies(inputs)).detach()
    steps = (eps, eps / 2, -eps, -eps / 2)
    slopes = []  # for each input: (4 steps, its elements, outputs)
    for i, t in enumerate(inputs):
        columns = [
            torch.stack([_slope(fn, inputs, base, i, k, h) for h in steps])
            for k in range(t.numel())
        ]
        slopes.append(torch.stack(columns, 1) if columns else base.new_zeros(4, 0, base.numel()))
    central = torch.cat([((s[0] + s[2]) / 2).reshape(-1) for s in slopes])
    scale = float(central.abs().max()) if central.numel() else 0.0
    found = {}
    for i, (up, up2, down, down2) in enumerate(slopes):
        smooth = _close(2 * up2 - up, 2 * down2 - down, atol * scale, rtol) & _close(
            (up + down) / 2, (up2 + down2) / 2, atol * scale, rtol
        )
        mask = ~smooth.all(-1)
        if mask.any():
            found[i] = mask.reshape(inputs[i].shape)
    return scale, found


def _kink_problems(fn, inputs, kinks, eps: float, atol: float, rtol: float) -> list[str]:
    """Next to a kink the backward must give the derivative on the element's own side of
    it: the one-sided slope, extrapolated to a zero step from steps eps, eps/2 and eps/4,
    on a side where those agree (no kink inside that side's steps)."""
    args = _copies(inputs)
    out = _outputs(fn, args)
    rows = [
        torch.autograd.grad(out[r], args, retain_graph=True, allow_unused=True)
        for r in range(out.numel())
    ]
    base = out.detach()
    found = []
    for i, mask in kinks.items():
        for k in mask.reshape(-1).nonzero().reshape(-1).tolist():
            backward = torch.stack(
                [
                    row[i].reshape(-1)[k] if row[i] is not None else base.new_zeros(())
                    for row in rows
                ]
            )
            ok = torch.zeros_like(backward, dtype=torch.bool)
            sides = {}
            for side in (1, -1):
                d1, d2, d4 = (_slope(fn, inputs, base, i, k, side * eps / m) for m in (1, 2, 4))
                coarse, fine = 2 * d2 - d1, 2 * d4 - d2
                sides[side] = fine
                ok |= _close(coarse, fine, atol, rtol) & _close(backward, fine, atol, rtol)
            if not ok.all():
                r = int((~ok).nonzero()[0])
                at = tuple(int(j) for j in torch.unravel_index(torch.tensor(k), inputs[i].shape))
                found.append(
                    f"input {i} at {at}, output element {r}: backward {float(backward[r]):.6g}, "
                    f"slope from the left {float(sides[-1][r]):.6g}, "
                    f"from the right {float(sides[1][r]):.6g}"
                )
    return found


def fd_check(
    fn: Callable[..., torch.Tensor],
    inputs: Sequence[torch.Tensor],
    name: str,
    *,
    eps: float = FD_EPS,
    atol: float = FD_ATOL,
    rtol: float = FD_RTOL,
    chapter: str | None = None,
    **gradcheck_kwargs,
) -> None:
    """Finite differences as a second witness, via :func:`torch.autograd.gradcheck`.

    ``fn``'s backward (autograd's, or yours inside a ``torch.autograd.Function``)
    is compared with numerical derivatives. Inputs must be float64 and require grad.
    An entry of the Jacobian passes within ``rtol`` of the numerical value plus ``atol``
    times the Jacobian's largest entry, so a backward off by a factor 1.001 fails at any
    scale of the gradients (:data:`FD_ATOL`, :data:`FD_RTOL`); a page may loosen them no
    further than :data:`FD_LOOSEST`, and may pass gradcheck only options that add checks.
    An input element within ``eps`` of a kink (a ReLU input near 0) is compared with the
    one-sided difference on its own side of the kink, so the check neither fails nor
    passes by luck.
    """
    __tracebackhide__ = True
    for i, t in enumerate(inputs):
        if t.dtype != torch.float64 or not t.requires_grad:
            raise ValueError(
                f"{_where(chapter)}{name}: input {i} must be float64 with requires_grad=True "
                f"for finite differences (got {t.dtype}, requires_grad={t.requires_grad})"
            )
    for option, value in (("eps", eps), ("atol", atol), ("rtol", rtol)):
        low_ok = value > 0 if option == "eps" else value >= 0
        if not (low_ok and value <= FD_LOOSEST[option]):
            raise ValueError(
                f"{_where(chapter)}{name}: {option}={value} is out of range (at most "
                f"{FD_LOOSEST[option]:g}, so that a backward off by a factor 1.001 still fails)"
            )
    for option, value in gradcheck_kwargs.items():
        if option not in FD_STRICTER or value not in FD_STRICTER[option]:
            raise ValueError(
                f"{_where(chapter)}{name}: fd_check does not take {option}={value!r}, which "
                "would weaken the check or hide its failure"
            )
    inputs = tuple(inputs)
    scale, kinks = _kinks(fn, inputs, eps, atol, rtol)
    atol = atol * scale  # relative to the Jacobian's largest entry: the same at every scale
    checked_fn, checked_inputs = fn, inputs
    if kinks:
        # gradcheck the elements away from kinks; those next to one are held still here
        def checked_fn(*parts):
            return fn(
                *(
                    inputs[i].detach().clone().masked_scatter(~kinks[i], part)
                    if i in kinks
                    else part
                    for i, part in enumerate(parts)
                )
            )

        checked_inputs = tuple(
            t.detach()[~kinks[i]].clone().requires_grad_() if i in kinks else t
            for i, t in enumerate(inputs)
        )
    try:
        torch.autograd.gradcheck(
            checked_fn,
            checked_inputs,
            eps=eps,
            atol=atol,
            rtol=rtol,
            raise_exception=True,
            **gradcheck_kwargs,
        )
    except GradcheckError as err:
        raise GradientMismatch(
            f"{_where(chapter)}{name} fails the finite-difference check:\n{err}"
        ) from None
    wrong = _kink_problems(fn, inputs, kinks, eps, atol, rtol) if kinks else []
    if wrong:
        raise GradientMismatch(
            f"{_where(chapter)}{name} fails the finite-difference check next to a kink:\n"
            + "\n".join(wrong)
        )
    shapes = ", ".join(str(tuple(t.shape)) for t in inputs)
    near = sum(int(m.sum()) for m in kinks.values())
    note = (
        (
            f"; {near} input element{'s' if near != 1 else ''} within {eps:g} of a kink "
            "checked one-sided"
        )
        if near
        else ""
    )
    _show(
        _Shown(
            f"✓ {name}: backward agrees with finite differences for inputs of shape {shapes}{note}",
            _record("fd_check", [name], "finite differences", _call_site()),
        )
    )


# --- claims about how PyTorch behaves ----------------------------------------------------


def claim(statement: str, holds: object) -> None:
    """Assert a sentence of the prose: ``claim("relu's gradient at 0 is 0", u0.grad[0] == 0)``.

    A chapter states something about PyTorch's behaviour (a gradient at exactly 0, a
    stored shape, an equivalence); the cell beside it (usually tagged ``remove-cell``)
    asserts it with this function, so that the build fails, naming the chapter and the
    sentence, the day it stops being true. ``holds`` may be a bool or a one-element
    tensor.
    """
    __tracebackhide__ = True
    if isinstance(holds, torch.Tensor):
        holds = bool(holds.all())
    if not holds:
        raise FalseClaim(
            f"{_where(None)}the book says: {statement!r}, but that is false here "
            f"(PyTorch {torch.__version__})"
        )
    _show(
        _Shown(
            f"✓ checked when this page was built: {statement}",
            _record("claim", [statement], "PyTorch", _call_site()),
            css_class="grad-check claim-check",
        )
    )


@dataclass(frozen=True)
class _Shown:
    """A line of text plus the machine-readable record (see :data:`RECORD_KEY`)."""

    text: str
    record: dict
    css_class: str = "grad-check"

    def __str__(self) -> str:
        return self.text

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        mark, _, rest = self.text.partition(" ")
        html_text = (
            f'<div class="{self.css_class}"><ul><li><span class="grad-check-mark" '
            f'aria-hidden="true">{mark}</span> {html.escape(rest)}</li></ul></div>'
        )
        return {"text/plain": self.text, "text/html": html_text}, {RECORD_KEY: self.record}


# --- small tools: the broadcasting sum, a time and a peak memory, the index-swap rule ----


def unbroadcast(grad: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """Sum ``grad`` over the dimensions along which a tensor of ``shape``
    was broadcast: the same as ``grad.sum_to_size(shape)``."""
    shape = _broadcastable(torch.Size(shape), grad.shape)
    extra = grad.dim() - len(shape)  # dimensions broadcasting added
    if extra:
        grad = grad.sum(dim=tuple(range(extra)))
    stretched = tuple(
        i for i, (s, g) in enumerate(zip(shape, grad.shape)) if s == 1 and g != 1
    )  # dimensions it stretched
    if stretched:
        grad = grad.sum(dim=stretched, keepdim=True)
    return grad


def _broadcastable(shape: torch.Size, big: torch.Size) -> torch.Size:
    """``shape``, after checking that a tensor of that shape broadcasts to ``big``."""
    extra = len(big) - len(shape)
    if extra < 0 or any(s not in (1, g) for s, g in zip(shape, big[extra:])):
        raise ValueError(f"a tensor of shape {tuple(shape)} cannot broadcast to {tuple(big)}")
    return shape


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_bytes: int


@contextlib.contextmanager
def _native_output_silenced():
    """PyTorch's profiler prints start/stop lines straight to file descriptors 1 and 2."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


def _peak_bytes(fn: Callable[[], object]) -> int:
    """Most bytes of tensor memory held at once while ``fn()`` runs, beyond what it
    started with."""
    from torch.profiler import ProfilerActivity, profile

    with (
        _native_output_silenced(),
        profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof,
    ):
        fn()
    held = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        held += event.self_cpu_memory_usage
        peak = max(peak, held)
    return peak


def measure(fn: Callable[[], object], *, min_run_time: float = 0.05) -> Measurement:
    """Median time of ``fn()``, and the peak tensor memory it allocates while it runs.

    Time comes from :mod:`torch.utils.benchmark`; memory from the PyTorch profiler's
    record of every CPU tensor allocation and release, replayed in time order. The
    memory figure is deterministic (it does not depend on the allocator) but not always
    exact: the replay charges each operator's own allocations and releases to the
    moment it starts, so an intermediate that a nested operator allocates and its
    caller frees (inside a three-operand einsum) can be missed, and so can an autograd
    node's. The appendix shows such a case.
    """
    from torch.utils.benchmark import Timer

    timer = Timer(stmt="fn()", globals={"fn": fn})
    seconds = timer.blocked_autorange(min_run_time=min_run_time).median
    return Measurement(seconds, _peak_bytes(fn))


def einsum_backward(
    spec: str, operands: Sequence[torch.Tensor], grad: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """The gradient of every operand of ``torch.einsum(spec, *operands)``.

    ``grad`` is the upstream gradient, dL/d(output). The index-swap rule:
    the gradient of an operand is the einsum of ``grad`` with the *other*
    operands, producing the operand's own indices: ``"ni,ij->nj"`` has the
    backward ``"nj,ij->ni"`` for X and ``"nj,ni->ij"`` for W (``grad``
    first; the order of the operands does not change an einsum). Every
    index the operand lacks is summed. An index only this operand has (summed
    by the forward, as in ``"ij->i"``) is in nothing else: the gradient is
    copied along it.

    Supported: an output after ``->``, indices a-z and A-Z, each at most
    once per operand and in the output, one size per index. Anything else
    (``"ii->i"``, ``"..."``, size-1 broadcasting) raises ValueError.
    """
    terms, out, sizes = _einsum_terms(spec, operands, grad)
    grads = []
    for k, term in enumerate(terms):
        others = [(t, op) for m, (t, op) in enumerate(zip(terms, operands)) if m != k]
        seen = set(out).union(*(t for t, _ in others))  # usable indices
        kept = "".join(c for c in term if c in seen)
        swapped = ",".join([out, *(t for t, _ in others)]) + "->" + kept
        g = torch.einsum(swapped, grad, *(op for _, op in others))
        g = g.reshape([sizes[c] if c in seen else 1 for c in term])
        full = [sizes[c] for c in term]
        grads.append(g.expand(full).contiguous())  # copied along the rest
    return tuple(grads)


def _einsum_terms(
    spec: str, operands: Sequence[torch.Tensor], grad: torch.Tensor
) -> tuple[list[str], str, dict[str, int]]:
    """Parse ``spec`` for :func:`einsum_backward`: (operand indices, output indices, sizes).

    Raises ValueError, naming the spec and the problem, for what einsum_backward does not
    support (see its docstring).
    """
    where = f"einsum_backward({spec!r})"
    text = "".join(spec.split())  # spaces are allowed, as in torch.einsum
    if "..." in text:
        raise ValueError(f"{where}: '...' (ellipsis) is not supported; name every index")
    if text.count("->") != 1:
        raise ValueError(
            f"{where}: write the output's indices after '->' (an implicit output is not supported)"
        )
    inputs, out = text.split("->")
    terms = inputs.split(",")
    bad = sorted({c for c in inputs.replace(",", "") + out if not (c.isascii() and c.isalpha())})
    if bad:
        raise ValueError(
            f"{where}: indices must be letters a-z or A-Z, not {', '.join(map(repr, bad))}"
        )
    if len(terms) != len(operands):
        raise ValueError(
            f"{where}: the spec names {len(terms)} operand(s), but {len(operands)} "
            "tensor(s) were given"
        )
    for k, term in enumerate(terms):
        repeated = sorted({c for c in term if term.count(c) > 1})
        if repeated:
            raise ValueError(
                f"{where}: operand {k} repeats the index {repeated[0]!r} ({term!r}); a "
                "repeated index reads a diagonal, and its gradient is not an einsum"
            )
    if len(set(out)) != len(out):
        raise ValueError(f"{where}: the output repeats an index ({out!r})")
    missing = sorted(set(out) - set(inputs))
    if missing:
        raise ValueError(f"{where}: the output index {missing[0]!r} is in no operand")
    sizes: dict[str, int] = {}
    first: dict[str, int] = {}
    for k, (term, op) in enumerate(zip(terms, operands)):
        if op.dim() != len(term):
            raise ValueError(
                f"{where}: operand {k} has {op.dim()} dimension(s), but its indices "
                f"{term!r} name {len(term)}"
            )
        for c, size in zip(term, op.shape):
            if sizes.setdefault(c, size) != size:
                raise ValueError(
                    f"{where}: index {c!r} has size {sizes[c]} in operand {first[c]} but "
                    f"{size} in operand {k}; broadcasting an index is not supported "
                    "(expand the operand first)"
                )
            first.setdefault(c, k)
    shape = tuple(sizes[c] for c in out)
    if tuple(grad.shape) != shape:
        raise ValueError(
            f"{where}: grad has shape {tuple(grad.shape)}, but the output has shape {shape}"
        )
    return terms, out, sizes


# --- how a failing check shows in IPython (Jupyter, Colab, the book) ---------------------


def _readers_lines(tb) -> list[str]:
    """Each frame of the reader's code, between IPython's and byhand's (frames that set
    ``__tracebackhide__``, IPython's mark): where, as IPython names a cell, and the line."""
    frames = []
    for frame, line in traceback.walk_tb(tb):
        hide = frame.f_locals.get("__tracebackhide__")
        if hide == "__ipython_bottom__":  # IPython running the cell: the reader's code is next
            frames = []
        elif hide:
            break
        else:
            frames.append((frame.f_code.co_filename, line))
    name = _cell_name()
    cells = [(file, line) for file, line in frames if name(file)]
    lines = []
    for file, line in cells or frames[-1:]:
        where = " ".join(name(file)) if name(file) else f"File {os.path.basename(file)}"
        lines += [
            f"{where}, line {line}",
            f"----> {line} {linecache.getline(file, line).strip()}",
            "",
        ]
    return lines
