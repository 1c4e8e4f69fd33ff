"""The envelope: ``[protocol, signature, header, *buffers]``, or one frame when there are no buffers.

Frame 0 names the protocol and its version, so a peer speaking anything else is told apart
before any parsing. A message without buffers (nearly every command, observation and reply)
travels *compact*, as the single frame ``PROTOCOL_COMPACT + len(signature) + signature +
header``: every frame is a call into pyzmq and a wake-up of work on both ends, so one frame
instead of three is measurably faster per message.

The signature is an HMAC-SHA256 over the protocol name, the number of frames, every frame's
length, and every frame after the signature, buffers included (Jupyter's spec leaves buffers
unsigned; with pickled payloads that would be code execution). The lengths fix the frame
boundaries: bytes cannot be moved from one frame to the next (say, from the header into a
buffer) without breaking the signature; the protocol is signed so that a frames message cannot
be re-labelled a shared-memory one. It is verified before anything is unpickled. Every check is
an ``if``, never an ``assert``. Where a message goes (its destination incarnation) is a field of
the signed header, ``to`` (see :mod:`syftzmq.core.messages`).
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import struct
from typing import Sequence

from ..errors import ProtocolError
from . import shm

# The version goes up whenever what travels changes: frames, or the name of any class that
# travels by name (see :data:`syftzmq.wire.safe.TRAVELS_BY_NAME`). A peer of another version
# is told so at the envelope, before anything is unpickled.
PROTOCOL_FAMILY = b"syftzmq/"
PROTOCOL = b"syftzmq/6"
PROTOCOL_SHM = b"syftzmq/6+shm"  # bulk buffers travel through /dev/shm; see pack()
PROTOCOL_COMPACT = b"syftzmq/6c"  # one frame: protocol, signature length, signature, header
MAX_FRAMES = 65536
MAX_HEADER_BYTES = 64 * 1024 * 1024
MAX_MESSAGE_BYTES = 2 * 1024 * 1024 * 1024

Buffer = "bytes | memoryview"


class Signer:
    """Signs and verifies frames with a cluster key; rejects replayed signatures.

    Without a key (``key=None``) messages carry an empty signature and only unsigned messages
    are accepted: a cluster is either all signed or all unsigned.
    """

    def __init__(self, key: bytes | None, replay_window: int = 1 << 16) -> None:
        self.key = key or None
        keyed = hmac.new(self.key, digestmod=hashlib.sha256) if self.key else None
        # The keyed state is copied per message, never re-keyed. OpenSSL's HMAC object (behind
        # ``hmac.HMAC`` when there is one) has the same copy/update/digest, without a Python
        # layer around each call.
        self._keyed = getattr(keyed, "_hmac", None) or keyed
        # ... and for a one-frame message, the keyed state after what every such message
        # starts with (the protocol's length and name, the frame count): only the frame's
        # length and the frame remain per message.
        self._compact = None
        if self._keyed is not None:
            self._compact = self._keyed.copy()
            self._compact.update(_COMPACT_PREFIX)
        self._recent: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._window = replay_window

    def sign(self, protocol: bytes, frames: Sequence) -> bytes:
        """The signature of ``frames`` sent under ``protocol``: HMAC-SHA256 over the protocol
        (length first), the frame count, every frame's length, then the frames."""
        if self._keyed is None:
            return b""
        if protocol is PROTOCOL_COMPACT and len(frames) == 1:
            return self.sign_compact(frames[0])
        mac = self._keyed.copy()
        lengths = [_nbytes(frame) for frame in frames]
        mac.update(_layout(len(protocol), len(lengths)).pack(len(protocol), protocol,
                                                              len(lengths), *lengths))
        for frame in frames:
            mac.update(frame)
        return mac.digest()

    def sign_compact(self, frame) -> bytes:
        """:meth:`sign` of one frame under :data:`PROTOCOL_COMPACT` (the same bytes signed)."""
        if self._compact is None:
            return b""
        mac = self._compact.copy()
        if type(frame) is bytes:  # (every compact message: one update, the copy costs less)
            mac.update(_LENGTH.pack(len(frame)) + frame)
        else:
            mac.update(_LENGTH.pack(_nbytes(frame)))
            mac.update(frame)
        return mac.digest()

    def verify(self, signature: bytes, protocol: bytes, frames: Sequence) -> None:
        """Raise :class:`ProtocolError` unless ``signature`` is valid and new."""
        self.accept(signature, self.sign(protocol, frames))

    def accept(self, signature: bytes, expected: bytes) -> None:
        """Raise :class:`ProtocolError` unless ``signature`` is ``expected`` (this end's
        :meth:`sign` of what came) and new. A one-frame message is checked as
        ``accept(signature, sign_compact(frame))``: no frame list to build."""
        if self.key is None:
            if signature:
                raise ProtocolError("signed message received, but this end has no key")
            return
        if not signature:
            raise ProtocolError("unsigned message rejected: this cluster requires signatures")
        if not hmac.compare_digest(signature, expected):
            raise ProtocolError("bad signature: message rejected")
        recent = self._recent
        if signature in recent:
            raise ProtocolError("replayed message rejected")
        recent[signature] = None
        if len(recent) > self._window:
            recent.popitem(last=False)


