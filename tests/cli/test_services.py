"""The service supervisor ends what a service started, including processes that moved to a session of
their own (as a Prefect process worker's flow runs do): a stopped or killed site leaves nothing running."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from flamenco.services import descendants, start_service, stop_all

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")

#: A parent that starts a child in a new session (out of the parent's process group), writes the child's
#: pid, and sleeps; the child ignores SIGTERM, as a flow run busy in native code may seem to.
PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"],
    start_new_session=True)
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(600)
"""


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended: only its exit status waits for its (re)parent


def _start(tmp_path: Path, name: str):
    pid_file = tmp_path / f"{name}.pid"
    svc = start_service(name, [sys.executable, "-c", PARENT, str(pid_file)], dict(os.environ), tmp_path)
    deadline = time.time() + 30
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.time() < deadline and svc.alive(), svc.tail()
        time.sleep(0.05)
    child = int(pid_file.read_text())
    assert os.getpgid(child) != os.getpgid(svc.proc.pid)  # the group alone would miss it
    assert child in [p for p, _ in descendants(svc.proc.pid)]
    return svc, child


def test_kill_ends_a_child_in_its_own_session(tmp_path):
    svc, child = _start(tmp_path, "killed")
    svc.kill()
    deadline = time.time() + 10
    while _running(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not svc.alive() and not _running(child)


def test_stop_ends_a_child_that_ignores_sigterm(tmp_path):
    svc, child = _start(tmp_path, "stopped")
    stop_all([svc], timeout=2.0)
    deadline = time.time() + 10
    while _running(child) and time.time() < deadline:
        time.sleep(0.05)
    assert not svc.alive() and not _running(child)


def test_descendants_are_below_the_process_only():
    import subprocess

    leaf = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert descendants(leaf.pid) == []
        mine = [p for p, _ in descendants(os.getpid())]
        assert leaf.pid in mine and os.getpid() not in mine
    finally:
        leaf.kill()
        leaf.wait()
