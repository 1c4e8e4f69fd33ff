"""How long a supervised worker is gone after a ``kill -9``: from the kill until the new
incarnation answers a PING at the same address (``syftzmq cluster up`` restarts it).

    python scripts/measure_restart.py [--trials 7]

Brings up a two-worker cluster on this host from a temporary cluster file, kills one worker
``--trials`` times (waiting each time for the new incarnation), prints each figure and the
median, checks the other worker kept its incarnation, and takes the cluster down.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import syftzmq as sy  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(worker_id: str, address: str, key_file: Path, timeout: float) -> dict | None:
    try:
        handle = sy.Worker(None, worker_id, address, key_file=key_file, timeout=timeout)
    except Exception:
        return None
    try:
        return handle.ping(timeout)
    except Exception:
        return None
    finally:
        sy.default_session().forget(handle.ref)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="syftzmq-restart-"))
    victim_address = f"tcp://127.0.0.1:{_free_port()}"
    other_address = f"tcp://127.0.0.1:{_free_port()}"
    cluster = work / "cluster.toml"
    cluster.write_text(f'key_file = "cluster.key"\n[workers.victim]\nbind = "{victim_address}"\n'
                       f'[workers.other]\nbind = "{other_address}"\n')
    up = subprocess.Popen([sys.executable, "-m", "syftzmq", "cluster", "up", str(cluster),
                           "--max-restarts", str(args.trials + 2), "--restart-window", "3600",
                           "--log-level", "WARNING"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    key_file = work / "cluster.key"
    times = []
    try:
        deadline = time.monotonic() + 120
        while _ping("victim", victim_address, key_file, 1.0) is None or \
                _ping("other", other_address, key_file, 1.0) is None:
            if time.monotonic() > deadline:
                raise SystemExit("the cluster did not come up within 120 s")
        other_before = _ping("other", other_address, key_file, 2.0)["ref"].incarnation
        for trial in range(args.trials):
            before = _ping("victim", victim_address, key_file, 2.0)
            os.kill(before["pid"], signal.SIGKILL)
            killed = time.monotonic()
            while True:
                info = _ping("victim", victim_address, key_file, 0.5)
                if info is not None and info["ref"].incarnation != before["ref"].incarnation:
                    break
                if time.monotonic() - killed > 60:
                    raise SystemExit("no new incarnation within 60 s")
            times.append(time.monotonic() - killed)
            print(f"trial {trial + 1}: back after {times[-1]:.2f} s")
        other_after = _ping("other", other_address, key_file, 2.0)["ref"].incarnation
        print(f"median {statistics.median(times):.2f} s over {len(times)} kills "
              f"(min {min(times):.2f}, max {max(times):.2f}); the other worker "
              f"{'kept' if other_after == other_before else 'LOST'} its incarnation")
    finally:
        up.send_signal(signal.SIGINT)
        up.wait(60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
