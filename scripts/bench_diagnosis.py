"""How often ``byhand.diagnose`` names the right mistake: precision and recall per class.

A failing check adds one line saying what the mismatch looks like (issue 19 §2). This
script makes a seeded set of wrong gradients, each made by one known mistake, runs the
diagnosis on every one and prints, per class, how often the diagnosis named it (recall)
and how often a diagnosis naming it was right (precision). The class ``none`` holds
gradients that are wrong with no pattern (fresh random values, noise, a few elements
changed): there the right answer is no diagnosis at all.

The mistakes are made by :func:`example`, which ``tests/test_byhand.py`` also uses
(with Hypothesis drawing the shapes, seeds and scales). Nothing here is asserted: the
figures are for people.

Usage: ``python scripts/bench_diagnosis.py [--per-class 400] [--seed 0]``.
"""

from __future__ import annotations

import argparse
import math

import torch

import project  # noqa: F401  (puts book/ on sys.path)
from byhand import diagnose

CLASSES = ("factor", "sign", "mask", "axes", "sums", "none")
# How each class's diagnosis begins ("looks like ...").
OPENINGS = {
    "factor": ("a constant factor",),
    "sign": ("a sign flip",),
    "mask": ("a mask",),
    "axes": ("a transpose", "axes in another order"),
    "sums": ("an axis left unsummed", "a sum over an axis", "a missing keepdim"),
}


def named(diagnosis: str | None) -> str:
    """The class a diagnosis names: one of CLASSES."""
    if diagnosis is None:
        return "none"
    text = diagnosis.removeprefix("looks like ")
    return next(k for k, openings in OPENINGS.items() if text.startswith(openings))


def _pick(gen: torch.Generator, options):
    return options[int(torch.randint(len(options), (), generator=gen))]


