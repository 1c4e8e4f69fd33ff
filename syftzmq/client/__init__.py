"""The client side: everything that runs in the user's process.

- ``handles``: ``sy.VirtualWorker`` / ``sy.Worker`` / ``sy.local_worker`` and the default session;
- ``session``: the facade the tensor layer talks to — commands, stores, observations, typed
  requests (``get``, ``info``, ``objects``, ``move``, ``ping``, ``shutdown``), close;
- ``connections`` (sockets by worker incarnation, handshakes, restarted and forgotten workers)
  over ``connection`` (one DEALER to one worker);
- ``sending`` (the one way out: carries the ``outbox``, keeps the chain-holder order of
  ``chains``);
- ``releases`` (deletes of dead pointers), ``round_trip`` (requests, replies, deadlines, which
  workers to flush first), ``heartbeat`` (lease renewal while idle), ``stats``;
- ``launcher`` and ``cluster_file`` (starting workers), ``torch_hook`` (``sy.TorchHook``).
"""
