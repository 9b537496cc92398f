"""Benchmarks behind ``feitian bench``. They print figures; they are never assertions in tests."""
