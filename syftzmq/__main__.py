"""``python -m syftzmq``: the ``syftzmq`` command (see :mod:`syftzmq.deploy.cli`)."""

from .deploy.cli import main

raise SystemExit(main())
