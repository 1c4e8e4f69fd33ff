"""The operator's side: start, supervise and stop a cluster's workers, here and over SSH.

``syftzmq cluster up FILE`` (:mod:`.cli`) reads a cluster file (:mod:`.spec`), starts one keeper
per worker (:mod:`.agent`, run directly or over SSH by :mod:`.launch`), and supervises them
(:mod:`.supervisor`); ``status`` and ``down`` (:mod:`.status`) find it through its state file
(:mod:`.state`). ``syftzmq keygen`` (:mod:`.keygen`) makes the keys.
"""
