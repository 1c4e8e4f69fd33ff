"""Errors that diagnose: each misconfiguration ends in an error naming the likely cause and the
fix, within the connection deadline — most of them at once, without waiting it out."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch

import syftzmq as sy
from support.processes import read_lines_until
from syftzmq.client.launcher import spawn_worker
from syftzmq.security.curve import create_curve_dir
from syftzmq.security.keys import write_key_file
from syftzmq.worker import advertise, cli

PATIENT = 20.0  # a deadline the fast diagnoses must not wait out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def diagnosed(expected: type, match: str, **connect):
    """Connect with a long deadline; the error must come well before it, and say ``match``."""
    start = time.monotonic()
    with pytest.raises(expected, match=match) as caught:
        sy.Worker(connect.pop("hook"), timeout=connect.pop("timeout", PATIENT), **connect)
    assert time.monotonic() - start < PATIENT / 2, "the diagnosis waited out the deadline"
    return caught.value


def test_nothing_listening_is_named_within_the_deadline(hook):
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(sy.NotConnected, match="nothing is listening there") as caught:
        sy.Worker(hook, id="ghost", address=address, timeout=1.5)
    assert time.monotonic() - start < 1.5 + 2.0
    assert caught.value.worker == "ghost" and caught.value.address == address
    assert "start the worker, or check the host and port" in str(caught.value)
    assert isinstance(caught.value, sy.WorkerUnavailable)   # still what callers catch


def test_a_wrong_key_is_named_at_once(hook, bob):
    err = diagnosed(sy.NotConnected, "bad signature", hook=hook, id="bob", address=bob.address,
                    key=b"not the cluster key")
    assert "this client's key is not the worker's" in str(err) and "key_file" in str(err)


def test_no_key_where_the_worker_has_one_is_named_at_once(hook, bob):
    err = diagnosed(sy.NotConnected, "requires signed messages and this client has no key",
                    hook=hook, id="bob", address=bob.address)
    assert "--key-file" in str(err)


def test_a_key_where_the_worker_has_none_is_named_at_once(hook):
    process = spawn_worker("keyless", log_level="WARNING")     # loopback, no key
    try:
        diagnosed(sy.NotConnected, "runs without a key and this client signs", hook=hook,
                  id="keyless", address=process.endpoint, key=b"some key")
    finally:
        process.stop()


@pytest.fixture(scope="module")
def curve_worker(hook, tmp_path_factory):
    directory = create_curve_dir(tmp_path_factory.mktemp("curve"))
    process = spawn_worker("cbob", key_file=sy.default_session().cluster_key_file(),
                           log_level="WARNING", extra_args=["--curve-dir", str(directory)])
    try:
        yield directory, process
    finally:
        process.stop()


def test_a_client_without_curve_against_a_curve_worker(hook, curve_worker):
    _, process = curve_worker
    err = diagnosed(sy.NotConnected, "uses CURVE encryption and this client does not", hook=hook,
                    id="cbob", address=process.endpoint,
                    key_file=sy.default_session().cluster_key_file())
    assert "curve_dir" in str(err)


def test_an_unauthorized_client_key(hook, curve_worker, tmp_path):
    directory, process = curve_worker
    stranger = create_curve_dir(tmp_path / "stranger")      # a client key nobody authorized
    (stranger / "server.key").write_bytes((directory / "server.key").read_bytes())
    err = diagnosed(sy.NotConnected, "refused this client's CURVE key", hook=hook, id="cbob",
                    address=process.endpoint, key_file=sy.default_session().cluster_key_file(),
                    curve_dir=stranger)
    assert "authorized/" in str(err)


def test_another_clusters_server_key(hook, curve_worker, tmp_path):
    _, process = curve_worker
    other = create_curve_dir(tmp_path / "other")             # its own server key
    diagnosed(sy.NotConnected, "server key this client holds .* is not this worker's", hook=hook,
              id="cbob", address=process.endpoint,
              key_file=sy.default_session().cluster_key_file(), curve_dir=other)


def test_a_curve_client_against_a_plain_worker(hook, bob, curve_worker):
    directory, _ = curve_worker
    diagnosed(sy.NotConnected, "this client uses CURVE encryption and the worker does not|if "
                               "the worker does not use CURVE, drop curve_dir",
              hook=hook, id="bob", address=bob.address,
              key_file=sy.default_session().cluster_key_file(), curve_dir=directory)


@pytest.mark.parametrize("address", ["127.0.0.1:5555", "tcp://", "tcp://nohost",
                                     "tcp://127.0.0.1:port", "http://127.0.0.1:5555"])
def test_a_malformed_address_is_named_at_once(hook, address):
    with pytest.raises(ValueError, match="is not (a worker address|an address ZeroMQ can "
                                         "connect to).*tcp://10.0.0.5:5555") as caught:
        sy.Worker(hook, id="x", address=address)
    assert repr(address) in str(caught.value)


def test_a_worker_id_that_does_not_match(hook, bob):
    with pytest.raises(sy.WorkerIdMismatch, match="is 'bob', not 'alice': pass id='bob'"):
        sy.Worker(hook, id="alice", address=bob.address,
                  key_file=sy.default_session().cluster_key_file())


def test_a_frozen_worker_is_not_mistaken_for_a_misconfiguration(hook):
    process = spawn_worker("icy", key_file=sy.default_session().cluster_key_file(),
                           log_level="WARNING")
    os.kill(process.pid, signal.SIGSTOP)
    try:
        with pytest.raises(sy.NotConnected, match="within 1.5 s.*frozen"):
            sy.Worker(hook, id="icy", address=process.endpoint, timeout=1.5,
                      key_file=sy.default_session().cluster_key_file())
    finally:
        os.kill(process.pid, signal.SIGCONT)
        process.stop()


def test_a_wildcard_bind_advertises_this_hosts_address(tmp_path):
    """Never 0.0.0.0: the ready line (what launchers and clients use) names a routable
    address. (Nothing connects to it here: tests talk to loopback only.)"""
    key_file = tmp_path / "k.key"
    write_key_file(key_file)
    port = _free_port()
    worker = subprocess.Popen([sys.executable, "-m", "syftzmq.worker", "--id", "wild",
                               "--bind", f"tcp://0.0.0.0:{port}", "--key-file", str(key_file),
                               "--log-level", "WARNING"], stdout=subprocess.PIPE)
    try:
        line = read_lines_until(worker, "SYFTZMQ-READY", timeout=60)[-1]
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(10) == 0
    primary = advertise.primary_address()
    assert primary is not None and not primary.startswith("127.")
    assert f'"endpoint": "tcp://{primary}:{port}"' in line and "0.0.0.0" not in line


def test_a_wildcard_bind_without_a_routable_address_refuses_to_start(monkeypatch, capsys, tmp_path):
    key_file = tmp_path / "k.key"
    write_key_file(key_file)
    monkeypatch.setattr(cli, "primary_address", lambda: None)
    code = cli.main(["--id", "wild", "--bind", "tcp://0.0.0.0:5999", "--key-file", str(key_file)])
    assert code == 2
    assert "pass --advertise tcp://HOST:PORT" in capsys.readouterr().err
    with pytest.raises(ValueError, match="pass --advertise tcp://HOST:5999"):
        monkeypatch.setattr(advertise, "primary_address", lambda: None)
        advertise.advertised_address("tcp://0.0.0.0:5999", None)
    assert advertise.advertised_address("tcp://0.0.0.0:5999", "tcp://h:1") == "tcp://h:1"
    assert advertise.advertised_address("tcp://127.0.0.1:5", None) == "tcp://127.0.0.1:5"


def test_the_session_still_works_after_every_misconfiguration(bob):
    assert torch.equal((torch.ones(2).send(bob) + 1).get(), torch.full((2,), 2.0))
