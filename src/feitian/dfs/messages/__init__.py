"""Pangu's wire messages, shared by every side: ``master`` (the master's methods: namespace, leases, chunk grants,
heartbeats) and ``chunk`` (the chunk servers' methods: pipeline writes, reads, copies). They import only the pure
core, so the master, the chunk server and the client can all import them without importing each other."""
