"""Authenticated messages, counted rejections, loopback by default, CURVE between hosts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import syftzmq as sy
from support.hostile import RawPeer
from support.processes import EXIT_DEADLINE, read_lines_until, spawned_cluster
from syftzmq.security.curve import CurveClient, create_curve_dir
from syftzmq.security.keys import read_key, write_key_file
from syftzmq.client.launcher import spawn_worker
from syftzmq.security.netpolicy import is_loopback
from syftzmq.core.messages import PING, message
from syftzmq.wire import Signer, dumps, pack


def test_rejections_are_counted_by_reason_and_readable(bob):
    raw = RawPeer(bob.address, b"counting-peer")
    try:
        before = raw.stats()["rejected_by_reason"]
        frames = pack(raw.signer, *dumps(message(PING, req=1)))
        raw.send_frames(frames)
        raw.send_frames(frames)                                           # replayed
        raw.send_frames(pack(Signer(None), *dumps(message(PING, req=2))))  # unsigned
        raw.send_frames(pack(Signer(b"wrong"), *dumps(message(PING, req=3))))  # bad signature
        raw.send_frames([b"syftzmq/0", b"", b"x"])                        # wrong protocol version
        after = raw.stats()["rejected_by_reason"]
    finally:
        raw.close()
    gained = {k: after.get(k, 0) - before.get(k, 0) for k in after}
    assert gained == {**{k: 0 for k in after}, "replayed": 1, "unsigned": 1, "bad_signature": 1,
                      "wrong_protocol": 1}


def test_key_files_must_be_private(tmp_path):
    path = tmp_path / "k.key"
    write_key_file(path)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    os.chmod(path, 0o644)
    with pytest.raises(PermissionError, match="chmod 600"):
        read_key(path)


@pytest.mark.parametrize("endpoint, loopback", [
    ("tcp://127.0.0.1:5555", True), ("tcp://localhost:1", True), ("tcp://[::1]:5", True),
    ("ipc:///tmp/w.sock", True), ("tcp://0.0.0.0:5555", False), ("tcp://*:5555", False),
    ("tcp://10.0.0.5:5555", False), ("tcp://eth0:5555", False)])
def test_loopback_endpoints(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_public_bind_without_key_is_refused(tmp_path):
    command = [sys.executable, "-m", "syftzmq.worker", "--id", "open", "--bind", "tcp://0.0.0.0:*"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "SYFTZMQ_KEY_FILE"})
    assert result.returncode == 2
    assert "refusing to bind tcp://0.0.0.0:* without a key" in result.stderr
    assert "SYFTZMQ-READY" not in result.stdout


def test_public_bind_with_key_from_environment_serves(tmp_path, hook):
    key_file = tmp_path / "cluster.key"
    write_key_file(key_file)
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # --advertise: this test talks to loopback only (the derived address would be eth0's)
    worker = subprocess.Popen([sys.executable, "-m", "syftzmq.worker", "--id", "pub",
                               "--bind", f"tcp://0.0.0.0:{port}", "--log-level", "WARNING",
                               "--advertise", f"tcp://127.0.0.1:{port}"],
                              stdout=subprocess.PIPE, env={**os.environ, "SYFTZMQ_KEY_FILE": str(key_file)})
    try:
        line = read_lines_until(worker, "SYFTZMQ-READY", timeout=60)[-1]
        assert f'"endpoint": "tcp://127.0.0.1:{port}"' in line
        pub = sy.Worker(hook, id="pub", address=f"tcp://127.0.0.1:{port}", key_file=key_file)
        assert torch.equal((torch.ones(2).send(pub) * 2).get(), torch.full((2,), 2.0))
        with pytest.raises(sy.WorkerUnavailable):   # the wrong key is rejected (a notice)
            sy.Worker(hook, id="pub", address=f"tcp://127.0.0.1:{port}", key=b"not the key",
                      timeout=1.0)
        sy.default_session().forget(pub.ref)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:  # a deadline, not a timing: a loaded machine may take seconds to run the exit
            assert worker.wait(30) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait(10)


@pytest.fixture(scope="module")
def curve_cluster(hook, tmp_path_factory):
    """Two workers that speak CURVE and admit only the cluster's client key."""
    directory = create_curve_dir(tmp_path_factory.mktemp("curve"))
    assert oct((directory / "server.key_secret").stat().st_mode & 0o777) == "0o600"
    key_file = sy.default_session().cluster_key_file()
    processes = [spawn_worker(name, key_file=key_file, log_level="WARNING",
                              extra_args=["--curve-dir", str(directory), "--lease-seconds", "1"])
                 for name in ("curve_bob", "curve_alice")]
    try:
        yield directory, processes
    finally:
        for process in processes:
            process.popen.send_signal(signal.SIGTERM)   # the ZAP thread stops with the worker
        codes = [process.popen.wait(EXIT_DEADLINE) for process in processes]
        for process in processes:
            process.stop()
        assert codes == [0, 0]


