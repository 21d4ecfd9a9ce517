"""The mailbox simulator: an SMTP destination whose addresses answer like real mailboxes do.

Routed for ``simulator.sendarix.test`` in dev and tests, so every delivery outcome (accept,
hard and soft bounce, throttling, complaints, auto-replies, timeouts) can be produced on demand.
"""
