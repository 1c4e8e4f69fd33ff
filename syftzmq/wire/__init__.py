"""The wire: how a message becomes ZMQ frames and back.

``envelope`` owns the frame layout and the signature; ``serde`` turns Python objects into a
header plus out-of-band tensor buffers. Nothing else in syftzmq touches raw frames.
"""

from . import shm
from .envelope import PROTOCOL, Signer, pack, unpack
from .serde import dumps, loads

__all__ = ["shm", "PROTOCOL", "Signer", "pack", "unpack", "dumps", "loads"]
