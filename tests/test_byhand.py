"""Unit tests of book/byhand.py, the helpers every chapter imports."""

from __future__ import annotations

import re
from types import SimpleNamespace

import pytest
import torch
from hypothesis import assume, given, settings
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


def test_a_tolerance_other_than_the_default_is_on_the_tick_line():
    one = torch.tensor(1.0, dtype=torch.float64)
    report = compare({"dL": (one, one + 1e-5)}, rtol=1e-4, atol=0)
    assert str(report).startswith("✓ dL () matches autograd within rtol 1e-04, atol 0   ")
    line = re.search(r"<li>(.*?)</li>", report._repr_html_()).group(1)
    assert line.endswith("matches autograd within rtol 1e-04, atol 0")
    default = compare({"dL": (one, one + 1e-12)})
    assert "within" not in str(default) and "within" not in default._repr_html_()


def test_the_fold_shows_only_the_numbers():
    """The explanation of what "close" means is written once, on the intro page."""
    one = torch.tensor(1.0, dtype=torch.float64)
    for report in (
        compare({"dL": (one, one + 1e-12), "same": (one, one)}),
        compare({"dL": (one, one + 1e-5)}, rtol=1e-4, atol=0),
    ):
        fold = re.search(r"<details>(.*)</details>", report._repr_html_()).group(1)
        cells = re.findall(r"<td>(.*?)</td>", fold)
        details = cells[1::2]
        assert all(
            re.fullmatch(r"largest difference \d\.\de-\d\d|identical, bit for bit", d)
            for d in details
        ), details
        assert "<p>" not in fold and "rounding" not in fold and "order" not in fold


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


def _relu_mse_layer(factor: float, scale: float = 1.0):
    """``scale`` times mse(relu(X @ W + b), T), with a hand-written backward that is right
    for ``factor`` 1 and off by ``factor`` otherwise."""
    T = torch.linspace(-1, 1, 8).reshape(4, 2)

    class Layer(torch.autograd.Function):
        @staticmethod
        def forward(ctx, X, W, b):
            Y = X @ W + b
            ctx.save_for_backward(X, W, Y)
            return scale * ((torch.relu(Y) - T) ** 2).mean()

        @staticmethod
        def backward(ctx, L_g):
            X, W, Y = ctx.saved_tensors
            G = scale * 2 * (torch.relu(Y) - T) / Y.numel() * (Y > 0) * L_g * factor
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
    "scale, distance",
    [(10.0**k, None) for k in range(-8, 9)]  # every power of ten from 1e-8 to 1e8
    + [(10.0**k, d) for k in (-8, -4, 0, 4, 8) for d in (0.0, 3e-7)],  # next to a kink
)
def test_fd_check_keeps_its_promise_at_every_scale(scale, distance, capsys):
    """Gradients from 1e-9 to 1e7: a right backward passes and one off by a factor 1.001
    fails, at every scale (an absolute atol lets the factor through below about 1e-4)."""
    inputs = _layer_inputs(distance)
    fd_check(_relu_mse_layer(1.0, scale), inputs, "exact")
    assert "✓ exact" in capsys.readouterr().out
    with pytest.raises(GradientMismatch, match="fails the finite-difference check"):
        fd_check(_relu_mse_layer(1.001, scale), inputs, "x1.001")


def test_an_absolute_tolerance_lets_small_gradients_through():
    """The hole the relative tolerance closes: gradcheck with fd_check's old absolute
    atol passes a backward off by a factor 1.001 when the gradients are about 1e-5."""
    inputs = _layer_inputs()
    assert torch.autograd.gradcheck(_relu_mse_layer(1.001, 1e-4), inputs, atol=1e-7, rtol=1e-5)
    with pytest.raises(GradientMismatch):
        fd_check(_relu_mse_layer(1.001, 1e-4), inputs, "x1.001")


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


# --- what a failing check shows in Jupyter, Colab and the book -------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# an absolute path (/home/..., /tmp/..., C:\...), not a quantity's name such as dL/dW
PATH = re.compile(r"(?<![\w/])/(?:[\w.+-]+/)+[\w.+-]*|[A-Za-z]:\\")

SHOWN = {  # cell source -> (the line that raises, its number in the cell)
    "W_g = X.t() @ torch.ones(4, 2)  # dL/dW, (3, 2)\ncheck({'dL/dW': (W_g * 3, W.grad)})": 2,
    "claim('one is two', 1 == 2)": 1,
    "fd_check(Wrong.apply, [torch.randn(3, requires_grad=True)], 'Wrong')": 1,
    "x = 1\n\nverify()": 3,  # a check inside a function from an earlier cell
    "grads = {'dL/dX': (X.grad, X.grad), 'dL/dW': (W.grad * 2, W.grad)}\n"
    "paths_figure(X, W, None, X @ W, grads)": 2,
}
SETUP = """
import torch
from byhand import check, claim, compare, fd_check, start_chapter
from figures import paths_figure
start_chapter("9 · Shown")
X = torch.randn(4, 3, requires_grad=True)  # (N, n_in)
W = torch.randn(3, 2, requires_grad=True)  # (n_in, n_out)
(X @ W).sum().backward()


class Wrong(torch.autograd.Function):
    forward = staticmethod(lambda ctx, x: x**2)
    backward = staticmethod(lambda ctx, g: g)


def verify():
    check({"dL/dW": (W.grad.t(), W.grad)})
"""


