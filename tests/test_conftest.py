"""The suite's own machinery (tests/conftest.py): what every worker shares is computed once,
and a failure to compute it fails every test that needs it."""

from __future__ import annotations

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
