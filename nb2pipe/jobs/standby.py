"""A standby job process: Python started, the job runner imported and one kernel ready, waiting for its one run.

A cold ``nb2pipe job run`` spends most of a trivial run starting Python, importing papermill and nbclient, and
starting a kernel. A long-lived host that knows a run is coming (the scheduler, shortly before a schedule fires:
:mod:`nb2pipe.scheduler.standby`) starts ``python -m nb2pipe.jobs.standby --kernel NAME`` ahead of time, in its own
session, and at the fire hands it the run instead of starting ``nb2pipe job run`` cold. From the handoff on, the
process *is* that ``nb2pipe job run``: the same code path (:func:`nb2pipe.cli.main`), the same process group, pid,
heartbeat, signal handling, exit code and record, with the kernel taken from its :class:`KernelPool` of one (used
for this run only, then discarded, as in a sweep). A standby runs at most one job and then exits.

Protocol, one JSON line each way:

- standby -> host, on the pipe that is the standby's stdout when it starts: ``{"state": "ready", "kernel_pid": N}``
  once its kernel answered, or ``{"state": "cold", "error": "..."}`` when no kernel could be started (a run handed
  over then starts its kernel itself, and records truthfully why it could not), or ``{"state": "dead"}`` when the
  kernel died while waiting (the host ends this standby and starts another; a run already handed over starts a
  kernel of its own).
- host -> standby, on stdin: ``{"argv": [...], "env": {...}, "cwd": "..."}``, the ``nb2pipe`` arguments, the run's
  whole environment and its working directory. End of input without a request (the host stopped, or does not need
  the standby): the standby ends its kernel and exits 0.

Everything the standby itself prints (import warnings, the kernel's own output to its inherited stderr) goes to its
stderr, which the host points at a log file; the scheduler renames that file to the run's log at the handoff.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import sys
from typing import IO, Any, Final

#: Seconds between checks that the waiting kernel is still alive.
CHECK_SECONDS: Final = 1.0


def _warm_imports() -> None:
    """Import what ``nb2pipe job run`` imports on its way to a kernel, so the run does not pay for it."""
    import nbformat
    import papermill.engines  # noqa: F401
    from nbclient.client import NotebookClient  # noqa: F401

    from .. import cli, notebook, parameters  # noqa: F401
    from . import cli as jobs_cli  # noqa: F401
    from . import execute, history, provenance  # noqa: F401
    from .engine import _client_class, _manager_class, register

    register()
    _client_class()
    _manager_class()
    cli.build_parser()  # imports every command module
    nbformat.writes(nbformat.v4.new_notebook())  # type: ignore[no-untyped-call]  # compiles nbformat's validator


def _kernel_alive(km: Any) -> bool:
    process = getattr(getattr(km, "provisioner", None), "process", None)
    return process is None or process.poll() is None


def _exit_on_stop(detail: str) -> None:
    """While the standby waits, SIGTERM/SIGINT end it (and its kernel, through ``finally``)."""
    raise SystemExit(130 if detail.endswith("SIGINT") else 143)


def _say(channel: IO[str], **message: Any) -> None:
    with contextlib.suppress(OSError):
        channel.write(json.dumps(message) + "\n")
        channel.flush()


def _wait_for_request(channel: IO[str], km: Any) -> dict[str, Any] | None:
    """The host's request, or None at end of input.

    A kernel that dies meanwhile is reported (the host then ends this standby and starts another); a request that
    was already on its way is still run, with a kernel of its own, as a cold run would.
    """
    while True:
        readable, _, _ = select.select([sys.stdin], [], [], CHECK_SECONDS)
        if readable:
            line = sys.stdin.readline()
            if not line.strip():
                return None
            request: dict[str, Any] = json.loads(line)
            return request
        if km is not None and not _kernel_alive(km):
            _say(channel, state="dead")
            km = None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nb2pipe.jobs.standby", description=__doc__.split("\n")[0])
    parser.add_argument("--kernel", default="python3", metavar="NAME", help="the kernel to start ahead (python3)")
    parser.add_argument("--start-timeout", type=float, default=60.0, metavar="S", help="kernel start limit (60)")
    args = parser.parse_args(argv)
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)  # stdout goes where stderr goes; the kernel started below inherits both

    from .execute import on_stop_signals
    from .pool import KernelPool, set_process_pool

    with on_stop_signals(_exit_on_stop):
        pool = KernelPool(args.kernel, size=1, total=1, start_timeout=args.start_timeout)
        try:
            _warm_imports()
            pool.wait_ready(args.start_timeout)
            ready = pool.ready()
            km = ready[0] if ready and not isinstance(ready[0], BaseException) else None
            if km is not None:
                from .engine import _kernel_pid

                _say(channel, state="ready", kernel_pid=_kernel_pid(km))
            else:
                error = ready[0] if ready else TimeoutError(f"no kernel within {args.start_timeout:g} s")
                _say(channel, state="cold", error=f"{type(error).__name__}: {error}")
            request = _wait_for_request(channel, km)
        except BaseException:
            pool.close()
            raise
    with contextlib.suppress(OSError):  # a host that handed the run over early has closed its end
        channel.close()
    if request is None:
        pool.close()
        return 0
    try:
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request.get("cwd") or ".")
        if km is not None and _kernel_alive(km):
            set_process_pool(pool)  # else: `job run` starts its own kernel, as a cold run would
        from ..cli import main as nb2pipe_main

        return nb2pipe_main(list(request["argv"]))
    finally:
        set_process_pool(None)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        pool.close()


def _exit(code: int) -> None:
    """Exit without the interpreter's teardown (about a second here: zmq contexts, module cleanup).

    Everything the run leaves behind is already written and closed by then: the store, the executed notebook
    (atomic rename), the kernel (discarded and waited for); stdout, stderr and logging are flushed here.
    """
    import logging

    logging.shutdown()
    with contextlib.suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    _exit(main())
