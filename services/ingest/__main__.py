"""``python -m services.ingest``."""

from libs.service import main
from services.ingest.app import IngestService

main("ingest", IngestService)
