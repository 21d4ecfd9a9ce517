"""``python -m services.render``."""

from libs.service import main
from services.render.app import RenderService

main("render", RenderService)
