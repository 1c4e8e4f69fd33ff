"""The client side: the session that owns the sockets, and worker handles."""
