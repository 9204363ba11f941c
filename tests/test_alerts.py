"""The shipped alert rules: valid, unit-tested, tied to runbooks and to the real metrics.

- ``promtool check rules`` and ``promtool test rules`` (tests/promtool/, one file per alert,
  each alert both firing and not firing) check the file exactly as the chart ships it.
- Every alert has a severity, a summary, a description and a ``runbook_url`` naming its
  runbook in docs/runbooks/, which exists, names the alert and links back to the rules.
- Every metric a rule reads is one the operator's registry really exports.
- A real Prometheus loads the rules and scrapes the operator's real registry over HTTP:
  every rule evaluates without error and the alerts the sample data calls for go pending or
  firing, with the district's own ``namespace`` label (``honor_labels``).

promtool and prometheus come from Debian's ``prometheus`` package; when missing, the tests
fail rather than skip (scripts/test installs it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import promql
from tests.support.metrics_sample import exported_labels, populated_metrics
from tests.support.prometheus import (
    ALERT_RULES,
    LiveMonitoring,
    PrometheusUnavailableError,
    live,
)
from visitor_sync.summary import FileOutcome, FileStatus, ImportSummary, RunResult
from visitor_sync_operator.metrics import ROW_OUTCOMES

ROOT = Path(__file__).resolve().parents[1]
PROMTOOL_TESTS = sorted((ROOT / "tests" / "promtool").glob("*.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks"
RUNBOOK_BASE = "https://github.com/visitoraware/visitor-sync/blob/main/docs/runbooks/"
SEVERITIES = {"critical", "warning"}
#: The fixed label vocabularies of the contract (docs/metrics.md), for matcher values.
VOCABULARY = {
    "result": {result.value for result in RunResult},
    "outcome": set(ROW_OUTCOMES),
    "status": {status.value for status in FileStatus},
    "kind": {"temporary", "permanent"},
}


def _alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERT_RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


ALERTS = sorted({rule["alert"] for rule in _alert_rules()})


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is missing: install Debian's `prometheus` package "
                    "(scripts/test does)", pytrace=False)
    return path


def test_the_issue_s_alerts_are_all_there() -> None:
    """The alerts the runbooks, the chart and the on-call people expect by name."""
    expected = {"VisitorSyncHeldFilesWaiting", "VisitorSyncImportFailing",
                "VisitorSyncImportStale", "VisitorSyncNoRecentImport", "VisitorSyncOperatorDown",
                "VisitorSyncReconcileErrors", "VisitorSyncSFTPDown"}
    assert set(ALERTS) == expected


def test_promtool_check_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(ALERT_RULES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(_alert_rules())} rules found" in result.stdout


@pytest.mark.parametrize("test_file", PROMTOOL_TESTS, ids=lambda path: path.stem)
def test_promtool_unit_tests(test_file: Path) -> None:
    result = subprocess.run([_promtool(), "test", "rules", str(test_file)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    """A promtool test expecting the alert, and one expecting silence, for every alert."""
    firing: set[str] = set()
    silent: set[str] = set()
    for test_file in PROMTOOL_TESTS:
        document = yaml.safe_load(test_file.read_text())
        assert document["rule_files"] == ["../../charts/visitor-sync/files/alerts.yaml"]
        for case in document["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    assert firing == set(ALERTS), f"never expected to fire: {set(ALERTS) - firing}"
    assert silent == set(ALERTS), f"never expected to stay silent: {set(ALERTS) - silent}"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_labels_and_annotations(rule: dict[str, Any]) -> None:
    """What Alertmanager routes on and what the person paged reads first."""
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    assert {"summary", "description", "runbook_url"} <= set(annotations)
    assert annotations["runbook_url"] == f"{RUNBOOK_BASE}{rule['alert']}.md"
    if "district" in promql.parse(rule["expr"]).grouping_labels:
        # a district alert must say which district, in both texts
        for text in (annotations["summary"], annotations["description"]):
            assert "{{ $labels.namespace }}/{{ $labels.district }}" in text


@pytest.mark.parametrize("alert", ALERTS)
def test_every_alert_has_a_runbook_that_links_back(alert: str) -> None:
    runbook = RUNBOOKS / f"{alert}.md"
    assert runbook.is_file(), f"missing runbook {runbook.relative_to(ROOT)}"
    text = runbook.read_text()
    assert text.startswith(f"# {alert}\n")
    assert "../../charts/visitor-sync/files/alerts.yaml" in text, "no link to the rule"
    for heading in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation",
                    "## Escalation"):
        assert heading in text, f"{runbook.name} lacks {heading}"


def test_runbooks_index_and_links() -> None:
    """No runbook without an alert; the index lists them all; relative links resolve."""
    pages = {path.stem for path in RUNBOOKS.glob("*.md")} - {"README"}
    assert pages == set(ALERTS)
    index = (RUNBOOKS / "README.md").read_text()
    for alert in ALERTS:
        assert f"]({alert}.md)" in index, f"README.md does not link {alert}"
    for page in RUNBOOKS.glob("*.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith(("http://", "https://")):
                assert (page.parent / target).exists(), f"{page.name}: broken link {target}"


@pytest.mark.parametrize("rule", _alert_rules(), ids=lambda rule: rule["alert"])
def test_rules_read_only_exported_metrics(rule: dict[str, Any]) -> None:
    """Metric, label and label-value names in each rule are what the operator exports."""
    exported = exported_labels(populated_metrics())
    exported["up"] = {"job", "instance"}
    query = promql.parse(rule["expr"])
    assert query.metrics, "no metric found: the PromQL reader is broken"
    assert query.metrics <= set(exported), f"not exported: {query.metrics - set(exported)}"
    all_labels = set().union(*exported.values())
    assert query.grouping_labels <= all_labels
    for selector in query.selectors:
        assert set(selector.matchers) <= exported[selector.metric], selector
        for label, (op, value) in selector.matchers.items():
            if label in VOCABULARY and op in ("=", "!="):
                assert value in VOCABULARY[label], f"{label}={value!r} is never exported"


# -- a real Prometheus -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def monitoring() -> LiveMonitoring:
    try:
        return live()
    except PrometheusUnavailableError as error:
        pytest.fail(str(error), pytrace=False)


def _alerts_by_rule(monitoring: LiveMonitoring) -> dict[str, dict[str, Any]]:
    return {rule["name"]: rule for rule in monitoring.prometheus.rules()}


def test_live_prometheus_evaluates_every_rule(monitoring: LiveMonitoring) -> None:
    """Loaded, evaluated after data arrived, and no rule errs on real series."""
    monitoring.wait_for_scrapes(2)
    prometheus = monitoring.prometheus
    scraped = prometheus.query('timestamp(up{job="visitor-sync-operator"} == 1)')
    first_scrape = min(float(sample["value"][1]) for sample in scraped)

    def evaluated_since_scrape() -> dict[str, dict[str, Any]] | None:
        rules = _alerts_by_rule(monitoring)
        done = all(datetime.fromisoformat(rule["lastEvaluation"]).timestamp() > first_scrape
                   for rule in rules.values())
        return rules if done else None

    rules = prometheus.wait_for("every rule evaluated after a scrape", evaluated_since_scrape)
    assert sorted(rules) == ALERTS
    for name, rule in rules.items():
        assert rule["health"] == "ok", f"{name}: {rule.get('lastError')}"


def _active(monitoring: LiveMonitoring, alert: str) -> dict[tuple[str, ...], str]:
    """``(namespace, district)`` or ``(handler,)`` -> state of the alert's active instances."""
    rule = _alerts_by_rule(monitoring)[alert]
    active = {}
    for instance in rule["alerts"]:
        labels = instance["labels"]
        assert "exported_namespace" not in labels
        key = (labels["handler"],) if "handler" in labels else \
            (labels["namespace"], labels["district"]) if "district" in labels else ()
        active[key] = instance["state"]
    return active


