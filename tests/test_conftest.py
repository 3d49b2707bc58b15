"""The suite's own machinery (tests/conftest.py): what every worker shares is computed once,
and a failure to compute it fails every test that needs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from conftest import Once, schedule_rank


def test_once_computes_once_for_every_worker(tmp_path):
    calls = []
    first, second = Once(tmp_path), Once(tmp_path)  # two workers sharing one folder
    assert first("x", lambda: calls.append(1) or "value") == "value"
    assert second("x", lambda: calls.append(2) or "other") == "value"
    assert first("x", lambda: calls.append(3)) == "value"
    assert calls == [1]


def test_once_fails_every_caller_when_the_computation_fails(tmp_path):
    def broken():
        raise RuntimeError("the build broke")

    for worker in (Once(tmp_path), Once(tmp_path)):
        with pytest.raises(
            pytest.fail.Exception, match="(?s)x could not be computed.*the build broke"
        ):
            worker("x", broken)


class Item:
    def __init__(self, fixtures=(), marks=()):
        self.fixturenames, self.marks = fixtures, marks

    def get_closest_marker(self, name):
        return name if name in self.marks else None


def test_long_runs_are_handed_out_first_and_late_tests_last():
    items = {
        "unit": Item(),
        "late": Item(("chapter_run",), ("late", "build")),
        "browser": Item(("built_book",), ("build", "browser")),
        "chapter": Item(("chapter_run",), ("build",)),
        "small build": Item((), ("build",)),
    }
    order = sorted(items, key=lambda name: schedule_rank(items[name]))
    assert order == ["chapter", "small build", "unit", "browser", "late"]


def test_the_suite_writes_its_part_of_the_job_summary(tmp_path):
    """In CI, the run's summary page lists the failing tests, each with its first line."""
    from types import SimpleNamespace

    import conftest

    crash = SimpleNamespace(message="AssertionError: mutation 02:dL/dW:3 did not fail\nmore")
    failed = SimpleNamespace(
        nodeid="tests/test_x.py::test_y", when="call", longrepr=SimpleNamespace(reprcrash=crash)
    )
    stats = {"passed": [object()] * 3, "failed": [failed]}
    target = tmp_path / "summary.md"
    conftest.write_job_summary(target, stats)
    text = target.read_text()
    assert text.startswith("## The tests\n\n3 passed, 1 failed\n")
    assert (
        "- `tests/test_x.py::test_y` (call): AssertionError: mutation 02:dL/dW:3 did not fail\n"
        in text
    )


GROUPED = """
import pytest

@pytest.mark.xdist_group("shared")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    pass

@pytest.mark.parametrize("i", range(6))
def test_free(i):
    pass
"""


def test_xdist_keeps_a_group_on_one_worker(tmp_path):
    """``--dist loadgroup`` sends all the tests of an ``xdist_group`` to one worker. The
    suite counts on it (``by_chapter``, ``SHARED``): otherwise the second worker to need a
    chapter's run or a small book waits, idle, for the first to compute it. pytest 9.2 broke
    it without a word (pytest-xdist issue 1386: xdist 3.8 writes the group into
    ``item._nodeid``, which pytest 9.2 no longer reads), and the suite ran a minute longer;
    requirements-test.txt keeps pytest below 9.2 until xdist follows."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
         "-p", "no:cacheprovider", "test_grouped.py"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    workers = re.findall(r"\[(gw\d+)\].*PASSED.*test_grouped\[", proc.stdout)
    assert len(workers) == 6, proc.stdout[-2000:]
    assert len(set(workers)) == 1, f"the group's tests ran on {sorted(set(workers))}"
