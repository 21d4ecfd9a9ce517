"""The shared runtime of every Sendarix service: settings, topics, broker, tracing, database."""
