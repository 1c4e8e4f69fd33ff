"""``syftzmq keygen DIR``: the cluster key and the CURVE directory, and which file goes where.

Made with Python's ``secrets`` and pyzmq's CURVE key generation (libsodium inside libzmq): no
openssl, no other tool. Secret files are mode 0600.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..security.curve import create_curve_dir
from ..security.keys import KEY_FILE, write_key_file

CURVE_DIR = "curve"


class KeysExist(FileExistsError):
    """Keys are already there; replacing them locks out every host that has the old ones."""


@dataclass(frozen=True)
class Keys:
    directory: Path
    clients: tuple[str, ...]

    @property
    def key_file(self) -> Path:
        return self.directory / KEY_FILE

    @property
    def curve_dir(self) -> Path:
        return self.directory / CURVE_DIR


def make_keys(directory: str | Path, clients: tuple[str, ...] = ("client",),
              force: bool = False) -> Keys:
    keys = Keys(Path(directory), clients)
    existing = [p for p in (keys.key_file, keys.curve_dir) if p.exists()]
    if existing and not force:
        raise KeysExist(f"{', '.join(map(str, existing))} already exist; keep them, or pass "
                        f"--force to replace them (hosts and clients holding the old keys are "
                        f"then locked out until they get the new ones)")
    if keys.curve_dir.exists():
        shutil.rmtree(keys.curve_dir)
    keys.directory.mkdir(parents=True, exist_ok=True)
    write_key_file(keys.key_file)
    create_curve_dir(keys.curve_dir, clients)
    return keys


def placement_guide(keys: Keys, shown_as: str | None = None) -> str:
    """Which files each host needs, for the operator to read after ``keygen``."""
    d = (shown_as or str(keys.directory)).rstrip("/")
    rows = [(KEY_FILE, "the cluster key: every message is signed with it"),
            (f"{CURVE_DIR}/server.key{{,_secret}}", "the workers' CURVE key pair (shared by all)")]
    rows += [(f"{CURVE_DIR}/{name}.key{{,_secret}}", f"the CURVE key pair of client {name!r}")
             for name in keys.clients]
    rows.append((f"{CURVE_DIR}/authorized/", "public keys the workers admit"))
    width = max(len(name) for name, _ in rows) + 2
    lines = [f"created in {d}/ (secret files mode 0600):"]
    lines += [f"  {name:<{width}}{what}" for name, what in rows]
    own = (f"{CURVE_DIR}/client.key_secret" if keys.clients == ("client",) else
           f"its own {CURVE_DIR}/<name>.key_secret, saved as {CURVE_DIR}/client.key_secret")
    lines += ["",
              f"each worker host needs, from {d}/ (`syftzmq cluster up` copies them for you into",
              "a private directory there, removed when the worker stops):",
              f"  {KEY_FILE}  {CURVE_DIR}/server.key  {CURVE_DIR}/server.key_secret  "
              f"{CURVE_DIR}/authorized/",
              "each client, and the host running `syftzmq cluster up`, needs:",
              f"  {KEY_FILE}  {CURVE_DIR}/server.key  {own}",
              f"never give a client {CURVE_DIR}/server.key_secret: with it, it could pose as a "
              f"worker.",
              "",
              "in the cluster file (paths relative to it):",
              f'  key_file = "{d}/{KEY_FILE}"',
              f'  curve_dir = "{d}/{CURVE_DIR}"']
    return "\n".join(lines)
