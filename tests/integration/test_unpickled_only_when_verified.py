"""Nothing a worker was sent is unpickled before its signature, its protocol and its freshness
are checked (SECURITY.md, "In this order").

The attack is a pickle that acts when it is loaded: unpickling it creates a file. Sent
unsigned, signed with another key, in a frames message and as a compact one, as a replay of a
signature the worker has already seen, and with a wrong protocol name, it must be counted as
rejected for that reason while the file never appears. A test whose payload were harmless could
not tell a worker that unpickles first from one that checks first; this one can. The same
payload, correctly signed, does create the file (default mode runs what a key holder sends):
that shows the payload is live, so its absence above is the check's doing.
"""

from __future__ import annotations

import pickle

import pytest
import torch

from support.hostile import RawPeer
from support.processes import wait_until
from syftzmq.core.messages import PING
from syftzmq.wire import PROTOCOL, Signer, pack

pytestmark = pytest.mark.timeout(60)


class CreatesFile:
    """Unpickling this opens ``path`` for writing, which creates it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def header_that_creates(path: str) -> bytes:
    """A message header whose unpickling creates ``path`` (and is otherwise a ping)."""
    return pickle.dumps({"kind": PING, "req": 7, "payload": CreatesFile(path)}, protocol=5)


@pytest.fixture
def raw(bob):
    peer = RawPeer(bob.address, b"unpickle-order-peer")
    yield peer
    peer.close()


def rejected(raw: RawPeer) -> dict:
    return raw.stats()["rejected_by_reason"]


def test_a_message_that_fails_a_check_is_never_unpickled(raw, bob, tmp_path):
    before = rejected(raw)
    targets = {name: tmp_path / name for name in
               ("unsigned", "wrong_key", "wrong_key_frames", "wrong_protocol")}
    raw.send_frames(pack(Signer(None), header_that_creates(str(targets["unsigned"]))))
    raw.send_frames(pack(Signer(b"not the cluster key"),
                         header_that_creates(str(targets["wrong_key"]))))
    raw.send_frames(pack(Signer(b"not the cluster key"),
                         header_that_creates(str(targets["wrong_key_frames"])), [b"x" * 64]))
    frames = pack(raw.signer, header_that_creates(str(targets["wrong_protocol"])), [b"x" * 64])
    assert frames[0] == PROTOCOL
    raw.send_frames([b"syftzmq/0", *frames[1:]])
    after = rejected(raw)  # the ping is answered after the four were handled: none is pending
    gained = {reason: after.get(reason, 0) - before.get(reason, 0) for reason in after}
    assert gained.get("unsigned") == 1
    assert gained.get("bad_signature") == 2
    assert gained.get("wrong_protocol") == 1
    assert [name for name, path in targets.items() if path.exists()] == []
    assert torch.equal((torch.ones(2).send(bob) + 1).get(), torch.full((2,), 2.0))


def test_a_replayed_message_is_not_unpickled_again(raw, tmp_path):
    """The first copy is authentic and runs (its file appears); the file is then removed, and
    the byte-identical second copy must be refused as a replay without being loaded."""
    target = tmp_path / "replayed"
    before = rejected(raw)
    frames = pack(raw.signer, header_that_creates(str(target)))
    raw.send_frames(frames)
    wait_until(target.exists, 30, "the authentic copy to be unpickled")
    target.unlink()
    raw.send_frames(frames)
    after = rejected(raw)
    assert after.get("replayed", 0) == before.get("replayed", 0) + 1
    assert not target.exists()