_LAYOUTS: dict[tuple[int, int], struct.Struct] = {}  # a cache: compiling a layout costs more than signing


def _layout(protocol_length: int, frames: int) -> struct.Struct:
    """What is signed before the frames: protocol length and name, frame count, lengths."""
    layout = _LAYOUTS.get((protocol_length, frames))
    if layout is None:
        layout = struct.Struct(f"!Q{protocol_length}sQ{frames}Q")
        if len(_LAYOUTS) < 1024:
            _LAYOUTS[(protocol_length, frames)] = layout
    return layout


_LENGTH = struct.Struct("!Q")
_LENGTH_BYTES = [bytes((n,)) for n in range(256)]  # a compact frame's signature length byte
_COMPACT_PREFIX = struct.pack(f"!Q{len(PROTOCOL_COMPACT)}sQ", len(PROTOCOL_COMPACT), PROTOCOL_COMPACT, 1)


def pack(signer: Signer, header: bytes, buffers: Sequence = (), shared_memory: bool = False,
         destination: object = None) -> list:
    """Frames for one message (without routing frames).

    With ``shared_memory`` (the receiver is on this host), buffers of at least
    :data:`shm.THRESHOLD` bytes go through ``/dev/shm`` (see :mod:`syftzmq.wire.shm`): the
    message then starts with :data:`PROTOCOL_SHM` and carries, after the header, a signed
    manifest with, per buffer, the ``[name, size]`` of its segments (several for a large
    buffer, written at once) or ``None`` (a frame follows). ``destination``
    tags the segments (see :func:`shm.discard_tagged`).
    """
    if not buffers:  # compact: one frame
        signature = signer.sign_compact(header)
        return [b"".join((PROTOCOL_COMPACT, _LENGTH_BYTES[len(signature)], signature, header))]
    if shared_memory and any(_nbytes(b) >= shm.THRESHOLD for b in buffers):
        manifest: list = []
        frames: list = []
        try:
            for buffer in buffers:
                if _nbytes(buffer) >= shm.THRESHOLD:
                    manifest.append([list(part) for part in shm.export(memoryview(buffer),
                                                                        destination)])
                else:
                    manifest.append(None)
                    frames.append(buffer)
        except OSError:  # /dev/shm full or unusable: frames carry everything
            for entry in manifest:
                for name, _ in entry or ():
                    shm.discard(name)
            return pack(signer, header, buffers)
        body = [header, json.dumps(manifest).encode(), *frames]
        return [PROTOCOL_SHM, signer.sign(PROTOCOL_SHM, body), *body]
    body = [header, *buffers]
    return [PROTOCOL, signer.sign(PROTOCOL, body), *body]


def discard_unsent(frames: Sequence) -> None:
    """Unlink the shared-memory segments ``frames`` (from :func:`pack`) name: the message
    could not be sent, so nobody will take them."""
    if len(frames) < 4 or bytes(frames[0]) != PROTOCOL_SHM:
        return
    try:
        manifest = json.loads(bytes(frames[3]))
    except ValueError:
        return
    for entry in manifest:
        for name, _ in entry or ():
            shm.discard(name)


def _nbytes(frame) -> int:
    return frame.nbytes if isinstance(frame, memoryview) else len(frame)


