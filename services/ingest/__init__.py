"""ingest: the HTTP gateway, the send-requests intake and the recorder of the message log."""
