"""The committed JSON Schema and AsyncAPI files match the code (run python -m libs.contracts)."""

from __future__ import annotations

from libs.contracts import asyncapi_document, stale_files
from libs.topics import catalogue


def test_generated_contract_files_are_fresh() -> None:
    assert stale_files() == []


def test_asyncapi_names_every_topic() -> None:
    addresses = {channel["address"] for channel in asyncapi_document()["channels"].values()}
    assert addresses == {topic.name for topic in catalogue()}
