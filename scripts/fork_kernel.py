"""Run a page's code cells once, and fork at each cell a variant of the page changes.

The engine behind ``scripts/run_chapter.py`` (the tests' mutation and exercise runs, and
``make check``). ``run_chapter.Server`` starts it, once per folder and process, as
``fork_kernel.py CWD``; it warms up, then serves page plans (``run_chapter.plan``), each
in a child forked from its pristine state, so that imports and warm-up are paid once::

    {"cwd": ".../book", "timeout": 120, "warmup": ..., "warmup_cell": ...,
     "cells": [{"source": ..., "metadata": {...}}, ...],          # the page's code cells
     "variants": [{"id": ..., "fork_at": k, "allow_errors": false,
                   "cells": [...]}]}                                # code cells k, k+1, ...

A page's process executes its cells in order in one in-process IPython shell, as a
Jupyter kernel started by the build would (same IPython, same input transformations,
``book/`` as working directory, matplotlib's inline backend, history numbering ``In[n]``).
Before it executes cell ``k``, it forks a child for every variant with ``fork_at == k``: the
child has exactly the state a fresh kernel has after cells ``0 … k-1`` and runs the
variant's cells from ``k`` on, with nbclient's rules:

* ``allow_errors`` false (the build): a cell that raises stops the page and is its
  failure, unless it is tagged ``raises-exception``; empty cells and cells tagged
  ``skip-execution`` are not run; a timeout always stops the page;
* ``allow_errors`` true (an exercise run without solutions): every cell runs, and each
  cell's error is recorded.

Each child reports through a pipe; the parent waits for it before it goes on (children
never run at the same time, so cells that touch files cannot collide). A cell that runs
longer than ``timeout`` seconds is a failure, as in the build.

Forking is safe only when no other thread can be doing anything: the caller sets
OMP_NUM_THREADS=1 (and its MKL/OpenBLAS siblings) before torch is imported, and a process
forks only while every other thread is a native (non-Python) thread asleep in a futex wait
(``_busy_threads``). That admits exactly one thread the book's pages start: the
configuration thread that PyTorch's profiler (Kineto, used by ``byhand.measure``) starts
on first use and that sleeps on a condition variable for the rest of the process, waking
every few seconds to look for a profiling request. A child forked beside it simply has no
such thread; nothing a page does needs it. Any other thread (a Python thread, a thread
that is running or blocked elsewhere) makes the process unsafe to fork: later variants
are then replayed from a copy taken before that cell (see ``Snapshot``).

A result holds, for the page itself and for each variant, every executed cell's error
(``ename``, ``evalue``, IPython's ``traceback`` lines, the cell's stream output), and the
byhand records of what passed.
"""

from __future__ import annotations

import gc
import inspect
import io
import json
import os
import resource
import select
import signal
import sys
import time
import traceback
import warnings

RECORD_KEY = "byhand"  # book/byhand.py's RECORD_KEY (tests/test_broken_gradients.py checks)
FORK_SLACK = 30.0  # seconds a child may take beyond its cells' timeouts before it is killed


class CellTimeout(BaseException):
    """Raised in a cell that runs past the timeout (a BaseException: `except Exception`
    in a cell cannot swallow it)."""


def _threads() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:  # not Linux: count the Python threads at least
        import threading

        return threading.active_count()


def _busy_threads(settle: float = 0.25) -> int:
    """Threads, other than this one, that make a fork unsafe: every Python thread, and
    every native thread that is not asleep in a futex wait (a condition variable or a
    lock). A native thread that a cell has just started may not have reached its wait
    yet: those are looked at again for up to ``settle`` seconds. Without /proc (not
    Linux), every other thread counts."""
    deadline = time.monotonic() + settle
    while True:
        python, native = _other_threads()
        if python or not native or time.monotonic() > deadline:
            return python + native
        time.sleep(0.005)


def _other_threads() -> tuple[int, int]:
    """(Python threads, native threads not asleep in a futex wait), this one aside."""
    import threading

    python_threads = {t.native_id for t in threading.enumerate()}
    me = threading.get_native_id()
    try:
        tasks = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return threading.active_count() - 1, 0
    python = native = 0
    for tid in tasks:
        if tid == me:
            continue
        if tid in python_threads:
            python += 1
            continue
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
            with open(f"/proc/self/task/{tid}/wchan") as f:
                wchan = f.read()
        except OSError:  # it ended just now
            continue
        if not (state == "S" and "futex" in wchan):
            native += 1
    return python, native


class Capture(io.TextIOBase):
    """sys.stdout / sys.stderr of the shell: text goes to the current cell's outputs."""

    def __init__(self, name: str, sink, fd: int):
        self.name, self._sink, self._fd = name, sink, fd

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        if text:
            outputs = self._sink()
            if (
                outputs
                and outputs[-1].get("output_type") == "stream"
                and outputs[-1]["name"] == self.name
            ):
                outputs[-1]["text"] += text
            else:
                outputs.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)

    def fileno(self) -> int:
        return self._fd

    @property
    def encoding(self) -> str:
        return "utf-8"


