"""router: gives each cleared message its route (``route.<lane>`` → ``deliver.<lane>``)."""
