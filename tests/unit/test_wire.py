"""The envelope and serialization: zero-copy tensor frames, checks before parsing."""

from __future__ import annotations

import sys

import cloudpickle
import pytest
import torch

from syftzmq.errors import ProtocolError
from syftzmq.wire import PROTOCOL, Signer, dumps, loads, pack, unpack
from syftzmq.wire.serde import INLINE_LIMIT


def test_large_tensor_bytes_leave_the_pickle_without_a_copy():
    big = torch.randn(256, 256)
    header, buffers = dumps({"t": big})
    assert len(buffers) == 1 and buffers[0].nbytes == big.numel() * 4
    assert len(header) < 1024  # the header holds structure, not data
    import ctypes
    address = ctypes.addressof(ctypes.c_char.from_buffer(buffers[0]))
    assert address == big.data_ptr()  # the frame is the tensor's own memory
    assert torch.equal(loads(header, buffers)["t"], big)


def test_small_tensors_stay_in_band():
    header, buffers = dumps([torch.ones(INLINE_LIMIT // 8)])
    assert buffers == []


def test_tensor_properties_round_trip():
    t = torch.randn(3, 4, requires_grad=True)
    t.grad = torch.ones(3, 4)
    odd = torch.arange(12).reshape(3, 4).t()        # not contiguous
    for original in (t, odd, torch.zeros(0, 3), torch.tensor(True), torch.ones(2, dtype=torch.bfloat16)):
        back = loads(*dumps(original))
        assert torch.equal(back.detach(), original.detach()) and back.dtype == original.dtype
    back = loads(*dumps(t))
    assert back.requires_grad and torch.equal(back.grad, t.grad)
    assert isinstance(loads(*dumps(torch.nn.Parameter(torch.ones(2)))), torch.nn.Parameter)


def test_lazy_tensors_are_materialized():
    x = torch.randn(4, 4, dtype=torch.float64, requires_grad=True)
    torch.sgn(x).sum().backward()          # the gradient is a ZeroTensor: no memory at all
    assert torch.equal(loads(*dumps(x.grad)), torch.zeros(4, 4, dtype=torch.float64))
    z = torch.randn(3, dtype=torch.complex64)
    assert torch.equal(loads(*dumps(z.conj())), z.conj().resolve_conj())
    big = torch.randn(5000, dtype=torch.complex64)
    assert torch.equal(loads(*dumps(big.conj().imag)), big.conj().imag.clone())


def test_envelope_signs_every_frame():
    signer = Signer(b"k" * 32)
    header, buffers = dumps(torch.randn(4096))
    frames = pack(signer, header, buffers)
    assert frames[0] == PROTOCOL and len(frames) == 4
    assert unpack(Signer(b"k" * 32), frames)[0] == header
    tampered = frames[:3] + [bytes(frames[3])[:-1] + b"\x00"]  # flip the tensor's last byte
    with pytest.raises(ProtocolError, match="bad signature"):
        unpack(Signer(b"k" * 32), tampered)


@pytest.mark.parametrize("frames,message", [
    ([PROTOCOL, b""], "2 frames"),
    ([b"syftzmq/0", b"", b"h"], "unknown protocol"),
    ([PROTOCOL, b"", b"h"], "requires signatures"),
])
def test_envelope_rejects_malformed_messages(frames, message):
    with pytest.raises(ProtocolError, match=message):
        unpack(Signer(b"key"), frames)


def test_code_that_only_cloudpickle_can_carry_still_travels():
    """The C pickler is tried first; a lambda, or a function of a module registered to travel
    by value (the worker cannot import it), must still go by value: cloudpickle's rebuilders
    appear in the pickle instead of a reference to the module."""
    header, buffers = dumps({"f": lambda x: x + 1, "t": torch.arange(3.0)})
    assert b"cloudpickle" in header
    message = loads(header, buffers)
    assert message["f"](1) == 2 and torch.equal(message["t"], torch.arange(3.0))

    module = sys.modules[__name__]
    assert b"cloudpickle" not in dumps({"f": _helper_defined_here})[0]  # importable: by name
    cloudpickle.register_pickle_by_value(module)
    try:
        header, buffers = dumps({"f": _helper_defined_here})
    finally:
        cloudpickle.unregister_pickle_by_value(module)
    assert b"cloudpickle" in header
    assert loads(header, buffers)["f"](2) == 6


def _helper_defined_here(x):
    return x * 3


def test_a_one_frame_message_is_signed_as_any_message_of_one_frame():
    """The one-frame shortcut signs the same bytes as the general layout (protocol, count,
    length, frame): a peer that verifies the general way accepts it."""
    import hashlib
    import hmac

    from syftzmq.wire import envelope
    key, header = b"k" * 32, b"a header of some length"
    general = hmac.new(key, digestmod=hashlib.sha256)
    proto = envelope.PROTOCOL_COMPACT
    general.update(envelope._layout(len(proto), 1).pack(len(proto), proto, 1, len(header)))
    general.update(header)
    assert Signer(key).sign(proto, [header]) == general.digest()
    assert Signer(key).sign(proto, [memoryview(header)]) == general.digest()


def test_json_nested_too_deep_for_the_parser_is_refused_like_any_unreadable_json():
    """A shared-memory manifest (signed) and a rejection notice (unsigned: anyone on the path
    can forge one) are JSON; nested deeper than the parser's recursion limit, Python raises
    RecursionError, not ValueError. Both are refused as unreadable, as a worker or a client
    expects of bad input, instead of escaping as an unexpected error."""
    from syftzmq.wire.envelope import PROTOCOL_SHM
    from syftzmq.wire.notice import MAX_NOTICE_BYTES, NOTICE_PREFIX, decode_notice
    deep = b"[" * 100_000 + b"]" * 100_000
    signer = Signer(b"k" * 32)
    body = [dumps({"kind": "ping"})[0], deep]
    with pytest.raises(ProtocolError, match="unreadable shared-memory manifest"):
        unpack(signer, [PROTOCOL_SHM, signer.sign(PROTOCOL_SHM, body), *body])
    forged = NOTICE_PREFIX + b"[" * 1005  # within the notice size limit, over the parser's depth
    assert len(forged) <= MAX_NOTICE_BYTES and decode_notice([forged]) is None
