"""The DistrictSync CustomResourceDefinition, generated from the pydantic models.

pydantic writes JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema
(no ``$ref``, no ``anyOf`` of types, no ``additionalProperties: false``, a
type on every node). :func:`structural` converts one into the other, and the
few rules only the API server can enforce (immutability, cross-field checks)
are added as CEL ``x-kubernetes-validations``.

``crds/districtsync.yaml`` is this module's output; regenerate it with
``python3 -m visitor_sync_operator.crd > crds/districtsync.yaml`` (a test fails
while it is stale).
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from visitor_sync_operator.spec import (
    GROUP,
    KIND,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    DistrictSyncSpec,
)
from visitor_sync_operator.status import DistrictSyncStatus

#: JSON Schema keywords a structural schema keeps as they are.
_KEPT = ("type", "description", "enum", "pattern", "minimum", "maximum", "exclusiveMinimum",
         "exclusiveMaximum", "minLength", "maxLength", "minItems", "maxItems", "format")
#: pydantic formats and what Kubernetes calls them (others are dropped).
_FORMATS = {"date": "date", "date-time": "date-time", "email": "email",
            "ipv4network": "cidr", "ipv6network": "cidr", "cidr": "cidr"}
#: Upper bounds on lists, so the API server can estimate the cost of CEL rules.
MAX_ITEMS = 100

#: Lists of objects that are maps keyed by these fields (one entry per key, merged by
#: key in server-side apply), as Kubernetes keeps conditions.
LIST_MAP_KEYS = {"status.conditions": ("type",)}

#: CEL rules, by JSON path of the node they sit on.
VALIDATIONS: dict[str, list[dict[str, str]]] = {
    "spec.districtId": [{
        "rule": "self == oldSelf",
        "message": "districtId is immutable: the district's records are stored under it; "
                   "create a new DistrictSync for another district"}],
    "spec.pauseWindows[]": [{
        "rule": "self.end >= self.start", "message": "a pause window cannot end before it starts"}],
    "spec.sftp": [{
        "rule": "(!has(self.passwordLogin) || self.passwordLogin) || "
                "(has(self.authorizedKeys) && size(self.authorizedKeys) > 0)",
        "message": "passwordLogin is false and no authorizedKeys are given: the district "
                   "could not log in"}],
}


def structural(schema: dict[str, Any], definitions: dict[str, Any], path: str = "") -> dict:
    """``schema`` (a pydantic JSON Schema node) as a structural OpenAPI v3 schema."""
    if "$ref" in schema:
        target = definitions[schema["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return structural(merged, definitions, path)
    alternatives = [option for option in schema.get("anyOf", []) if option != {"type": "null"}]
    if alternatives:
        outer = {k: v for k, v in schema.items() if k != "anyOf"}
        formats = {_FORMATS.get(option.get("format", "")) for option in alternatives}
        inner = alternatives[0] if len(alternatives) == 1 else {
            "type": alternatives[0]["type"], "format": formats.pop() if len(formats) == 1 else ""}
        return structural({**inner, **outer}, definitions, path)
    node: dict[str, Any] = {key: schema[key] for key in _KEPT if key in schema}
    if "format" in node:
        node["format"] = _FORMATS.get(node["format"])
        if node["format"] is None:
            del node["format"]
    if schema.get("default") is not None:
        node["default"] = schema["default"]
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        node["properties"] = {
            name: structural(child, definitions, f"{path}.{name}".lstrip("."))
            for name, child in schema["properties"].items()}
        if schema.get("required"):
            node["required"] = list(schema["required"])
    elif kind == "object":
        values = schema.get("additionalProperties")
        if isinstance(values, dict):
            node["additionalProperties"] = structural(values, definitions, f"{path}{{}}")
        else:
            node["x-kubernetes-preserve-unknown-fields"] = True
    elif kind == "array":
        node["items"] = structural(schema["items"], definitions, f"{path}[]")
        node.setdefault("maxItems", MAX_ITEMS)
    if path in VALIDATIONS:
        node["x-kubernetes-validations"] = VALIDATIONS[path]
    if path in LIST_MAP_KEYS:
        node |= {"x-kubernetes-list-type": "map",
                 "x-kubernetes-list-map-keys": list(LIST_MAP_KEYS[path])}
    return node


def _schema_of(model: type, path: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return structural(schema, schema.get("$defs", {}), path)


def _condition_column(condition: str) -> str:
    return f'.status.conditions[?(@.type=="{condition}")].status'


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition object."""
    spec = _schema_of(DistrictSyncSpec, "spec")
    status = _schema_of(DistrictSyncStatus, "status")
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "visitor-sync",
                       "app.kubernetes.io/part-of": "visitor-sync"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": SINGULAR, "shortNames": list(SHORT_NAMES),
                      "categories": ["visitor-sync"]},
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {"name": "District", "type": "string", "jsonPath": ".spec.districtId"},
                    {"name": "Ready", "type": "string", "jsonPath": _condition_column("Ready")},
                    {"name": "Last import", "type": "date",
                     "jsonPath": ".status.lastImport.finishedAt"},
                    {"name": "Result", "type": "string",
                     "jsonPath": ".status.lastImport.result"},
                    # A string, not a date: kubectl prints a date as its age, and the
                    # age of a future time as <invalid>.
                    {"name": "Next run", "type": "string", "jsonPath": ".status.nextRunTime",
                     "description": "When the next scheduled run starts (UTC)."},
                    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "A school district's SFTP drop box and scheduled roster "
                                   "imports into the visitor-management database.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": status,
                    },
                }},
            }],
        },
    }


def render_crd() -> str:
    """The CRD as the YAML file in ``crds/``."""
    header = ("# Generated by `python3 -m visitor_sync_operator.crd` from the pydantic models in\n"
              "# operator/visitor_sync_operator/{spec,status}.py. Do not edit by hand.\n")
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render_crd())
