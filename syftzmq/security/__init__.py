"""Who may talk to a worker, and what they can do: the cluster key (``keys``), CURVE encryption
and client authorization (``curve``), and which addresses need a key (``netpolicy``)."""
