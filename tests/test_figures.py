"""Unit tests of book/figures.py, chapter 2's interactive figures (tests/test_interactive.py
drives them in a browser)."""

from __future__ import annotations

import html as html_module
import itertools
import json
import re

import pytest
import torch

import byhand
import figures
from byhand import GradientMismatch, start_chapter
from figures import FIGURE_MARK, Figure, paths_figure, sum_figure


@pytest.fixture(autouse=True)
def chapter():
    start_chapter("Test chapter")
    yield
    byhand._chapter = None
    torch.set_default_dtype(torch.float32)


def layer(N=4, n_in=3, n_out=2):
    """A small batch through Y = X @ W + b, with autograd's gradients."""
    X = torch.randn(N, n_in, requires_grad=True)
    W = torch.randn(n_in, n_out, requires_grad=True)
    b = torch.randn(n_out, requires_grad=True)
    Y = X @ W + b
    Y.retain_grad()
    ((Y - torch.randn(N, n_out)) ** 2).mean().backward()
    return X, W, b, Y.grad


def layer_grads(X, W, b, G):
    return {"dL/dX": (G @ W.t(), X.grad), "dL/dW": (X.t() @ G, W.grad), "dL/db": (G.sum(0), b.grad)}


def island(markup: str) -> dict:
    found = re.search(
        r'<script type="application/json" class="bh-data">(.*?)</script>', markup, re.S
    )
    assert found, "no JSON island"
    return json.loads(found.group(1))


def cell_texts(markup: str, key: str) -> dict[str, str]:
    """{data-k: shown text} of the cells whose key starts with ``key:``."""
    return {
        k: t for k, t in re.findall(rf'data-k="({re.escape(key)}:[^"]+)"[^>]*>([^<]*)<', markup)
    }


def test_paths_figure_shows_every_value_and_ships_the_checked_tensors():
    X, W, b, G = layer()
    fig = paths_figure(X, W, b, G, grads=layer_grads(X, W, b, G))
    assert isinstance(fig, Figure) and fig._repr_html_() == fig.markup
    data = island(fig.markup)
    for name, t in {"X": X, "W": W, "G": G, "dX": X.grad, "dW": W.grad}.items():
        assert torch.allclose(torch.tensor(data[name]), t, rtol=0, atol=1e-12), name
        shown = cell_texts(fig.markup, name)
        assert len(shown) == t.numel(), f"{name}: {len(shown)} cells for {t.numel()} elements"
        for r, c in itertools.product(range(t.shape[0]), range(t.shape[1])):
            assert shown[f"{name}:{r}:{c}"] == figures._fmt(t[r, c].item())
    assert (
        torch.equal(torch.tensor(data["b"]), b.detach()) and len(cell_texts(fig.markup, "db")) == 2
    )
    # the terms are the products, and they add up to the gradients the figure shows
    W_terms, X_terms = torch.tensor(data["W_terms"]), torch.tensor(data["X_terms"])
    assert torch.allclose(W_terms.sum(0), W.grad, rtol=0, atol=1e-12)
    assert torch.allclose(X_terms.sum(2), X.grad, rtol=0, atol=1e-12)
    assert torch.equal(W_terms[2, 1, 0], X[2, 1].detach() * G[2, 0])


def test_paths_figure_reads_without_javascript():
    """The first selection, the weight with the largest gradient, is in the markup: its
    column of X and of G, its gradient and its sum, with values."""
    X, W, b, G = layer()
    markup = paths_figure(X, W, b, G, grads=layer_grads(X, W, b, G)).markup
    i, j = divmod(int(W.grad.abs().argmax()), 2)
    marked = dict(re.findall(r'data-k="([^"]+)"[^>]*class="(bh-[a-z]+)"', markup))
    assert marked == {
        f"W:{i}:{j}": "bh-sel",
        f"dW:{i}:{j}": "bh-res",
        **{f"X:{n}:{i}": "bh-path" for n in range(4)},
        **{f"G:{n}:{j}": "bh-path" for n in range(4)},
    }
    readout = re.search(r'<p class="bh-readout" aria-live="polite">([^<]*)</p>', markup).group(1)
    terms = " + ".join(
        f"({t})" if t.startswith("−") else t
        for t in (figures._fmt(X[n, i].item() * G[n, j].item()) for n in range(4))
    )
    assert (
        readout
        == f"∂L/∂W[{i},{j}] = Σ_n X[n,{i}]·G[n,{j}] = {terms} = {figures._fmt(W.grad[i, j].item())}"
    )
    assert f'{FIGURE_MARK}="paths"' in markup
    # one tabbable cell per selectable matrix (X, W, b), in ARIA grids
    assert markup.count('role="grid"') == 3 and markup.count('tabindex="0"') == 3
    assert markup.count('aria-selected="true"') == 1 and f'data-k="W:{i}:{j}"' in markup


