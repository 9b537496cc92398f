"""The ``chunkserver`` role's service: replica files on disk (``chunk_file.py``, ``store.py``), the Kuafu
handlers and pipeline forwarding (``service.py``), heartbeats and the scrubber (``loops.py``). Imports the core
and the shared messages, never the master's or the client's modules."""
