"""A local worker process: ``python -m nb2pipe.runner.worker``, driven by the local executor over pipes.

It reads pickled :class:`~nb2pipe.runner.execute.Task` objects from stdin (or a
:class:`~nb2pipe.runner.execute.Warm` request: import these stage modules now, answer nothing) and writes one pickled
:class:`~nb2pipe.runner.execute.Result` per task to the pipe that was its stdout; its own file descriptors 1 and 2
point at the running stage's log files, so a stray print can never corrupt the protocol. It ignores Ctrl-C (the
orchestrator decides, and kills it) and, on Linux, dies with its parent, so a killed run leaves no worker behind.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys


def _die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def main() -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent()
    if os.getppid() == 1:
        return 1
    channel = os.fdopen(os.dup(1), "wb")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    # What a stage prints reaches its log file line by line, so the orchestrator can show it as it comes.
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    requests = sys.stdin.buffer
    from .execute import Warm, execute, use_capture_files, warm

    if len(sys.argv) == 3:  # the files the local executor follows to show stage output live
        use_capture_files(int(sys.argv[1]), int(sys.argv[2]))

    name = f"local:{os.getpid()}"
    while True:
        try:
            task = pickle.load(requests)  # noqa: S301 - from our own parent process
        except EOFError:
            return 0
        if isinstance(task, Warm):
            warm(task)
            continue
        result = execute(task, name)
        pickle.dump(result, channel, protocol=5)
        channel.flush()


if __name__ == "__main__":
    sys.exit(main())
