"""The Helm chart, rendered offline with helm-python-sdk (Helm's Go library; no binary).

Shared by the chart, image and documentation tests so that they all look at what
`helm install` would create rather than at the template sources.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "visitor-sync"
FULL_VALUES = CHART / "ci" / "full-values.yaml"
RELEASE = "visitor-sync"
NAMESPACE = "visitor-sync-system"


@functools.cache
def _chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def render_templates(values: dict[str, Any] | None = None, *, release: str = RELEASE,
                     namespace: str = NAMESPACE) -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would print (with NOTES.txt)."""
    return _chart().render(values or {}, name=release, namespace=namespace, is_install=True)


def render(values: dict[str, Any] | None = None, **kwargs: str) -> list[dict[str, Any]]:
    """Every object the chart would create (NOTES.txt and empty templates left out)."""
    objects = []
    for path, text in sorted(render_templates(values, **kwargs).items()):
        if path.endswith("NOTES.txt"):
            continue
        objects += [doc for doc in yaml.safe_load_all(text) if doc]
    return objects


def full_values() -> dict[str, Any]:
    return yaml.safe_load(FULL_VALUES.read_text())


def default_values() -> dict[str, Any]:
    return _chart().values


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    """The single object of ``kind`` (fails if there are none or several)."""
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, got {len(found)}"
    return found[0]


def declared_values(schema: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted paths of the values a (values.schema.json) schema declares, down through the
    objects it closes with ``additionalProperties: false`` (the levels the chart controls)."""
    found = set()
    for key, child in schema.get("properties", {}).items():
        found.add(prefix + key)
        if child.get("additionalProperties") is False:
            found |= declared_values(child, f"{prefix}{key}.")
    return found
