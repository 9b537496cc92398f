"""Nuwa's server side: the replica (``service.py``: :class:`CoordReplica` on the replicated-service kit), what it
applies and feeds to watchers (``applier.py``), the leader's session expiry (``session_keeper.py``), the REST/JSON
API (``rest.py``, ``rest_parse.py``, ``rest_openapi.py``) and offline backups (``backup.py``). Imports the core and
the shared messages, never the client side."""
