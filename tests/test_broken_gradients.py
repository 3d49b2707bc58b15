"""Break each manual gradient on purpose and watch the build fail.

``tests/mutations/<chapter>.yml`` lists, for each chapter, edits that break one
manual gradient each (a factor 1.001, ``.sum(0)`` -> ``.mean(0)``, a dropped
transpose, ...) and the quantity whose check must then fail::

    - find: "W_g = X.t() @ Y_g"          # occurs exactly once in the chapter
      replace: "W_g = X.t() @ Y_g * 1.001"
      quantity: "dL/dW"

All mutated chapters go into one small book, one page per mutation, built once
with the same script ``make book`` runs (``--keep-going`` reports every failing
page). Each mutation must fail its own page with a ``GradientMismatch`` that names
the chapter and the quantity, and the build as a whole must exit non-zero.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, chapters, mini_book, run_build

pytestmark = pytest.mark.build

MUTATIONS = ROOT / "tests" / "mutations"


@dataclass(frozen=True)
class Mutation:
    chapter: Path
    find: str
    replace: str
    quantity: str
    number: int

    @property
    def stem(self) -> str:
        return f"{self.chapter.stem}-mutant-{self.number}"

    @property
    def id(self) -> str:
        return f"{self.chapter.stem}:{self.quantity}:{self.number}"


def load_mutations() -> list[Mutation]:
    found = []
    for spec in sorted(MUTATIONS.glob("*.yml")):
        chapter = ROOT / "book" / f"{spec.stem}.md"
        for number, entry in enumerate(yaml.safe_load(spec.read_text()) or [], 1):
            found.append(Mutation(chapter, entry["find"], entry["replace"], entry["quantity"], number))
    return found


ALL = load_mutations()


def chapter_title(chapter: Path) -> str:
    match = re.search(r"""start_chapter\(\s*["'](.+?)["']""", chapter.read_text())
    assert match, f"{chapter.name} never calls start_chapter(...)"
    return match.group(1)


def test_every_chapter_has_mutations():
    specs = {p.stem for p in MUTATIONS.glob("*.yml")}
    missing = [c.name for c in chapters() if c.stem not in specs]
    assert not missing, f"no tests/mutations/<chapter>.yml for: {missing}"
    orphans = sorted(specs - {c.stem for c in chapters()})
    assert not orphans, f"mutation files for chapters that do not exist: {orphans}"


@pytest.mark.parametrize("mutation", ALL, ids=lambda m: m.id)
def test_mutation_applies_to_exactly_one_place(mutation):
    count = mutation.chapter.read_text().count(mutation.find)
    assert count == 1, (
        f"{mutation.chapter.name}: {mutation.find!r} occurs {count} times; "
        "a mutation must name exactly one place (update tests/mutations/)"
    )
    assert mutation.replace != mutation.find


@pytest.fixture(scope="module")
def mutant_build(tmp_path_factory):
    pages = {
        m.stem: m.chapter.read_text().replace(m.find, m.replace, 1)
        for m in ALL
        if m.chapter.read_text().count(m.find) == 1
    }
    if not pages:
        pytest.skip("no mutations to build")
    build = run_build(mini_book(tmp_path_factory.mktemp("mutants"), pages))
    runs = json.loads((build.root / "_build" / "execution.json").read_text())
    return build, runs


def test_the_mutated_book_fails_to_build(mutant_build):
    build, _ = mutant_build
    assert build.returncode != 0, build.log[-3000:]
    assert "BUILD FAILED" in build.log


@pytest.mark.parametrize("mutation", ALL, ids=lambda m: m.id)
def test_mutation_fails_naming_chapter_and_quantity(mutant_build, mutation):
    build, runs = mutant_build
    run = runs.get(f"book/{mutation.stem}")
    assert run is not None, f"{mutation.stem} was not executed"
    assert not run["succeeded"], (
        f"{mutation.chapter.name}: replacing {mutation.find!r} with {mutation.replace!r} "
        "did not fail the build"
    )
    expected = f"GradientMismatch: [{chapter_title(mutation.chapter)}] {mutation.quantity}"
    assert run["error"].startswith(expected), f"expected {expected!r}, got {run['error']!r}"
    assert f"book/{mutation.stem}.md: {expected}" in build.log
