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