def test_curve_workers_serve_clients_holding_the_cluster_keys(hook, curve_cluster):
    directory, (bob_p, alice_p) = curve_cluster
    key_file = sy.default_session().cluster_key_file()
    bob = sy.Worker(hook, id="curve_bob", address=bob_p.endpoint, key_file=key_file, curve_dir=directory)
    alice = sy.Worker(hook, id="curve_alice", address=alice_p.endpoint, key_file=key_file,
                      curve_dir=directory)
    x = torch.arange(4.0).send(bob).move(alice)          # worker to worker, encrypted too
    chain = torch.ones(2).send(bob).send(alice)
    # Idle for several leases: renewals (client heartbeat, alice -> bob) go over CURVE too.
    watcher = RawPeer(alice_p.endpoint, b"curve-watcher", CurveClient(directory))
    try:
        start = watcher.stats()["lease_sweeps"]
        deadline = time.monotonic() + 30
        while watcher.stats()["lease_sweeps"] < start + 12 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watcher.close()
    assert torch.equal((x * 2).get(), torch.arange(4.0) * 2)
    assert torch.equal((chain + 1).get().get(), torch.full((2,), 2.0))
    assert bob.ping()["expired_objects"] == 0 and alice.ping()["expired_objects"] == 0
    del x, chain
    assert bob._objects == {} and alice._objects == {}
    for worker in (bob, alice):
        sy.default_session().forget(worker.ref)


def test_curve_workers_refuse_strangers(hook, curve_cluster, tmp_path):
    directory, (bob_p, _) = curve_cluster
    key_file = sy.default_session().cluster_key_file()
    with pytest.raises(sy.WorkerUnavailable):            # no CURVE at all
        sy.Worker(hook, id="curve_bob", address=bob_p.endpoint, key_file=key_file, timeout=1.0)
    stranger = create_curve_dir(tmp_path / "stranger")   # a client key nobody authorized
    (stranger / "server.key").write_bytes((directory / "server.key").read_bytes())
    with pytest.raises(sy.WorkerUnavailable):
        sy.Worker(hook, id="curve_bob", address=bob_p.endpoint, key_file=key_file,
                  curve_dir=stranger, timeout=1.0)
    assert bob_p.alive()


def test_cluster_file_with_curve_and_safe_mode(tmp_path, hook):
    """One option in the cluster file: the spawn script creates the CURVE keys, the workers
    encrypt and authenticate, refuse code, and sy.cluster connects with the same file."""
    import socket

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    cluster_file = tmp_path / "cluster.toml"
    cluster_file.write_text('key_file = "cluster.key"\ncurve_dir = "curve"\nsafe = true\n'
                            'lease_seconds = 30\n' + "".join(
                                f'[workers.{name}]\nbind = "tcp://127.0.0.1:{free_port()}"\n'
                                for name in ("cbob", "calice")))
    with spawned_cluster(cluster_file, 2) as (lines, _, _script):
        assert any("created CURVE keys" in line for line in lines)
        workers = sy.cluster(cluster_file, hook)
        info = workers["cbob"].ping()
        assert info["safe"] is True and info["lease_seconds"] == 30
        x = torch.arange(3.0).send(workers["cbob"]).move(workers["calice"])
        assert torch.equal(torch.add(x, 1).get(), torch.arange(3.0) + 1)
        for worker in workers.values():
            sy.default_session().forget(worker.ref)
