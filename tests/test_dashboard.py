"""The Grafana dashboard and docs/metrics.md only speak of series the operator exports.

A dashboard that names a metric or label the operator does not export shows "No data"
and nobody notices until the day it is needed, so:

- the dashboard JSON is well formed for Grafana (schema version, unique panel ids, a grid
  that fits and does not overlap, every query on the ``${datasource}`` variable, the
  ``namespace`` and ``district`` variables from ``label_values`` on the info metric), and
  it has the panels operations asked for;
- every metric, label and fixed label value in a panel query is exported by the
  operator's real registry (``Metrics()`` with recorded runs and fleet health, rendered
  by ``generate_latest`` and parsed back with prometheus-client's parser), and each panel
  honours the variables;
- every query runs on a real Prometheus scraping that registry and returns series;
- docs/metrics.md documents every exported metric, and each of its PromQL examples
  passes the same checks.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import promql
from tests.support.metrics_sample import exported_labels, populated_metrics
from tests.support.prometheus import LiveMonitoring, PrometheusUnavailableError, live
from visitor_sync.summary import FileStatus, RunResult
from visitor_sync_operator.metrics import ROW_OUTCOMES

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "charts" / "visitor-sync" / "files" / "dashboards" / "visitor-sync.json"
METRICS_DOC = ROOT / "docs" / "metrics.md"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
VOCABULARY = {
    "result": {result.value for result in RunResult},
    "outcome": set(ROW_OUTCOMES),
    "status": {status.value for status in FileStatus},
    "kind": {"temporary", "permanent"},
}
#: How the live test fills in Grafana's variables: every namespace, the sample's district.
SUBSTITUTIONS = {"$namespace": ".*", "$district": "a", "$__range": "1h",
                 "$__rate_interval": "1m", "$__interval": "1m"}


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return document


def _panels() -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    panels = []
    for panel in _dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def _rows() -> list[tuple[str, list[dict[str, Any]]]]:
    """``(row title, panels below it)`` in layout order."""
    rows: list[tuple[str, list[dict[str, Any]]]] = []
    for panel in sorted(_dashboard()["panels"], key=lambda p: (p["gridPos"]["y"],
                                                               p["gridPos"]["x"])):
        if panel["type"] == "row":
            rows.append((panel["title"], list(panel.get("panels", []))))
        else:
            assert rows, f"panel {panel['title']!r} above the first row"
            rows[-1][1].append(panel)
    return rows


def _targets() -> list[tuple[str, str]]:
    """``(row title, expr)`` of every query of every panel."""
    return [(row, target["expr"]) for row, panels in _rows() for panel in panels
            for target in panel.get("targets", [])]


def _doc_queries() -> list[str]:
    return re.findall(r"```promql\n(.*?)```", METRICS_DOC.read_text(), re.DOTALL)


@pytest.fixture(scope="module")
def exported() -> dict[str, set[str]]:
    return exported_labels(populated_metrics())


def _check_names(expr: str, exported: dict[str, set[str]]) -> promql.Query:
    """Assert every metric, matcher label, grouping label and vocabulary value is real."""
    query = promql.parse(expr)
    assert query.metrics, f"no metric found in {expr!r}: the PromQL reader is broken"
    unknown = query.metrics - set(exported)
    assert not unknown, f"{expr!r} uses metrics the operator does not export: {unknown}"
    all_labels = set().union(*exported.values())
    assert query.grouping_labels <= all_labels, expr
    for selector in query.selectors:
        assert set(selector.matchers) <= exported[selector.metric], (expr, selector)
        for label, (op, value) in selector.matchers.items():
            if label in VOCABULARY and op in ("=", "!="):
                assert value in VOCABULARY[label], f"{label}={value!r} is never exported"
    return query


# -- shape ---------------------------------------------------------------------------------


def test_dashboard_is_valid_grafana_json() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"] == "visitor-sync"
    assert dashboard["id"] is None, "a provisioned dashboard must not carry a database id"
    ids = [panel["id"] for panel in _panels()]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    cells: set[tuple[int, int]] = set()
    for panel in _panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        area = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])}
        assert not area & cells, f"{panel['title']!r} overlaps another panel"
        cells |= area
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE, panel["title"]
            assert panel.get("description"), f"{panel['title']!r} has no description"
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"] == DATASOURCE, panel["title"]
            refs = [target["refId"] for target in panel["targets"]]
            assert len(refs) == len(set(refs)), panel["title"]


def test_template_variables() -> None:
    """A datasource picker, and namespace/district lists from the operator's info metric."""
    variables = {variable["name"]: variable for variable in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    exported = exported_labels(populated_metrics())
    for name in ("namespace", "district"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["datasource"] == DATASOURCE
        assert variable["multi"] and variable["includeAll"]
        match = re.fullmatch(r"label_values\((.+), *(\w+)\)", variable["definition"])
        assert match, variable["definition"]
        assert match.group(2) == name
        assert variable["query"]["query"] == variable["definition"]
        series = promql.parse(match.group(1))
        assert series.metrics == {"visitor_sync_district_info"}
        assert name in exported["visitor_sync_district_info"]
    district_series = promql.parse(variables["district"]["definition"]).selectors[0]
    assert district_series.matchers["namespace"] == ("=~", "$namespace")


def test_the_panels_operations_asked_for() -> None:
    rows = dict(_rows())
    fleet, districts = rows["Fleet overview"], rows["District: $district"]
    titles = {panel["title"] for panel in fleet}
    assert {"Run success rate", "Districts failing", "Stale districts", "SFTP servers down",
            "Held files pending", "Runs by result"} <= titles
    titles = {panel["title"] for panel in districts}
    assert {"Rows by outcome", "Files by status", "Errors: rejected rows by file type",
            "Run duration", "SFTP server", "Last successful import"} <= titles
    duration = next(panel for panel in districts if panel["title"] == "Run duration")
    quantiles = {re.match(r"histogram_quantile\(([\d.]+),", target["expr"]).group(1)
                 for target in duration["targets"]}
    assert quantiles == {"0.5", "0.95"}


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("row", "expr"), _targets(),
                         ids=lambda value: value if len(value) < 40 else None)
def test_panel_queries_use_exported_names_and_the_variables(
        row: str, expr: str, exported: dict[str, set[str]]) -> None:
    query = _check_names(expr, exported)
    for selector in query.selectors:
        labels = exported[selector.metric]
        if "namespace" in labels:
            assert selector.matchers.get("namespace") == ("=~", "$namespace"), (expr, selector)
        if "district" in labels and row.startswith("District"):
            assert selector.matchers.get("district") == ("=~", "$district"), (expr, selector)


def test_every_exported_metric_is_documented(exported: dict[str, set[str]]) -> None:
    doc = METRICS_DOC.read_text()
    families = {re.sub(r"_(total|created|bucket|sum|count)$", "", name) for name in exported}
    for family in families:
        assert f"`{family}" in doc, f"docs/metrics.md does not describe {family}"
    for name in set(re.findall(r"`(visitor_sync_[a-z_]+)`", doc)):
        assert name in exported or f"{name}_total" in exported \
            or f"{name}_bucket" in exported, f"docs/metrics.md names {name}, not exported"


@pytest.mark.parametrize("expr", _doc_queries(), ids=lambda expr: expr.split("(")[0][:30])
def test_metrics_doc_examples_use_exported_names(expr: str,
                                                 exported: dict[str, set[str]]) -> None:
    _check_names(expr, exported)


# -- a real Prometheus -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitoring() -> LiveMonitoring:
    try:
        running = live()
    except PrometheusUnavailableError as error:
        pytest.fail(str(error), pytrace=False)
    running.wait_for_scrapes(2)  # increase() needs two samples
    return running


def _substitute(expr: str) -> str:
    for variable, value in sorted(SUBSTITUTIONS.items(), key=lambda item: -len(item[0])):
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable in {expr!r}"
    return expr


def test_every_panel_query_runs_and_finds_series(monitoring: LiveMonitoring) -> None:
    """Syntax, label matching and joins as Prometheus itself sees them, on real series."""
    empty = []
    for row, expr in _targets():
        result = monitoring.prometheus.query(_substitute(expr))
        if not result:
            empty.append(f"{row}: {expr}")
    assert not empty, "queries without data:\n" + "\n".join(empty)


def test_every_metrics_doc_example_runs(monitoring: LiveMonitoring) -> None:
    """Without error; some rightly find nothing here (no file waited in the sample)."""
    for expr in _doc_queries():
        monitoring.prometheus.query(expr)
