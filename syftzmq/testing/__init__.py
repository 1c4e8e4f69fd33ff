"""Helpers for users' own tests of code that runs on syftzmq workers (see :mod:`.pytest_plugin`)."""