def slim(output: dict) -> dict:
    """What the runner's caller reads of an output: streams and errors whole, and of a
    display only byhand's record (figures and HTML are not needed to judge a run)."""
    if output["output_type"] in ("stream", "error"):
        return output
    record = (output.get("metadata") or {}).get(RECORD_KEY)
    return {
        "output_type": output["output_type"],
        "metadata": {RECORD_KEY: record} if record else {},
    }


def make_shell(outputs):
    """An InteractiveShell whose displays, results and errors land in ``outputs()``."""
    from IPython.core.displayhook import DisplayHook
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    class Publisher(DisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kw):
            outputs().append(
                {"output_type": "display_data", "data": data, "metadata": metadata or {}}
            )

        def clear_output(self, wait=False):
            outputs().clear()

    class Hook(DisplayHook):
        def write_output_prompt(self):
            pass

        def write_format_data(self, format_dict, md_dict=None):
            outputs().append(
                {"output_type": "execute_result", "data": format_dict, "metadata": md_dict or {}}
            )

    class Shell(InteractiveShell):
        def _showtraceback(self, etype, evalue, stb):
            # exactly what ipykernel sends (ipykernel/zmqshell.py)
            outputs().append(
                {
                    "output_type": "error",
                    "ename": str(etype.__name__),
                    "evalue": str(evalue),
                    "traceback": stb,
                }
            )

    config = Config()
    config.HistoryManager.enabled = False  # no sqlite file, no history thread
    config.InteractiveShell.colors = "Linux"
    shell = Shell.instance(config=config, display_pub_class=Publisher, displayhook_class=Hook)
    return shell


class Runner:
    def __init__(self, plan: dict):
        self.timeout = float(plan.get("timeout") or 120)
        self.outputs: list = []
        self.shell = make_shell(lambda: self.outputs)
        self.stdout = Capture("stdout", lambda: self.outputs, 1)
        self.stderr = Capture("stderr", lambda: self.outputs, 2)

    def warm_up(self, source: str, cell: str | None) -> None:
        """Pay once, before any fork, what every child would otherwise pay again.

        ``source`` (lazy imports) runs in a namespace of its own, not the page's. ``cell``,
        an expression that raises, runs silently in the shell, so that IPython formats its
        first traceback (it inspects every loaded module and compiles its highlighter:
        about a second); its output is thrown away. The page's namespace, history and
        execution count are left as a fresh kernel has them, and that is checked."""
        try:
            exec(compile(source, "<warm-up>", "exec"), {})
        except Exception:  # only a speed-up: the page will meet the error itself
            return
        if cell:
            names, count = set(self.shell.user_ns), self.shell.execution_count
            self.outputs = []
            self.shell.run_cell(cell, store_history=False, silent=True)
            self.outputs = []
            if set(self.shell.user_ns) != names or self.shell.execution_count != count:
                raise RuntimeError("the warm-up cell changed the page's namespace or history")

    def execute(self, cell: dict) -> dict:
        """Run one cell; return its record: outputs, error (or None), seconds."""
        self.outputs = []
        record = {"source": cell["source"], "tags": cell["metadata"].get("tags", [])}
        tags = record["tags"]
        if not cell["source"].strip() or "skip-execution" in tags:
            record.update(skipped=True, outputs=[], error=None, seconds=0.0)
            return record

        def expire(signum, frame):
            raise CellTimeout(f"the cell ran for more than {self.timeout:g} s")

        old = signal.signal(signal.SIGALRM, expire)
        signal.setitimer(signal.ITIMER_REAL, self.timeout)
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.stdout, self.stderr
        start = time.perf_counter()
        try:
            self.shell.run_cell(cell["source"], store_history=True)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
            sys.stdout, sys.stderr = saved
        errors = [o for o in self.outputs if o["output_type"] == "error"]
        error = errors[0] if errors else None
        if error and error["ename"] == "CellTimeout":
            error["timeout"] = True
        record.update(
            outputs=[slim(o) for o in self.outputs],
            error=error,
            seconds=time.perf_counter() - start,
        )
        return record

    def run(self, cells: list[dict], allow_errors: bool, first: int = 0, before=None) -> dict:
        """Run ``cells`` (numbered from ``first``); ``before(k)`` is called before cell k."""
        executed = []
        for k, cell in enumerate(cells, first):
            if before:
                before(k)
            record = self.execute(cell)
            record["index"] = k
            executed.append(record)
            error = record["error"]
            # nbclient: a timeout always stops the page; another error stops it unless
            # errors are allowed (the whole run, or this cell by its raises-exception tag)
            allowed = allow_errors or "raises-exception" in record["tags"]
            if error and (error.get("timeout") or not allowed):
                return {"cells": executed, "failed_at": k}
        if before:
            before(first + len(cells))
        return {"cells": executed, "failed_at": None}

    def fork(self, variant: dict) -> dict:
        """Run ``variant`` in a child process from the current state; return its result.

        A variant may carry ``replay``: cells the child runs first (with the build's rules;
        see ``Snapshot``)."""
        busy = _busy_threads()
        if busy:
            raise RuntimeError(f"cannot fork safely: this process has {busy} busy threads")
        read, write = os.pipe()
        pid = _fork()
        if pid == 0:  # the child
            os.close(read)
            send(write, self._child(variant))
            os._exit(0)
        os.close(write)
        cells = len(variant["cells"]) + len(variant.get("replay", []))
        result = receive(read, self.timeout * max(1, cells) + FORK_SLACK, pid)
        os.close(read)
        return result

    def _child(self, variant: dict) -> dict:
        start = time.perf_counter()
        try:
            replay = variant.get("replay") or []
            if replay:
                first = variant["fork_at"] - len(replay)
                again = self.run(replay, allow_errors=False, first=first)
                if again["failed_at"] is not None:
                    return {
                        "crashed": f"replaying code cells {first + 1}-{variant['fork_at']} "
                        f"failed at cell {again['failed_at'] + 1}, although they passed before"
                    }
            replayed = time.perf_counter() - start
            result = self.run(variant["cells"], variant["allow_errors"], variant["fork_at"])
        except BaseException:
            return {"crashed": traceback.format_exc()}
        result["seconds"] = time.perf_counter() - start
        if replay:
            result["replayed"] = {"from": first, "seconds": replayed}
        return result