def example(
    kind: str,
    shape: tuple[int, ...],
    gen: torch.Generator,
    scale: float = 1.0,
    dtype: torch.dtype = torch.float64,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(manual, reference): a reference gradient of ``shape`` (values of size ``scale``)
    and a manual one made from it by one mistake of class ``kind``; None when that mistake
    cannot be made at this shape (a transpose needs two axes, a mask two elements)."""

    def unit(*size):
        return torch.randn(size, generator=gen, dtype=torch.float64).to(dtype)

    def randn(*size):
        return unit(*size) * scale

    r = randn(*shape)
    if kind == "factor":  # a normalisation or reduction factor, or any other constant
        sizes = [s for s in shape if s > 1] or [2]
        k = _pick(gen, sizes)
        c = _pick(gen, [2.0, k, 1 / k, -k, 1.001, 0.999, 0.5, 3.0, 1 / 3])
        c = c if c != -1 else 2.0
        return c * r, r
    if kind == "sign":
        return -r, r
    if kind == "mask":  # a ReLU's mask at exactly 0: > where >= belongs, or the reverse
        if math.prod(shape) < 2:
            return None
        Y = randn(*shape)
        flat = Y.view(-1)
        flat[0] = abs(float(flat[0])) + scale  # one element passes both masks
        zeros = torch.randperm(flat.numel() - 1, generator=gen)[: 1 + flat.numel() // 4] + 1
        flat[zeros] = 0.0  # inputs exactly at the kink
        G = randn(*shape)
        strict, loose = G * (Y > 0), G * (Y >= 0)
        return (loose, strict) if _pick(gen, [True, False]) else (strict, loose)
    if kind == "axes":  # axes in another order
        if len(shape) < 2:
            return None
        orders = [o for o in _permutations(len(shape)) if o != tuple(range(len(shape)))]
        order = _pick(gen, orders)
        manual = r.permute(order)  # manual.permute(inverse) is r
        if manual.shape == r.shape and torch.equal(manual, r):
            return None  # only axes of size 1 moved: not a mistake
        return manual.contiguous(), r
    if kind == "sums":  # an axis summed or not summed, a keepdim missing
        if not shape:
            return r.reshape(1), r  # an axis of size 1 left in (sum it)
        d = int(torch.randint(len(shape), (), generator=gen))
        variant = _pick(gen, ["unsummed", "unsummed keepdim", "summed", "no keepdim"])
        if variant == "unsummed":
            manual = randn(*shape)
            return manual, manual.sum(d)
        if variant == "unsummed keepdim" and shape[d] > 1:
            manual = randn(*shape)
            return manual, manual.sum(d, keepdim=True)
        if variant == "summed" and shape[d] > 1:
            return r.sum(d), r
        size_1 = list(shape)
        size_1[d] = 1
        r = randn(*size_1)
        return r.squeeze(d), r
    if kind == "none":  # wrong, with none of the patterns (some close to one)
        made = _wrong_without_a_pattern(r, shape, gen, dtype, unit, randn)
        return None if _by_chance_a_factor(*made) else made
    raise ValueError(f"unknown class {kind!r}")


def _by_chance_a_factor(manual: torch.Tensor, reference: torch.Tensor) -> bool:
    """Whether a gradient drawn as wrong without a pattern is, by chance, one constant times
    the reference, to within ten times the precision ``diagnose`` allows (two elements with
    noise of 1e-3 can be: 0.9996 times each). Such a draw has the pattern; it is drawn again."""
    if manual.shape != reference.shape or reference.numel() == 0:
        return False
    m, r = manual.double().flatten(), reference.double().flatten()
    nonzero = r != 0
    if not nonzero.any() or bool((m[~nonzero] != 0).any()):
        return False
    ratio = m[nonzero] / r[nonzero]
    tol = torch.finfo(manual.dtype).eps ** (2 / 3)  # diagnose's own precision
    return float(ratio.max() - ratio.min()) <= 10 * tol * float(ratio.abs().max())


def _wrong_without_a_pattern(r, shape, gen, dtype, unit, randn):
    """(manual, r): ``r`` made wrong in one of several ways that follow no pattern."""
    variants = ["fresh", "noise", "elements", "jitter", "near factor", "part scaled"]
    variants += ["masked noise", "other formula", "other shape"]
    variant = _pick(gen, variants)
    if variant == "fresh":
        return randn(*shape), r
    if variant == "noise":
        return r + 1e-3 * randn(*shape), r  # an error of 1e-3 of the values' size
    if variant == "elements":  # some elements wrong, none of them 0
        manual = r.clone()
        flat = manual.view(-1)
        k = 1 + int(torch.randint(flat.numel(), (), generator=gen))
        flat[torch.randperm(flat.numel(), generator=gen)[:k]] = randn(k)
        return manual, r
    if variant == "jitter":  # each element off by up to 10 % of the largest
        return r + 0.1 * r.abs().max() * unit(*shape), r
    if variant == "near factor":  # twice, give or take 1e-3 of the largest: more, less, ...
        turns = 1 - 2 * (torch.arange(r.numel()) % 2).reshape(shape).to(dtype)
        return 2 * r + 2e-3 * r.abs().max() * turns * r.sign(), r
    if variant == "part scaled" and math.prod(shape) > 1:  # a factor on some elements
        manual = r.clone()
        manual.view(-1)[: manual.numel() // 2] *= 2
        return manual, r
    if variant == "masked noise" and math.prod(shape) > 1:  # masked, wrong elsewhere
        mask = unit(*shape) > 0
        return (r + 1e-2 * randn(*shape)) * mask, r * mask
    if variant == "other formula" and len(shape) == 2:  # G @ W where G @ W.T belongs
        G, W = randn(shape[0], shape[1]), unit(shape[1], shape[1])
        return G @ W, G @ W.t()
    other = [s + 1 for s in shape] or [2]
    return randn(*other), r


def _permutations(n: int) -> list[tuple[int, ...]]:
    import itertools

    return list(itertools.permutations(range(n)))


def random_shape(gen: torch.Generator) -> tuple[int, ...]:
    dims = int(torch.randint(0, 4, (), generator=gen))
    return tuple(int(s) for s in torch.randint(1, 7, (dims,), generator=gen))


def measure(per_class: int, seed: int) -> dict[str, dict[str, int]]:
    """{true class: {named class: count}} over ``per_class`` examples of each class."""
    gen = torch.Generator().manual_seed(seed)
    counts = {k: dict.fromkeys(CLASSES, 0) for k in CLASSES}
    for kind in CLASSES:
        made = 0
        while made < per_class:
            scale = 10.0 ** int(torch.randint(-8, 9, (), generator=gen))
            dtype = _pick(gen, [torch.float64, torch.float64, torch.float32])
            pair = example(kind, random_shape(gen), gen, scale, dtype)
            if pair is None:
                continue
            counts[kind][named(diagnose(*pair))] += 1
            made += 1
    return counts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-class", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    counts = measure(args.per_class, args.seed)
    print(
        f"byhand.diagnose on {args.per_class} generated wrong gradients per class "
        f"(seed {args.seed}; shapes of 0 to 3 axes of sizes 1 to 6; values of size "
        "1e-8 to 1e8; float64 and float32)\n"
    )
    print(f"{'class':<8} {'precision':>9} {'recall':>7}   named as")
    for kind in CLASSES:
        named_it = sum(counts[k][kind] for k in CLASSES)
        right = counts[kind][kind]
        precision = f"{right / named_it:.3f}" if named_it else "-"
        recall = right / sum(counts[kind].values())
        wrong = ", ".join(f"{k} {n}" for k, n in counts[kind].items() if n and k != kind)
        print(f"{kind:<8} {precision:>9} {recall:>7.3f}   {wrong or '-'}")
    print(
        "\nprecision: of the diagnoses naming a class, the share made by that mistake;\n"
        "recall: of the gradients made by a mistake, the share whose diagnosis names it\n"
        "(for 'none', the share with no diagnosis at all)."
    )


if __name__ == "__main__":
    main()
