"""The sans-IO core of gossipreg.

Nothing under ``gossipreg.core`` performs IO or reads a clock: it never
imports trio, socket, ssl, time or uses the global ``random``. Time arrives as
an argument (``now``, a monotonic reading in seconds), the wall clock and
randomness are injected, and results are returned to the caller (a driver:
the trio runtime or the deterministic simulator). ``tests/core/test_purity.py``
enforces this.
"""
