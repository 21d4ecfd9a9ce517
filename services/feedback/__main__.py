"""``python -m services.feedback``."""

from libs.service import main
from services.feedback.app import FeedbackService

main("feedback", FeedbackService)
