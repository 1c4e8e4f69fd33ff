"""What both processes run: the message vocabulary, references, tensor metadata, op naming, ids.

Nothing here imports from the client, the tensor proxy, plans or the worker: a worker and a
client agree on this package and on :mod:`syftzmq.wire`, and on nothing else.
"""
