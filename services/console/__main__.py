"""``python -m services.console``."""

from libs.service import main
from services.console.app import ConsoleService

main("console", ConsoleService)
