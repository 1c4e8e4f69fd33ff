"""The ages after which shared memory is cleaned up, and what a forked child inherits of it
(SECURITY.md, "Shared-memory transfers"; syftzmq/wire/shm.py, shm_spares.py, shm_map.py).

What must hold, each shown by its effect on /dev/shm, /proc/<pid>/fd and /proc/<pid>/maps:

- a segment this process exported and nobody took is unlinked once it is older than
  ``SYFTZMQ_SHM_MAX_AGE`` (the next export, or a worker's housekeeping, sweeps it);
- spares, and kept segments their receiver claimed, are unmapped, closed and unlinked after
  ``shm_spares.IDLE`` seconds unused; a kept segment not claimed yet (in flight) is not;
- a forked child holds neither the spares' (nor the kept segments') descriptors nor their
  mappings: it must not keep alive pages its parent hands over.

No clock is waited on here except in one subprocess, which waits (with a deadline) for a half
second ``SYFTZMQ_SHM_MAX_AGE`` to pass: the sweep takes an injected ``now``, and the idle drop
is woken with ``IDLE`` shortened.
"""

from __future__ import annotations

import json
import os
import secrets
import select
import subprocess
import sys
import textwrap
import time

import pytest

from support.processes import wait_until
from support.workers import ROOT
from syftzmq.wire import shm, shm_map, shm_spares

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.skipif(not shm.enabled(), reason="no /dev/shm on this host")]

MiB = 1 << 20
SMALL = 64 << 10  # an export this small asks for no spares (below shm_spares.MIN)


def _fds_to(names, pid="self") -> list[str]:
    """The targets of ``pid``'s descriptors that are one of the files ``names``."""
    directory = f"/proc/{pid}/fd"
    found = []
    for fd in os.listdir(directory):
        try:
            target = os.readlink(f"{directory}/{fd}")
        except OSError:  # closed meanwhile (the listing's own descriptor)
            continue
        if any(name in target for name in names):
            found.append(target)
    return found


def _maps_of(names, pid="self") -> list[str]:
    """The lines of ``pid``'s memory map that map one of the files ``names``."""
    with open(f"/proc/{pid}/maps") as maps:
        return [line.strip() for line in maps if any(name in line for name in names)]


def _exists(name: str) -> bool:
    return os.path.lexists(shm._path(name))


# ---------------------------------------------------------------------------- MAX_AGE


def test_an_untaken_export_is_unlinked_only_once_older_than_max_age():
    """The sweep with an injected clock: a segment nobody took stays until MAX_AGE, and is
    unlinked and forgotten past it (a receiver that died must not leave it in /dev/shm)."""
    [(name, size)] = shm.export(memoryview(bytearray(SMALL)), tag="nobody-takes-it")
    try:
        assert size == SMALL and _exists(name)
        born, _ = shm._created[name]
        shm.expire_own(now=born + shm.MAX_AGE - 1.0)
        assert _exists(name), "swept before MAX_AGE"
        shm.expire_own(now=born + shm.MAX_AGE + 1.0)
        assert not _exists(name), f"{name} still in /dev/shm after MAX_AGE"
        assert name not in shm._created
    finally:
        shm.discard(name)


def test_the_next_export_sweeps_what_is_older_than_max_age():
    """A client has no housekeeping tick: its own next export is what sweeps. The first
    segment's birth is moved back past MAX_AGE instead of waiting two minutes."""
    [(old, _)] = shm.export(memoryview(bytearray(SMALL)))
    new = None
    try:
        born, tag = shm._created[old]
        shm._created[old] = (born - shm.MAX_AGE - 1.0, tag)
        [(new, _)] = shm.export(memoryview(bytearray(SMALL)))
        assert not _exists(old), f"{old} outlived MAX_AGE past the next export"
        assert _exists(new), "the new export was swept too"
    finally:
        shm.discard(old)
        if new is not None:
            shm.discard(new)


