"""Validate resources against the official FHIR R4 JSON Schema (vendored beside this file, see
NOTICE.md) and against the invariants of the resources our services rely on.

The schema is draft-06 and is checked with `jsonschema_rs.Draft6Validator`: once against the
resource type's own definition (whose errors name the bad path), and once against the whole
schema (its root `oneOf` over every resource type), as a FHIR validator would. The invariants
(FHIR's constraints written in FHIRPath, which a JSON Schema cannot say) are checked in plain
Python; each names the FHIR constraint key it checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jsonschema_rs

SCHEMA_PATH = Path(__file__).with_name("fhir.schema.json")
SCHEMA_ID = "http://hl7.org/fhir/json-schema/4.0"
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(SCHEMA_PATH.read_text())
    assert loaded["id"] == SCHEMA_ID and loaded["$schema"].startswith("http://json-schema.org/draft-06")
    return loaded


@lru_cache(maxsize=1)
def _root() -> jsonschema_rs.Draft6Validator:
    return jsonschema_rs.Draft6Validator(schema())


@lru_cache(maxsize=64)
def _of_type(resource_type: str) -> jsonschema_rs.Draft6Validator:
    whole = schema()
    if resource_type not in whole["definitions"]:
        raise AssertionError(f"{resource_type} is not a FHIR R4 resource type")
    return jsonschema_rs.Draft6Validator({"$schema": whole["$schema"], "id": whole["id"],
                                          "$ref": f"#/definitions/{resource_type}",
                                          "definitions": whole["definitions"]})


# The package's schema was generated from FHIR 4.0.0: its CapabilityStatement.fhirVersion enum
# stops at "4.0.0" and lacks "4.0.1", the technical correction we serve (4.0.1 changed no
# resource's structure). That one value is checked here, and the rest of the statement by the
# schema with 4.0.0 in its place.
SERVED_FHIR_VERSION, SCHEMA_FHIR_VERSION = "4.0.1", "4.0.0"


def schema_errors(resource: dict[str, Any]) -> list[str]:
    """What the official schema finds wrong with a resource (empty: valid)."""
    if resource.get("resourceType") == "CapabilityStatement":
        if resource.get("fhirVersion") != SERVED_FHIR_VERSION:
            return [f"fhirVersion: {resource.get('fhirVersion')!r}, not {SERVED_FHIR_VERSION}"]
        resource = {**resource, "fhirVersion": SCHEMA_FHIR_VERSION}
    resource_type = resource.get("resourceType")
    if not isinstance(resource_type, str):
        return ["no resourceType"]
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message[:300]}"
              for e in _of_type(resource_type).iter_errors(resource)]
    if not errors and not _root().is_valid(resource):
        errors.append("refused by the schema's root (resourceType oneOf)")
    return errors


def assert_valid(resource: dict[str, Any]) -> None:
    """The resource (and every resource a Bundle holds) passes the official schema and the
    invariants below."""
    errors = schema_errors(resource)
    if resource.get("resourceType") == "Bundle":
        for entry in resource.get("entry", []):
            errors += [f"entry {entry.get('fullUrl')}: {e}" for e in schema_errors(entry["resource"])]
    errors += invariant_errors(resource)
    assert not errors, "\n".join(errors) + "\n" + json.dumps(resource, indent=1)[:4000]


# ----------------------------------------------------------------------------- invariants

def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if "T" in text \
        else datetime.fromisoformat(text + "T00:00:00+00:00")


def invariant_errors(resource: dict[str, Any]) -> list[str]:
    """The FHIR invariants our resources rely on, checked in plain code."""
    errors: list[str] = []
    kind = resource.get("resourceType")
    if kind == "Bundle":
        urls = [e.get("fullUrl") for e in resource.get("entry", [])]
        if len(urls) != len(set(urls)):
            errors.append("bdl-7: fullUrl must be unique in a bundle")
        if resource.get("type") == "searchset" and any(
                "search" not in e for e in resource.get("entry", [])):
            errors.append("bdl-2: searchset entries carry search")
        for entry in resource.get("entry", []):
            res = entry["resource"]
            if not entry["fullUrl"].endswith(f"/{res['resourceType']}/{res['id']}"):
                errors.append(f"bdl-8: fullUrl {entry['fullUrl']} is not the resource's")
            errors += invariant_errors(res)
        return errors
    if "id" in resource and not _ID.fullmatch(resource["id"]):
        errors.append(f"id {resource['id']!r} is not a FHIR id")
    contained = {c["id"] for c in resource.get("contained", [])}
    local_refs = {n["reference"][1:] for _, n in _walk(resource)
                  if isinstance(n, dict) and isinstance(n.get("reference"), str)
                  and n["reference"].startswith("#")}
    if contained - local_refs:
        errors.append(f"dom-3: contained {sorted(contained - local_refs)} not referenced")
    if local_refs - contained:
        errors.append(f"ref-1: local reference to {sorted(local_refs - contained)} not contained")
    for path, node in _walk(resource):
        if not isinstance(node, dict):
            continue
        if "code" in node and "value" in node and isinstance(node.get("value"), int | float) \
                and "system" not in node:
            errors.append(f"qty-3 at {path}: a quantity's code needs its system")
        if node.get("system") == "http://unitsofmeasure.org" and "value" in node \
                and "code" not in node:
            errors.append(f"drt-1/qty at {path}: a UCUM quantity carries its code")
        if ("numerator" in node) != ("denominator" in node):
            errors.append(f"rat-1 at {path}: numerator and denominator together")
        if isinstance(node.get("start"), str) and isinstance(node.get("end"), str) \
                and _moment(node["start"]) > _moment(node["end"]):
            errors.append(f"per-1 at {path}: start after end")
    if kind == "Appointment" and resource.get("status") not in ("proposed", "cancelled", "waitlist") \
            and not ("start" in resource and "end" in resource):
        errors.append("app-3: only proposed or cancelled appointments may lack start and end")
    if kind == "Appointment" and ("start" in resource) != ("end" in resource):
        errors.append("app-2: start and end together")
    if kind == "Observation":
        own = {(c["system"], c["code"]) for c in resource["code"].get("coding", [])}
        for comp in resource.get("component", []):
            codes = {(c["system"], c["code"]) for c in comp["code"].get("coding", [])}
            if "valueQuantity" in resource and codes & own:
                errors.append("obs-7: a component's code is not the observation's own")
        if "dataAbsentReason" in resource and "valueQuantity" in resource:
            errors.append("obs-6: dataAbsentReason only without a value")
    if kind == "MedicationDispense" and "whenPrepared" in resource and "whenHandedOver" in resource \
            and _moment(resource["whenHandedOver"]) < _moment(resource["whenPrepared"]):
        errors.append("mdd-1: handed over before it was prepared")
    if kind == "CapabilityStatement":
        if resource.get("kind") == "instance" and "implementation" not in resource:
            errors.append("cpb-14: an instance statement has implementation")
        for rest in resource.get("rest", []):
            types = [r["type"] for r in rest.get("resource", [])]
            if len(types) != len(set(types)):
                errors.append("cpb-12: each resource type once per rest mode")
            for r in rest.get("resource", []):
                names = [p["name"] for p in r.get("searchParam", [])]
                if len(names) != len(set(names)):
                    errors.append(f"each search parameter once ({r['type']})")
    return errors
