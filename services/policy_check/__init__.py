"""policy-check: stops mail to suppressed addresses (``policy.<lane>`` → ``route.<lane>``)."""
