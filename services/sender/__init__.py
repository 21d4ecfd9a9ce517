"""sender: hands each delivery job to its route over SMTP, at most once per attempt."""