def _fork() -> int:
    """os.fork, made cheap for the child:

    * the garbage collector's objects are frozen in the parent's copy: a child's collection
      would otherwise write to every object's header and so copy the whole heap (about a
      second per child). Frozen objects are only exempt from cycle collection;
    * inspect's map of modules to files, which IPython's traceback needs, is brought up to
      date with the modules imported so far (a pure cache: a child that formats a traceback
      would otherwise rebuild it, about a second)."""
    sys.stdout.flush()
    sys.stderr.flush()
    inspect.getmodule(compile("0", "<fork>", "eval"))
    gc.freeze()
    with warnings.catch_warnings():  # Python 3.12+ warns about a fork beside any thread
        warnings.filterwarnings("ignore", message=".*fork", category=DeprecationWarning)
        pid = os.fork()
    if pid:
        gc.unfreeze()
    return pid


def send(fd: int, result: dict) -> None:
    data = json.dumps(result, default=repr).encode()
    data = len(data).to_bytes(8, "big") + data
    while data:
        data = data[os.write(fd, data) :]


def _read_exactly(fd: int, size: int, deadline: float) -> bytes | None:
    """``size`` bytes from ``fd``; fewer at end of input; None when the deadline passes."""
    chunks, got = [], 0
    while got < size:
        ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            return None
        chunk = os.read(fd, min(size - got, 1 << 16))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def receive(fd: int, seconds: float, pid: int | None) -> dict:
    """One result from ``fd`` (then reap ``pid``); kill ``pid`` if none comes in ``seconds``."""
    deadline = time.monotonic() + seconds
    head = _read_exactly(fd, 8, deadline)
    body = size = None
    if head is not None and len(head) == 8:
        size = int.from_bytes(head, "big")
        body = _read_exactly(fd, size, deadline)
    timed_out = head is None or (size is not None and body is None)
    if timed_out and pid is not None:
        os.kill(pid, signal.SIGKILL)
    if pid is not None:
        os.waitpid(pid, 0)
    if timed_out:
        return {"crashed": f"the forked run did not finish in {seconds:.0f} s and was killed"}
    if size is None or len(body) < size:
        return {"crashed": "the forked run died without a result", "eof": True}
    return json.loads(body)


