"""How the build's kernels are started: no port races, no lost outputs.

myst-nb executes each page through jupyter-cache and nbclient, which start an IPython
kernel per page. Two defaults make a clean build fail now and then for no reason of its
own, most often on a busy machine:

* **TCP port races.** The kernel manager picks five free TCP ports by binding to port 0
  and closing the socket again; the kernel binds them a moment later. Sphinx reads pages
  in parallel worker processes, and other builds may run on the same machine: when
  another process takes one of those ports in between, the kernel cannot bind it, dies
  at start-up, and the page fails with "Kernel died before replying to kernel_info".
  Here every kernel talks over IPC instead: Unix sockets, each under a path no other
  kernel uses (a private temporary folder, a random name per kernel). No port is chosen,
  so none can be taken; and nothing is sent in plain text over a local TCP port, which
  is what ipykernel's "Kernel is running over TCP without encryption" warning is about.
* **Outputs dropped under load.** After a cell's reply, nbclient waits only 4 s for the
  cell's remaining outputs and then goes on *without them* (a log line, no error). On a
  loaded machine that can drop the error output of a ``raises-exception`` cell, a glued
  value or a check's record, and the build then fails, or worse, checks less. The wait
  here is 60 s, and running out of it is an error, not a silent loss.

Neither setting is reachable from the outside: jupyter-cache builds nbclient's
``NotebookClient`` with no configuration. So :func:`configure` wraps the one method
where the client creates its kernel manager, and sets both there. It runs in the Sphinx
process before any page is read, so forked parallel readers inherit it. If nbclient or
jupyter_client no longer have what it wraps, it fails the build loudly.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import uuid
from pathlib import Path

IOPUB_TIMEOUT = 60  # seconds to wait for a cell's outputs after its reply
_MARK = "_byhand_ipc"


def configure() -> Path | None:
    """Make every nbclient kernel use IPC transport and wait for all outputs.

    Returns the folder the kernels' sockets live in (``None`` on Windows, where ZeroMQ
    has no IPC transport and the kernels keep TCP).
    """
    from guard_run import InternalsChanged

    try:
        from jupyter_client.manager import KernelManager
        from nbclient.client import NotebookClient
    except ImportError as err:  # pragma: no cover - both ship with myst-nb
        raise InternalsChanged(f"cannot import nbclient/jupyter_client ({err})") from err
    for owner, names in (
        (NotebookClient, ("create_kernel_manager", "iopub_timeout", "raise_on_iopub_timeout")),
        (KernelManager, ("transport", "ip")),
    ):
        missing = [n for n in names if not hasattr(owner, n)]
        if missing:
            raise InternalsChanged(f"{owner.__name__} has no {', '.join(missing)}")
    original = NotebookClient.create_kernel_manager
    if getattr(original, _MARK, None):
        return getattr(original, _MARK)
    sockets = None if os.name == "nt" else Path(tempfile.mkdtemp(prefix="byhand-kernels-"))

    def create_kernel_manager(self):
        self.iopub_timeout = max(self.iopub_timeout, IOPUB_TIMEOUT)
        self.raise_on_iopub_timeout = True
        manager = original(self)
        if sockets is not None:
            manager.transport = "ipc"
            manager.cache_ports = False
            # socket files "<ip>-<port>"; short, so that a Unix socket path fits (104 bytes)
            manager.ip = str(sockets / uuid.uuid4().hex[:16])
        return manager

    setattr(create_kernel_manager, _MARK, sockets or True)
    NotebookClient.create_kernel_manager = create_kernel_manager
    if sockets is not None:
        atexit.register(shutil.rmtree, sockets, True)
    return sockets
