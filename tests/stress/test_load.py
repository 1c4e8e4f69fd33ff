"""Load without loss: four client processes each pipeline 100,000 commands into the same two
workers at once. None is lost, each client's order holds, every result is correct."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

import syftzmq as sy
from support.processes import read_lines_until

pytestmark = pytest.mark.slow  # a stress run: the full suite runs it, the fast tier does not

CLIENTS = 4
COMMANDS = 100_000


@pytest.fixture(scope="module")
def load_pair(hook):
    pair = (sy.VirtualWorker(hook, id="load_a"), sy.VirtualWorker(hook, id="load_b"))
    yield pair
    for worker in pair:
        worker.shutdown()


@pytest.mark.timeout(600)
def test_four_clients_pipeline_100k_commands_each_without_loss(load_pair):
    a, b = load_pair
    script = Path(__file__).resolve().parents[1] / "support" / "load_client.py"
    # Busy is not dead: with 4 x 100k commands queued on 2 cores an observation may wait behind
    # a long queue, so the load clients get a deadline for that, not the 5 s liveness default.
    env = {**os.environ, "SYFTZMQ_TIMEOUT": "120"}
    clients = [subprocess.Popen([sys.executable, str(script), sy.default_session().cluster_key_file(),
                                 a.address, b.address, str(seed), str(COMMANDS)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
               for seed in range(CLIENTS)]
    try:
        for client in clients:
            read_lines_until(client, "READY", timeout=120)
        start = time.monotonic()
        for client in clients:
            client.stdin.write("go\n")
            client.stdin.flush()
        reports = [read_lines_until(client, "SENT", timeout=540)[-1] for client in clients]
        codes = [client.wait(60) for client in clients]
        elapsed = time.monotonic() - start
    finally:
        for client in clients:
            client.kill()
            client.wait(10)
    print(f"{CLIENTS} x {COMMANDS} commands in {elapsed:.1f} s", *reports, sep="\n")
    assert codes == [0] * CLIENTS, reports
    assert all(f"SENT {COMMANDS} " in report and ", 0 wrong" in report for report in reports)
    stats = [w.ping() for w in load_pair]
    assert sum(s["commands"] for s in stats) >= CLIENTS * COMMANDS
    assert all(s["replies_dropped"] == 0 and s["rejected"] == 0 for s in stats)
    assert a._objects == {} and b._objects == {}
