"""Nuwa (女娲): the coordination service — a replicated tree with sessions, ephemeral and sequential nodes,
transactions, persistent subscriptions, and the recipes built on them (locks, election, naming, client cache).

``feitian.coord.core`` holds the pure logic every replica runs identically (the tree, sessions, retried-write
results, the event history) and the leader's session timing. The service, client, recipes, REST API and CLI
are built on it. See ``docs/coord.md``.
"""
