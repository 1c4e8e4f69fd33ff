"""SECURITY.md's claims about the liveness endpoint, attacked at a real worker process's socket.

The claims ("The liveness endpoint"): only probes signed with the cluster key, each signature
seen once, get an answer; anything unsigned, wrongly signed, malformed or over 4 KiB is dropped
unanswered; nothing that reaches the socket is unpickled. The existing tests cover a wrong key
and a stale incarnation with well-formed probes; these send what a hostile key holder, or a
captured probe, would: the *signature is valid* in every case below except the replay, so each
test fails if the check after the signature (the replay window, the size limit, the JSON and
shape checks, JSON instead of pickle) were removed.

"No answer" is proven by order, not by waiting: the liveness thread reads one connection's
messages in order and answers in order, so hostile messages followed by a fresh, valid
*sentinel* probe on the same socket must yield exactly one answer, the sentinel's. Only where
the connection itself is dropped (a frame over libzmq's MAXMSGSIZE) is silence a bounded poll.
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path

import pytest
import torch
import zmq

import syftzmq as sy
from syftzmq.core.ids import new_id
from syftzmq.core.refs import routing_identity
from syftzmq.errors import ProtocolError
from syftzmq.security.keys import read_key
from syftzmq.wire.envelope import PROTOCOL, PROTOCOL_COMPACT, Signer, pack
from syftzmq.wire.liveness import ALIVE, MAX_PROBE_BYTES, decode, encode, probe_message

pytestmark = [pytest.mark.timeout(120), pytest.mark.xdist_group("liveness_hostile")]

ANSWER_DEADLINE = 20.0  # a hang deadline for an answer that is owed (a loaded machine), not a speed claim
SILENCE_MS = 1000  # how long a dropped connection's socket is watched for an answer it must not get


@pytest.fixture(scope="module")
def target(hook):
    """A worker of this module's own: the hostile traffic must not disturb the shared pool,
    and a liveness thread these tests kill must not make a shared worker look dead."""
    worker = sy.VirtualWorker(hook, id="liveness_hostile")
    try:
        yield worker
    finally:
        try:
            worker.shutdown(timeout=5.0)
        finally:
            sy.default_session().forget(worker.ref)
            if worker.process.alive():
                worker.process.stop(timeout=0.5)


@pytest.fixture(scope="module")
def key():
    return read_key(sy.default_session().cluster_key_file())


class Prober:
    """A raw DEALER of the test's own at the worker's liveness endpoint (linger 0)."""

    def __init__(self, worker, key: bytes) -> None:
        self.incarnation = worker.ref.incarnation
        self.key = key
        self.signer = Signer(key)  # signs; its replay window is never used to read answers
        self.sock = zmq.Context.instance().socket(zmq.DEALER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.IDENTITY, routing_identity("hostile-test"))
        self.sock.connect(worker.ref.liveness)

    def close(self) -> None:
        self.sock.close(linger=0)

    def probe(self, **extra) -> tuple[int, list]:
        """A fresh, valid probe (its req, its frames), with ``extra`` fields in the body."""
        req = new_id()
        return req, encode(self.signer, {**probe_message(req, self.incarnation), **extra})

    def signed(self, body: bytes) -> list:
        """``body`` in a correctly signed one-frame envelope, whatever it is."""
        return pack(self.signer, body)

    def send(self, frames: list) -> None:
        self.sock.send_multipart(frames)

    def answers_until(self, req: int, timeout: float = ANSWER_DEADLINE) -> list[dict]:
        """Every answer received up to and including the one to ``req`` (fails at the
        deadline). Each is checked with a fresh Signer: two identical answers (same counters)
        are legitimately byte-identical, and must not be taken for a replay here."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.sock.poll(50):
                continue
            body = decode(Signer(self.key), self.sock.recv_multipart())
            got.append(body)
            if body.get("req") == req:
                return got
        raise AssertionError(f"no liveness answer to probe {req} within {timeout} s "
                             f"(received {got!r}): the liveness thread is dead or stuck")

    def only_sentinel_answered(self) -> dict:
        """Send a fresh valid probe; what came before it on this socket was answered iff an
        answer precedes the sentinel's. Returns the sentinel's answer."""
        req, frames = self.probe()
        self.send(frames)
        got = self.answers_until(req)
        assert [a.get("req") for a in got] == [req], f"hostile messages were answered: {got!r}"
        assert got[-1]["value"]["incarnation"] == self.incarnation
        return got[-1]

    def silent(self, timeout_ms: int = SILENCE_MS) -> bool:
        return not self.sock.poll(timeout_ms)


