"""The user-facing proxy: pointers that act like tensors.

``pointer.py`` is the small pointer type; every operation on it goes through the one dispatcher,
``remote_call.py``, which infers results on meta ``mirrors.py`` (cached by ``inference_cache.py``)
and hands one command to the client session. ``modules.py`` makes ``nn.Module`` and optimizers
work on sent models; ``hook.py`` adds ``send``/``move`` to torch.
"""