def test_paths_figure_has_a_selection_for_every_element_of_X_W_and_b():
    X, W, b, G = layer()
    sel = island(paths_figure(X, W, b, G, grads=layer_grads(X, W, b, G)).markup)["sel"]
    assert len(sel) == X.numel() + W.numel() + b.numel()
    assert (
        sel["X:2:1"]["path"] == ["G:2:0", "G:2:1", "W:1:0", "W:1:1"]
        and sel["X:2:1"]["res"] == "dX:2:1"
    )
    assert (
        sel["b:0:1"]["path"] == [f"G:{n}:1" for n in range(4)] and sel["b:0:1"]["res"] == "db:0:1"
    )
    assert "sums over j" in sel["X:2:1"]["why"] and "sums over n" in sel["W:0:1"]["why"]
    assert sel["W:0:1"]["readout"].startswith("∂L/∂W[0,1] = Σ_n X[n,0]·G[n,1] = ")
    assert sel["b:0:0"]["readout"].endswith("= " + figures._fmt(b.grad[0].item()))


def test_paths_figure_refuses_a_wrong_gradient():
    X, W, b, G = layer()
    grads = layer_grads(X, W, b, G)
    wrong = dict(grads, **{"dL/dW": (X.t() @ G * 1.01, W.grad)})
    with pytest.raises(GradientMismatch, match=r"^\[Test chapter\] dL/dW does not match autograd"):
        paths_figure(X, W, b, G, grads=wrong)
    with pytest.raises(GradientMismatch, match="dL/db"):
        paths_figure(X, W, b, G, grads=dict(grads, **{"dL/db": (G.mean(0), b.grad)}))
    # a manual gradient that matches a wrong reference is refused too
    with pytest.raises(GradientMismatch, match="dL/dX"):
        paths_figure(X, W, b, G, grads=dict(grads, **{"dL/dX": (G @ W.t(), X.grad + 1)}))


def test_paths_figure_refuses_numbers_it_cannot_check():
    X, W, b, G = layer()
    grads = layer_grads(X, W, b, G)
    with pytest.raises(
        ValueError, match=r"needs each as a \(manual, autograd\) pair.*missing: dL/db"
    ):
        paths_figure(X, W, b, G, grads={k: v for k, v in grads.items() if k != "dL/db"})
    with pytest.raises(ValueError, match="unknown: dL/dY"):
        paths_figure(X, W, b, G, grads=dict(grads, **{"dL/dY": (G, G)}))
    with pytest.raises(ValueError, match=r"W has shape \(2, 3\), expected \(3, 2\)"):
        paths_figure(X, W.t(), b, G, grads=grads)
    with pytest.raises(GradientMismatch):  # the figure's own sums would disagree with G
        paths_figure(X, W, b, G + 1, grads=grads)
    big = torch.randn(9, 3)
    with pytest.raises(ValueError, match="at most 8"):
        paths_figure(big, W, b, torch.randn(9, 2), grads=grads)


def test_paths_figure_without_a_bias():
    X, W, b, G = layer(N=3, n_in=2, n_out=3)
    grads = {k: v for k, v in layer_grads(X, W, b, G).items() if k != "dL/db"}
    markup = paths_figure(X, W, None, G, grads=grads).markup
    assert "bh-m-b" not in markup and markup.count('role="grid"') == 2
    assert markup.count('class="bh-term"') == 3  # max(N, n_out) slots for the terms


def test_figure_json_cannot_close_its_script_early():
    assert figures._island({"t": "</script><b>"}).count("</script>") == 1


def test_figures_carry_a_check_record_and_a_text_form():
    X, W, b, G = layer()
    fig = paths_figure(X, W, b, G, grads=layer_grads(X, W, b, G))
    data, metadata = fig._repr_mimebundle_()
    assert data["text/html"] == fig.markup and "checked against autograd" in data["text/plain"]
    assert metadata[byhand.RECORD_KEY]["kind"] == "check"
    assert metadata[byhand.RECORD_KEY]["quantities"] == ["dL/dX", "dL/dW", "dL/db"]


def test_number_format_has_a_real_minus_and_no_negative_zero():
    assert (
        figures._fmt(-1.234) == "−1.23"
        and figures._fmt(-0.001) == "0.00"
        and figures._fmt(0.5) == "0.50"
    )