class Snapshot:
    """A paused copy of the process, forked before a cell while forking was still safe.

    Some cells leave a thread running (PyTorch's profiler does, in ``byhand.measure``); a
    process with threads must not fork. So before each cell the runner keeps a paused copy
    of itself; when a cell leaves a thread behind, the copy from before that cell stays,
    and every later variant is run by it: it forks a child that replays the cells from
    there (they must pass again) and then runs the variant. Slower, never unfaithful."""

    def __init__(self, runner: Runner, index: int):
        self.index = index
        self._timeout = runner.timeout
        commands_r, commands_w = os.pipe()
        results_r, results_w = os.pipe()
        self.pid = _fork()
        if self.pid == 0:  # the paused copy: serve requests until the pipe closes
            os.close(commands_w)
            os.close(results_r)
            try:
                while True:
                    request = receive(commands_r, 1e9, None)
                    if request.get("eof"):  # the runner closed the pipe: it is done
                        break
                    send(results_w, runner.fork(request))
            finally:
                os._exit(0)
        os.close(commands_r)
        os.close(results_w)
        self._commands, self._results = commands_w, results_r

    def run(self, variant: dict, replay: list[dict]) -> dict:
        send(self._commands, {**variant, "replay": replay})
        cells = len(variant["cells"]) + len(replay)
        return receive(self._results, self._timeout * max(1, cells) + 2 * FORK_SLACK, None)

    def close(self) -> None:
        os.close(self._commands)
        os.close(self._results)
        os.waitpid(self.pid, 0)


def run_page(runner: Runner, plan: dict) -> dict:
    """Run one page's plan (in a process of its own, forked from the server)."""
    started = time.perf_counter()
    runner.timeout = float(plan.get("timeout") or runner.timeout)
    cells = plan["cells"]
    pending: dict[int, list] = {}
    for variant in plan["variants"]:
        pending.setdefault(variant["fork_at"], []).append(variant)
    results: dict[str, dict] = {}
    snapshot: Snapshot | None = None
    timing = {"variants": 0.0, "snapshots": 0.0, "replayed": 0}

    def before(k: int) -> None:
        nonlocal snapshot
        safe = _busy_threads() == 0
        start = time.perf_counter()
        for variant in pending.pop(k, []):
            if safe:
                results[variant["id"]] = runner.fork(variant)
            elif snapshot is not None:
                results[variant["id"]] = snapshot.run(variant, cells[snapshot.index : k])
                timing["replayed"] += 1
            else:
                results[variant["id"]] = {"crashed": f"{_threads()} threads before the first cell"}
        timing["variants"] += time.perf_counter() - start
        start = time.perf_counter()
        if safe and any(j > k for j in pending):  # keep a paused copy from before this cell
            if snapshot is not None:
                snapshot.close()
            snapshot = Snapshot(runner, k)
        timing["snapshots"] += time.perf_counter() - start

    page = runner.run(cells, allow_errors=False, before=before)
    if snapshot is not None:
        snapshot.close()
    for variants in pending.values():  # the page failed before these cells
        for variant in variants:
            results[variant["id"]] = {
                "not_run": f"the page itself failed at code cell {page['failed_at'] + 1}"
            }
    page["threads"] = _threads()
    timing["total"] = time.perf_counter() - started
    page["timing"] = timing
    return {"page": page, "variants": results}


def serve(cwd: str, requests: int, replies: int) -> None:
    """Start as a fresh kernel would in ``cwd``, warm up, then run each page plan read from
    ``requests`` in a child forked from this pristine state; send each result to
    ``replies``. Ends when ``requests`` is closed."""
    os.chdir(cwd)
    # A kernel started in book/ imports from book/ first; never from this script's folder.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [cwd] + [p for p in sys.path if os.path.abspath(p or ".") != here]
    started = time.perf_counter()
    runner = Runner({})
    warmed = False
    while True:
        plan = receive(requests, 1e9, None)
        if plan.get("eof"):
            return
        if plan["cwd"] != cwd:
            send(replies, {"crashed": f"this runner serves pages in {cwd}, not {plan['cwd']}"})
            continue
        if not warmed and plan.get("warmup"):
            runner.warm_up(plan["warmup"], plan.get("warmup_cell"))
            warmed = True
        startup = time.perf_counter() - started
        read, write = os.pipe()
        pid = _fork()
        if pid == 0:  # the page's own process
            os.close(read)
            try:
                result = run_page(runner, plan)
                result["page"]["timing"]["startup"] = startup
            except BaseException:
                result = {"crashed": traceback.format_exc()}
            send(write, result)
            os._exit(0)
        os.close(write)
        cells = len(plan["cells"]) + sum(len(v["cells"]) for v in plan["variants"])
        result = receive(read, float(plan.get("timeout") or 120) * max(1, cells) + FORK_SLACK, pid)
        os.close(read)
        result["cpu"] = _cpu_seconds()
        send(replies, result)
        started = time.perf_counter()  # the next page starts from here


def _cpu_seconds() -> float:
    """CPU time of this process and of every child it reaped (user and system), so far."""
    own, children = (
        resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    """``fork_kernel.py CWD``: serve page plans on stdin, results on stdout (both framed by
    ``_send``). The cells' own output never reaches these: file descriptors 0 and 1 are
    moved aside before anything runs, and what cells write there at the C level goes to
    /dev/null (Python-level output is captured per cell)."""
    requests, replies = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    serve(sys.argv[1], requests, replies)
    return 0


if __name__ == "__main__":
    sys.exit(main())
