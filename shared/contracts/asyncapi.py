"""The events as an AsyncAPI 3.0 document, generated from the registry (docs/asyncapi.json).

    python -m shared.contracts.asyncapi > docs/asyncapi.json

One channel per event type (its address is the routing key, on its exchange), one `send`
operation by the service that publishes it, one message: the CloudEvents 1.0 envelope
(structured JSON mode, docs/CONTRACT.md, Events) whose `type` is the event type and whose
`data` is the payload model's JSON Schema. tests/unit/platform/test_asyncapi.py fails when the
committed document is not what this prints.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from shared.contracts.registry import SPECS, EventSpec
from shared.events import CONTENT_TYPE

VERSION = "1.0.0"  # the contract's; a breaking change is a new type (`.v2`), not a new version here
AMQP_BINDING_VERSION = "0.3.0"
SCHEMAS = "#/components/schemas/"

ENVELOPE: dict[str, Any] = {
    "type": "object",
    "description": "A CloudEvents 1.0 event in structured JSON mode; AMQP message_id = `id`, "
                   "routing key = `type`, persistent. `traceparent` (the distributed-tracing "
                   "extension) is present when the publisher's work was traced.",
    "required": ["specversion", "id", "source", "type"],
    "properties": {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "minLength": 1, "maxLength": 64,
               "description": "unique per event; consumers ignore an id they have processed"},
        "source": {"type": "string", "minLength": 1, "examples": ["/hai/scheduling"]},
        "type": {"type": "string", "minLength": 1, "maxLength": 200},
        "time": {"type": "string", "format": "date-time", "description": "UTC"},
        "subject": {"type": "string"},
        "datacontenttype": {"const": "application/json"},
        "traceparent": {"type": "string", "description": "W3C trace context"},
        "data": {},
    },
}


def message_name(spec: EventSpec) -> str:
    """`PumpRegistered` for PumpRegisteredData: the id of its channel, message and envelope."""
    return spec.payload.__name__.removesuffix("Data")


def shape(model: type[BaseModel]) -> type[BaseModel]:
    """The model whose schema describes `model`'s data: its ancestor with the same fields
    (`AlertRaisedData` is an `AlertData` under the name of one event)."""
    for parent in model.__mro__[1:]:
        if not (isinstance(parent, type) and issubclass(parent, BaseModel)) or \
                parent is BaseModel or parent.model_fields.keys() != model.model_fields.keys():
            break
        model = parent
    return model


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document of every registered event."""
    shapes = list(dict.fromkeys(shape(spec.payload) for spec in SPECS))
    _, top = models_json_schema([(m, "validation") for m in shapes], ref_template=SCHEMAS + "{model}")
    schemas: dict[str, Any] = {"CloudEvent": ENVELOPE, **dict(sorted(top["$defs"].items()))}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for spec in SPECS:
        name = message_name(spec)
        schemas[f"{name}Event"] = {
            "allOf": [{"$ref": SCHEMAS + "CloudEvent"}, {
                "type": "object", "required": ["data"],
                "properties": {"type": {"const": spec.routing_key},
                               "data": {"$ref": SCHEMAS + shape(spec.payload).__name__}},
            }],
        }
        messages[name] = {
            "name": spec.routing_key,
            "title": name,
            "summary": spec.description,
            "contentType": CONTENT_TYPE,
            "payload": {"$ref": SCHEMAS + f"{name}Event"},
            "bindings": {"amqp": {"deliveryMode": 2, "messageType": spec.routing_key,
                                  "bindingVersion": AMQP_BINDING_VERSION}},
            **({"x-subject": spec.subject} if spec.subject else {}),
        }
        channels[name] = {
            "address": spec.routing_key,
            "description": f"Routing key `{spec.routing_key}` on the `{spec.exchange}` exchange.",
            "messages": {name: {"$ref": f"#/components/messages/{name}"}},
            "bindings": {"amqp": {
                "is": "routingKey",
                "exchange": {"name": spec.exchange, "type": "topic", "durable": True,
                             "autoDelete": False, "vhost": "/"},
                "bindingVersion": AMQP_BINDING_VERSION,
            }},
        }
        operations[f"send{name}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{name}"},
            "messages": [{"$ref": f"#/channels/{name}/messages/{name}"}],
            "summary": f"{spec.publisher} publishes {spec.routing_key}",
            "x-publisher": spec.publisher,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "HAI pump events",
            "version": VERSION,
            "description": "The events the HAI pump services and the pharmacy system exchange "
                           "over RabbitMQ (docs/CONTRACT.md, Events and Pharmacy queue). "
                           "Generated from shared/contracts/registry.py by "
                           "`python -m shared.contracts.asyncapi`.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {"rabbitmq": {
            "host": "127.0.0.1:5672", "protocol": "amqp", "protocolVersion": "0.9.1",
            "description": "Any RabbitMQ (HAI_AMQP_URL); the exchanges are topic, durable.",
        }},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": schemas},
    }


def render() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
