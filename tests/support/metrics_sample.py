"""The operator's real metrics registry with every series filled in, for the monitoring tests.

The alert rules and the Grafana dashboard are checked against what
``visitor_sync_operator.metrics.Metrics`` really exports, not against a list of names
copied into the tests: a renamed metric or label must break these tests. Recording goes
through the operator's own entry points (``record_run`` with a real ``ImportSummary``,
``record_crashed_run``, the ``Fleet`` collector), so every family and every label of the
fixed vocabularies (results, outcomes, file statuses, error kinds) appears at least once.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from visitor_sync.summary import FileOutcome, FileStatus, ImportSummary, RunResult
from visitor_sync_operator.metrics import DistrictHealth, Metrics

#: The drill-down district: it has data for every panel of the dashboard.
NAMESPACE = "district-a"
DISTRICT = "a"


def _summary(district_id: str, result: RunResult, started: datetime,
             files: list[FileOutcome]) -> ImportSummary:
    return ImportSummary(run_id=f"run-{district_id}-{result.value}", district_id=district_id,
                         result=result, started_at=started,
                         finished_at=started + timedelta(seconds=42), files=files)


def populated_metrics(now: datetime | None = None) -> Metrics:
    """A registry after a few runs of three districts, one of them in every kind of trouble.

    - ``district-a/a``: runs of every result, files of every status with every row outcome,
      two held files (the oldest two days old), SFTP up; the drill-down district.
    - ``district-b/b``: three failed runs in a row (one a crashed Job), no success for two
      days, SFTP down.
    - ``district-c/c``: suspended, never a successful import.
    - a permanent and a temporary reconcile error.
    """
    now = now or datetime.now(UTC)
    metrics = Metrics()
    every_status = [
        FileOutcome(file="students.csv", type="students", status=FileStatus.APPLIED,
                    rows_read=120, created=10, updated=5, unchanged=100, deactivated=2,
                    rejected_rows=3, errors=3),
        FileOutcome(file="visitors.csv", type="visitors", status=FileStatus.REJECTED,
                    rows_read=40, rejected_rows=40, errors=40),
        FileOutcome(file="employees.csv", type="employees", status=FileStatus.HELD,
                    rows_read=50, deactivated=30, held_reason="too many deactivations"),
        FileOutcome(file="volunteers.csv", type="volunteers", status=FileStatus.WAITING),
        FileOutcome(file="court_orders.csv", type="court_orders", status=FileStatus.FAILED),
        FileOutcome(file="notes.txt", status=FileStatus.REJECTED, errors=1),
    ]
    for result in RunResult:
        metrics.record_run(NAMESPACE, DISTRICT,
                           _summary("1001", result, now - timedelta(hours=1), every_status))
    failed = [FileOutcome(file="students.csv", type="students", status=FileStatus.FAILED)]
    for _ in range(2):
        metrics.record_run("district-b", "b",
                           _summary("1002", RunResult.FAILED, now - timedelta(hours=2), failed))
    metrics.record_crashed_run("district-b", "b")
    metrics.reconcile_errors.labels("create", "permanent").inc()
    metrics.reconcile_errors.labels("resync", "temporary").inc(3)

    metrics.fleet.update(DistrictHealth(
        namespace=NAMESPACE, name=DISTRICT, district_id="1001", ready=True, suspended=False,
        sftp_ready=True, consecutive_failed_runs=0, held_files_pending=2,
        oldest_held_file_time=now - timedelta(days=2),
        last_successful_import_time=now - timedelta(minutes=20),
        last_run_end_time=now - timedelta(minutes=20),
        next_run_time=now + timedelta(minutes=40)))
    metrics.fleet.update(DistrictHealth(
        namespace="district-b", name="b", district_id="1002", ready=False, suspended=False,
        sftp_ready=False, consecutive_failed_runs=3,
        last_successful_import_time=now - timedelta(days=2),
        last_run_end_time=now - timedelta(minutes=5),
        next_run_time=now + timedelta(minutes=55)))
    metrics.fleet.update(DistrictHealth(
        namespace="district-c", name="c", district_id="1003", ready=True, suspended=True,
        sftp_ready=True))
    return metrics


def exported_labels(metrics: Metrics) -> dict[str, set[str]]:
    """Every sample name in the registry's exposition, with the label names it carries.

    Rendered with ``generate_latest`` and read back with prometheus-client's parser:
    exactly what Prometheus would scrape (``_total``, ``_bucket``, ``_created`` and all).
    """
    text = generate_latest(metrics.registry).decode()
    labels: dict[str, set[str]] = defaultdict(set)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels[sample.name].update(sample.labels)
    return dict(labels)
