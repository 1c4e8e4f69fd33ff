"""The envelope's signature and replay window, and its two layouts (one compact frame, or
protocol + signature + header + buffers), without sockets."""

from __future__ import annotations

import pytest
import zmq

from syftzmq.errors import ProtocolError
from syftzmq.wire.envelope import PROTOCOL, PROTOCOL_COMPACT, Signer, pack, unpack

KEY = b"k" * 32


def test_a_signed_message_is_accepted_once():
    sender, receiver = Signer(KEY), Signer(KEY)
    frames = pack(sender, b"header")
    assert unpack(receiver, frames) == (b"header", [])
    with pytest.raises(ProtocolError, match="replayed"):
        unpack(receiver, frames)
    assert unpack(Signer(KEY), frames)[0] == b"header"   # another receiver has its own window


def test_two_identical_messages_are_both_replays_of_one_signature():
    """The signature depends only on the bytes: a sender must make each message unique (the
    ``nonce`` of :func:`syftzmq.core.messages.message`), or its second copy is refused."""
    receiver = Signer(KEY)
    unpack(receiver, pack(Signer(KEY), b"same"))
    with pytest.raises(ProtocolError, match="replayed"):
        unpack(receiver, pack(Signer(KEY), b"same"))


def test_a_compact_message_resent_as_three_frames_is_refused():
    """The signature covers the protocol frame and the frame layout, so re-framing a captured
    message breaks it (before that was signed, only the replay window caught this)."""
    receiver = Signer(KEY)
    (compact,) = pack(Signer(KEY), b"header")
    signature = compact[len(PROTOCOL_COMPACT) + 1:len(PROTOCOL_COMPACT) + 33]
    assert unpack(receiver, [compact])[0] == b"header"
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(receiver, [PROTOCOL, signature, b"header"])


def test_the_replay_window_is_bounded_and_forgets_the_oldest_first():
    sender, receiver = Signer(KEY), Signer(KEY, replay_window=2)
    first, second, third = (pack(sender, b"m%d" % n) for n in range(3))
    for frames in (first, second, third):
        unpack(receiver, frames)
    assert len(receiver._recent) == 2
    for remembered in (second, third):
        with pytest.raises(ProtocolError, match="replayed"):
            unpack(receiver, remembered)
    assert unpack(receiver, first)[0] == b"m0"      # forgotten: the window only holds two
    with pytest.raises(ProtocolError, match="replayed"):
        unpack(receiver, first)                     # ... and now it is remembered again


def test_a_refused_message_does_not_enter_the_replay_window():
    receiver = Signer(KEY)
    frames = pack(Signer(KEY), b"header", [b"x" * 10])
    bad = [frames[0], frames[1], b"other", frames[3]]
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(receiver, bad)
    assert len(receiver._recent) == 0
    assert unpack(receiver, frames)[0] == b"header"


def test_unsigned_and_signed_ends_refuse_each_other():
    unsigned = pack(Signer(None), b"header")
    signed = pack(Signer(KEY), b"header")
    with pytest.raises(ProtocolError, match="requires signatures"):
        unpack(Signer(KEY), unsigned)
    with pytest.raises(ProtocolError, match="has no key"):
        unpack(Signer(None), signed)
    with pytest.raises(ProtocolError, match="has no key"):
        unpack(Signer(None), pack(Signer(KEY), b"h", [b"buffer"]))


def test_an_unsigned_cluster_carries_empty_signatures_and_has_no_replay_check():
    signer = Signer(b"")                         # an empty key is no key
    assert signer.key is None and signer.sign(PROTOCOL, [b"anything"]) == b""
    frames = pack(signer, b"header", [b"buffer"])
    assert frames[1] == b""
    assert unpack(signer, frames)[0] == b"header"
    assert unpack(signer, frames)[0] == b"header"


def test_a_key_of_another_cluster_is_refused():
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(b"j" * 32), pack(Signer(KEY), b"header"))


