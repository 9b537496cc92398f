"""Nuwa's client side: :class:`CoordClient` (``client.py``) with its write batching (``batching.py``), session
(``session.py``) and watches (``watch.py``); the synchronous wrapper (``sync.py``); the ``nuwa://`` resolver
(``resolver.py``); the recipes (``recipes/``: locks, election, naming, barrier, queue). Imports the core and the
shared messages, never the server side. Users import all of it from :mod:`feitian.coord`."""
