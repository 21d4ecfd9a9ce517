"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.

The receiver checks the signature with the tenant's ``whsec_`` secret and rejects stale
timestamps, so a captured post can neither be forged nor replayed later.
"""

from __future__ import annotations

import math
from datetime import datetime

from standardwebhooks import Webhook


def signature_headers(secret: str, event_id: str, sent_at: datetime, body: bytes) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers of a post.

    ``sent_at`` must be timezone-aware; ``body`` is sent byte for byte as signed.
    """
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(math.floor(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(event_id, sent_at, body.decode()),
    }
