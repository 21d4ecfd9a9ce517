"""Standard Webhooks signatures: ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">``.

The receiver checks the signature with the endpoint's ``whsec_`` secret and rejects stale
timestamps, so a captured post can neither be forged nor replayed later. While a secret is
rotated, the post carries one signature per secret, space-separated, so a receiver holding
either secret verifies it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime

from standardwebhooks import Webhook


def signature_headers(
    secrets: Sequence[str], event_id: str, sent_at: datetime, body: bytes
) -> dict[str, str]:
    """The ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature`` headers of a post.

    ``sent_at`` must be timezone-aware; ``body`` is sent byte for byte as signed.
    """
    text = body.decode()
    return {
        "webhook-id": event_id,
        "webhook-timestamp": str(math.floor(sent_at.timestamp())),
        "webhook-signature": " ".join(
            Webhook(secret).sign(event_id, sent_at, text) for secret in secrets
        ),
    }
