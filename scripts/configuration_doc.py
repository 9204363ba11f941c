#!/usr/bin/env python3
"""The generated tables of docs/configuration.md: DistrictSync, operator settings, chart values.

Each table comes from the thing it documents, so the reference cannot drift:
the DistrictSync fields from ``crds/districtsync.yaml`` (itself generated from the
spec models), the operator's environment from ``OperatorSettings``, the chart values
from ``charts/visitor-sync/values.yaml`` and its ``# --`` comments.
``tests/test_configuration_doc.py`` fails when the document differs. Regenerate with::

    python3 scripts/configuration_doc.py
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from visitor_sync_operator.settings import OperatorSettings

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
CRD = ROOT / "crds" / "districtsync.yaml"
VALUES = ROOT / "charts" / "visitor-sync" / "values.yaml"
REGENERATE = "python3 scripts/configuration_doc.py"
ENV_PREFIX = "VISITOR_SYNC_"

#: Descriptions of settings whose model field has none (every setting must have one).
SETTING_NOTES: dict[str, str] = {}
#: The chart value that sets each setting (tests/test_chart.py checks the chart does).
CHART_VALUES = {
    "namespaces": "watchNamespaces",
    "image": "image.repository, image.tag, image.digest",
    "sftp_image": "sftpImage.repository, sftpImage.tag, sftpImage.digest",
    "image_pull_policy": "image.pullPolicy",
    "database_secret": "database.secretName",
    "database_secret_key": "database.secretKey",
    "smtp.host": "smtp.host (with smtp.enabled)",
    "smtp.port": "smtp.port",
    "smtp.security": "smtp.security",
    "smtp.sender": "smtp.sender",
    "smtp.username": "smtp.username",
    "smtp.password_secret": "smtp.passwordSecret",
    "smtp.ca_config_map": "smtp.caConfigMap",
    "image_pull_secrets": "districtImagePullSecrets",
    "metrics_port": "operator.metricsPort",
    "health_port": "operator.healthPort",
    "resync_seconds": "operator.resyncSeconds",
}


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(value: Any) -> str:
    shown = value if isinstance(value, str) and value else json.dumps(value)
    return f"`{_cell(shown)}`"


# -- DistrictSync ------------------------------------------------------------------------------


def _type(node: dict[str, Any]) -> str:
    kind = node.get("type", "object")
    if kind == "array":
        return f"[]{_type(node['items'])}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map[string]{_type(node['additionalProperties'])}"
    if node.get("format"):
        return f"{kind} ({node['format']})"
    return str(kind)


def _range(node: dict[str, Any], low: str, high: str, label: str) -> str | None:
    if low in node and high in node:
        return f"{label}{node[low]}..{node[high]}"
    if low in node:
        return f"{label}>= {node[low]}"
    if high in node:
        return f"{label}<= {node[high]}"
    return None


def _constraints(node: dict[str, Any]) -> list[str]:
    found = [_range(node, "minimum", "maximum", ""),
             _range(node, "minLength", "maxLength", "length "),
             _range(node, "minItems", "maxItems", "items ")]
    if "enum" in node:
        found.append("one of " + ", ".join(_code(value) for value in node["enum"]))
    if "pattern" in node:
        found.append(f"matches {_code(node['pattern'])}")
    found += [f"rule: {rule['message']}" for rule in node.get("x-kubernetes-validations", [])]
    return [item for item in found if item]


def _fields(node: dict[str, Any], path: str, required: bool) -> Iterator[list[str]]:
    if path.count(".") > 0:
        default = _code(node["default"]) if "default" in node and node["default"] != {} else ""
        meaning = _cell(node.get("description", ""))
        constraints = _cell("; ".join(_constraints(node)))
        if constraints:
            meaning = f"{meaning} ({constraints})" if meaning else constraints
        yield [f"`{path}`", _cell(_type(node)), "yes" if required else "", default, meaning]
    item = node.get("items", {})
    if node.get("type") == "array" and "properties" in item:
        node, path = item, f"{path}[]"
    elif isinstance(node.get("additionalProperties"), dict) \
            and "properties" in node["additionalProperties"]:
        node, path = node["additionalProperties"], f"{path}.*"
    for name, child in node.get("properties", {}).items():
        yield from _fields(child, f"{path}.{name}", name in node.get("required", []))


def _crd_table(part: str) -> str:
    crd = yaml.safe_load(CRD.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"][part]
    rows = [["field", "type", "required", "default", "meaning"],
            ["---"] * 5, *_fields(schema, part, True)]
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


def render_spec() -> str:
    return _crd_table("spec")


def render_status() -> str:
    return _crd_table("status")


# -- operator settings -------------------------------------------------------------------------


def _settings(model: type[BaseModel], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for name, field in model.model_fields.items():
        nested = [arg for arg in getattr(field.annotation, "__args__", ())
                  if isinstance(arg, type) and issubclass(arg, BaseModel)]
        if nested:
            yield from _settings(nested[0], f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", field


def render_settings() -> str:
    rows = [["variable", "default", "chart value", "meaning"], ["---"] * 4]
    for name, field in _settings(OperatorSettings):
        description = field.description or SETTING_NOTES.get(name)
        if not description:
            raise ValueError(f"setting {name} has no description: give it one in "
                             "settings.py or in SETTING_NOTES")
        default = field.default
        if default is PydanticUndefined:
            default = field.default_factory() if field.default_factory else None  # type: ignore[call-arg]
        shown = "" if default is None else _code(getattr(default, "value", default))
        if name == "namespaces":
            description += " A JSON list, e.g. `[\"districts\"]`."
        variable = ENV_PREFIX + name.upper().replace(".", "__")
        rows.append([f"`{variable}`", shown, _cell(CHART_VALUES.get(name, "")),
                     _cell(description)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# -- chart values ------------------------------------------------------------------------------


def chart_values() -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) of every key of values.yaml with a comment."""
    lines = VALUES.read_text().splitlines()
    defaults = yaml.safe_load(VALUES.read_text())
    found: list[tuple[str, Any, str]] = []
    stack: list[tuple[int, str]] = []
    for number, line in enumerate(lines):
        match = re.match(r"^( *)([A-Za-z][\w-]*):", line)
        if not match:
            continue
        indent, key = len(match.group(1)), match.group(2)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(name for _, name in stack), key])
        stack.append((indent, key))
        comment: list[str] = []
        for previous in reversed(lines[:number]):
            if not previous.strip().startswith("#"):
                break
            comment.insert(0, previous.strip().lstrip("#").strip())
        if not comment:
            continue
        value: Any = defaults
        for part in path.split("."):
            value = value[part]
        description = " ".join(comment).removeprefix("-- ")
        found.append((path, value, description))
    return found


