"""docs/asyncapi.json is the registry's AsyncAPI 3.0 document, current and well-formed.

No maintained AsyncAPI 3 validator is on PyPI, so the structure the spec requires is checked
here: the version, `info`, channels with an address and messages, operations whose `action` is
send or receive and whose references point at their channel's messages, every `$ref` resolving,
component keys of the allowed characters, and one channel per registered event type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared.contracts import asyncapi
from shared.contracts.registry import SPECS

DOC = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"
KEY = re.compile(r"^[A-Za-z0-9.\-_]+$")  # AsyncAPI 3.0: keys of channels, operations, components


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local references: {ref}"
    node: Any = doc
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"{ref} does not resolve"
        node = node[part]
    return node


def check_structure(doc: dict[str, Any]) -> None:
    """Fail on anything an AsyncAPI 3.0 document of the registry must not be."""
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"]
    for kind in ("channels", "operations"):
        assert doc[kind] and all(KEY.match(k) for k in doc[kind]), kind
    for kind, items in doc["components"].items():
        assert all(KEY.match(k) for k in items), kind
    for name, channel in doc["channels"].items():
        assert channel["address"], name
        assert channel["messages"], name
        for message in channel["messages"].values():
            _resolve(doc, message["$ref"])
    for name, operation in doc["operations"].items():
        assert operation["action"] in ("send", "receive"), name
        channel_ref = operation["channel"]["$ref"]
        _resolve(doc, channel_ref)
        for message in operation["messages"]:
            assert message["$ref"].startswith(channel_ref + "/messages/"), name
            _resolve(doc, message["$ref"])
    for name, message in doc["components"]["messages"].items():
        assert message["payload"], name
    for ref in _refs(doc):
        _resolve(doc, ref)
    by_address = {c["address"]: c for c in doc["channels"].values()}
    assert set(by_address) == {spec.routing_key for spec in SPECS}
    for spec in SPECS:
        channel = by_address[spec.routing_key]
        assert channel["bindings"]["amqp"]["exchange"]["name"] == spec.exchange
        (message_ref,) = channel["messages"].values()
        message = _resolve(doc, message_ref["$ref"])
        envelope = _resolve(doc, message["payload"]["$ref"])
        (base, own) = envelope["allOf"]
        assert base == {"$ref": "#/components/schemas/CloudEvent"}
        assert own["properties"]["type"] == {"const": spec.routing_key}
        data = _resolve(doc, own["properties"]["data"]["$ref"])
        assert set(data["properties"]) == set(spec.payload.model_fields), spec.routing_key


def test_the_committed_document_is_current() -> None:
    committed = DOC.read_text(encoding="utf-8")
    assert committed == asyncapi.render(), (
        "docs/asyncapi.json is out of date: python -m shared.contracts.asyncapi > docs/asyncapi.json")


def test_the_document_is_well_formed_asyncapi_3() -> None:
    check_structure(json.loads(DOC.read_text(encoding="utf-8")))


def _drop_channel(doc: dict[str, Any]) -> None:
    doc["channels"].pop(next(iter(doc["channels"])))


def _dangling_operation(doc: dict[str, Any]) -> None:
    next(iter(doc["operations"].values()))["channel"]["$ref"] = "#/channels/Nowhere"


def _wrong_type(doc: dict[str, Any]) -> None:
    envelope = doc["components"]["schemas"]["FlowRecordedEvent"]
    envelope["allOf"][1]["properties"]["type"] = {"const": "hai.scheduling.flow.measured"}


def _missing_field(doc: dict[str, Any]) -> None:
    doc["components"]["schemas"]["FlowRecordedData"]["properties"].pop("refill_id")


def _bad_action(doc: dict[str, Any]) -> None:
    next(iter(doc["operations"].values()))["action"] = "publish"  # AsyncAPI 2's word


@pytest.mark.parametrize("spoil", [_drop_channel, _dangling_operation, _wrong_type,
                                   _missing_field, _bad_action])
def test_a_spoilt_document_is_refused(spoil: Any) -> None:
    doc = asyncapi.document()
    check_structure(doc)
    spoil(doc)
    with pytest.raises((AssertionError, KeyError)):
        check_structure(doc)
