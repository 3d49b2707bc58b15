"""Unit tests of book/byhand.py, the helpers every chapter imports."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import byhand
from byhand import GradientMismatch, check, compare, fd_check, measure, start_chapter, unbroadcast


@pytest.fixture(autouse=True)
def chapter():
    start_chapter("Test chapter")
    yield
    byhand._chapter = None
    torch.set_default_dtype(torch.float32)


def grads():
    w = torch.randn(3, 2, requires_grad=True)
    (w**3).sum().backward()
    return 3 * w.detach() ** 2, w.grad


# --- start_chapter ---------------------------------------------------------------


def test_start_chapter_seeds_and_sets_float64():
    start_chapter("A", seed=3)
    a = torch.randn(4)
    start_chapter("A", seed=3)
    assert torch.equal(a, torch.randn(4))
    assert a.dtype == torch.float64


# --- check / compare: matches ------------------------------------------------------


def test_match_returns_rows_with_shape_and_zero_difference():
    manual, auto = grads()
    report = compare({"dL/dW": (manual, auto)})
    (row,) = report.rows
    assert row.name == "dL/dW" and row.shape == (3, 2) and row.dtype == torch.float64
    assert row.max_abs_diff < 1e-12


def test_close_but_not_exact_passes_and_says_not_exact():
    manual, auto = grads()
    report = compare({"dL/dW": (manual + 1e-12, auto)})
    assert not report.rows[0].exact
    assert 0 < report.rows[0].max_abs_diff < 1e-11


def test_report_shows_one_tick_line_per_quantity_with_details_folded():
    manual, auto = grads()
    report = compare({"dL/dW": (manual + 1e-12, auto), "dL/db": (torch.ones(2), torch.ones(2))})
    lines = str(report).splitlines()
    assert (
        lines[0].startswith("✓ dL/dW (3, 2) matches autograd") and "largest difference" in lines[0]
    )
    assert lines[1].startswith("✓ dL/db (2,) matches autograd") and "identical" in lines[1]
    html = report._repr_html_()
    assert html.count("<li>") == 2 and "<details>" in html
    assert html.index("</ul>") < html.index("<details>"), "the numbers come after the ticks"


def test_a_check_given_its_own_tolerance_names_it_instead_of_rounding():
    one = torch.tensor(1.0, dtype=torch.float64)
    report = compare({"dL": (one, one + 1e-5)}, rtol=1e-4, atol=0)
    assert "(within rtol 1e-04, atol 0)" in str(report) and "rounding" not in str(report)
    html = report._repr_html_()
    assert "tolerance it was given (rtol 1e-04, atol 0)" in html and "another order" not in html
    default = compare({"dL": (one, one + 1e-12)})
    assert "(rounding)" in str(default) and "another order" in default._repr_html_()


def test_report_carries_a_machine_readable_record():
    manual, auto = grads()
    data, metadata = compare({"dL/dW": (manual, auto)}, reference="vec(G) @ J")._repr_mimebundle_()
    assert metadata[byhand.RECORD_KEY] == {
        "kind": "check",
        "quantities": ["dL/dW"],
        "reference": "vec(G) @ J",
        "torch": torch.__version__,
        "site": None,  # outside IPython; see the next test
    }
    assert set(data) == {"text/plain", "text/html"}, "only mime types myst-nb renders"


def test_a_record_names_the_line_of_the_cell_that_called(monkeypatch, capsys):
    """In IPython, a record says where the page called: the line of the cell, as IPython's
    tracebacks name it, also for a call inside a function the cell defined and another
    cell called (the build checks that every call site ran)."""
    import IPython

    cells = {"<cell-3>": ("Cell", "In[3]"), "<cell-5>": ("Cell", "In[5]")}
    shell = SimpleNamespace(compile=SimpleNamespace(format_code_name=cells.get))
    monkeypatch.setattr(IPython, "get_ipython", lambda: shell)
    shown = []
    monkeypatch.setattr(byhand, "_show", shown.append)
    namespace = {"claim": byhand.claim, "check": byhand.check, "torch": torch}
    exec(
        compile(
            "x = torch.ones(2)\n\ndef verify():\n    check({'x': (x, x * 1.0)})\n",
            "<cell-3>",
            "exec",
        ),
        namespace,
    )
    exec(compile("claim('one', True)\nverify()\n", "<cell-5>", "exec"), namespace)
    assert [r.record["site"] for r in shown] == ["Cell In[5], line 1", "Cell In[3], line 4"]


def test_claim_passes_quietly_and_fails_naming_chapter_and_sentence(capsys):
    byhand.claim("two is two", torch.tensor([2]) == 2)
    assert "✓ checked when this page was built: two is two" in capsys.readouterr().out
    with pytest.raises(byhand.FalseClaim) as info:
        byhand.claim("relu's gradient at 0 is 1", torch.tensor([1.0, 0.0]) == 1)
    assert str(info.value).startswith('[Test chapter] the book says: "relu\'s gradient at 0 is 1"')
    assert issubclass(byhand.FalseClaim, AssertionError)


def test_html_escapes_names():
    report = compare({"<b>x</b>": (torch.ones(1), torch.ones(1))})
    assert "<b>x</b>" not in report._repr_html_()


def test_check_prints_its_lines_outside_ipython(capsys):
    manual, auto = grads()
    assert check({"dL/dW": (manual, auto)}) is None
    assert "dL/dW" in capsys.readouterr().out


def test_scalar_and_empty_tensors():
    assert compare({"dL/db": (torch.tensor(2.0), torch.tensor(2.0))}).rows[0].shape == ()
    assert compare({"empty": (torch.ones(0, 3), torch.ones(0, 3))}).rows[0].max_abs_diff == 0


def test_explicit_tolerances_are_used():
    a, b = torch.ones(3), torch.ones(3) * 1.01
    compare({"loose": (a, b)}, rtol=0.02, atol=0)
    with pytest.raises(GradientMismatch):
        compare({"tight": (a, b)}, rtol=1e-3, atol=0)


# --- mismatches: what the reader sees ----------------------------------------------


def test_value_mismatch_names_chapter_quantity_shape_difference_and_index():
    manual, auto = grads()
    wrong = manual.clone()
    wrong[2, 1] += 0.5
    with pytest.raises(GradientMismatch) as info:
        check({"dL/dW": (wrong, auto)})
    msg = str(info.value)
    assert msg.startswith("[Test chapter] dL/dW does not match autograd")
    assert "shape (3, 2)" in msg
    assert "largest |difference| 0.5 at index (2, 1)" in msg
    assert "Mismatched elements: 1 / 6" in msg


def test_scaled_by_1_001_is_caught():
    manual, auto = grads()
    with pytest.raises(GradientMismatch, match=r"dL/dW does not match"):
        compare({"dL/dW": (manual * 1.001, auto)})


def test_mismatch_is_an_assertion_error():
    assert issubclass(GradientMismatch, AssertionError)


def test_shape_mismatch_is_clear():
    manual, auto = grads()
    with pytest.raises(GradientMismatch) as info:
        compare({"dL/dW": (manual.t(), auto)})
    assert "dL/dW: manual gradient has shape (2, 3) but autograd's has shape (3, 2)" in str(
        info.value
    )


def test_broadcastable_shape_is_still_a_mismatch():
    # (3,) vs (1, 3): equal values, but a gradient must have its quantity's exact shape
    with pytest.raises(GradientMismatch, match="shape"):
        compare({"dL/db": (torch.ones(3), torch.ones(1, 3))})


def test_dtype_mismatch_is_clear():
    with pytest.raises(
        GradientMismatch, match="dtype torch.float32 but autograd's has torch.float64"
    ):
        compare({"dL/dW": (torch.ones(2, dtype=torch.float32), torch.ones(2))})


def test_missing_autograd_gradient_gets_a_hint():
    # what an intermediate's .grad holds when .retain_grad() was forgotten
    with pytest.raises(GradientMismatch, match=r"reference gradient is NoneType.*retain_grad"):
        compare({"dL/dy": (torch.ones(3), None)})


def test_nan_is_a_mismatch_and_located():
    manual = torch.ones(2, 2)
    manual[1, 0] = float("nan")
    with pytest.raises(GradientMismatch, match=r"at index \(1, 0\)"):
        compare({"g": (manual, torch.ones(2, 2))})


def test_first_failing_quantity_is_named():
    ok = torch.ones(2)
    with pytest.raises(GradientMismatch, match=r"\] dL/db "):
        compare({"dL/dW": (ok, ok), "dL/db": (ok * 2, ok)})


def test_chapter_argument_overrides_and_no_chapter_means_no_prefix():
    with pytest.raises(GradientMismatch, match=r"^\[Other\] g"):
        compare({"g": (torch.zeros(1), torch.ones(1))}, chapter="Other")
    byhand._chapter = None
    with pytest.raises(GradientMismatch, match=r"^g does not match"):
        compare({"g": (torch.zeros(1), torch.ones(1))})


def test_empty_check_is_an_error():
    with pytest.raises(ValueError):
        compare({})


def test_gradients_with_requires_grad_are_compared_detached():
    manual, auto = grads()
    compare({"dL/dW": (manual.requires_grad_(), auto)})


# --- fd_check ------------------------------------------------------------------


class GoodSquare(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x**2

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


class BadSquare(torch.autograd.Function):
    forward = GoodSquare.forward

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2.1 * x * g


def test_fd_check_passes_a_correct_backward(capsys):
    fd_check(GoodSquare.apply, [torch.randn(4, requires_grad=True)], "square")
    assert "✓ square" in capsys.readouterr().out


def test_fd_check_fails_a_wrong_backward_with_chapter_and_name():
    with pytest.raises(
        GradientMismatch, match=r"^\[Test chapter\] square fails the finite-difference"
    ):
        fd_check(BadSquare.apply, [torch.randn(4, requires_grad=True)], "square")


@pytest.mark.parametrize(
    "x", [torch.randn(3, dtype=torch.float32, requires_grad=True), torch.randn(3)]
)
def test_fd_check_rejects_inputs_it_cannot_check(x):
    with pytest.raises(ValueError, match="float64 with requires_grad=True"):
        fd_check(GoodSquare.apply, [x], "square")


# --- unbroadcast -----------------------------------------------------------------


@st.composite
def broadcast_pairs(draw):
    """A target shape and a shape it broadcasts to (extra leading dims, stretched 1s)."""
    shape = draw(st.lists(st.integers(1, 4), min_size=0, max_size=4))
    big = [draw(st.integers(1, 4)) if s == 1 else s for s in shape]
    lead = draw(st.lists(st.integers(1, 3), min_size=0, max_size=2))
    return tuple(shape), tuple(lead + big)


@settings(max_examples=300, deadline=None)
@given(broadcast_pairs(), st.integers(0, 2**31 - 1))
def test_unbroadcast_equals_sum_to_size_and_autograd(pair, seed):
    shape, big = pair
    gen = torch.Generator().manual_seed(seed)
    grad = torch.randn(big, generator=gen, dtype=torch.float64)
    got = unbroadcast(grad, shape)
    assert got.shape == torch.Size(shape)
    torch.testing.assert_close(got, grad.sum_to_size(shape))
    # autograd: the gradient of a broadcast (expand) is exactly this sum
    b = torch.randn(shape, generator=gen, dtype=torch.float64, requires_grad=True)
    b.expand(big).backward(grad)
    torch.testing.assert_close(got, b.grad)


@pytest.mark.parametrize(
    "grad_shape, shape",
    [((4, 3), (2,)), ((4, 3), (4, 2)), ((3,), (2, 3)), ((2, 3), (3, 1))],
)
def test_unbroadcast_rejects_shapes_that_do_not_broadcast(grad_shape, shape):
    with pytest.raises(ValueError, match="cannot broadcast"):
        unbroadcast(torch.ones(grad_shape), shape)


def test_unbroadcast_bias_cases():
    g = torch.arange(12.0).reshape(4, 3)
    assert torch.equal(unbroadcast(g, (3,)), g.sum(0))
    assert torch.equal(unbroadcast(g, (1, 3)), g.sum(0, keepdim=True))
    assert torch.equal(unbroadcast(g, ()), g.sum())


# --- measure ---------------------------------------------------------------------


def test_measure_sees_a_large_temporary_and_not_a_small_one():
    x = torch.randn(512, 64)
    g = torch.randn(512, 32)
    big = measure(lambda: (x.unsqueeze(-1) * g.unsqueeze(1)).sum(0))
    small = measure(lambda: x.t() @ g)
    temporary = 512 * 64 * 32 * 8
    assert big.seconds > 0 and small.seconds > 0
    assert temporary <= big.peak_bytes < 1.1 * temporary
    assert small.peak_bytes < temporary / 10


def test_measure_prints_nothing(capfd):
    measure(lambda: torch.ones(3) * 2)
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_public_names():
    assert set(byhand.__all__) >= {"check", "compare", "fd_check", "unbroadcast", "measure"}
    assert all(re.match(r"^[A-Za-z]", name) for name in byhand.__all__)


def test_mismatch_names_the_reference_it_was_given():
    with pytest.raises(GradientMismatch, match=r"g does not match sum_to_size: .* sum_to_size 1\)"):
        compare({"g": (torch.zeros(1), torch.ones(1))}, reference="sum_to_size")


# --- einsum_backward -------------------------------------------------------------

from byhand import einsum_backward  # noqa: E402

LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
EINSUM_EXAMPLES = 500


@st.composite
def einsum_cases(draw):
    """A spec with 1-3 operands over random letters, and shapes that agree on every letter.

    Each operand has 0-3 distinct indices; the output is a random subset of the indices
    used, in random order, so some indices are summed and some are kept; a letter may
    appear in several operands; an index only one operand has may be summed."""
    letters = draw(st.lists(st.sampled_from(LETTERS), min_size=1, max_size=5, unique=True))
    sizes = {c: draw(st.integers(1, 3)) for c in letters}
    n_operands = draw(st.integers(1, 3))
    terms = [
        "".join(draw(st.lists(st.sampled_from(letters), max_size=3, unique=True)))
        for _ in range(n_operands)
    ]
    used = sorted(set("".join(terms)))
    out = "".join(draw(st.permutations(used))[: draw(st.integers(0, len(used)))])
    spec = ",".join(terms) + "->" + out
    shapes = [tuple(sizes[c] for c in term) for term in terms]
    return spec, shapes


@settings(max_examples=EINSUM_EXAMPLES, deadline=None, derandomize=True, database=None)
@given(einsum_cases(), st.integers(0, 2**31 - 1))
def test_einsum_backward_matches_autograd(case, seed):
    spec, shapes = case
    gen = torch.Generator().manual_seed(seed)
    operands = [
        torch.randn(s, generator=gen, dtype=torch.float64, requires_grad=True) for s in shapes
    ]
    out = torch.einsum(spec, *operands)
    grad = torch.randn(out.shape, generator=gen, dtype=torch.float64)
    out.backward(grad)
    got = einsum_backward(spec, [op.detach() for op in operands], grad)
    assert len(got) == len(operands)
    for k, (g, op) in enumerate(zip(got, operands)):
        assert g.shape == op.shape, f"{spec}: operand {k}'s gradient has shape {tuple(g.shape)}"
        torch.testing.assert_close(
            g, op.grad, msg=lambda m, k=k: f"{spec}, shapes {shapes}, operand {k}: {m}"
        )


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("ni,ij->nj", ["nj,ij->ni", "nj,ni->ij"]),
        ("bni,ij->bnj", ["bnj,ij->bni", "bnj,bni->ij"]),
        ("qd,kd->qk", ["qk,kd->qd", "qk,qd->kd"]),
    ],
)
def test_einsum_backward_is_the_index_swap(spec, expected):
    """The gradients are exactly the swapped einsums the chapter writes by hand."""
    inputs, out = spec.split("->")
    sizes = dict(zip("bnijqkd", (2, 4, 3, 2, 3, 5, 2)))
    operands = [torch.randn([sizes[c] for c in t]) for t in inputs.split(",")]
    grad = torch.randn([sizes[c] for c in out])
    got = einsum_backward(spec, operands, grad)
    for k, (g, swapped) in enumerate(zip(got, expected)):
        others = [op for m, op in enumerate(operands) if m != k]
        assert torch.equal(g, torch.einsum(swapped, grad, *others))


def test_einsum_backward_copies_along_an_index_only_one_operand_has():
    A = torch.randn(2, 3)
    g = torch.randn(2)
    (A_g,) = einsum_backward("ij->i", [A], g)  # a row sum: j is summed in the forward
    assert torch.equal(A_g, g.unsqueeze(1).expand(2, 3))
    (A_g,) = einsum_backward("ij->", [A], torch.tensor(5.0))  # sum of everything
    assert torch.equal(A_g, torch.full((2, 3), 5.0))


def test_einsum_backward_allows_spaces_and_scalar_operands():
    s, v = torch.tensor(2.0), torch.randn(3)
    g = torch.randn(3)
    s_g, v_g = einsum_backward(" , j -> j ", [s, v], g)
    assert s_g.shape == () and torch.allclose(s_g, (g * v).sum())
    assert torch.equal(v_g, g * s)


@pytest.mark.parametrize(
    "spec, shapes, grad_shape, message",
    [
        ("ii->i", [(3, 3)], (3,), r"operand 0 repeats the index 'i' \('ii'\).*diagonal"),
        ("ij,jj->i", [(2, 3), (3, 3)], (2,), r"operand 1 repeats the index 'j'"),
        ("...i->i", [(2, 3)], (3,), r"'\.\.\.' \(ellipsis\) is not supported"),
        ("ij", [(2, 3)], (2, 3), r"write the output's indices after '->'"),
        ("ij->i->j", [(2, 3)], (2,), r"write the output's indices after '->'"),
        ("i1->i", [(2, 3)], (2,), r"indices must be letters a-z or A-Z, not '1'"),
        ("ij->ii", [(2, 3)], (2, 2), r"the output repeats an index \('ii'\)"),
        ("ij->k", [(2, 3)], (4,), r"the output index 'k' is in no operand"),
        (
            "ij,jk->ik",
            [(2, 3)],
            (2, 4),
            r"the spec names 2 operand\(s\), but 1 tensor\(s\) were given",
        ),
        ("ijk->i", [(2, 3)], (2,), r"operand 0 has 2 dimension\(s\), but its indices 'ijk' name 3"),
        (
            "ij,jk->ik",
            [(2, 3), (4, 2)],
            (2, 2),
            r"index 'j' has size 3 in operand 0 but 4 in operand 1; broadcasting",
        ),
        ("ij,jk->ik", [(2, 1), (3, 2)], (2, 2), r"index 'j' has size 1 in operand 0 but 3"),
        (
            "ij,jk->ik",
            [(2, 3), (3, 4)],
            (4, 2),
            r"grad has shape \(4, 2\), but the output has shape \(2, 4\)",
        ),
    ],
)
def test_einsum_backward_names_what_it_does_not_support(spec, shapes, grad_shape, message):
    with pytest.raises(ValueError, match=r"^einsum_backward\(.*\): " + message):
        einsum_backward(spec, [torch.randn(s) for s in shapes], torch.randn(grad_shape))


# --- fd_check has teeth (issue 13 §2) -------------------------------------------------

from torch.autograd.gradcheck import GradcheckError  # noqa: E402


def _relu_mse_layer(factor: float):
    """mse(relu(X @ W + b), T) with a hand-written backward, scaled by ``factor``."""
    T = torch.linspace(-1, 1, 8).reshape(4, 2)

    class Layer(torch.autograd.Function):
        @staticmethod
        def forward(ctx, X, W, b):
            Y = X @ W + b
            ctx.save_for_backward(X, W, Y)
            return ((torch.relu(Y) - T) ** 2).mean()

        @staticmethod
        def backward(ctx, L_g):
            X, W, Y = ctx.saved_tensors
            G = 2 * (torch.relu(Y) - T) / Y.numel() * (Y > 0) * L_g * factor
            return G @ W.t(), X.t() @ G, G.sum(0)

    return Layer.apply


def _layer_inputs(distance: float | None = None):
    """X (4, 3), W (3, 2), b (2,); with ``distance``, Y[0, 0] sits that far above 0."""
    gen = torch.Generator().manual_seed(3)
    X, W, b = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((4, 3), (3, 2), (2,)))
    if distance is not None:
        b[0] = distance - X[0] @ W[:, 0]
    return [t.requires_grad_() for t in (X, W, b)]


def test_fd_check_fails_a_backward_off_by_a_factor_1_001():
    inputs = _layer_inputs()
    # the hole this closes: gradcheck's own tolerances let it pass
    assert torch.autograd.gradcheck(_relu_mse_layer(1.001), inputs)
    with pytest.raises(GradientMismatch, match="fails the finite-difference check"):
        fd_check(_relu_mse_layer(1.001), inputs, "x1.001")
    fd_check(_relu_mse_layer(1.0), inputs, "exact")


@pytest.mark.parametrize("distance", [0.0, 1e-9, 3e-7, 9e-7])
def test_fd_check_next_to_a_relu_kink_is_neither_flaky_nor_blind(distance, capsys):
    inputs = _layer_inputs(distance)  # Y[0, 0] within eps (1e-6) of the kink
    with pytest.raises(GradcheckError):
        torch.autograd.gradcheck(_relu_mse_layer(1.0), inputs)  # plain gradcheck: a false alarm
    fd_check(_relu_mse_layer(1.0), inputs, "exact")
    assert "of a kink checked one-sided" in capsys.readouterr().out
    with pytest.raises(GradientMismatch):
        fd_check(_relu_mse_layer(1.001), inputs, "x1.001")


@pytest.mark.parametrize(
    "options",
    [
        {"raise_exception": False},
        {"check_backward_ad": False},
        {"nondet_tol": 1e-3},
        {"fast_mode": True},
        {"atol": 1e-3},
        {"rtol": 1e-3},
        {"eps": 0.0},
    ],
)
def test_fd_check_refuses_options_that_would_weaken_it(options):
    with pytest.raises(ValueError, match="factor 1.001|weaken"):
        fd_check(_relu_mse_layer(1.001), _layer_inputs(), "x", **options)


# --- interactive figures: paths_figure and sum_figure ----------------------------------------
import html as html_module  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402

from byhand import FIGURE_MARK, Figure, paths_figure, sum_figure  # noqa: E402


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
            assert shown[f"{name}:{r}:{c}"] == byhand._fmt(t[r, c].item())
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
        for t in (byhand._fmt(X[n, i].item() * G[n, j].item()) for n in range(4))
    )
    assert (
        readout
        == f"∂L/∂W[{i},{j}] = Σ_n X[n,{i}]·G[n,{j}] = {terms} = {byhand._fmt(W.grad[i, j].item())}"
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
    assert sel["b:0:0"]["readout"].endswith("= " + byhand._fmt(b.grad[0].item()))


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
    assert byhand._island({"t": "</script><b>"}).count("</script>") == 1


def test_figures_carry_a_check_record_and_a_text_form():
    X, W, b, G = layer()
    fig = paths_figure(X, W, b, G, grads=layer_grads(X, W, b, G))
    data, metadata = fig._repr_mimebundle_()
    assert data["text/html"] == fig.markup and "checked against autograd" in data["text/plain"]
    assert metadata[byhand.RECORD_KEY]["kind"] == "check"
    assert metadata[byhand.RECORD_KEY]["quantities"] == ["dL/dX", "dL/dW", "dL/db"]


def test_number_format_has_a_real_minus_and_no_negative_zero():
    assert (
        byhand._fmt(-1.234) == "−1.23"
        and byhand._fmt(-0.001) == "0.00"
        and byhand._fmt(0.5) == "0.50"
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
        f"r:{i}:{j}": byhand._fmt((X.t() @ G)[i, j].item()) for i in range(3) for j in range(2)
    }
    readout = re.search(r'<p class="bh-readout" aria-live="polite">([^<]*)</p>', fig.markup).group(
        1
    )
    exact = torch.equal(running[-1], (X.t() @ G).detach())
    assert (
        f"Samples 0 to 3 added, all 4: this running sum is {'exactly ' if exact else ''}X.t() @ G"
        in readout
    )
    assert '<label for="' in fig.markup and ">samples 0 to n added</label>" in fig.markup
    assert 'min="0" max="3"' in fig.markup and 'value="3"' in fig.markup
    steps = data["steps"]
    assert len(steps) == 4 and "X.t() @ G" not in html_module.unescape(steps[2]["readout"]).replace(
        "not yet X.t() @ G", ""
    )
    assert steps[0]["valuetext"] == "samples 0 to 0 added" and steps[1]["out"] == "n = 1"


def test_sum_figure_says_exactly_only_when_bit_for_bit():
    X, W, b, G = layer()
    running = (X.unsqueeze(-1) * G.unsqueeze(1)).cumsum(0).detach()
    nudged = running.clone()
    nudged[-1] = torch.nextafter(running[-1], torch.full_like(running[-1], 10.0))  # one ulp up
    fig = sum_figure(X, G, running=nudged, grads={"dL/dW": (X.t() @ G, W.grad)})
    end = island(fig.markup)["steps"][-1]["readout"]
    assert "exactly" not in end and "X.t() @ G, up to rounding in the last digits" in end


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
