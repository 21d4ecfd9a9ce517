"""The local stack: installs and runs the broker, database, tracing, mail catcher and services."""