def test_sum_figure_ends_at_X_transpose_G():
    X, W, b, G = layer()
    running = (X.unsqueeze(-1) * G.unsqueeze(1)).cumsum(0).detach()
    fig = sum_figure(X, G, running=running, grads={"dL/dW": (X.t() @ G, W.grad)})
    data = island(fig.markup)
    X_j, G_j = torch.tensor(data["X"]), torch.tensor(data["G"])
    assert torch.allclose(torch.tensor(data["running"])[-1], X_j.t() @ G_j, rtol=0, atol=1e-12)
    assert torch.allclose(
        torch.tensor(data["outer"])[1], torch.outer(X_j[1], G_j[1]), rtol=0, atol=1e-12
    )
    # without JavaScript the figure shows the end: the running sum is X.t() @ G, and says so
    shown = cell_texts(fig.markup, "r")
    assert shown == {
        f"r:{i}:{j}": figures._fmt((X.t() @ G)[i, j].item()) for i in range(3) for j in range(2)
    }
    readout = re.search(r'<p class="bh-readout" aria-live="polite">([^<]*)</p>', fig.markup).group(
        1
    )
    exact = torch.equal(running[-1], W.grad)
    assert (
        "Samples 0 to 3 added, all 4: this running sum is ∂L/∂W, "
        f"{'exactly ' if exact else ''}autograd's W.grad" in html_module.unescape(readout)
    )
    assert '<label for="' in fig.markup and ">samples 0 to n added</label>" in fig.markup
    assert 'min="0" max="3"' in fig.markup and 'value="3"' in fig.markup
    steps = data["steps"]
    # chapter 2 shows the figure before it derives X.t() @ G: the figure does not name it
    assert len(steps) == 4 and all("X.t()" not in s["readout"] for s in steps)
    assert "not yet ∂L/∂W" in steps[2]["readout"]
    assert steps[0]["valuetext"] == "samples 0 to 0 added" and steps[1]["out"] == "n = 1"


def test_sum_figure_says_exactly_only_when_bit_for_bit():
    X, W, b, G = layer()
    running = (X.unsqueeze(-1) * G.unsqueeze(1)).cumsum(0).detach()
    nudged = running.clone()
    nudged[-1] = torch.nextafter(running[-1], torch.full_like(running[-1], 10.0))  # one ulp up
    fig = sum_figure(X, G, running=nudged, grads={"dL/dW": (X.t() @ G, W.grad)})
    end = island(fig.markup)["steps"][-1]["readout"]
    assert "exactly" not in end and "autograd's W.grad up to rounding in the last digits" in end


def test_sum_figure_refuses_a_wrong_running_sum():
    X, W, b, G = layer()
    outer = (X.unsqueeze(-1) * G.unsqueeze(1)).detach()
    grads = {"dL/dW": (X.t() @ G, W.grad)}
    with pytest.raises(GradientMismatch, match="the outer products shown"):
        sum_figure(X, G, running=outer, grads=grads)  # the products, not their running sum
    with pytest.raises(GradientMismatch, match="dL/dW does not match autograd"):
        sum_figure(X, G, running=outer.cumsum(0), grads={"dL/dW": (2 * X.t() @ G, W.grad)})
    with pytest.raises(GradientMismatch, match="the last running sum"):  # a pair that agrees,
        sum_figure(
            X,
            G,
            running=outer.cumsum(0),  # but is not W's gradient
            grads={"dL/dW": (G.t() @ X, W.grad.t())},
        )
    with pytest.raises(ValueError, match="missing: dL/dW"):
        sum_figure(X, G, running=outer.cumsum(0), grads={})
    with pytest.raises(ValueError, match=r"running has shape \(3, 2\), expected \(4, 3, 2\)"):
        sum_figure(X, G, running=outer.sum(0), grads=grads)


def test_figures_reserve_room_for_every_text_they_can_show():
    """Every text the script can put in a slot is in the markup beside it, hidden and
    without JavaScript not shown, so the slot is as tall as the tallest (at any width);
    the cells whose values change are as wide as the widest value they show."""
    X, W, b, G = layer()
    sizer = r'<p class="bh-sizer pst-js-only" aria-hidden="true">([^<]*)</p>'
    markup = paths_figure(X, W, b, G, grads=layer_grads(X, W, b, G)).markup
    sel = island(markup)["sel"]
    for kind in ("why", "readout"):
        slot = re.search(rf'<div class="bh-slot bh-{kind}-slot">(.*?)</div>', markup).group(1)
        shown = re.search(rf'<p class="bh-{kind}"[^>]*>([^<]*)</p>', slot).group(1)
        assert sorted([shown, *re.findall(sizer, slot)]) == sorted({s[kind] for s in sel.values()})
    assert markup.count('class="bh-why"') == markup.count('class="bh-readout"') == 1
    running = (X.unsqueeze(-1) * G.unsqueeze(1)).cumsum(0).detach()
    markup = sum_figure(X, G, running=running, grads={"dL/dW": (X.t() @ G, W.grad)}).markup
    steps = island(markup)["steps"]
    assert len(re.findall(sizer, markup)) == len(steps) - 1
    widest = max(len(t) for s in steps for k in ("outer", "running") for row in s[k] for t in row)
    widest = max([widest] + [len(t) for s in steps for t in s["x"] + s["g"]])
    assert f'style="--bh-ch:{widest}"' in markup
