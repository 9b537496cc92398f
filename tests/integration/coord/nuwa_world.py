"""Shared settings of the Nuwa integration tests."""

HISTORY_MAX_EVENTS = 400  # small, so a test can outrun the event history and see a Resync
