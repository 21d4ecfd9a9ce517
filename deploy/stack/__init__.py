"""The local stack: installs and runs the broker, database, tracing UI, mail catcher and services."""
