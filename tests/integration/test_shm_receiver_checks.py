"""The shared-memory receiver's checks (SECURITY.md, "Shared-memory transfers"), attacked
through a real worker's receive path.

The segment's bytes are not covered by the HMAC; what keeps them safe is what the receiver
checks before it maps a named segment (``syftzmq.wire.shm._open``): opened with
``O_NOFOLLOW``, a regular file, owned by the receiver's uid, no group or other permission bits,
exactly the announced size — and none of it happens before the signature is verified ("the
receiver never opens them"). Each test below plants what one check is there to refuse, sends
the worker a signed message naming it (as a key holder of the same user could), and checks
that the worker refuses it at the envelope with a notice naming the problem, stores nothing,
leaves alone what it did not take (a symlink's target, a tampered message's segment), does not
block, and still serves: an object stored before survives, and a normal large round trip
through shared memory works after. Each would fail if its check were removed (a refused
message would be answered, or the worker would block or die on a SIGBUS).

The worker is this module's own: what these messages do to a worker should not reach the
suite's shared ones.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import pickle
import secrets
import stat
import subprocess
import sys
import time

import pytest
import torch

from support.hostile import RawPeer
from support.workers import started_workers
from syftzmq.core.ids import new_id
from syftzmq.core.messages import PING, STORE, message
from syftzmq.wire import dumps, pack, shm, unpack
from syftzmq.wire.envelope import PROTOCOL_SHM
from syftzmq.wire.notice import decode_notice

pytestmark = [pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host"),
              pytest.mark.timeout(60)]

MiB = 1 << 20
# Above the threshold (a segment, not a frame), below shm_spares.MIN: one plain named segment,
# no spares and no kept (``fd-``) segments, whatever the session keeps.
SIZE = 2 * MiB
ORIGIN = "shm-attacker#0001"
# How long the worker may take to answer: a hang deadline, not a speed claim. A receiver that
# blocked on what it opened (a FIFO opened for reading only) never answers.
ANSWER_SECONDS = 15.0
NOBODY = 65534


@pytest.fixture(scope="module")
def target(hook):
    with started_workers(hook, "shm-receiver") as (worker,):
        yield worker


@pytest.fixture
def raw(target):
    """A key holder speaking the wire directly, with a routing identity of its own per test
    (a notice meant for one test's peer cannot reach the next)."""
    peer = RawPeer(target.address, f"shm-checks-{secrets.token_hex(4)}".encode())
    yield peer
    peer.close()


@pytest.fixture
def planted():
    """Paths a test creates in /dev/shm (and segment names it exported), all removed after,
    whatever happened. A FIFO is opened for writing first: a receiver blocked opening it for
    reading would be released."""
    paths: list[str] = []
    yield paths
    for path in paths:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
            os.close(fd)
        except OSError:
            pass
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        shm.discard(os.path.basename(path))  # forgotten by this process's own clean-up too


def _segment_name() -> str:
    """A name the receiver accepts as a segment's (``syftzmq-<pid>-<128 random bits>``)."""
    return f"{shm.PREFIX}{os.getpid()}-{secrets.token_hex(16)}"


def _path(name: str) -> str:
    return os.path.join(shm.DIRECTORY, name)


def _signed_store(raw: RawPeer, planted: list[str]) -> tuple[list, str, int]:
    """A signed ``STORE`` of a :data:`SIZE`-byte tensor, packed for shared memory as any
    client would; returns its frames, the one segment it names, and its ``req``."""
    msg = message(STORE, req=new_id(), origin=ORIGIN, id=new_id(), obj=torch.ones(SIZE // 4))
    frames = pack(raw.signer, *dumps(msg), shared_memory=True)
    assert frames[0] == PROTOCOL_SHM
    [[[name, size]]] = json.loads(frames[3])
    assert size == SIZE and os.path.isfile(_path(name)), "not one plain named segment"
    planted.append(_path(name))
    return frames, name, msg["req"]


def _signed_ping_naming(raw: RawPeer, parts: list) -> tuple[list, int]:
    """A signed ``PING`` whose manifest names ``parts`` (``[name, size]``) as its one buffer:
    hand-made, for what no sender writes. Accepted, it would be answered (an extra buffer is
    harmless to a ``PING``)."""
    msg = message(PING, req=new_id())
    header, buffers = dumps(msg)
    assert buffers == []
    body = [header, json.dumps([parts]).encode()]
    return [PROTOCOL_SHM, raw.signer.sign(PROTOCOL_SHM, body), *body], msg["req"]


def _refused(raw: RawPeer, frames: list, req: int, *expected: str) -> str:
    """Send ``frames`` and return the detail of the rejection notice the worker answers with,
    checking that it names each of ``expected``. Fails if the worker answers the message
    instead (it got past the envelope) or says nothing before the deadline (it blocked, or
    died)."""
    raw.send_frames(frames)
    deadline = time.monotonic() + ANSWER_SECONDS
    while (left := deadline - time.monotonic()) > 0:
        if not raw.sock.poll(left * 1000):
            break
        answer = raw.sock.recv_multipart()
        notice = decode_notice(answer)
        if notice is not None:
            for text in expected:
                assert text in notice["detail"], f"{text!r} not in the refusal: {notice}"
            return notice["detail"]
        if answer == [b""]:  # a worker's are-you-there (see the worker's housekeeping)
            continue
        header, buffers = unpack(raw.signer, answer)
        reply = pickle.loads(header, buffers=buffers)
        pytest.fail(f"the worker accepted the message instead of refusing it: {reply!r:.300}"
                    f" (req {req})")
    pytest.fail(f"no answer within {ANSWER_SECONDS} s: the receiver blocked on what it "
                f"opened, or died")


def _fingerprint(path: str) -> tuple:
    """What shows whether a file was touched: the same inode, metadata and bytes."""
    info = os.stat(path, follow_symlinks=False)
    with open(path, "rb") as file:
        digest = hashlib.sha256(file.read()).hexdigest()
    return info.st_ino, info.st_size, info.st_mode, info.st_uid, info.st_nlink, digest


class Serves:
    """Around an attack: an object stored before must survive it, nothing may be stored by
    it, and the worker must still serve afterwards — a small get, and a large round trip
    through shared memory (the path under attack) — leaving no segment behind."""

    def __init__(self, target, raw: RawPeer) -> None:
        self.target, self.raw = target, raw

    def __enter__(self) -> "Serves":
        self.value = torch.arange(1000.0)
        self.kept = self.value.send(self.target)
        self.target.ping()  # answered after the store (one connection, in order): it is in
        self.objects = self.raw.stats()["objects"]
        return self

    def __exit__(self, kind, exc, tb) -> None:
        if kind is not None:
            return
        assert self.raw.stats()["objects"] == self.objects, "the refused message stored something"
        assert torch.equal(self.kept.get(), self.value)
        large = torch.randn(SIZE // 4)
        assert torch.equal(large.send(self.target).get(), large)
        assert shm.segments_of([os.getpid(), self.target.process.pid]) == []


def test_a_symlink_in_place_of_a_segment_is_refused_and_its_target_untouched(target, raw,
                                                                              planted):
    """O_NOFOLLOW: a symlink named like the segment, pointing at a file that passes every other
    check (the very bytes sent, 0600, ours, the announced size), is not followed. Followed, the
    worker would map a file someone can still open by its other name and write under the
    tensor; the refusal must also leave the target alone (the link is what gets unlinked)."""
    frames, name, req = _signed_store(raw, planted)
    aside = _path(f"syftzmq-test-aside-{secrets.token_hex(8)}")
    planted.append(aside)
    os.rename(_path(name), aside)
    os.symlink(aside, _path(name))
    before = _fingerprint(aside)
    with Serves(target, raw):
        _refused(raw, frames, req, name, "cannot be opened", "symbolic links")
        assert _fingerprint(aside) == before


@pytest.mark.parametrize("announced", [0, SIZE], ids=["announced-empty", "announced-2MiB"])
def test_a_fifo_named_like_a_segment_is_refused_without_blocking(target, raw, planted,
                                                                 announced):
    """Only regular files: a FIFO has no pages to map. Announced empty (a FIFO's size), only
    the regular-file check refuses it; either way the receiver must not block opening it (a
    FIFO opened for reading waits for a writer: the worker's loop would hang), hence the
    deadline in :func:`_refused`."""
    name = _segment_name()
    planted.append(_path(name))
    os.mkfifo(_path(name), 0o600)
    frames, req = _signed_ping_naming(raw, [[name, announced]])
    with Serves(target, raw):
        _refused(raw, frames, req, name, "not a private file", f"with {announced} bytes")


@pytest.mark.parametrize("change", [-mmap.PAGESIZE, +1], ids=["shrunk-a-page", "grown-a-byte"])
def test_a_segment_of_another_size_than_announced_is_refused(target, raw, planted, change):
    """Exactly the announced size (the signed manifest's): a shorter file mapped at the
    announced size would SIGBUS the worker where its pages end; a longer one is not what was
    signed. (One page longer is the unclaimed-segment convention, accepted by design: see
    shm_spares; a byte longer is not that.)"""
    frames, name, req = _signed_store(raw, planted)
    os.truncate(_path(name), SIZE + change)
    with Serves(target, raw):
        _refused(raw, frames, req, name, "not a private file", f"with {SIZE} bytes")


@pytest.mark.skipif(os.geteuid() != 0, reason="making a file another user's needs root (CI "
                    "runs as root): chown to uid 65534")
def test_a_segment_owned_by_another_uid_is_refused(target, raw, planted):
    """Owned by the receiver's own uid: a file another user owns is one they could rewrite or
    swap under the tensor. The worker runs as root here, so opening it succeeds (no
    permission check stops root): only the uid check refuses it."""
    frames, name, req = _signed_store(raw, planted)
    os.chown(_path(name), NOBODY, NOBODY)
    with Serves(target, raw):
        _refused(raw, frames, req, name, "not a private file")


# The receive path (``unpack``) in a process that drops to another uid once syftzmq is imported
# (the interpreter lives where only root may run it from).
_RECEIVE_AS_NOBODY = f"""
import json, os, sys
from syftzmq.wire import Signer, unpack
from syftzmq.wire.envelope import PROTOCOL_SHM
os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
name, size = sys.argv[1], int(sys.argv[2])
signer = Signer(b"k" * 32)
body = [b"h", json.dumps([[[name, size]]]).encode()]
try:
    unpack(signer, [PROTOCOL_SHM, signer.sign(PROTOCOL_SHM, body), *body])
    print(json.dumps(["accepted", ""]))
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="running a receiver as uid 65534 needs root (CI "
                    "runs as root)")
def test_a_receiver_that_is_not_root_refuses_another_users_segment_clearly(planted):
    """The same check where it matters most, in a receiver that is not root: another user's
    segment it can open (mode 0666 — refused for the mode too, but the uid is what the
    check names) yet, /dev/shm being sticky, cannot unlink. It must be refused with the
    ProtocolError that names it (a worker turns that into a notice; any other error is an
    "unexpected error" that answers nobody), and the file is left to its owner."""
    if not os.stat(shm.DIRECTORY).st_mode & stat.S_ISVTX:
        pytest.skip(f"{shm.DIRECTORY} is not sticky: uid 65534 may unlink a file there")
    name = _segment_name()
    planted.append(_path(name))
    fd = os.open(_path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.ftruncate(fd, SIZE)
        os.fchmod(fd, 0o666)
    finally:
        os.close(fd)
    done = subprocess.run([sys.executable, "-c", _RECEIVE_AS_NOBODY, name, str(SIZE)],
                          capture_output=True, text=True, timeout=30,
                          env={**os.environ, "SYFTZMQ_SHM_DIR": shm.DIRECTORY})
    assert done.returncode == 0, done.stderr[-2000:]
    kind, text = json.loads(done.stdout.strip().splitlines()[-1])
    assert kind == "ProtocolError" and "not a private file" in text and name in text, \
        f"the receiver did not refuse it clearly: {kind}: {text}"
    assert os.path.exists(_path(name))  # another user's: not the receiver's to remove


@pytest.mark.parametrize("mode", [0o640, 0o604], ids=["group-readable", "others-readable"])
def test_a_segment_with_group_or_other_permission_bits_is_refused(target, raw, planted, mode):
    """No group or other permission bits, not only no write bits: readable by others, the
    file could have been opened by them before the receiver unlinked it."""
    frames, name, req = _signed_store(raw, planted)
    os.chmod(_path(name), mode)
    with Serves(target, raw):
        _refused(raw, frames, req, name, "not a private file")


@pytest.mark.parametrize("tamper", ["header", "manifest-size"])
def test_a_tampered_message_is_rejected_and_its_segment_never_opened(target, raw, planted,
                                                                     tamper):
    """Verified before any segment is opened ("the receiver never opens them"): the tampered
    message still names the sender's real segment, so a receiver that opened it before
    checking the signature would unlink it (it unlinks on open). It must still be there,
    unchanged, for the sender's own clean-up."""
    frames, name, req = _signed_store(raw, planted)
    if tamper == "header":
        header = bytearray(frames[2])
        header[-2] ^= 0x01
        frames[2] = bytes(header)
    else:
        frames[3] = json.dumps([[[name, SIZE + mmap.PAGESIZE]]]).encode()
    before = _fingerprint(_path(name))
    with Serves(target, raw):
        _refused(raw, frames, req, "bad signature")
        assert _fingerprint(_path(name)) == before, "the receiver touched the segment"
        shm.discard(name)  # the sender's clean-up (at exit, or after MAX_AGE)
