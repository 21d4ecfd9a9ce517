"""webhook: posts each delivery event, signed, to its tenant's endpoint (``sendarix.events``)."""
