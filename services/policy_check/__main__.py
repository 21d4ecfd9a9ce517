"""``python -m services.policy_check``."""

from libs.service import main
from services.policy_check.app import PolicyCheckService

main("policy-check", PolicyCheckService)
