"""``python -m services.sender``."""

from libs.service import main
from services.sender.app import SenderService

main("sender", SenderService)
