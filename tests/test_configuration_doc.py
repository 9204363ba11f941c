"""docs/configuration.md must say what the CRD, the operator settings and the chart do.

Its tables are generated (scripts/configuration_doc.py); this fails when a table in
the document is not what the generator makes of the current CRD, settings model and
values.yaml, and tells how to regenerate.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys

import pytest
import yaml

from tests.support.chart import CHART, ROOT, declared_values

_SPEC = importlib.util.spec_from_file_location("configuration_doc",
                                               ROOT / "scripts" / "configuration_doc.py")
assert _SPEC and _SPEC.loader
configuration_doc = importlib.util.module_from_spec(_SPEC)
sys.modules["configuration_doc"] = configuration_doc
_SPEC.loader.exec_module(configuration_doc)
DOC = (ROOT / "docs" / "configuration.md").read_text()


@pytest.mark.parametrize("block", sorted(configuration_doc.BLOCKS))
def test_generated_table_is_current(block) -> None:
    expected = configuration_doc.BLOCKS[block]()
    assert configuration_doc.generated_block(DOC, block) == expected, (
        f"docs/configuration.md's {block} table is stale: {configuration_doc.REGENERATE}")


def _leaves(node: dict, prefix: str = "") -> set[str]:
    found = set()
    for key, value in (node.get("properties") or {}).items():
        found.add(prefix + key)
        found |= _leaves(value.get("items", value), f"{prefix}{key}.")
    return found


def test_every_spec_field_of_the_crd_is_documented() -> None:
    crd = yaml.safe_load((ROOT / "crds" / "districtsync.yaml").read_text())
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    documented = {path.replace("[]", "") for path in
                  re.findall(r"^\| `spec\.([\w.\[\]]+)`", DOC, re.MULTILINE)}
    assert _leaves(spec) <= documented


def test_every_chart_value_is_documented() -> None:
    """Every key values.schema.json declares (the levels the chart controls) has a row."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    missing = [path for path in declared_values(schema) - {"global"} if f"| `{path}` |" not in DOC]
    assert not missing


def test_every_chart_value_named_for_a_setting_exists() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    for names in configuration_doc.CHART_VALUES.values():
        for name in re.findall(r"[a-zA-Z]+(?:\.[a-zA-Z]+)*", names.split(" (")[0]):
            node = values
            for part in name.split("."):
                assert part in node, f"CHART_VALUES names {name}, which values.yaml lacks"
                node = node[part]


def test_regenerating_replaces_only_the_tables() -> None:
    stale = DOC.replace("| `spec.suspend` |", "| `spec.suspended` |")
    assert stale != DOC
    assert configuration_doc.regenerate(stale) == configuration_doc.regenerate(DOC)
    assert configuration_doc.regenerate(DOC).split("<!--")[0] == DOC.split("<!--")[0]
