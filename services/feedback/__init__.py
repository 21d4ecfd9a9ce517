"""feedback: the bounce domain's inbound SMTP server — DSNs, complaint reports and auto-replies
come back here and become ``bounced``, ``delayed``, ``complained`` and ``unsubscribed`` events."""