@pytest.fixture(scope="module")
def shown():
    """Each failing call of SHOWN run by a real Jupyter kernel (nbclient), with its error
    output: ``[(source, output)]``."""
    import nbformat
    from nbclient import NotebookClient

    from project import ROOT

    cells = [SETUP, *SHOWN]
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    notebook.metadata.kernelspec = {"name": "python3", "display_name": "Python 3"}
    NotebookClient(
        notebook,
        timeout=120,
        allow_errors=True,
        resources={"metadata": {"path": str(ROOT / "book")}},
    ).execute()
    assert not [o for o in notebook.cells[0].outputs if o.output_type == "error"]
    errors = [[o for o in c.outputs if o.output_type == "error"] for c in notebook.cells[1:]]
    assert all(len(e) == 1 for e in errors), errors
    return [(source, e[0]) for source, e in zip(SHOWN, errors)]


@pytest.mark.parametrize("case", range(len(SHOWN)))
def test_a_failing_check_shows_the_readers_line_and_the_message_only(shown, case):
    from guard_run import error_line

    source, output = shown[case]
    text = ANSI.sub("", "\n".join(output.traceback))
    assert output.ename in ("GradientMismatch", "FalseClaim")
    assert text.endswith(f"{output.ename}: {output.evalue}"), "the message comes last, whole"
    # the reader's line, with its number in the cell: where it failed
    number = SHOWN[source]
    line = source.splitlines()[number - 1]
    assert re.search(rf"Cell In\[\d+\], line {number}\n----> {number} {re.escape(line)}\n", text)
    # nothing of byhand's, of IPython's or of the machine that ran it
    before = text[: text.rindex(f"{output.ename}: ")]
    for unwanted in ("byhand", "figures", "File ", "site-packages", "Traceback", "compare("):
        assert unwanted not in before, f"{unwanted!r} in what the reader sees:\n{text}"
    assert not PATH.search(text), f"a file path in what the reader sees:\n{text}"
    # the build's failure summary and the runner read the same error line as before
    assert error_line(text) == f"{output.ename}: {output.evalue.splitlines()[0]}"


def test_the_diagnosis_is_the_last_line_the_reader_sees(shown):
    text = ANSI.sub("", "\n".join(shown[0][1].traceback))  # 3 times W's gradient, (3, 2)
    assert text.splitlines()[-1] == (
        "looks like a constant factor: manual = 3 × autograd everywhere "
        "(3 is the size of dimension 0)"
    )


def test_a_check_inside_a_function_shows_both_cells(shown):
    text = ANSI.sub("", "\n".join(shown[3][1].traceback))
    calls = re.findall(r"Cell In\[\d+\], line (\d+)\n----> \1 (.*)\n", text)
    assert [call for _, call in calls] == ["verify()", 'check({"dL/dW": (W.grad.t(), W.grad)})']


def test_plain_python_shows_the_usual_traceback():
    import traceback

    with pytest.raises(GradientMismatch) as info:
        check({"g": (torch.zeros(1), torch.ones(1))})
    shown = "".join(traceback.format_exception(info.value))
    assert "byhand.py" in shown and "in compare" in shown


# --- diagnose: what a failing check's mismatch looks like (issue 19 §2) ------------------

import bench_diagnosis  # noqa: E402  (scripts/: the mistakes, made one way for tests and bench)
from byhand import diagnose  # noqa: E402

SCALES = st.integers(-8, 8).map(lambda k: 10.0**k)
DTYPES = st.sampled_from([torch.float64, torch.float32])
SHAPES = st.lists(st.integers(1, 5), min_size=0, max_size=3).map(tuple)


@st.composite
def mistakes(draw, kind: str):
    """(manual, reference), the manual gradient made from the reference by one mistake of
    class ``kind`` (bench_diagnosis.example), across shapes, values, scales and dtypes."""
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    made = bench_diagnosis.example(kind, draw(SHAPES), gen, draw(SCALES), draw(DTYPES))
    assume(made is not None)
    return made