def unpack(signer: Signer, frames: Sequence, max_bytes: int = MAX_MESSAGE_BYTES) -> tuple[bytes, list]:
    """Check and verify ``frames`` (as received, routing frames removed).

    Returns the header bytes and the buffers as memoryviews over the received memory. Every
    error raised here is a :class:`ProtocolError` of an *unauthenticated* message: nobody is
    owed an answer.
    """
    if len(frames) == 1:
        return _unpack_compact(signer, frames[0], max_bytes), []
    if len(frames) < 3:
        raise ProtocolError(f"message has {len(frames)} frames; at least 3 expected")
    if len(frames) > MAX_FRAMES:
        raise ProtocolError(f"message has {len(frames)} frames; at most {MAX_FRAMES} allowed")
    views = [f.buffer if hasattr(f, "buffer") else memoryview(f) for f in frames]
    proto = bytes(views[0])
    if proto not in (PROTOCOL, PROTOCOL_SHM):
        raise _unknown_protocol(proto)
    header = views[2]
    if header.nbytes > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {header.nbytes} bytes exceeds {MAX_HEADER_BYTES}")
    total = sum(v.nbytes for v in views)
    if total > max_bytes:
        raise ProtocolError(f"message of {total} bytes exceeds the limit of {max_bytes}")
    signer.verify(bytes(views[1]), proto, views[2:])
    if proto == PROTOCOL_SHM:
        return bytes(header), _with_shared_memory(views[3:], max_bytes - total)
    return bytes(header), views[3:]


def _unknown_protocol(proto: bytes) -> ProtocolError:
    """The error for a first frame that is not this version's: another syftzmq version says
    so by name (its client and workers must be upgraded together)."""
    if proto.startswith(PROTOCOL_FAMILY):
        return ProtocolError(
            f"unknown protocol version: the peer speaks {proto[:16].decode(errors='replace')!r}, "
            f"this end {PROTOCOL.decode()!r}: client and workers run different syftzmq "
            f"versions; install the same version everywhere and restart the workers")
    return ProtocolError(f"unknown protocol {proto[:32]!r}; expected {PROTOCOL!r} (not a "
                         f"syftzmq peer, or 1 frame where at least 3 are expected)")


def _unpack_compact(signer: Signer, frame, max_bytes: int) -> bytes:
    """The header of a verified one-frame message (see the module docstring).

    The frame is read as ``bytes`` (a ``zmq.Frame`` keeps its copy): slicing bytes costs less
    than slicing and comparing memoryviews, and the header is a copy either way."""
    if type(frame) is bytes:
        data = frame
    else:
        data = frame.bytes if hasattr(frame, "bytes") else bytes(frame)
    nbytes = len(data)
    start = _COMPACT_START
    if nbytes <= start or not data.startswith(PROTOCOL_COMPACT):
        raise _unknown_protocol(data[:start])
    if nbytes > max_bytes or nbytes > _COMPACT_MAX:
        raise ProtocolError(f"message of {nbytes} bytes exceeds the limit")
    signature_end = start + 1 + data[start]
    if signature_end > nbytes:
        raise ProtocolError("one-frame message truncated inside its signature (bad frames)")
    header = data[signature_end:]
    signer.accept(data[start + 1:signature_end], signer.sign_compact(header))
    return header


_COMPACT_START = len(PROTOCOL_COMPACT)  # where a compact frame's signature length byte is
_COMPACT_MAX = MAX_HEADER_BYTES + _COMPACT_START + 256  # a compact frame's largest size


def _with_shared_memory(views: list, budget: int) -> list:
    """The buffers of a verified :data:`PROTOCOL_SHM` message, segments read in place."""
    if not views:
        raise ProtocolError("shared-memory message without a manifest")
    try:
        manifest = json.loads(bytes(views[0]))
    except (ValueError, RecursionError):  # (the latter: nested too deep for the parser)
        raise ProtocolError("unreadable shared-memory manifest") from None
    frames = iter(views[1:])
    if not isinstance(manifest, list) or manifest.count(None) != len(views) - 1:
        raise ProtocolError("shared-memory manifest does not match the frames")
    entries = [entry for entry in manifest if entry is not None]
    if not all(isinstance(e, list) and 1 <= len(e) <= shm.MAX_PARTS for e in entries):
        raise ProtocolError("malformed shared-memory manifest entry")
    named = [part for entry in entries for part in entry]
    if not all(isinstance(part, list) and len(part) == 2 for part in named):
        raise ProtocolError("malformed shared-memory manifest entry")
    if sum(size for _, size in named if type(size) is int) > budget:
        for name, _ in named:
            shm.discard(name)
        raise ProtocolError(f"message exceeds the limit of {budget} bytes")
    buffers: list = []
    try:
        for entry in manifest:
            buffers.append(next(frames) if entry is None else shm.take(entry))
    except BaseException:
        for name, _ in named:  # whatever was not read yet must not stay behind
            shm.discard(name)
        raise
    return buffers
