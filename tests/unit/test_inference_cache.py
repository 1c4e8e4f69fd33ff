"""The inference cache: which calls it remembers, what their keys are made of, and that the
dispatcher skips it for in-place operations. Operands are meta tensors and small stand-ins for
pointers (a :class:`RemoteOperand` with only what the cache and the dispatcher read)."""

from __future__ import annotations

import pytest
import torch

from syftzmq.core.meta import TensorMeta, describe, mirror_of
from syftzmq.core.refs import WorkerRef
from syftzmq.tensor import remote_call as dispatcher
from syftzmq.tensor.inference_cache import InferenceCache
from syftzmq.tensor.operand import RemoteOperand

ADD = ("func", torch.add)
WORKER = WorkerRef("bob", "tcp://127.0.0.1:1", "bob#1")


class Operand(RemoteOperand):
    """A pointer as the cache sees it: a built mirror, or a pending meta, or neither."""

    def __init__(self, mirror: torch.Tensor | None = None, pending: TensorMeta | None = None):
        self._built_mirror = mirror
        self._pending_meta = pending


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(shape, dtype=dtype, device="meta")


@pytest.fixture
def cache() -> InferenceCache:
    return InferenceCache()


def test_same_shapes_dtypes_and_values_give_equal_keys(cache):
    first = cache.key(ADD, (Operand(meta(2, 3)), 1), {"alpha": 2})
    second = cache.key(ADD, (Operand(meta(2, 3)), 1), {"alpha": 2})
    assert first is not None and first == second and hash(first) == hash(second)


def test_a_pending_meta_and_a_built_mirror_of_the_same_tensor_share_a_key(cache):
    pending = Operand(pending=TensorMeta(torch.Size([2, 3]), torch.float32))
    assert cache.key(ADD, (pending, 1), {}) == cache.key(ADD, (Operand(meta(2, 3)), 1), {})


@pytest.mark.parametrize("other", [
    ((Operand(meta(3, 2)), 1), {}),                          # another shape
    ((Operand(meta(2, 3, dtype=torch.float64)), 1), {}),     # another dtype
    ((Operand(meta(2, 3)), 1.0), {}),                        # x + 1.0 is not x + 1
    ((Operand(meta(2, 3)), True), {}),                       # nor is x + True
    ((Operand(meta(2, 3)), 2), {}),                          # another value
    ((Operand(meta(2, 3)), 1), {"alpha": 2}),                # a keyword more
    ((Operand(meta(2, 3)), [1]), {}),                        # a list is not its element
    ((Operand(meta(2, 3)), (1,)), {}),                       # nor is a tuple a list
])
def test_anything_that_can_change_the_result_changes_the_key(cache, other):
    base = cache.key(ADD, (Operand(meta(2, 3)), 1), {})
    key = cache.key(ADD, *other)
    assert base is not None and key is not None and key != base


def test_the_operation_and_the_grad_mode_are_part_of_the_key(cache):
    args = (Operand(meta(2)), Operand(meta(2)))
    assert cache.key(ADD, args, {}) != cache.key(("func", torch.mul), args, {})
    assert cache.key(ADD, args, {}) != cache.key(("method", "add"), args, {})
    with torch.no_grad():
        without_grad = cache.key(ADD, args, {})
    assert without_grad is not None and without_grad != cache.key(ADD, args, {})


def test_nested_operands_are_keyed_by_their_shapes(cache):
    cat = ("func", torch.cat)
    two = cache.key(cat, ([Operand(meta(2)), Operand(meta(3))],), {"dim": 0})
    assert two == cache.key(cat, ([Operand(meta(2)), Operand(meta(3))],), {"dim": 0})
    assert two != cache.key(cat, ([Operand(meta(3)), Operand(meta(2))],), {"dim": 0})
    assert two != cache.key(cat, ([Operand(meta(2)), Operand(meta(3))],), {"dim": -1})
    sized = cache.key(("method", "view"), (Operand(meta(6)), torch.Size([2, 3])), {})
    assert sized is not None
    assert sized != cache.key(("method", "view"), (Operand(meta(6)), torch.Size([3, 2])), {})


@pytest.mark.parametrize("args,kwargs", [
    ((Operand(meta(2, 3).t()), 1), {}),                                 # not contiguous
    ((Operand(meta(2, 3).t().requires_grad_()), 1), {}),                # nor with grad
    ((Operand(), 1), {}),                                               # shape unknown
    ((Operand(meta(2)), 1), {"out": Operand(meta(2))}),                 # out=
    ((Operand(meta(4)), slice(0, 2)), {}),                              # not a plain value
    ((Operand(meta(2)), object()), {}),                                 # an arbitrary object
    ((Operand(meta(2)), torch.nn.Parameter(torch.ones(2))), {}),        # a tensor subclass
    ((torch.ones(2, requires_grad=True), Operand(meta(2))), {}),        # a local tensor with grad
])
def test_calls_that_must_not_be_cached_have_no_key(cache, args, kwargs):
    assert cache.key(ADD, args, kwargs) is None


def test_an_operand_that_requires_grad_has_a_key_of_its_own(cache):
    plain = cache.key(ADD, (Operand(meta(2)), 1), {})
    with_grad = cache.key(ADD, (Operand(meta(2).requires_grad_()), 1), {})
    pending = cache.key(ADD, (Operand(pending=TensorMeta(torch.Size([2]), torch.float32, True)),
                              1), {})
    assert None not in (plain, with_grad) and with_grad != plain and pending == with_grad