@pytest.mark.parametrize("kind", [k for k in bench_diagnosis.CLASSES if k != "none"])
@settings(max_examples=150, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_the_diagnosis_names_the_mistake(kind, data):
    manual, reference = data.draw(mistakes(kind))
    if kind == "factor" and reference.count_nonzero() < 2:
        # one number is some factor times any other: only a whole factor (2, 1/3) is named
        assume(float(manual / reference) in (2.0, 0.5, 3.0))
    found = diagnose(manual, reference)
    assert bench_diagnosis.named(found) == kind, found
    assert found.startswith("looks like ") and "\n" not in found and len(found) <= 120, found


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(wrong=mistakes("none"))
def test_no_diagnosis_for_a_wrong_gradient_without_a_pattern(wrong):
    assert diagnose(*wrong) is None


def test_a_wrong_draw_that_is_by_chance_a_factor_is_drawn_again():
    """Noise of 1e-3 on two numbers can make them 0.9996 times the reference, both: that
    draw has the factor pattern, and the generator of patternless mistakes must not call it
    patternless (Hypothesis found it: diagnose named the factor, rightly)."""
    reference = torch.tensor([-1.3723, 0.7932])
    assert bench_diagnosis._by_chance_a_factor(reference * 0.9996, reference)
    assert not bench_diagnosis._by_chance_a_factor(reference + torch.tensor([1e-3, 0.0]), reference)
    assert not bench_diagnosis._by_chance_a_factor(torch.ones(3), reference)  # another shape


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(shape=SHAPES, seed=st.integers(0, 2**32 - 1), scale=SCALES)
def test_no_diagnosis_for_a_passing_check(shape, seed, scale):
    """The same sums added in another order pass their check: nothing to diagnose."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(4, *shape, generator=gen, dtype=torch.float64) * scale
    manual, reference = X.flip(0).cumsum(0)[-1], X.sum(0)
    compare({"g": (manual, reference)}, rtol=1e-7, atol=1e-7 * scale)
    assert diagnose(manual, reference) is None


@pytest.mark.parametrize(
    "manual, reference, expected",
    [
        (lambda H, G: 2 * H / 4, lambda H, G: 2 * H / 12, "a constant factor: manual = 3 × autograd everywhere (3 is the size of dimension 1)"),
        (lambda H, G: 2 * H, lambda H, G: 2 * H / 12, "manual = 12 × autograd everywhere (12 is the number of elements)"),
        (lambda H, G: H.mean(0), lambda H, G: H.sum(0), "manual = 1/4 × autograd everywhere"),
        (lambda H, G: H * 1.001, lambda H, G: H, "manual = 1.001 × autograd everywhere"),
        (lambda H, G: -H, lambda H, G: H, "a sign flip: manual = −autograd everywhere"),
        (lambda H, G: H, lambda H, G: H.sum(0), "an axis left unsummed: manual.sum(0) matches autograd"),
        (lambda H, G: H, lambda H, G: H.sum(0, keepdim=True), "manual.sum(0, keepdim=True) matches"),
        (lambda H, G: H.sum(0), lambda H, G: H.sum(0, keepdim=True), "a missing keepdim=True: manual.unsqueeze(0) matches autograd"),
        (lambda H, G: H.sum(0), lambda H, G: H, "a sum over an axis autograd keeps: autograd's, summed over axis 0, matches manual"),
        (lambda H, G: H.t(), lambda H, G: H, "a transpose: manual.T matches autograd"),
        (lambda H, G: H.reshape(2, 2, 3).permute(2, 0, 1), lambda H, G: H.reshape(2, 2, 3), "axes in another order: manual.permute(1, 2, 0) matches autograd"),
        (lambda H, G: G * (H >= 0), lambda H, G: G * (H > 0), "a mask: manual matches autograd except at 1 of 12 elements, where autograd's is 0 and manual's is not"),
        (lambda H, G: G * (H > 0), lambda H, G: G * (H >= 0), "where manual's is 0 and autograd's is not"),
        (lambda H, G: G, lambda H, G: G * 0, None),  # autograd's all 0: no pattern to lean on
        (lambda H, G: H @ G.t() @ H, lambda H, G: H, None),  # another formula
    ],
)  # fmt: skip
def test_each_diagnosis_says_what_it_saw(manual, reference, expected):
    gen = torch.Generator().manual_seed(0)
    H, G = (torch.randn(4, 3, generator=gen, dtype=torch.float64) for _ in range(2))
    H[0, 1] = 0.0  # an input at the kink
    found = diagnose(manual(H, G), reference(H, G))
    assert found == expected if expected is None else expected in found, found


def test_a_failing_check_ends_with_its_diagnosis():
    manual, auto = grads()
    with pytest.raises(GradientMismatch) as info:
        compare({"dL/dW": (-manual, auto)})
    assert str(info.value).endswith("\nlooks like a sign flip: manual = −autograd everywhere")
    with pytest.raises(GradientMismatch) as info:
        compare({"dL/dW": (manual.t(), auto)}, reference="X.t() @ G")
    message = str(info.value)
    assert "shape (2, 3) but X.t() @ G's has shape (3, 2)" in message
    assert message.endswith("\nlooks like a transpose: manual.T matches X.t() @ G")
    with pytest.raises(GradientMismatch) as info:  # no pattern: no guess
        compare({"dL/dW": (manual + torch.randn(3, 2), auto)})
    assert "looks like" not in str(info.value)
