"""The reader's helpers for *Backprop by Hand*: check a gradient you wrote by hand.

Every chapter imports this module (it sits next to the chapters, and myst-nb runs each
chapter with ``book/`` as its working directory); a downloaded notebook needs only this
file and torch. What it offers:

* :func:`start_chapter` names the chapter for error messages, seeds the random
  generators and makes float64 the default dtype, so every chapter starts alike.
* :func:`check` compares named manual gradients with autograd's. On success it shows one
  ✓ line per quantity under the cell; on a mismatch it raises :class:`GradientMismatch`,
  which fails the book's build. :func:`compare` does the same without showing anything.
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
    "Measurement",
    "measure",
    "start_chapter",
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
