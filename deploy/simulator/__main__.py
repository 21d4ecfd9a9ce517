"""``python -m deploy.simulator``: serve the mailbox simulator until SIGINT or SIGTERM."""

from deploy.simulator.server import MailboxSimulator
from libs.service import main

main("simulator", MailboxSimulator)
