"""Webhook signatures verify with the Standard Webhooks library and match the contract's HMAC."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from libs.webhook_endpoints import new_webhook_secret
from services.webhook.signing import signature_headers

BODY = json.dumps({"id": "e-1", "data": {"recipient": "zoë@example.test"}}).encode()


def test_signature_verifies_with_the_standard_webhooks_library() -> None:
    secret = new_webhook_secret()
    headers = signature_headers([secret], "e-1", datetime.now(UTC), BODY)
    assert headers["webhook-id"] == "e-1"
    assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)


def test_signature_is_the_contracts_hmac_of_id_timestamp_body() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    sent_at = datetime(2026, 5, 1, 12, 30, 15, 900_000, tzinfo=UTC)
    headers = signature_headers([secret], "e-1", sent_at, BODY)
    assert headers["webhook-timestamp"] == "1777638615"
    mac = hmac.new(b"k" * 32, b"e-1.1777638615." + BODY, hashlib.sha256).digest()
    assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()


def test_tampered_body_or_other_secret_fails() -> None:
    secret = new_webhook_secret()
    headers = signature_headers([secret], "e-1", datetime.now(UTC), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(BODY.replace(b"e-1", b"e-2"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(BODY, headers)


def test_during_a_rotation_both_secrets_verify() -> None:
    new, old = new_webhook_secret(), new_webhook_secret()
    headers = signature_headers([new, old], "e-1", datetime.now(UTC), BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (new, old):
        assert Webhook(secret).verify(BODY, headers) == json.loads(BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_webhook_secret()).verify(BODY, headers)
