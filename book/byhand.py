"""Shared helpers for *Backprop by Hand*.

Every chapter imports this module (it sits next to the chapters, and myst-nb runs
each chapter with ``book/`` as its working directory). It does four jobs:

* :func:`start_chapter` names the chapter for error messages, seeds the random
  generators and makes float64 the default dtype, so every chapter starts alike.
* :func:`check` compares named manual gradients with autograd's. On success it
  shows one ✓ line per quantity under the cell; on a mismatch it raises
  :class:`GradientMismatch`, which fails the book's build.
* :func:`fd_check` runs :func:`torch.autograd.gradcheck` (finite differences) as
  a second, independent witness.
* :func:`claim` asserts a sentence of the prose about how PyTorch behaves; it raises
  :class:`FalseClaim` when the sentence is false.
* :func:`unbroadcast` and :func:`measure` are small tools two chapters need, and
  :func:`einsum_backward` applies chapter 5's index-swap recipe to any einsum.
* :func:`paths_figure` and :func:`sum_figure` make chapter 2's interactive figures: they
  check the numbers they are given against autograd and refuse to show unchecked ones,
  then return the figure's HTML with its numbers as JSON, which
  ``_static/byhand-figures.js`` only displays (it computes nothing).

``tests/test_byhand.py`` unit-tests all of it.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import random
import sys
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
    "einsum_backward",
    "fd_check",
    "Figure",
    "FIGURE_MARK",
    "Measurement",
    "measure",
    "paths_figure",
    "start_chapter",
    "sum_figure",
    "unbroadcast",
]

_chapter: str | None = None


class GradientMismatch(AssertionError):
    """A manual gradient differs from its reference (normally autograd's)."""


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
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    name = getattr(getattr(shell, "compile", None), "format_code_name", None)
    frame = sys._getframe(1) if name else None
    while frame is not None:
        cell = name(frame.f_code.co_filename)
        if cell:
            return f"{' '.join(cell)}, line {frame.f_lineno}"
        frame = frame.f_back
    return None


@dataclass(frozen=True)
class Report:
    """The rows of one successful :func:`check`.

    Shown as one line per quantity (``✓ dL/dW (3, 2) matches autograd``), with the
    numbers behind each ✓ (largest difference, bit-for-bit equality) folded away.
    """

    rows: tuple[Row, ...]
    reference: str = "autograd"
    kind: str = "check"
    tolerance: str | None = None
    """The tolerance the check was given (``"rtol 1e-04, atol 0"``), or None for
    :func:`torch.testing.assert_close`'s default, which only rounding uses up."""
    site: str | None = None
    """Where the page called (see :func:`_call_site`)."""

    def _line(self, row: Row) -> str:
        return f"✓ {row.name} {row.shape_text} matches {self.reference}"

    def _detail(self, row: Row) -> str:
        if row.exact:
            return "identical, bit for bit"
        if self.tolerance:
            return f"largest difference {row.max_abs_diff:.1e} (within {self.tolerance})"
        return f"largest difference {row.max_abs_diff:.1e} (rounding)"

    def __str__(self) -> str:
        width = max(len(self._line(r)) for r in self.rows)
        return "\n".join(f"{self._line(r):<{width}}   {self._detail(r)}" for r in self.rows)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        lines = "".join(
            f'<li><span class="grad-check-mark" aria-hidden="true">✓</span> '
            f"<code>{html.escape(r.name)}</code> {r.shape_text} "
            f"matches {html.escape(self.reference)}</li>"
            for r in self.rows
        )
        details = "".join(
            f"<tr><td><code>{html.escape(r.name)}</code></td><td>{html.escape(self._detail(r))}</td></tr>"
            for r in self.rows
        )
        return (
            f'<div class="grad-check"><ul>{lines}</ul>'
            f"<details><summary>How close?</summary><table><tbody>{details}</tbody></table>"
            f"{self._footnote()}</details></div>"
        )

    def _footnote(self) -> str:
        if self.tolerance:
            return (
                "<p>A check passes when manual and reference values agree within the "
                f"tolerance it was given ({html.escape(self.tolerance)}).</p>"
            )
        return (
            "<p>A check passes when manual and reference values agree to "
            "<code>torch.testing.assert_close</code>'s tolerance; differences in the "
            "last digits come from adding the same numbers in another order.</p>"
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
    if not pairs:
        raise ValueError("check() needs at least one {name: (manual, reference)} pair")
    rows = []
    for name, (manual, ref) in pairs.items():
        row = _mismatch(name, manual, ref, rtol, atol, reference)
        if isinstance(row, str):
            # The message names the chapter, the quantity and the difference.
            raise GradientMismatch(_where(chapter) + row)
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
    __tracebackhide__ = True  # IPython leaves this frame out of the reader's traceback
    _show(compare(pairs, **kwargs))


# fd_check's float64 defaults. gradcheck's own (eps 1e-6, atol 1e-5, rtol 1e-3) let a
# backward that is off by a factor 1.001 pass. A central difference with step eps errs by
# about eps**2 * f''' / 6 (truncation: ~1e-12 here) plus about 1e-16 * |f| / eps (rounding:
# ~1e-10 |f|), so a float64 Jacobian entry is good to ~1e-9 for the book's functions. rtol
# 1e-5 and atol 1e-7 leave a margin of 100 over that, and make a 1e-3 error 100 times too
# large to pass. eps stays at 1e-6, near the step where the two errors balance.
FD_EPS = 1e-6
FD_ATOL = 1e-7
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


def _kinks(fn, inputs, eps: float, atol: float, rtol: float) -> dict[int, torch.Tensor]:
    """Input elements with a kink (a ReLU input at 0, an abs, a max) within ``eps``.

    There a central difference straddles the kink and averages two slopes, so it agrees
    with no backward, right or wrong. On a smooth function the slope from the right and
    the slope from the left, each extrapolated to a zero step from steps eps and eps/2
    (Richardson), agree to about eps², and so do the central differences with steps eps
    and eps/2; across a kink one pair or the other differs by about the jump in slope.
    Returns ``{input index: mask of those elements}``; usually empty (an element lies
    that close to a kink with a probability of about eps).
    """
    base = _outputs(fn, _copies(inputs)).detach()
    found = {}
    for i, t in enumerate(inputs):
        mask = torch.zeros(t.numel(), dtype=torch.bool)
        for k in range(t.numel()):
            up, up2, down, down2 = (
                _slope(fn, inputs, base, i, k, h) for h in (eps, eps / 2, -eps, -eps / 2)
            )
            smooth = _close(2 * up2 - up, 2 * down2 - down, atol, rtol) & _close(
                (up + down) / 2, (up2 + down2) / 2, atol, rtol
            )
            mask[k] = not bool(smooth.all())
        if mask.any():
            found[i] = mask.reshape(t.shape)
    return found


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
    The tolerances are tight enough that a backward off by a factor 1.001 fails
    (:data:`FD_ATOL`, :data:`FD_RTOL`); a page may loosen them no further than
    :data:`FD_LOOSEST`, and may pass gradcheck only options that add checks. An input
    element within ``eps`` of a kink (a ReLU input near 0) is compared with the one-sided
    difference on its own side of the kink, so the check neither fails nor passes by luck.
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
    kinks = _kinks(fn, inputs, eps, atol, rtol)
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


class FalseClaim(AssertionError):
    """A sentence of the book about how PyTorch (or the maths) behaves is false."""


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
    """Most bytes of tensor memory held at once while ``fn()`` runs, beyond what it started with."""
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
    memory figure is exact and deterministic: it does not depend on the allocator.
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


# --- interactive figures -------------------------------------------------------------------
FIGURE_MARK = "data-byhand-figure"
"""The attribute on every interactive figure's outer element. A page whose HTML contains it
loads ``_static/byhand-figures.js`` (book/_ext/pages.py); other pages do not."""

_MAX_SIZE = 8  # a figure draws every element: N, n_in and n_out up to this


@dataclass(frozen=True)
class Figure:
    """An interactive figure: static markup that reads without JavaScript (every cell and
    value is in it), with its numbers as a ``<script type="application/json">`` island that
    ``book/_static/byhand-figures.js`` only displays. The numbers were checked by the
    function that made it (:func:`paths_figure`, :func:`sum_figure`)."""

    markup: str
    text: str
    record: dict

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.markup

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        return {"text/plain": self.text, "text/html": self.markup}, {RECORD_KEY: self.record}


def _fmt(v: float) -> str:
    """Two decimals, a real minus sign, never "−0.00"."""
    text = f"{v:.2f}"
    return ("0.00" if text == "-0.00" else text).replace("-", "\u2212")


def _paren(v: str) -> str:
    """A formatted value after an operator: ``(−0.12)`` for a negative one."""
    return f"({v})" if v.startswith("\u2212") else v


def _plus(values: Sequence[str]) -> str:
    """``0.53 + (−0.12) + 0.40``: a sum of formatted values, negatives in brackets."""
    return " + ".join(_paren(v) for v in values)


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _island(data: dict) -> str:
    """The figure's data as JSON that cannot end its <script> early."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return (
        '<script type="application/json" class="bh-data">'
        + text.replace("<", "\\u003c")
        + "</script>"
    )


def _slot(kind: str, shown: str, texts: Sequence[str], live: bool = False) -> str:
    """A text the script changes (``<p class="bh-{kind}">shown</p>``), in a box as tall as
    the tallest of ``texts``, the texts it can show: each of the others sits in the same
    grid cell, hidden (``bh-sizer``). The figure keeps its size whatever is selected, at
    any width. Without JavaScript nothing changes, and the sizers are not shown."""
    aria = ' aria-live="polite"' if live else ""
    sizers = "".join(
        f'<p class="bh-sizer pst-js-only" aria-hidden="true">{text}</p>'
        for text in dict.fromkeys(texts)
        if text != shown
    )
    text = f'<p class="bh-{kind}"{aria}>{shown}</p>'
    return f'<div class="bh-slot bh-{kind}-slot">{text}{sizers}</div>'


def _widest(*texts) -> int:
    """The most characters of any text in ``texts`` (nested lists of strings): the cells
    whose values change are that wide (``--bh-ch``), so no column resizes as they change."""
    return max(len(t) if isinstance(t, str) else _widest(*t) for t in texts)


def _uid(kind: str, data: dict) -> str:
    """A stable id for the figure's elements (the same numbers give the same page)."""
    return f"bh-{kind}-" + hashlib.sha256(json.dumps(data).encode()).hexdigest()[:8]


def _values(t: torch.Tensor) -> list:
    return t.detach().to(torch.float64).cpu().tolist()


def _need_grads(figure: str, grads: Mapping, names: Sequence[str]) -> None:
    """A figure shows only checked numbers: every gradient it shows needs its pair."""
    missing = [n for n in names if n not in grads]
    extra = [n for n in grads if n not in names]
    if missing or extra:
        raise ValueError(
            f"{_where(None)}{figure} shows {', '.join(names)} and needs each as a "
            f"(manual, autograd) pair in grads, to check before it shows them"
            + (f"; missing: {', '.join(missing)}" if missing else "")
            + (f"; unknown: {', '.join(extra)}" if extra else "")
        )


def _need_shape(figure: str, name: str, t: torch.Tensor, shape: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor) or tuple(t.shape) != shape:
        got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
        raise ValueError(f"{_where(None)}{figure}: {name} has shape {got}, expected {shape}")


def _figure_sizes(
    figure: str, X: torch.Tensor, G: torch.Tensor, chapter: str | None
) -> tuple[int, int, int]:
    """(N, n_in, n_out) of a figure's X (N, n_in) and G (N, n_out), after checking that
    they are matrices with the same N, small enough to draw every element."""
    if not all(isinstance(t, torch.Tensor) and t.dim() == 2 for t in (X, G)):
        raise ValueError(
            f"{_where(chapter)}{figure}: X and G must be matrices (N, n_in) and (N, n_out)"
        )
    (N, n_in), n_out = X.shape, G.shape[1]
    _need_shape(figure, "G", G, (N, n_out))
    if max(N, n_in, n_out) > _MAX_SIZE:
        raise ValueError(
            f"{_where(chapter)}{figure}: draws every element; N, n_in and n_out must be at most {_MAX_SIZE}"
        )
    return N, n_in, n_out


def _table(
    key: str,
    caption: str,
    values: list,
    rows: str | None,
    cols: str,
    texts: list | None = None,
    grid: bool = False,
    classes: Mapping[str, str] | None = None,
    focus: tuple[int, int] | None = None,
    row_classes: Mapping[int, str] | None = None,
) -> str:
    """One matrix as a table: headers ``n=0``…, one ``<td data-k="X:n:i">`` per element
    with its full value in ``data-v``; ``grid``: a selectable ARIA grid (roving tabindex);
    ``row_classes``: a class per row, which the script changes (``<tr data-n="n">``)."""
    matrix = values if rows else [values]
    texts = texts if texts is not None else [[_fmt(v) for v in r] for r in matrix]
    if not rows:
        texts = texts if isinstance(texts[0], list) else [texts]
    head = ('<td class="bh-corner"></td>' if rows else "") + "".join(
        f'<th scope="col">{cols}={c}</th>' for c in range(len(matrix[0]))
    )
    body = []
    for r, row in enumerate(matrix):
        cells = []
        for c, v in enumerate(row):
            k = f"{key}:{r}:{c}"
            attrs = f' data-k="{k}" data-v="{v!r}"'
            cls = (classes or {}).get(k, "")
            if cls:
                attrs += f' class="{cls}"'
            if grid:
                attrs += f' tabindex="{0 if (r, c) == focus else -1}"'
                attrs += f' aria-selected="{"true" if "bh-sel" in cls else "false"}"'
            cells.append(f"<td{attrs}>{texts[r][c]}</td>")
        th = f'<th scope="row">{rows}={r}</th>' if rows else ""
        tr = f'<tr data-n="{r}" class="{row_classes[r]}">' if row_classes else "<tr>"
        body.append(tr + th + "".join(cells) + "</tr>")
    role = ' role="grid"' if grid else ""
    return (
        f'<table class="bh-mat bh-m-{key}"{role}><caption>{caption}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _shape(*dims: int) -> str:
    return (
        '<span class="bh-shape">('
        + ", ".join(map(str, dims))
        + ("," if len(dims) == 1 else "")
        + ")</span>"
    )


def paths_figure(
    X: torch.Tensor,
    W: torch.Tensor,
    b: torch.Tensor | None,
    G: torch.Tensor,
    grads: Pairs,
    *,
    chapter: str | None = None,
) -> Figure:
    """The "paths of one weight" figure for ``Y = X @ W + b`` with upstream gradient ``G``.

    ``grads`` holds ``{"dL/dX": (manual, autograd), "dL/dW": (...), "dL/db": (...)}``
    (no ``"dL/db"`` when ``b`` is None). Each pair is compared as :func:`check` does, and
    so is every sum the figure shows: ∂L/∂W[i,j] = Σ_n X[n,i]·G[n,j],
    ∂L/∂X[n,i] = Σ_j G[n,j]·W[i,j], ∂L/∂b[j] = Σ_n G[n,j], each computed here from the
    products it shows. Any mismatch raises :class:`GradientMismatch` and nothing is shown.

    Selecting an element of W, X or b (hover, tap, focus) marks every element of X, G and
    W it meets, the gradient it adds up to, and the sum with its values.
    """
    __tracebackhide__ = True
    name = "paths_figure"
    N, n_in, n_out = _figure_sizes(name, X, G, chapter)
    _need_shape(name, "W", W, (n_in, n_out))
    if b is not None:
        _need_shape(name, "b", b, (n_out,))
    names = ["dL/dX", "dL/dW"] + (["dL/db"] if b is not None else [])
    _need_grads(name, grads, names)
    checked = compare(grads, chapter=chapter)  # manual against autograd
    X_, W_, G_ = X.detach(), W.detach(), G.detach()
    W_terms = X_.unsqueeze(2) * G_.unsqueeze(1)  # (N, n_in, n_out): X[n,i] G[n,j]
    X_terms = G_.unsqueeze(1) * W_  # (N, n_in, n_out): G[n,j] W[i,j]
    own = {"dL/dX": X_terms.sum(2), "dL/dW": W_terms.sum(0)}
    if b is not None:
        own["dL/db"] = G_.sum(0)
    compare(
        {f"{n} (the figure's sums)": (own[n], grads[n][0].detach()) for n in names},
        chapter=chapter,
        reference="the manual gradient",
    )
    x, w, g, wt, xt = (_values(t) for t in (X_, W_, G_, W_terms, X_terms))
    dX, dW = _values(grads["dL/dX"][0]), _values(grads["dL/dW"][0])
    db = _values(grads["dL/db"][0]) if b is not None else None
    f = _fmt

    sel = {}
    for i in range(n_in):
        for j in range(n_out):
            ys = [f"Y[{n},{j}]" for n in range(N)]
            sel[f"W:{i}:{j}"] = {
                "path": [f"X:{n}:{i}" for n in range(N)] + [f"G:{n}:{j}" for n in range(N)],
                "res": f"dW:{i}:{j}",
                "why": f"W[{i},{j}] is used by every sample: it enters {_and(ys)}, "
                "so its gradient sums over n.",
                "terms": [
                    f"X[{n},{i}]·G[{n},{j}] = {f(x[n][i])} × {_paren(f(g[n][j]))} = {f(wt[n][i][j])}"
                    for n in range(N)
                ],
                "readout": f"∂L/∂W[{i},{j}] = Σ_n X[n,{i}]·G[n,{j}] = "
                f"{_plus([f(wt[n][i][j]) for n in range(N)])} = {f(dW[i][j])}",
            }
    for n in range(N):
        for i in range(n_in):
            ys = [f"Y[{n},{j}]" for j in range(n_out)]
            sel[f"X:{n}:{i}"] = {
                "path": [f"G:{n}:{j}" for j in range(n_out)] + [f"W:{i}:{j}" for j in range(n_out)],
                "res": f"dX:{n}:{i}",
                "why": f"X[{n},{i}] belongs to sample {n} only: it enters {_and(ys)}, one per "
                "output, so its gradient sums over j.",
                "terms": [
                    f"G[{n},{j}]·W[{i},{j}] = {f(g[n][j])} × {_paren(f(w[i][j]))} = {f(xt[n][i][j])}"
                    for j in range(n_out)
                ],
                "readout": f"∂L/∂X[{n},{i}] = Σ_j G[{n},j]·W[{i},j] = "
                f"{_plus([f(xt[n][i][j]) for j in range(n_out)])} = {f(dX[n][i])}",
            }
    if b is not None:
        for j in range(n_out):
            ys = [f"Y[{n},{j}]" for n in range(N)]
            sel[f"b:0:{j}"] = {
                "path": [f"G:{n}:{j}" for n in range(N)],
                "res": f"db:0:{j}",
                "why": f"b[{j}] is added to every sample's output: it enters {_and(ys)}, "
                "so its gradient sums over n.",
                "terms": [f"G[{n},{j}] = {f(g[n][j])}" for n in range(N)],
                "readout": f"∂L/∂b[{j}] = Σ_n G[n,{j}] = {_plus([f(g[n][j]) for n in range(N)])} = {f(db[j])}",
            }
    # shown first: the weight with the largest gradient, a sum that does not round to 0.00
    i0, j0 = divmod(int(grads["dL/dW"][0].detach().abs().argmax()), n_out)
    start = f"W:{i0}:{j0}"
    data = {
        "kind": "paths",
        "N": N,
        "n_in": n_in,
        "n_out": n_out,
        "X": x,
        "W": w,
        "b": _values(b) if b is not None else None,
        "G": g,
        "dX": dX,
        "dW": dW,
        "db": db,
        "W_terms": wt,
        "X_terms": xt,
        "start": start,
        "sel": sel,
    }
    uid = _uid("paths", data)
    s = sel[start]
    classes = {start: "bh-sel", s["res"]: "bh-res", **{k: "bh-path" for k in s["path"]}}
    focus_of = {"X": (0, 0), "W": tuple(int(v) for v in start.split(":")[1:]), "b": (0, 0)}

    def table(key, caption, values, rows, cols, grid=False):
        return _table(
            key, caption, values, rows, cols, grid=grid, classes=classes, focus=focus_of.get(key)
        )

    col = '<div class="bh-col">{}</div>'.format
    mats = [
        col(
            table("X", f"X {_shape(N, n_in)}", x, "n", "i", grid=True)
            + table("dX", f"∂L/∂X {_shape(N, n_in)}", dX, "n", "i")
        ),
        col(
            table("W", f"W {_shape(n_in, n_out)}", w, "i", "j", grid=True)
            + table("dW", f"∂L/∂W {_shape(n_in, n_out)}", dW, "i", "j")
        ),
    ]
    if b is not None:
        mats.append(
            col(
                table("b", f"b {_shape(n_out)}", _values(b), None, "j", grid=True)
                + table("db", f"∂L/∂b {_shape(n_out)}", db, None, "j")
            )
        )
    mats.append(col(table("G", f"G = ∂L/∂Y {_shape(N, n_out)}", g, "n", "j")))
    slots = max(N, n_out)
    terms = "".join(f'<span class="bh-term">{t}</span>' for t in s["terms"])
    terms += '<span class="bh-term">\u00a0</span>' * (slots - len(s["terms"]))
    pick = "W, X or b" if b is not None else "W or X"
    why = _slot("why", s["why"], [v["why"] for v in sel.values()])
    readout = _slot("readout", s["readout"], [v["readout"] for v in sel.values()], live=True)
    markup = (
        f'<figure class="bh-fig bh-paths" {FIGURE_MARK}="paths" id="{uid}" style="--bh-slots:{slots}">'
        f'<p class="bh-hint pst-js-only">Point at, tap or focus an element of {pick} '
        "(Tab reaches each matrix; the arrow keys move inside it).</p>"
        f'<div class="bh-mats">{"".join(mats)}</div>'
        f'<div class="bh-panel">{why}'
        f'<div class="bh-terms">{terms}</div>'
        f"{readout}</div>"
        '<p class="bh-note"><span class="bh-mark" aria-hidden="true">✓</span> '
        f"{_and(names)}: every sum shown matches autograd, checked when this page was built. "
        "Values are rounded to two decimals; each sum is of the unrounded values.</p>"
        f"{_island(data)}</figure>"
    )
    text = (
        f"paths_figure: X {tuple(X.shape)}, W {tuple(W.shape)}, G {tuple(G.shape)}; "
        f"{', '.join(names)} checked against autograd"
    )
    return Figure(markup, text, checked.record)


def _sub(n: int) -> str:
    return str(n).translate(str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉"))


def sum_figure(
    X: torch.Tensor,
    G: torch.Tensor,
    running: torch.Tensor,
    grads: Pairs,
    *,
    chapter: str | None = None,
) -> Figure:
    """The "sum that makes w.g" figure: a slider over n = 0 … N−1 adds sample n's outer
    product x_n g_nᵀ into the running sum ``running[n]`` = Σ_{m ≤ n} x_m g_mᵀ.

    ``grads`` is ``{"dL/dW": (manual, autograd)}``, compared as :func:`check` does. Before
    anything is shown, ``running`` is compared with the running sums of the outer products
    the figure shows, and its last slice with ``X.t() @ G`` and with autograd's dL/dW: the
    page says that the last slice is ``X.t() @ G`` ("exactly" when they are equal bit for
    bit). Any mismatch raises :class:`GradientMismatch`.
    """
    __tracebackhide__ = True
    name = "sum_figure"
    N, n_in, n_out = _figure_sizes(name, X, G, chapter)
    _need_shape(name, "running", running, (N, n_in, n_out))
    _need_grads(name, grads, ["dL/dW"])
    checked = compare(grads, chapter=chapter)
    X_, G_, running = X.detach(), G.detach(), running.detach()
    outer = X_.unsqueeze(2) * G_.unsqueeze(1)  # (N, n_in, n_out): x_n g_nᵀ
    compare(
        {"running sums (Σ_{m≤n} x_m g_mᵀ)": (running, outer.cumsum(0))},
        chapter=chapter,
        reference="the outer products shown",
    )
    compare(
        {"the last running sum": (running[-1], X_.t() @ G_)}, chapter=chapter, reference="X.t() @ G"
    )
    # "exactly" only when it is so, bit for bit; otherwise the order of the additions shows
    same = (
        "exactly X.t() @ G"
        if torch.equal(running[-1], X_.t() @ G_)
        else "X.t() @ G, up to rounding in the last digits (the additions come in another order)"
    )
    compare({"the last running sum": (running[-1], grads["dL/dW"][1].detach())}, chapter=chapter)
    x, g, o, r = (_values(t) for t in (X_, G_, outer, running))
    f = _fmt
    steps = []
    for n in range(N):
        rest = N - 1 - n
        if rest == 0:
            readout = (
                f"Samples 0 to {n} added, all {N}: this running sum is {same}, which is ∂L/∂W."
            )
        else:
            added = "Sample 0 added" if n == 0 else f"Samples 0 to {n} added"
            todo = (
                f"sample {N - 1} still to add"
                if rest == 1
                else f"samples {n + 1} to {N - 1} still to add"
            )
            readout = f"{added}, {todo}: the running sum is not yet X.t() @ G."
        steps.append(
            {
                "x": [f(v) for v in x[n]],
                "g": [f(v) for v in g[n]],
                "outer": [[f(v) for v in row] for row in o[n]],
                "running": [[f(v) for v in row] for row in r[n]],
                "outer_cap": f"x{_sub(n)} g{_sub(n)}ᵀ",
                "out": f"n = {n}",
                "valuetext": f"samples 0 to {n} added",
                "readout": readout,
            }
        )
    data = {
        "kind": "sum",
        "N": N,
        "n_in": n_in,
        "n_out": n_out,
        "X": x,
        "G": g,
        "outer": o,
        "running": r,
        "steps": steps,
    }
    uid = _uid("sum", data)
    last = steps[-1]
    # the card: x_n down the left (blue), g_n across the top (orange), x_n[i] g_n[j] inside
    head = '<td class="bh-corner">×</td>' + "".join(
        f'<th scope="col" class="bh-g" data-k="g:{j}" data-v="{g[-1][j]!r}">{last["g"][j]}</th>'
        for j in range(n_out)
    )
    body = "".join(
        f'<tr><th scope="row" class="bh-x" data-k="x:{i}" data-v="{x[-1][i]!r}">{last["x"][i]}</th>'
        + "".join(
            f'<td data-k="o:{i}:{j}" data-v="{o[-1][i][j]!r}">{last["outer"][i][j]}</td>'
            for j in range(n_out)
        )
        + "</tr>"
        for i in range(n_in)
    )
    card = (
        f'<table class="bh-mat bh-m-o"><caption><span class="bh-cap">{last["outer_cap"]}</span> '
        f"{_shape(n_in, n_out)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )
    total = _table("r", f"W_g so far {_shape(n_in, n_out)}", r[-1], "i", "j", texts=last["running"])
    # at the end every row is in the sum, and the last is the sample just added
    rows = {m: "bh-current" if m == N - 1 else "bh-added" for m in range(N)}
    X_table = _table("X", f"X {_shape(N, n_in)}", x, "n", "i", row_classes=rows)
    G_table = _table("G", f"G {_shape(N, n_out)}", g, "n", "j", row_classes=rows)
    slider = (
        f'<div class="bh-slider pst-js-only"><label for="{uid}-n">samples 0 to n added</label>'
        f'<input type="range" id="{uid}-n" min="0" max="{N - 1}" step="1" value="{N - 1}" '
        f'aria-valuetext="{last["valuetext"]}">'
        f'<output for="{uid}-n" class="bh-n">{last["out"]}</output></div>'
    )
    ch = _widest(*([s["x"], s["g"], s["outer"], s["running"]] for s in steps))
    readout = _slot("readout", last["readout"], [s["readout"] for s in steps], live=True)
    markup = (
        f'<figure class="bh-fig bh-sum bh-at-end" {FIGURE_MARK}="sum" id="{uid}" '
        f'style="--bh-ch:{ch}">{slider}'
        f'<div class="bh-mats"><div class="bh-col">{X_table}</div><div class="bh-col">{G_table}</div>'
        f'<div class="bh-col">{card}</div><div class="bh-col">{total}</div></div>'
        f"{readout}"
        '<p class="bh-note"><span class="bh-mark" aria-hidden="true">✓</span> '
        "Every running sum matches the outer products shown, and the last one matches X.t() @ G "
        "and autograd's dL/dW, checked when this page was built. Values are rounded to two "
        "decimals.</p>"
        f"{_island(data)}</figure>"
    )
    text = (
        f"sum_figure: X {tuple(X.shape)}, G {tuple(G.shape)}; the running sum of x_n g_nᵀ "
        "ends at X.t() @ G, checked against autograd"
    )
    return Figure(markup, text, checked.record)