def test_compact_round_trip():
    frames = pack(Signer(KEY), b"\x00header\xff")
    assert len(frames) == 1 and frames[0].startswith(PROTOCOL_COMPACT)
    assert frames[0][len(PROTOCOL_COMPACT)] == 32          # an HMAC-SHA256 follows
    assert unpack(Signer(KEY), frames) == (b"\x00header\xff", [])
    (unsigned,) = pack(Signer(None), b"h")
    assert unsigned == PROTOCOL_COMPACT + b"\x00h"
    assert unpack(Signer(None), [unsigned]) == (b"h", [])


def test_multi_frame_round_trip_keeps_each_buffer_apart():
    buffers = [b"first", memoryview(bytearray(b"second buffer")), b""]
    frames = pack(Signer(KEY), b"header", buffers)
    assert frames[0] == PROTOCOL and len(frames) == 2 + 1 + len(buffers)
    header, received = unpack(Signer(KEY), frames)
    assert header == b"header"
    assert [bytes(view) for view in received] == [b"first", b"second buffer", b""]
    assert all(isinstance(view, memoryview) for view in received)


def test_zmq_frames_are_read_in_place():
    frames = [zmq.Frame(f) for f in pack(Signer(KEY), b"header", [b"payload"])]
    header, (buffer,) = unpack(Signer(KEY), frames)
    assert header == b"header" and bytes(buffer) == b"payload"
    (compact,) = pack(Signer(KEY), b"alone")
    assert unpack(Signer(KEY), [zmq.Frame(compact)]) == (b"alone", [])


def _flip_last_byte(frame: bytes) -> bytes:
    return frame[:-1] + bytes([frame[-1] ^ 1])


@pytest.mark.parametrize("tamper", [
    lambda f: [f[0], f[1], _flip_last_byte(f[2]), *f[3:]],       # the header
    lambda f: [*f[:3], _flip_last_byte(f[3]), f[4]],             # a buffer
    lambda f: [*f[:3], f[4], f[3]],                              # buffers swapped
    lambda f: f[:4],                                             # a buffer dropped
    lambda f: [*f, b"extra"],                                    # a buffer added
    lambda f: [f[0], _flip_last_byte(f[1]), *f[2:]],             # the signature
], ids=["header", "buffer", "swapped", "dropped", "added", "signature"])
def test_tampered_frames_are_refused(tamper):
    frames = [bytes(f) for f in pack(Signer(KEY), b"header", [b"buffer one", b"buffer two"])]
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(KEY), tamper(frames))


def test_a_tampered_compact_frame_is_refused():
    (frame,) = pack(Signer(KEY), b"header")
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(KEY), [_flip_last_byte(frame)])
    with pytest.raises(ProtocolError, match="truncated"):
        unpack(Signer(KEY), [frame[:len(PROTOCOL_COMPACT) + 10]])


def test_moving_bytes_across_a_frame_boundary_breaks_the_signature():
    frames = pack(Signer(KEY), b"header", [b"buffer"])
    resplit = [frames[0], frames[1], b"headerb", b"uffer"]
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(KEY), resplit)


def test_a_message_with_buffers_cannot_be_recast_as_a_compact_one():
    frames = pack(Signer(KEY), b"header", [b"buffer"])
    compact = PROTOCOL_COMPACT + bytes([len(frames[1])]) + frames[1] + b"headerbuffer"
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(KEY), [compact])


@pytest.mark.parametrize("frames,message", [
    ([b"syftzmq/1", b"", b"h"], "different syftzmq versions"),
    ([b"syftzmq/1c\x00h"], "different syftzmq versions"),
    ([b"HTTP/1.1 200 OK", b"", b""], "not a syftzmq peer"),
    ([b"GET /"], "unknown protocol"),
])
def test_another_protocol_is_named_before_any_signature_check(frames, message):
    with pytest.raises(ProtocolError, match=message):
        unpack(Signer(KEY), frames)


def test_size_limits_are_checked_before_the_signature():
    frames = pack(Signer(KEY), b"header", [b"x" * 1000])
    with pytest.raises(ProtocolError, match="exceeds the limit of 500"):
        unpack(Signer(KEY), frames, max_bytes=500)
    (compact,) = pack(Signer(KEY), b"y" * 1000)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        unpack(Signer(KEY), [compact], max_bytes=500)
