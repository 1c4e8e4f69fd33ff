"""Cluster keys: random bytes in a file only its owner can read (mode 0600)."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path


def write_key_file(path: str | os.PathLike) -> bytes:
    """Create ``path`` with a fresh 32-byte key, readable by its owner only."""
    key = secrets.token_hex(32).encode()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key)
    os.chmod(path, 0o600)
    return key


def read_key(path: str | os.PathLike) -> bytes:
    """Read a key file; refuses files that others can read."""
    path = Path(path).expanduser()
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PermissionError(f"key file {path} is readable by others (mode {oct(mode & 0o777)}); "
                              f"chmod 600 it")
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"key file {path} is empty")
    return key