AGEING = textwrap.dedent("""
    import os, sys, threading, time
    sys.path.insert(0, {root!r})
    from syftzmq.wire import shm
    [(name, _)] = shm.export(memoryview(bytearray({small})))
    born = shm._created[name][0]
    print("NAME", name, flush=True)
    print("MAX_AGE", shm.MAX_AGE, flush=True)
    deadline = time.monotonic() + 20
    while os.path.exists(shm._path(name)):
        if time.monotonic() > deadline:
            print("STILL_THERE", flush=True)
            os._exit(3)
        [(other, _)] = shm.export(memoryview(bytearray({small})))  # sweeps first
        shm.discard(other)
        threading.Event().wait(0.02)
    print("GONE_AFTER", time.monotonic() - born, flush=True)
""")


def test_syftzmq_shm_max_age_sets_the_age():
    """The setting itself, in a process of its own (it is read at import): with
    SYFTZMQ_SHM_MAX_AGE=0.5 an untaken segment goes after half a second, not 120 s. The child
    polls with a deadline for the age to pass (that is what is measured)."""
    env = dict(os.environ, SYFTZMQ_SHM_MAX_AGE="0.5")
    child = subprocess.Popen([sys.executable, "-c", AGEING.format(root=str(ROOT), small=SMALL)],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = child.communicate(timeout=50)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(10)
        shm.sweep_pid(child.pid)  # whatever it left (a failed run)
    lines = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert child.returncode == 0, (out, err[-2000:])
    assert float(lines["MAX_AGE"]) == 0.5
    assert float(lines["GONE_AFTER"]) >= 0.5, "swept before its age"


# ---------------------------------------------------------------------------- IDLE


@pytest.fixture
def pool(monkeypatch):
    """A pool of spares of its own (the module's serves other tests), its files in /dev/shm
    named like this process's spares (a sweep would find any left behind); IDLE long until a
    test shortens it. Whatever it made is dropped and unlinked afterwards."""
    monkeypatch.setattr(shm_spares, "IDLE", 600.0)
    made: list[str] = []

    def create(kind: str = "spare-") -> tuple[str, int]:
        name = f"{shm.PREFIX}{os.getpid()}-{kind}{secrets.token_hex(16)}"
        made.append(name)
        return name, os.open(shm._path(name), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)

    spares = shm_spares.Spares(create, shm._unlink_file)
    spares.test_create = create  # type: ignore[attr-defined]
    spares.test_made = made  # type: ignore[attr-defined]
    yield spares
    spares.drop()
    for name in made:
        shm._unlink_file(name)


def _idle_now(pool, monkeypatch, idle: float = 0.05) -> None:
    """Shorten IDLE and wake the preparing thread (waiting with the long IDLE): its next wait
    times out with nothing used meanwhile, which is what unused for IDLE seconds is."""
    monkeypatch.setattr(shm_spares, "IDLE", idle)
    with pool._lock:
        pool._wake.notify()


def _mapped_spare(pool, size: int = 16 * MiB) -> str:
    """A spare of ``size`` (mapped here and faulted in); its name."""
    pool.want([size])
    wait_until(lambda: pool.sizes(populated=True) == [size], 30,
               f"a populated spare of {size} bytes (now {pool.sizes()})")
    [name] = [name for name in pool.test_made if "-spare-" in name]
    assert _exists(name) and _fds_to([name]) and _maps_of([name]), "the spare is not held"
    return name


def _kept_segment(pool, claimed: bool, size: int = 16 * MiB) -> tuple[str, str]:
    """A segment as an export leaves it kept: mapped here, its name unlinked by its receiver,
    and claimed (truncated to the size announced) or not yet; its name and reference."""
    name, fd = pool.test_create("")
    os.posix_fallocate(fd, 0, size)
    os.ftruncate(fd, size if claimed else size + shm_spares.UNCLAIMED_TAIL)
    os.unlink(shm._path(name))  # the receiver unlinks what it opens
    spare = shm_spares.Spare(name, fd, size, address=shm_map.map_file(fd, size),
                             inode=os.fstat(fd).st_ino)
    reference = f"fd-{os.getpid()}-{fd}-{spare.inode}"
    pool.keep(spare, size, reference, [size])
    return name, reference


def test_a_spare_unused_for_idle_seconds_is_unmapped_closed_and_unlinked(pool, monkeypatch):
    """A spare nobody took must not hold its pages (memory of /dev/shm) for good."""
    name = _mapped_spare(pool)
    _idle_now(pool, monkeypatch)
    wait_until(lambda: not pool.sizes(), 20, f"the idle spare dropped (now {pool.sizes()})")
    assert not _exists(name), "the idle spare is still in /dev/shm"
    assert not _fds_to([name]), "the idle spare's descriptor is still open"
    wait_until(lambda: not _maps_of([name]), 20, "the idle spare unmapped")  # on a thread


def test_a_kept_segment_unused_for_idle_seconds_is_closed_unless_in_flight(pool, monkeypatch):
    """A claimed kept segment idle for IDLE seconds is closed and unmapped (its pages go with
    its last receiver); one its receiver has not claimed yet stays: that export may still be
    opened by name, and goes when it is given up or at exit."""
    claimed, claimed_ref = _kept_segment(pool, claimed=True)
    pending, pending_ref = _kept_segment(pool, claimed=False)
    assert pool.kept() == [claimed_ref, pending_ref]
    assert _fds_to([claimed]) and _maps_of([claimed])
    _idle_now(pool, monkeypatch)
    wait_until(lambda: pool.kept() == [pending_ref], 20,
               f"the idle claimed segment dropped (kept: {pool.kept()})")
    assert not _fds_to([claimed]), "the idle kept segment's descriptor is still open"
    wait_until(lambda: not _maps_of([claimed]), 20, "the idle kept segment unmapped")
    assert _fds_to([pending]) and _maps_of([pending]), "the in-flight segment was dropped"


# ---------------------------------------------------------------------------- fork


def _in_forked_child(names) -> dict:
    """What a child forked now holds of the files ``names``: it looks at its own
    /proc/self/fd and /proc/self/maps and reports through a pipe. The child leaves only by
    ``os._exit``: it must never run pytest's teardown or atexit handlers."""
    readable, writable = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(readable)
            report = {"fds": _fds_to(names), "maps": _maps_of(names)}
            os.write(writable, json.dumps(report).encode())
        finally:
            os._exit(0)
    os.close(writable)
    data = b""
    deadline = time.monotonic() + 20
    try:
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "the forked child did not report in time"
            ready, _, _ = select.select([readable], [], [], remaining)
            if ready:
                chunk = os.read(readable, 65536)
                if not chunk:
                    break
                data += chunk
    finally:
        os.close(readable)
        waited, status = os.waitpid(pid, os.WNOHANG)
        if not waited:  # it wrote, closed: its exit follows at once
            wait_until(lambda: os.waitpid(pid, os.WNOHANG)[0], 20, "the forked child's exit")
    assert data, "the forked child reported nothing"
    return json.loads(data)


def test_a_forked_child_holds_neither_the_spares_descriptors_nor_their_mappings(pool):
    """MADV_DONTFORK keeps the mappings out of the child, and the at-fork handler closes the
    descriptors it inherited: otherwise a worker forked from a client-side process, or any
    child, would keep alive (and could read) pages its parent hands over."""
    spare = _mapped_spare(pool)
    kept, _ = _kept_segment(pool, claimed=True)
    names = [spare, kept]
    assert len(_fds_to(names)) == 2 and _maps_of([spare]) and _maps_of([kept])
    child = _in_forked_child(names)
    assert child["fds"] == [], f"descriptors inherited by the child: {child['fds']}"
    assert child["maps"] == [], f"mappings inherited by the child: {child['maps']}"
    assert len(_fds_to(names)) == 2, "the parent lost its descriptors"
    assert pool.sizes() == [16 * MiB] and len(pool.kept()) == 1, "the parent lost its pool"


def test_a_forked_child_closes_what_the_modules_own_pool_holds():
    """The same through syftzmq.wire.shm's own pool, prepared by a real large export (the
    at-fork handler is registered on that instance too)."""
    size = 16 * MiB
    [(name, _)] = shm.export(memoryview(bytearray(size)))
    try:
        wait_until(lambda: size in shm._spares.sizes(populated=True), 30,
                   f"a populated spare of {size} bytes (now {shm._spares.sizes()})")
        spares = [n for n in shm.segments_of([os.getpid()], spares=True) if "-spare-" in n]
        assert spares and _fds_to(spares) and _maps_of(spares)
        child = _in_forked_child(spares)
        assert child == {"fds": [], "maps": []}, f"inherited by the child: {child}"
    finally:
        shm.discard(name)
        shm._spares.drop()  # a cache of this process: nothing of this test left in /dev/shm
