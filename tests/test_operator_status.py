"""How run outcomes become status, conditions, Event texts and metrics (pure functions)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from visitor_sync.issues import Issue
from visitor_sync.summary import FileOutcome, FileStatus, ImportSummary, RunResult
from visitor_sync_operator.handlers import health_of
from visitor_sync_operator.metrics import Metrics
from visitor_sync_operator.runs import RunOutcome, describe, status_after
from visitor_sync_operator.status import ConditionType, set_condition

STARTED = datetime(2026, 11, 28, 18, 14, tzinfo=UTC)
FINISHED = STARTED + timedelta(seconds=42)
SECRET_VALUE = "Zoë Q. Student"


def summary(result: RunResult, *files: FileOutcome, held_pending: int = 0) -> ImportSummary:
    return ImportSummary(run_id="5f0c6a52-0000-4000-8000-000000000001", district_id="springfield",
                         result=result, started_at=STARTED, finished_at=FINISHED,
                         files=list(files), held_pending=held_pending,
                         oldest_held_at=STARTED if held_pending else None)


def outcome(run: ImportSummary | None, failure: str | None = None) -> RunOutcome:
    return RunOutcome("springfield-import-29400000", "uid-29400000", FINISHED, run, failure)


STUDENTS = FileOutcome(file="students.csv", type="students", status=FileStatus.APPLIED,
                       rows_read=12, created=10, updated=1, unchanged=0, rejected_rows=1,
                       errors=1, issues=[Issue(file="students.csv", line=7, column="Grade",
                                               code="invalid_grade",
                                               reason=f"{SECRET_VALUE!r} is not a grade")])
HELD = FileOutcome(file="visitors.csv", type="visitors", status=FileStatus.HELD, rows_read=3,
                   held_reason="applying it would deactivate 40 of 50 active visitors")


def test_partial_run_counts_per_type_and_quotes_errors_without_cell_values() -> None:
    patch = status_after(outcome(summary(RunResult.PARTIAL, STUDENTS)), {}, 4)
    last = patch["lastImport"]
    assert (last["result"], last["runId"], last["files"], last["errors"]) == (
        "partial", "5f0c6a52-0000-4000-8000-000000000001", 1, 1)
    assert last["counts"] == {"students": {"rowsRead": 12, "created": 10, "updated": 1,
                                           "rejectedRows": 1, "errors": 1}}
    assert "students.csv line 7 column Grade: invalid_grade" in last["message"]
    assert SECRET_VALUE not in str(patch)
    assert patch["consecutiveFailedRuns"] == 0
    assert patch["lastSuccessfulImportTime"] == "2026-11-28T18:14:42Z"
    (condition,) = patch["conditions"]
    assert (condition["type"], condition["status"], condition["reason"]) == (
        "LastImportSucceeded", "True", "ImportPartial")


def test_held_run_names_the_file_and_is_not_a_success() -> None:
    patch = status_after(outcome(summary(RunResult.HELD, HELD, held_pending=2)),
                         {"consecutiveFailedRuns": 1}, 1)
    assert patch["lastImport"]["heldFiles"] == ["visitors.csv"]
    assert (patch["heldFilesPending"], patch["oldestHeldFileTime"]) == (2, "2026-11-28T18:14:00Z")
    assert "lastSuccessfulImportTime" not in patch
    assert patch["consecutiveFailedRuns"] == 0
    assert patch["conditions"][0]["status"] == "False"
    assert "visitors.csv held: applying it would deactivate 40 of 50" in patch[
        "lastImport"]["message"]


def test_job_without_summary_is_a_failed_run_that_says_what_happened() -> None:
    patch = status_after(outcome(None, "ended without a summary: OOMKilled"),
                         {"consecutiveFailedRuns": 2, "heldFilesPending": 1}, 1)
    assert patch["lastImport"]["result"] == "failed"
    assert patch["lastImport"]["runId"] is None
    assert patch["consecutiveFailedRuns"] == 3
    assert "heldFilesPending" not in patch  # unknown: kept as the last run said
    reason, message = describe(outcome(None, "ended without a summary: OOMKilled"))
    assert (reason, message) == (
        "ImportFailed", "Job springfield-import-29400000 ended without a summary: OOMKilled")


def test_condition_transition_time_moves_only_when_the_status_changes() -> None:
    first = set_condition([], ConditionType.READY, False, "SFTPNotReady", "waiting", 1,
                          STARTED)
    same = set_condition(first, ConditionType.READY, False, "SFTPNotReady", "still", 2,
                         FINISHED)
    flipped = set_condition(same, ConditionType.READY, True, "Ready", "up", 2, FINISHED)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    assert (same[0]["message"], same[0]["observedGeneration"]) == ("still", 2)
    assert flipped[0]["lastTransitionTime"] == "2026-11-28T18:14:42Z"


def test_fleet_gauges_and_run_counters_are_exported() -> None:
    metrics = Metrics()
    metrics.record_run("districts", "springfield", summary(RunResult.PARTIAL, STUDENTS, HELD))
    metrics.record_crashed_run("districts", "springfield")
    body = {"metadata": {"namespace": "districts", "name": "springfield"},
            "spec": {"districtId": "springfield"},
            "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"},
                                      {"type": "SFTPReady", "status": "True"}],
                       "consecutiveFailedRuns": 1, "heldFilesPending": 1,
                       "lastSuccessfulImportTime": "2026-11-28T18:14:42Z"}}
    metrics.fleet.update(health_of(body))

    samples = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
               for family in text_string_to_metric_families(
                   generate_latest(metrics.registry).decode())
               for sample in family.samples}
    district = (("district", "springfield"), ("namespace", "districts"))

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({**dict(district), **labels}.items())))]

    assert value("visitor_sync_runs_total", result="partial") == 1
    assert value("visitor_sync_runs_total", result="failed") == 1
    assert value("visitor_sync_rows_total", type="students", outcome="created") == 10
    assert value("visitor_sync_rows_total", type="students", outcome="rejected") == 1
    assert value("visitor_sync_files_total", type="visitors", status="held") == 1
    assert value("visitor_sync_run_duration_seconds_count") == 1
    assert value("visitor_sync_district_ready") == 1
    assert value("visitor_sync_consecutive_failed_runs") == 1
    assert value("visitor_sync_last_successful_import_timestamp_seconds") == FINISHED.timestamp()
    assert value("visitor_sync_district_info", district_id="springfield") == 1

    metrics.forget_district("districts", "springfield")
    exported = generate_latest(metrics.registry).decode()
    assert "springfield" not in exported


def test_a_new_district_starts_its_run_counters_at_zero() -> None:
    metrics = Metrics()
    metrics.know_district("districts", "ogdenville")
    exported = generate_latest(metrics.registry).decode()
    for result in ("success", "partial", "held", "failed", "waiting"):
        assert (f'visitor_sync_runs_total{{district="ogdenville",namespace="districts",'
                f'result="{result}"}} 0.0') in exported
