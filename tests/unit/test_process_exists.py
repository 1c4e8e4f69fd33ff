"""``process_exists``, which the sweeps of what killed processes left rely on, on real processes;
and a name anyone can put in /dev/shm does not stop the orphan sweep."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest

from syftzmq.core.processes import PID_MAX_LIMIT, process_exists
from syftzmq.wire import shm


def test_live_exited_and_zombie_processes():
    assert process_exists(os.getpid())
    assert process_exists(1)                       # another process (init), alive
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(30)                                 # exited and reaped
    assert not process_exists(child.pid)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    os.waitid(os.P_PID, zombie.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped yet
    try:
        assert not process_exists(zombie.pid)
    finally:
        zombie.wait(30)


@pytest.mark.parametrize("pid", [0, -1, PID_MAX_LIMIT + 1, int("9" * 20)])
def test_numbers_no_process_can_have(pid):
    assert not process_exists(pid)


@pytest.mark.skipif(not shm.enabled(), reason="no shared memory on this host")
def test_a_hostile_segment_name_does_not_stop_the_orphan_sweep():
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(30)
    names = [f"syftzmq-{'9' * 20}-{secrets.token_hex(16)}",   # no process has such a pid
             f"syftzmq-{gone.pid}-{secrets.token_hex(16)}"]   # a dead process's orphan
    for name in names:
        with open(os.path.join(shm.DIRECTORY, name), "wb"):
            pass
    try:
        shm.sweep_orphans(min_age=0)
        assert not any(os.path.exists(os.path.join(shm.DIRECTORY, n)) for n in names)
    finally:
        for name in names:
            if os.path.exists(os.path.join(shm.DIRECTORY, name)):
                os.unlink(os.path.join(shm.DIRECTORY, name))
