"""Sendarix record contracts: every record on every Kafka topic, and nothing else.

This package does no I/O and imports nothing else of Sendarix's; every service imports it.
Each record carries an explicit ``schema_version``; ``python -m schemas.generate`` writes the
JSON Schema files in ``schemas/jsonschema/`` and the AsyncAPI document beside them.
"""
