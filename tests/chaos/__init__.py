"""Fault injection: traffic through both intakes while services, the broker and the database fail.

``python -m tests.chaos`` (``make chaos``) is the full run; ``tests/e2e/test_chaos.py`` runs the
same scenario, smaller, in CI.
"""