@pytest.fixture
def prober(target, key):
    probers: list[Prober] = []

    def make() -> Prober:
        probers.append(Prober(target, key))
        return probers[-1]

    yield make
    for p in probers:
        p.close()


def sized_probe(p: Prober, nbytes: int) -> tuple[int, list]:
    """A valid probe whose one frame is exactly ``nbytes`` long (padded in the body)."""
    req = new_id()
    body = {**probe_message(req, p.incarnation), "pad": ""}
    short = len(encode(p.signer, body)[0])
    body["pad"] = "x" * (nbytes - short)
    frames = encode(p.signer, body)
    assert len(frames) == 1 and len(frames[0]) == nbytes
    return req, frames


class CreatesFile:
    """A pickle whose unpickling creates ``path`` (``open(path, "w")``): proof by side effect
    that a receiver unpickled it. No shell, nothing else happens."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def armed_pickle(path: Path) -> bytes:
    """The payload for ``path``, shown to be live: unpickling it here creates a control file."""
    control = path.with_name(path.name + ".control")
    pickle.loads(pickle.dumps(CreatesFile(str(control)))).close()
    assert control.exists(), "the payload would not betray an unpickling"
    control.unlink()
    return pickle.dumps(CreatesFile(str(path)))


def hostile_battery(p: Prober, tmp_path: Path) -> tuple[int, list[list]]:
    """One of each hostile kind (all but the replay correctly signed), for the final check.
    The captured probe is sent here once (its answer is the caller's ``req`` to wait for), so
    what the list holds of it is a replay."""
    req, captured = p.probe()
    p.send(captured)
    _, oversized = sized_probe(p, MAX_PROBE_BYTES + 1)
    return req, [list(captured),
            p.signed(b"not json"), p.signed(b"[1, 2]"), p.signed(b'{"req": 1}'),
            p.signed(b"[" * 2000 + b"]" * 2000),
            p.signed(armed_pickle(tmp_path / "battery-pwned")),
            [PROTOCOL_COMPACT + b"\x00" + json.dumps({"kind": ALIVE}).encode()],
            oversized]


# ---------------------------------------------------------------------------------------------


def test_a_replayed_probe_gets_no_second_answer_but_a_fresh_one_does(target, prober):
    """A captured probe's frames, sent again byte for byte, pass the signature check: only the
    replay window refuses them. From the same connection and from another one (an attacker
    replays from a socket of their own): the window is the endpoint's, not the connection's."""
    p, other = prober(), prober()
    req, captured = p.probe()
    p.send(captured)
    assert [a["req"] for a in p.answers_until(req)] == [req]      # the original is answered
    p.send(list(captured))                                         # byte-identical frames
    p.only_sentinel_answered()
    other.send(list(captured))
    other.only_sentinel_answered()
    assert p.silent(100) and other.silent(100)                     # nothing answered late


def test_a_signed_probe_over_4_kib_gets_no_answer_and_one_of_4_kib_does(target, prober):
    """The limit is where SECURITY.md puts it: a probe of exactly MAX_PROBE_BYTES is answered,
    one byte more is dropped (libzmq's MAXMSGSIZE cuts that connection, so its silence is a
    bounded poll), and a message whose frames are each under the limit but together over it
    (the envelope's own limit, behind MAXMSGSIZE) is dropped too."""
    at_limit = prober()
    req, frames = sized_probe(at_limit, MAX_PROBE_BYTES)
    at_limit.send(frames)
    assert at_limit.answers_until(req)[-1]["value"]["incarnation"] == target.ref.incarnation

    for nbytes in (MAX_PROBE_BYTES + 1, 64 * 1024):
        over = prober()
        _, frames = sized_probe(over, nbytes)
        over.send(frames)
        assert over.silent(), f"a signed probe of {nbytes} bytes was answered"

    split = prober()                       # [PROTOCOL, sig, probe, 3000 B, 3000 B]: > 4 KiB
    req = new_id()
    header = json.dumps(probe_message(req, split.incarnation)).encode()
    body = [header, b"\0" * 3000, b"\0" * 3000]
    split.send([PROTOCOL, split.signer.sign(PROTOCOL, body), *body])
    split.only_sentinel_answered()
    prober().only_sentinel_answered()      # the endpoint lives on after the cut connections


def test_signed_bodies_that_are_not_a_json_probe_get_no_answer(target, prober):
    """Correctly signed, so only the shape checks stand between these and the code that reads
    a probe: not JSON, JSON but not an object, an object without a string "kind", a probe
    without an integer "req" — and JSON nested beyond the parser's recursion limit, which
    makes ``json.loads`` raise RecursionError (not ValueError). None is answered, and the
    sentinel's answer shows the liveness thread survived every one of them."""
    p = prober()
    inc = p.incarnation
    enc = inc.encode()
    not_messages = [b"not json", b"\xff\xfe\x00", b"", b"{", b"[1, 2]", b'"alive?"', b"42",
                    b"null", b"{}", b'{"req": 1, "to": "%s"}' % enc,
                    b'{"kind": 5, "req": 1, "to": "%s"}' % enc,
                    b"[" * 2000 + b"]" * 2000,
                    b'{"kind": "alive?", "req": 1, "to": "%s", "x": ' % enc
                    + b"[" * 1900 + b"]" * 1900 + b"}"]
    not_probes = [b'{"kind": "reply", "req": 1, "to": "%s"}' % enc,
                  b'{"kind": "alive?", "to": "%s"}' % enc,
                  b'{"kind": "alive?", "req": "1", "to": "%s"}' % enc,
                  b'{"kind": "alive?", "req": true, "to": "%s"}' % enc,
                  b'{"kind": "alive?", "req": 1.0, "to": "%s"}' % enc]
    for body in not_messages + not_probes:
        frames = p.signed(body)
        assert len(frames[0]) <= MAX_PROBE_BYTES   # dropped for its shape, not its size
        if body in not_messages:                   # the decoder's refusal, not a crash
            with pytest.raises(ProtocolError):
                decode(Signer(p.key), frames)
        p.send(frames)
    # malformed envelopes: unsigned, truncated signature, unknown protocol, too few frames
    p.send([PROTOCOL_COMPACT + b"\x00" + json.dumps(probe_message(1, inc)).encode()])
    p.send([PROTOCOL_COMPACT + b"\x20" + b"short"])
    p.send([b"syftzmq/5c" + encode(p.signer, probe_message(2, inc))[0][len(PROTOCOL_COMPACT):]])
    p.send([PROTOCOL, b"x"])
    p.send([b""])
    p.only_sentinel_answered()


def test_a_signed_pickle_is_never_unpickled(target, prober, tmp_path):
    """A key holder's pickle that would create a file if unpickled, as a compact body, as the
    header of a frames message, and as a buffer behind a valid probe: the first two are not
    answered, and the file exists after none of them. (The third may be answered: its header
    is a valid probe; the claim is only that its buffer is never unpickled.) The sentinel's
    answer comes after the liveness thread has handled them all, so the file's absence is
    checked once they were handled."""
    target_file = tmp_path / "pwned"
    payload = armed_pickle(target_file)
    p = prober()
    p.send(p.signed(payload))
    p.send([PROTOCOL, p.signer.sign(PROTOCOL, [payload]), payload])
    p.only_sentinel_answered()
    assert not target_file.exists(), "the liveness endpoint unpickled a probe"

    req = new_id()
    header = json.dumps(probe_message(req, p.incarnation)).encode()
    p.send([PROTOCOL, p.signer.sign(PROTOCOL, [header, payload]), header, payload])
    sentinel, frames = p.probe()
    p.send(frames)
    assert {a["req"] for a in p.answers_until(sentinel)} <= {req, sentinel}
    assert not target_file.exists(), "the liveness endpoint unpickled a probe's buffer"


def test_after_hostile_probes_the_endpoint_answers_and_the_worker_serves(target, prober,
                                                                         tmp_path):
    """The whole battery at once, then what a client relies on: the liveness thread still
    answers a valid probe (it did not die of an exception on the way) and the main loop still
    serves an op (the liveness thread never touched it). The worker does not report its
    liveness rejections (neither PING's stats nor the liveness answer carry them), so no
    counter is checked here."""
    p = prober()
    req, frames = hostile_battery(p, tmp_path)
    assert [a["req"] for a in p.answers_until(req)] == [req]   # the capture's original
    for message in frames[:-1]:
        p.send(message)
    p.only_sentinel_answered()
    p.send(frames[-1])                     # the oversized one last: it cuts this connection
    assert p.silent()
    assert not (tmp_path / "battery-pwned").exists()
    fresh = prober()
    answer = fresh.only_sentinel_answered()
    assert answer["value"]["incarnation"] == target.ref.incarnation
    assert torch.equal((torch.ones(2).send(target) + 1).get(), torch.full((2,), 2.0))
