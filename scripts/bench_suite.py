"""How long the test suite takes, and where the time goes. ``make bench`` runs this.

Runs the whole suite once, exactly as ``make test`` does (``python -m pytest`` from the
repository's root, with the options in ``pyproject.toml``), streams its output, and then
prints its wall time, the machine's load average before and after (wall times are only
comparable on a quiet machine), the CPU time used (comparable on a busy one too), the five
slowest tests (pytest's ``--durations``; a test's setup, such as the shared build of the
book, is listed as its own line) and the CPU time by test module (conftest's
``--cpu-durations``). The goal is ``make test`` under three minutes on two cores. Nothing here is
asserted by a test: the figures are for people.

Usage: ``python scripts/bench_suite.py [-- PYTEST_ARGS...]``, e.g. ``-- -n 4``.
Exits with pytest's status.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time

import project

GOAL = 180.0  # seconds, make test on two cores
SLOWEST = 5
DURATION = re.compile(r"^(?P<s>\d+\.\d+)s (?P<when>setup|call|teardown)\s+(?P<test>\S.*)$")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)
    cmd = [
        sys.executable, "-m", "pytest", f"--durations={SLOWEST}", "--cpu-durations=100000",
        *args.pytest_args,
    ]  # fmt: skip
    load_before = os.getloadavg()
    print(f"bench: {' '.join(cmd[1:])}  ({os.cpu_count()} CPU cores, load average "
          f"{load_before[0]:.1f})", flush=True)  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.Popen(
        cmd, cwd=project.ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append(line.rstrip("\n"))
    status = proc.wait()
    wall = time.perf_counter() - start
    load_after = os.getloadavg()
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    # pytest's "slowest N durations" section (conftest's --cpu-durations has the same form)
    # the session's own section: the last one (a test's output may quote another pytest's)
    starts = [i for i, line in enumerate(lines) if re.match(r"^=+ slowest \d+ durations", line)]
    start = starts[-1] if starts else len(lines)
    slowest = [m for line in lines[start + 1 :] if (m := DURATION.match(line.strip()))][:SLOWEST]
    summary = next(
        (line for line in reversed(lines) if re.search(r"\b(passed|failed)\b", line)), ""
    )

    print()
    print("Test suite (make test)")
    verdict = "ok" if wall < GOAL else "MISSED"
    print(f"  wall time        {wall:6.1f} s   goal < {GOAL:.0f} s on two cores   {verdict}")
    print(f"  CPU time         {children.ru_utime + children.ru_stime:6.1f} s   (all processes)")
    print(f"  load average     {load_before[0]:.1f} before, {load_after[0]:.1f} after "
          f"({os.cpu_count()} cores)")  # fmt: skip
    print(f"  result           {summary.strip('= ')}")
    print(f"  {len(slowest)} slowest:")
    for m in slowest:
        print(f"    {float(m['s']):6.1f} s  {m['when']:<8} {m['test']}")
    by_module = cpu_by_module(lines)
    if by_module:
        total = children.ru_utime + children.ru_stime
        print("  CPU time by test module (a test's subprocesses included; a shared build is")
        print("  counted in the test that waited for it first):")
        for module, seconds in sorted(by_module.items(), key=lambda kv: -kv[1]):
            print(f"    {seconds:6.1f} s  {module}")
        outside = total - sum(by_module.values())
        print(f"    {outside:6.1f} s  outside any test (the whole book's background build,")
        print("             browsers closed at the end, pytest itself)")
    return status


CPU_LINE = re.compile(r"^\s*(?P<s>\d+\.\d+)s (?:setup|call|teardown)\s+(?P<test>\S+)")


def cpu_by_module(lines: list[str]) -> dict[str, float]:
    """conftest's --cpu-durations section, summed by test module."""
    starts = [i for i, line in enumerate(lines) if re.match(r"^=+ most CPU time", line)]
    start = starts[-1] if starts else None
    found: dict[str, float] = {}
    for line in lines[start + 1 :] if start is not None else []:
        if line.startswith("="):
            break
        if m := CPU_LINE.match(line):
            module = m["test"].split("::")[0]
            found[module] = found.get(module, 0.0) + float(m["s"])
    return found


if __name__ == "__main__":
    sys.exit(main())
