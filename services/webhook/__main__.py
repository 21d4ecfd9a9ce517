"""``python -m services.webhook``."""

from libs.service import main
from services.webhook.app import WebhookService

main("webhook", WebhookService)