def test_hits_misses_and_what_comes_back(cache):
    key = cache.key(ADD, (Operand(meta(2, 3)), 1), {})
    assert cache.get(key) is None
    assert (cache.hits, cache.misses) == (0, 1)
    result = meta(2, 3)
    cache.put(key, [result], None, [describe(result)])
    found = cache.get(key)
    assert (cache.hits, cache.misses) == (1, 1)
    assert found.metas == (TensorMeta(torch.Size([2, 3]), torch.float32),)
    assert found.structure is None
    assert cache.get(cache.key(ADD, (Operand(meta(2, 3)), 2), {})) is None
    assert (cache.hits, cache.misses) == (1, 2)


@pytest.mark.parametrize("leaf", [meta(2, 3).requires_grad_(), meta(3, 2).t()])
def test_a_result_that_a_meta_could_not_rebuild_is_not_remembered(cache, leaf):
    key = cache.key(ADD, (Operand(meta(2, 3)), 1), {})
    cache.put(key, [meta(2, 3), leaf], ("tuple",), [describe(meta(2, 3)), describe(leaf)])
    assert cache.get(key) is None


def test_a_full_cache_starts_over(cache):
    small = InferenceCache(limit=2)
    keys = [small.key(ADD, (Operand(meta(n)), 1), {}) for n in (1, 2, 3)]
    for key in keys[:2]:
        small.put(key, [meta(1)], None, [describe(meta(1))])
    assert small.get(keys[0]) is not None and small.get(keys[1]) is not None
    small.put(keys[2], [meta(3)], None, [describe(meta(3))])
    assert small.get(keys[0]) is None and small.get(keys[1]) is None
    assert small.get(keys[2]).metas[0].shape == torch.Size([3])


# ------------------------------------------------------------------ through the dispatcher


class Pointer(Operand):
    """What the dispatcher reads of a pointer, on a session that records commands."""

    def __init__(self, session: "Session", mirror: torch.Tensor | None = None,
                 pending: TensorMeta | None = None):
        super().__init__(mirror, pending)
        self._location = WORKER
        self._session = session
        self._attr = None

    @property
    def _mirror(self) -> torch.Tensor | None:
        if self._built_mirror is None and self._pending_meta is not None:
            self._built_mirror = mirror_of(self._pending_meta)
        return self._built_mirror

    def _check_usable(self) -> None:
        pass

    def _require_session(self) -> "Session":
        return self._session


class Session:
    """Records what the dispatcher sends; builds result pointers as a session would."""

    grads_uncertain = False

    def __init__(self) -> None:
        self.commands: list[tuple] = []

    def command(self, location, op, args, kwargs, result_ids, metas=None) -> None:
        self.commands.append((op, len(result_ids), metas))

    def new_pointer(self, location, object_id, mirror=None, meta=None) -> Pointer:
        return Pointer(self, mirror=mirror, pending=meta)


@pytest.fixture
def fresh(monkeypatch) -> InferenceCache:
    """The dispatcher's process-wide cache, replaced by an empty one for the test."""
    replacement = InferenceCache()
    monkeypatch.setattr(dispatcher, "INFERRED", replacement)
    return replacement


def test_a_repeated_operation_is_inferred_once_and_gives_the_same_result(fresh):
    session = Session()
    x = Pointer(session, meta(2, 3))
    first = dispatcher.call_method("__add__", (x, 1), {})
    assert (fresh.hits, fresh.misses) == (0, 1)
    second = dispatcher.call_method("__add__", (x, 1), {})
    assert (fresh.hits, fresh.misses) == (1, 1)
    assert first._mirror.shape == second._mirror.shape == torch.Size([2, 3])
    assert second._pending_meta == TensorMeta(torch.Size([2, 3]), torch.float32)
    assert [c[1] for c in session.commands] == [1, 1]   # each call still sends its command
    different = dispatcher.call_method("__add__", (x, 1.5), {})
    assert (fresh.hits, fresh.misses) == (1, 2) and different._mirror.dtype == torch.float32


def test_a_cached_inference_still_sees_another_dtype(fresh):
    session = Session()
    ints = Pointer(session, meta(4, dtype=torch.int64))
    assert dispatcher.call_method("__add__", (ints, 1), {})._mirror.dtype == torch.int64
    assert dispatcher.call_method("__add__", (ints, 1.0), {})._mirror.dtype == torch.float32
    assert dispatcher.call_method("__add__", (ints, 1), {})._mirror.dtype == torch.int64
    assert (fresh.hits, fresh.misses) == (1, 2)


def test_in_place_operations_with_grad_never_touch_the_cache(fresh):
    session = Session()
    x = Pointer(session, meta(3))
    for _ in range(2):
        assert dispatcher.call_method("add_", (x, 1), {}) is x
        assert dispatcher.call_method("__iadd__", (x, 1), {}) is x
    assert (fresh.hits, fresh.misses) == (0, 0) and fresh._entries == {}
    assert [c[1] for c in session.commands] == [0, 0, 0, 0]   # no result ids: x itself changes


def test_an_in_place_operation_without_grad_is_inferred_once_and_still_checked(fresh):
    session = Session()
    weight = Pointer(session, meta(3).requires_grad_())
    with torch.no_grad():
        for _ in range(3):
            version = weight._mirror._version
            assert dispatcher.call_method("add_", (weight, Pointer(session, meta(3))), {}) is weight
            assert weight._mirror._version == version + 1   # saved tensors still notice
        assert (fresh.hits, fresh.misses) == (2, 1)
        with pytest.raises(RuntimeError):   # another shape: inferred again, torch's error
            dispatcher.call_method("add_", (weight, Pointer(session, meta(4))), {})
        resized = Pointer(session, meta(3))
        for _ in range(2):   # an in-place change of the metadata is never remembered
            dispatcher.call_method("unsqueeze_", (resized, 0), {})
        assert resized._mirror.shape == torch.Size([1, 1, 3])
    assert [c[1] for c in session.commands] == [0, 0, 0, 0, 0]
