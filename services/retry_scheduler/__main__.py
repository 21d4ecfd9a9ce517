"""``python -m services.retry_scheduler``."""

from libs.service import main
from services.retry_scheduler.app import RetrySchedulerService

main("retry-scheduler", RetrySchedulerService)
