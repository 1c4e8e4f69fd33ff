"""Plans: a function shipped to a worker once and run there by one command per call.

``plan.py`` is the client's half (:class:`~syftzmq.plan.plan.Plan`, ``func2plan``, splitting a
call's arguments); ``runner.py`` the worker's half (rebuilding the arguments and running it).
"""