def render_values() -> str:
    rows = [["value", "default", "meaning"], ["---"] * 3]
    documented = chart_values()
    parents = {path.rsplit(".", 1)[0] for path, _, _ in documented if "." in path}
    for path, value, description in documented:
        shown = "" if path in parents else _code(value)
        rows.append([f"`{path}`", shown, _cell(description)])
    return "\n".join("| " + " | ".join(row) + " |" for row in rows)


# -- the document ------------------------------------------------------------------------------

BLOCKS = {"districtsync-spec": render_spec, "districtsync-status": render_status,
          "operator-settings": render_settings, "chart-values": render_values}


def markers(name: str) -> tuple[str, str]:
    return (f"<!-- BEGIN GENERATED: {name} ({REGENERATE}) -->",
            f"<!-- END GENERATED: {name} -->")


def generated_block(text: str, name: str) -> str:
    """What the document holds between the markers of block ``name``."""
    begin, end = markers(name)
    if begin not in text or end not in text:
        raise ValueError(f"{DOC.name} lacks the markers of the {name} block")
    return text.split(begin, 1)[1].split(end, 1)[0].strip("\n")


def regenerate(text: str) -> str:
    for name, render in BLOCKS.items():
        begin, end = markers(name)
        old = generated_block(text, name)
        text = text.replace(f"{begin}\n{old}\n{end}", f"{begin}\n{render()}\n{end}")
    return text


def main() -> None:
    DOC.write_text(regenerate(DOC.read_text()))
    sys.stdout.write(f"regenerated the tables of {DOC.relative_to(ROOT)}\n")


if __name__ == "__main__":
    main()
