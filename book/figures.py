"""Chapter 2's interactive figures, from checked tensors.

:func:`paths_figure` and :func:`sum_figure` check every number they are given against
autograd (with :func:`byhand.compare`) and refuse to show an unchecked one. Each returns a
:class:`Figure`: static HTML that reads without JavaScript, with its numbers as JSON that
``_static/byhand-figures.js`` only displays (it computes nothing). The figure carries the
same record as a passing :func:`byhand.check`, so the page badge counts what it checked.

``tests/test_figures.py`` unit-tests it; ``tests/test_interactive.py`` drives it in a browser.
"""

from __future__ import annotations

import hashlib
import html
import json
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from byhand import RECORD_KEY, Pairs, _where, compare

__all__ = ["FIGURE_MARK", "Figure", "paths_figure", "sum_figure"]

FIGURE_MARK = "data-byhand-figure"
"""The attribute on every interactive figure's outer element. A page whose HTML contains it
loads ``_static/byhand-figures.js`` (book/_ext/pages.py); other pages do not."""

_MAX_SIZE = 8  # a figure draws every element: N, n_in and n_out up to this


@dataclass(frozen=True)
class Figure:
    """An interactive figure: static markup that reads without JavaScript (every cell and
    value is in it), with its numbers as a ``<script type="application/json">`` island that
    ``book/_static/byhand-figures.js`` only displays. The numbers were checked by the
    function that made it (:func:`paths_figure`, :func:`sum_figure`). ``picture`` is its
    first state as an SVG image, for a reader's notebook, where the script does not run
    (the site shows the HTML: its build prefers text/html)."""

    markup: str
    text: str
    record: dict
    picture: str = ""

    def __str__(self) -> str:
        return self.text

    __repr__ = __str__

    def _repr_html_(self) -> str:
        return self.markup

    def _repr_mimebundle_(self, include=None, exclude=None) -> tuple[dict, dict]:
        data = {"text/plain": self.text, "text/html": self.markup}
        if self.picture:
            data["image/svg+xml"] = self.picture
        return data, {RECORD_KEY: self.record}


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
    return Figure(markup, text, checked.record, _paths_picture(data, s, names))


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
    page says that the last slice is autograd's ``W.grad`` ("exactly" when they are equal bit
    for bit). It does not name ``X.t() @ G``: chapter 2 shows the figure before it derives
    that product. Any mismatch raises :class:`GradientMismatch`.
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
        "exactly autograd's W.grad"
        if torch.equal(running[-1], grads["dL/dW"][1].detach())
        else "autograd's W.grad up to rounding in the last digits (the additions come in another order)"
    )
    compare({"the last running sum": (running[-1], grads["dL/dW"][1].detach())}, chapter=chapter)
    x, g, o, r = (_values(t) for t in (X_, G_, outer, running))
    f = _fmt
    steps = []
    for n in range(N):
        rest = N - 1 - n
        if rest == 0:
            readout = f"Samples 0 to {n} added, all {N}: this running sum is ∂L/∂W, {same}."
        else:
            added = "Sample 0 added" if n == 0 else f"Samples 0 to {n} added"
            todo = (
                f"sample {N - 1} still to add"
                if rest == 1
                else f"samples {n + 1} to {N - 1} still to add"
            )
            readout = f"{added}, {todo}: the running sum is not yet ∂L/∂W."
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
        "Every running sum matches the outer products shown, and the last one matches "
        "autograd's ∂L/∂W, checked when this page was built. Values are rounded to two "
        "decimals.</p>"
        f"{_island(data)}</figure>"
    )
    text = (
        f"sum_figure: X {tuple(X.shape)}, G {tuple(G.shape)}; the running sum of x_n g_nᵀ "
        "ends at X.t() @ G, checked against autograd"
    )
    return Figure(markup, text, checked.record, _sum_picture(data, last))


# --- the first state as a picture (a reader's notebook shows it; book/_ext/notebooks.py) ---
_CELL_W, _CELL_H, _HEAD_W, _CAP_H, _GAP = 62, 24, 44, 22, 18
_COLOURS = {  # fill, outline: the light theme's (book/_static/byhand.css)
    "X": ("#dceaf9", "#1f5fa8"), "X-sel": ("#b4d0f0", "#1f5fa8"),
    "G": ("#fde4cf", "#a64d00"), "W": ("#ece2f6", "#6a3d9a"), "W-sel": ("#d3bfea", "#6a3d9a"),
    "b-sel": ("#d3bfea", "#6a3d9a"), "res": ("#d9eed9", "#1a6a2f"),
}  # fmt: skip


