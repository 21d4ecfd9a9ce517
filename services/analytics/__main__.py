"""``python -m services.analytics``."""

from libs.service import main
from services.analytics.app import AnalyticsService

main("analytics", AnalyticsService)
