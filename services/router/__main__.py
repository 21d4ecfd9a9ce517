"""``python -m services.router``."""

from libs.service import main
from services.router.app import RouterService

main("router", RouterService)