def _svg_text(x: float, y: float, text: str, size: int = 14, **attrs) -> str:
    extra = "".join(f' {k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}"{extra}>{html.escape(text)}</text>'


def _svg_table(x: float, y: float, caption: str, texts: list, rows: str | None, cols: str,
               fills: Mapping[tuple[int, int], str]) -> tuple[str, float, float]:  # fmt: skip
    """One matrix at (x, y): its SVG, width and height. ``fills``: (row, col) -> colour key."""
    matrix = texts if rows else [texts]
    left = _HEAD_W if rows else 0
    out = [_svg_text(x, y + 15, caption, 14, font_weight="bold")]
    top = y + _CAP_H
    for c in range(len(matrix[0])):
        out.append(_svg_text(x + left + (c + 0.5) * _CELL_W, top + 16, f"{cols}={c}", 12,
                             text_anchor="middle", fill="#555"))  # fmt: skip
    for r, row in enumerate(matrix):
        ry = top + (r + 1) * _CELL_H
        if rows:
            out.append(
                _svg_text(x + left - 6, ry + 16, f"{rows}={r}", 12, text_anchor="end", fill="#555")
            )
        for c, value in enumerate(row):
            fill, line = _COLOURS.get(fills.get((r, c), ""), ("#ffffff", "#b5bcc4"))
            width = 1 if fill == "#ffffff" else 2.5
            out.append(
                f'<rect x="{x + left + c * _CELL_W:.0f}" y="{ry:.0f}" width="{_CELL_W}" '
                f'height="{_CELL_H}" fill="{fill}" stroke="{line}" stroke-width="{width}"/>'
            )
            out.append(_svg_text(x + left + (c + 0.5) * _CELL_W, ry + 16, value, 13,
                                 text_anchor="middle", font_family="monospace"))  # fmt: skip
    return "".join(out), left + len(matrix[0]) * _CELL_W, _CAP_H + (len(matrix) + 1) * _CELL_H


def _svg(columns: list[list[tuple]], lines: list[str], title: str) -> str:
    """Tables in columns (each a list of ``_svg_table`` arguments after x, y), then lines of
    text under them; on white, so that it reads in a dark theme too."""
    parts, x, height = [], 10, 0
    for column in columns:
        y, width = 10, 0
        for args in column:
            svg, w, h = _svg_table(x, y, *args)
            parts.append(svg)
            y, width = y + h + _GAP, max(width, w)
        x, height = x + width + 2 * _GAP, max(height, y)
    wrapped = [part for line in lines for part in textwrap.wrap(line, 96)]
    for k, line in enumerate(wrapped):
        parts.append(_svg_text(10, height + 18 + 22 * k, line, 14))
    width = max(x, 10 + 7.6 * max((len(line) for line in wrapped), default=0))
    total = height + 22 * len(wrapped) + 14
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{total:.0f}" '
        f'viewBox="0 0 {width:.0f} {total:.0f}" font-family="sans-serif" role="img">'
        f"<title>{html.escape(title)}</title>"
        f'<rect width="100%" height="100%" fill="#ffffff"/>{"".join(parts)}</svg>'
    )


def _grid(values: list) -> list:
    return (
        [[_fmt(v) for v in row] for row in values]
        if isinstance(values[0], list)
        else [_fmt(v) for v in values]
    )


def _paths_picture(data: dict, shown: dict, names: Sequence[str]) -> str:
    """The paths figure with its first element selected, as the page first shows it."""
    fills: dict[str, dict] = {k: {} for k in ("X", "W", "b", "G", "dX", "dW", "db")}
    for key in shown["path"]:
        m, r, c = key.split(":")
        fills[m][(int(r), int(c))] = m
    m, r, c = data["start"].split(":")
    fills[m][(int(r), int(c))] = f"{m}-sel"
    m, r, c = shown["res"].split(":")
    fills[m][(int(r), int(c))] = "res"
    N, n_in, n_out = data["N"], data["n_in"], data["n_out"]
    columns = [
        [(f"X ({N}, {n_in})", _grid(data["X"]), "n", "i", fills["X"]),
         (f"∂L/∂X ({N}, {n_in})", _grid(data["dX"]), "n", "i", fills["dX"])],
        [(f"W ({n_in}, {n_out})", _grid(data["W"]), "i", "j", fills["W"]),
         (f"∂L/∂W ({n_in}, {n_out})", _grid(data["dW"]), "i", "j", fills["dW"])],
    ]  # fmt: skip
    if data["b"] is not None:
        columns.append([
            (f"b ({n_out},)", _grid(data["b"]), None, "j", {(0, c): v for (_, c), v in fills["b"].items()}),
            (f"∂L/∂b ({n_out},)", _grid(data["db"]), None, "j", {(0, c): v for (_, c), v in fills["db"].items()}),
        ])  # fmt: skip
    columns.append([(f"G = ∂L/∂Y ({N}, {n_out})", _grid(data["G"]), "n", "j", fills["G"])])
    lines = [shown["why"], *shown["terms"], shown["readout"],
             f"✓ {_and(list(names))}: every sum shown matches autograd, checked when the notebook's "
             "page was built. Values rounded to two decimals."]  # fmt: skip
    return _svg(
        columns, lines, f"The paths of {data['start'].replace(':', '[', 1).replace(':', ',')}]"
    )


def _sum_picture(data: dict, last: dict) -> str:
    """The sum figure at its last step (every sample added), as the page first shows it."""
    N, n_in, n_out = data["N"], data["n_in"], data["n_out"]
    rows = {(n, c): ("X" if n == N - 1 else "") for n in range(N) for c in range(n_in)}
    g_rows = {(n, c): ("G" if n == N - 1 else "") for n in range(N) for c in range(n_out)}
    columns = [
        [(f"X ({N}, {n_in})", _grid(data["X"]), "n", "i", rows)],
        [(f"G ({N}, {n_out})", _grid(data["G"]), "n", "j", g_rows)],
        [(f"{last['outer_cap']} ({n_in}, {n_out})", last["outer"], "i", "j", {})],
        [(f"W_g so far ({n_in}, {n_out})", last["running"], "i", "j",
          {(i, j): "res" for i in range(n_in) for j in range(n_out)})],
    ]  # fmt: skip
    lines = [last["readout"], "✓ Every running sum matches the outer products, and the last one "
             "X.t() @ G and autograd's dL/dW, checked when the notebook's page was built."]  # fmt: skip
    return _svg(columns, lines, "The running sum of the outer products x_n g_nᵀ")
