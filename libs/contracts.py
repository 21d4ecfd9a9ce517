"""Writes the published contracts: a JSON Schema per record and an AsyncAPI document.

``python -m libs.contracts`` regenerates ``schemas/jsonschema/*.json`` and
``schemas/asyncapi.json`` from the pydantic models and the topic catalogue;
``--check`` exits non-zero when the committed files are stale (``make test`` runs it too).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from libs.settings import REPO_ROOT
from libs.topics import catalogue
from schemas.send import SendRequest

SCHEMAS_DIR = REPO_ROOT / "schemas"
JSONSCHEMA_DIR = SCHEMAS_DIR / "jsonschema"
ASYNCAPI_PATH = SCHEMAS_DIR / "asyncapi.json"


def _records() -> list[type[BaseModel]]:
    """Every record type: the HTTP body plus whatever any topic carries, each once."""
    records: dict[str, type[BaseModel]] = {SendRequest.__name__: SendRequest}
    for topic in catalogue():
        records.setdefault(topic.record.__name__, topic.record)
    return list(records.values())


def json_schema(record: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of a record as applications see it on the wire (by alias)."""
    schema = record.model_json_schema(by_alias=True, mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://sendarix.dev/schemas/{record.__name__}.json"
    return schema


def asyncapi_document() -> dict[str, Any]:
    """An AsyncAPI 3.0 document describing every topic and the record it carries."""
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for topic in catalogue():
        name = topic.record.__name__
        messages[name] = {
            "name": name,
            "contentType": "application/json",
            "payload": {"$ref": f"./jsonschema/{name}.json"},
        }
        channel_id = topic.name.replace(".", "_")
        channels[channel_id] = {
            "address": topic.name,
            "description": topic.description,
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {
                "kafka": {
                    "partitions": topic.partitions,
                    "topicConfiguration": {"retention.ms": topic.retention_ms},
                }
            },
        }
        operations[f"receive_{channel_id}"] = {
            "action": "receive",
            "channel": {"$ref": f"#/channels/{channel_id}"},
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Sendarix topics",
            "version": "1",
            "description": "Every Kafka topic of the Sendarix pipeline and the record it carries. "
            "Kafka key = message id; W3C trace context travels in the record headers.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "local": {"host": "127.0.0.1:9092", "protocol": "kafka"},
        },
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def rendered_files() -> dict[Path, str]:
    """Every generated file and its content."""
    files = {
        JSONSCHEMA_DIR / f"{record.__name__}.json": _dump(json_schema(record))
        for record in _records()
    }
    files[ASYNCAPI_PATH] = _dump(asyncapi_document())
    return files


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def _holds(path: Path, text: str) -> bool:
    return path.exists() and path.read_text() == text


def stale_files() -> list[Path]:
    """Generated files whose committed content differs from what the code produces now."""
    expected = rendered_files()
    stale = [
        path for path, text in expected.items() if not path.exists() or path.read_text() != text
    ]
    stray = set(JSONSCHEMA_DIR.glob("*.json")) - set(expected)
    return sorted(stale) + sorted(stray)


def main() -> None:
    """Regenerate the contract files, or with ``--check`` report the stale ones."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail when files are stale")
    args = parser.parse_args()
    if args.check:
        if stale := stale_files():
            print("stale contract files (run python -m libs.contracts):", *stale, sep="\n  ")
            sys.exit(1)
        return
    JSONSCHEMA_DIR.mkdir(parents=True, exist_ok=True)
    for stray in set(JSONSCHEMA_DIR.glob("*.json")) - set(rendered_files()):
        stray.unlink()
    for path, text in rendered_files().items():
        path.write_text(text)
        print("wrote", path.relative_to(REPO_ROOT))


if __name__ == "__main__":
    main()
