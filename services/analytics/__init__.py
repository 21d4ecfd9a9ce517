"""analytics: aggregates of the event stream, and deliverability alerts."""