def test_live_alerts_follow_the_operator_s_metrics(monitoring: LiveMonitoring) -> None:
    """The sample's troubles raise exactly the alerts they should.

    district-b failed three runs in a row, has not succeeded for two days and its SFTP
    server is down; district-a has had files held for two days; a handler failed
    permanently (a brand-new counter series, the case ``increase()`` alone misses); the
    suspended, never-successful district-c raises nothing. All ``for:`` periods are minutes
    long, so district alerts are pending; the reconcile alert has none and fires.
    """
    monitoring.wait_for_scrapes(2)
    expected = {
        "VisitorSyncImportFailing": {("district-b", "b"): "pending"},
        "VisitorSyncImportStale": {("district-b", "b"): "pending"},
        "VisitorSyncSFTPDown": {("district-b", "b"): "pending"},
        "VisitorSyncHeldFilesWaiting": {("district-a", "a"): "pending"},
        "VisitorSyncReconcileErrors": {("create",): "firing"},
        "VisitorSyncOperatorDown": {},
    }

    def as_expected() -> bool:
        return all(_active(monitoring, alert) == states for alert, states in expected.items())

    monitoring.prometheus.wait_for(f"alerts {expected}", as_expected)


def test_live_files_arriving_without_success_raise_no_recent_import(
        monitoring: LiveMonitoring) -> None:
    """district-b gets another failed run with files: its files counter now increases."""
    monitoring.wait_for_scrapes(2)
    assert _active(monitoring, "VisitorSyncNoRecentImport") == {}
    now = datetime.now(UTC)
    monitoring.metrics.record_run("district-b", "b", ImportSummary(
        run_id="run-again", district_id="1002", result=RunResult.FAILED,
        started_at=now - timedelta(seconds=30), finished_at=now,
        files=[FileOutcome(file="students.csv", type="students", status=FileStatus.FAILED)]))
    monitoring.prometheus.wait_for(
        "VisitorSyncNoRecentImport pending for district-b",
        lambda: _active(monitoring, "VisitorSyncNoRecentImport") == {
            ("district-b", "b"): "pending"})
