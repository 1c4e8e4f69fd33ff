"""The errors a user meets: clear exceptions at the right line, never hangs, nothing lost."""

from __future__ import annotations

import gc
import socket
import time

import pytest
import torch

import syftzmq as sy


def test_shape_mismatch_raises_at_the_line_and_sends_nothing(bob):
    a = torch.ones(3).send(bob)
    b = torch.ones(4).send(bob)
    before = sy.stats()
    with pytest.raises(RuntimeError, match="size of tensor a \\(3\\) must match|broadcast"):
        a + b
    with pytest.raises(RuntimeError):
        torch.matmul(torch.ones(2, 3).send(bob), torch.ones(2, 3))
    assert (sy.stats() - before).messages_sent <= 1  # only the second operand's send
    assert torch.equal(a.get(), torch.ones(3))
    del b


def test_operation_after_get_names_the_pointer(bob):
    x = torch.ones(2).send(bob)
    x.get()
    with pytest.raises(sy.ObjectGoneError, match="fetched with .get()"):
        x + 1
    with pytest.raises(sy.ObjectGoneError):
        x.get()


def test_pointers_on_different_workers_name_both_and_send_nothing(bob, alice):
    a = torch.ones(2).send(bob)
    b = torch.ones(2).send(alice)
    before = sy.stats()
    with pytest.raises(sy.WorkerMismatchError, match="'bob'.*'alice'"):
        a + b
    with pytest.raises(sy.WorkerMismatchError, match="'alice'.*'bob'"):
        torch.add(b, a)
    assert (sy.stats() - before).messages_sent == 0
    del a, b


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_that_does_not_answer_fails_within_the_deadline(hook):
    start = time.monotonic()
    with pytest.raises(sy.WorkerUnavailable, match="ghost.*within 1.0 s: nothing is listening"):
        sy.Worker(hook, id="ghost", address=f"tcp://127.0.0.1:{_unused_port()}", timeout=1.0)
    assert time.monotonic() - start < 4.0


def test_wrong_worker_id_at_address_is_refused(hook, bob):
    with pytest.raises(ValueError, match="is 'bob', not 'alice'"):
        sy.Worker(hook, id="alice", address=bob.address, key_file=sy.default_session().cluster_key_file())


def test_remote_error_carries_type_message_and_traceback(bob):
    not_positive_definite = torch.tensor([[1.0, 2.0], [2.0, 1.0]]).send(bob)
    factor = torch.linalg.cholesky(not_positive_definite)  # returns at once: fire-and-forget
    assert factor.shape == torch.Size([2, 2])
    with pytest.raises(RuntimeError) as caught:          # the next observation raises it
        factor.get()
    err = caught.value
    assert isinstance(err, sy.RemoteError)
    assert "LinAlgError" in err.remote_type
    assert "positive-definite" in err.remote_message
    assert "Traceback" in err.remote_traceback and "cholesky" in err.remote_traceback
    assert err.worker == "bob"
    # the failure is reported once; the stored failure stays until its pointer dies
    objects = bob._objects
    assert len(objects) == 2
    with pytest.raises(RuntimeError, match="positive-definite"):
        factor.get()  # depends on the failed command: raises again, and keeps the record
    del factor, caught, err  # tracebacks hold the pointer too (in reference cycles)
    gc.collect()
    assert len(bob._objects) == 1
    del not_positive_definite


def test_error_propagates_through_dependent_commands_and_chains(bob, alice):
    p = torch.tensor([[1.0, 2.0], [2.0, 1.0]]).send(bob).send(alice)
    broken = torch.linalg.cholesky(p)
    downstream = (broken + 1).sum()
    with pytest.raises(sy.RemoteError, match="positive-definite"):
        alice._objects  # first observation after the failure
    with pytest.raises(sy.RemoteError, match="positive-definite") as caught:
        downstream.get().get()
    assert caught.value.worker == "bob"
    del p, broken, downstream


def test_python_values_need_get(bob):
    x = torch.tensor([1.5]).send(bob)
    with pytest.raises(sy.NeedsGetError, match="call .get\\(\\) first"):
        x.item()
    with pytest.raises(sy.NeedsGetError):
        bool(x > 0)
    assert x.get().item() == 1.5


def test_get_of_unknown_id_is_a_clear_error(bob):
    ghost = sy.default_session().new_pointer(bob.ref, 12345)
    with pytest.raises(sy.ObjectNotFoundError, match="no object with id 12345"):
        ghost.get()
