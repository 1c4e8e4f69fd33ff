"""The one thing the dispatcher, the mirrors and the inference cache know of a pointer.

:class:`~syftzmq.tensor.pointer.PointerTensor` subclasses :class:`RemoteOperand`; the modules that
route and infer operations (:mod:`~syftzmq.tensor.remote_call`, :mod:`~syftzmq.tensor.mirrors`,
:mod:`~syftzmq.tensor.inference_cache`) test operands against this base instead of importing the
pointer class, which itself calls into them: the pointer type stays small and the imports run
one way.
"""

from __future__ import annotations


class RemoteOperand:
    """An operand whose data lives on a worker.

    Subclasses provide: ``_location`` (a :class:`~syftzmq.core.refs.WorkerRef`),
    ``id_at_location``, ``_attr``, ``_session``, ``_built_mirror`` / ``_pending_meta`` (what is
    known of the target's shape and dtype), ``_mirror`` (the meta stand-in, or ``None``),
    ``_check_usable()``, ``_require_session()``, ``_resolved_mirror()`` and
    ``_attribute(name, known)`` (a pointer to the target's attribute ``name``).
    """

    __slots__ = ()
