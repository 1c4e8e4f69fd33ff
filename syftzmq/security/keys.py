"""Cluster keys: random bytes in a file only its owner can read (mode 0600).

A client session that spawns its own workers makes a key of its own (:func:`session_key_file`)
in a private temporary directory, and removes it when it closes. A session killed before it
could (``kill -9``, a crash of the interpreter) leaves it behind; so each such directory is
named by the pid namespace and pid of the process that made it, and the next session started
on this host as the same user removes the ones whose process is gone. A live process's key is
never touched: in another pid namespace a process cannot tell whether it lives, so only its own
namespace's directories are judged.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
from pathlib import Path

from ..core.processes import pid_namespace, process_exists

KEY_FILE = "cluster.key"
SESSION_PREFIX = "syftzmq-key-"
_SESSION_DIRECTORY = re.compile(rf"^{SESSION_PREFIX}(\d+)-(\d+)-[A-Za-z0-9_]+$")


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


def session_key_file() -> str:
    """A fresh key file for one client session, in a new private directory (0700) named by
    this process; the directories that sessions killed earlier left behind are removed first
    (see the module docstring). The caller removes it with :func:`remove_session_key_file`."""
    namespace = pid_namespace()
    remove_stale_session_keys()
    directory = tempfile.mkdtemp(prefix=f"{SESSION_PREFIX}{namespace or 0}-{os.getpid()}-")
    path = os.path.join(directory, KEY_FILE)
    write_key_file(path)
    return path


def remove_session_key_file(path: str | os.PathLike) -> None:
    """Remove a key file made by :func:`session_key_file`, and its directory."""
    os.remove(path)
    os.rmdir(os.path.dirname(path))


def remove_stale_session_keys(directory: str | None = None) -> list[str]:
    """Remove the session key directories of this user and pid namespace whose process is
    gone; returns them. Only a directory holding nothing but its key file is removed."""
    directory = directory or tempfile.gettempdir()
    namespace = pid_namespace()
    if namespace is None:
        return []
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    for name in names:
        match = _SESSION_DIRECTORY.match(name)
        if match is None or int(match.group(1)) != namespace or process_exists(int(match.group(2))):
            continue
        path = os.path.join(directory, name)
        try:
            info = os.lstat(path)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
                continue
            contents = os.listdir(path)
            if contents not in ([], [KEY_FILE]):
                continue  # not only a key: not ours to judge
            for entry in contents:
                os.remove(os.path.join(path, entry))
            os.rmdir(path)
        except OSError:
            continue  # gone meanwhile, or not ours: left as it is
        removed.append(path)
    return removed
