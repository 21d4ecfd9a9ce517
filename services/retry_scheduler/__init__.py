"""retry-scheduler: holds deferred attempts in the database until their backoff has passed."""
