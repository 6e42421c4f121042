"""The processes a CLI run starts end with it, even when it is killed with SIGKILL.

Prefect's temporary local server (and Dask workers, flow-run subprocesses) are children of the
``flamenco`` process; Prefect stops its server from an ``atexit`` handler, which a SIGKILL never runs,
so the server would live on. :func:`bind_to_this_process` marks this process's environment with a
token (``FLAMENCO_OWNER``) that every child inherits (Prefect starts its server with ``os.environ``), and
starts a small watchdog process (this module, standard library only) in its own session. The watchdog
polls its parent; once the parent is gone (reparented), it SIGTERMs every process whose environment
holds the token, then SIGKILLs what is left after a grace period, and exits. Linux only (it reads
``/proc``); elsewhere :func:`bind_to_this_process` does nothing.
"""

from __future__ import annotations

import os
import secrets
import signal
import sys
import time
from pathlib import Path

OWNER_ENV = "FLAMENCO_OWNER"
POLL_S = 0.5
GRACE_S = 5.0

#: owner PID -> watchdog PID
_bound: dict[int, int] = {}


def bind_to_this_process() -> str | None:
    """Tie every process started from now on by this process (and their children) to its lifetime;
    returns the token, or ``None`` where ``/proc`` is missing. Idempotent per process: a child that calls
    it again gets its own token and watchdog, so each CLI process owns its own children."""
    if not Path("/proc/self/environ").exists():
        return None
    pid = os.getpid()
    if pid in _bound:
        return os.environ[OWNER_ENV]
    token = f"{pid}-{secrets.token_hex(6)}"
    os.environ[OWNER_ENV] = token
    # Own session and no inherited pipes: a terminal's Ctrl-C does not kill the watchdog before it has
    # cleaned up, and a caller reading our stdout does not wait on the watchdog for EOF. posix_spawn, not
    # Popen: the watchdog outlives us by design, and a Popen object still running at exit warns that it leaks.
    env = {k: v for k, v in os.environ.items() if k != OWNER_ENV}
    devnull = [(os.POSIX_SPAWN_OPEN, fd, os.devnull, os.O_RDWR, 0) for fd in (0, 1, 2)]
    _bound[pid] = os.posix_spawn(sys.executable, [sys.executable, "-S", __file__, str(pid), token], env,
                                 file_actions=devnull, setsid=True)
    return token


def marked(token: str) -> list[int]:
    """PIDs of the processes whose environment holds ``FLAMENCO_OWNER=token`` (this one excluded)."""
    needle = f"{OWNER_ENV}={token}".encode() + b"\0"
    me = os.getpid()
    out = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = fh.read() + b"\0"
        except OSError:  # gone, or another user's
            continue
        if b"\0" + needle in b"\0" + env:
            out.append(int(entry.name))
    return out


def _signal(pids: list[int], sig: int) -> None:
    for p in pids:
        try:
            os.kill(p, sig)
        except (ProcessLookupError, PermissionError):
            pass  # already gone, or no longer ours to end (its PID was reused): nothing to stop


def watch(owner: int, token: str) -> None:
    """Wait for ``owner`` (our parent) to end, then end every process carrying ``token``."""
    while os.getppid() == owner:
        time.sleep(POLL_S)
    _signal(marked(token), signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline:
        left = marked(token)
        if not left:
            return
        time.sleep(0.2)
    _signal(marked(token), signal.SIGKILL)


if __name__ == "__main__":  # python -S watchdog.py OWNER_PID TOKEN
    watch(int(sys.argv[1]), sys.argv[2])
