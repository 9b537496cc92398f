"""The ``feitian`` command: ``feitian <noun> <verb>``. See docs/cli.md."""
