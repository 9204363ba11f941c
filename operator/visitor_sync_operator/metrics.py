"""The operator's own Prometheus metrics, served on its ``/metrics`` endpoint.

Two kinds, because they come from two places:

- **Events** (a run ended, a reconcile failed) are counters and a histogram,
  incremented once when the operator handles the event (a Job is only
  counted once: its name is remembered in the resource's status).
- **State** (is the SFTP server ready, when did the last import succeed, how
  many held files wait) is derived from each ``DistrictSync`` status by a
  custom collector at scrape time (crate-operator's style), so it is right
  after an operator restart and disappears with the resource.

Labels stay bounded: ``namespace`` and ``district`` (the resource's name) per
district, plus small fixed vocabularies (result, file type, outcome, status).
Never run ids, file names or error text. Scrape with ``honor_labels: true``
(the chart's ServiceMonitor does) so ``namespace`` stays the district's, as
with kube-state-metrics.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from visitor_sync.summary import FileStatus, ImportSummary, RunResult

#: Per-file row outcomes counted in ``visitor_sync_rows_total``.
ROW_OUTCOMES = ("created", "updated", "unchanged", "deactivated", "rejected")
#: Run duration buckets: a quick empty run to a two-hour million-row import.
DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
#: ``type`` label of a file whose type could not be recognised.
UNKNOWN_TYPE = "unknown"

DISTRICT_LABELS = ("namespace", "district")
#: ``handler`` label values of ``visitor_sync_reconcile_errors_total``.
HANDLERS = ("changed", "resync", "reconcile", "sftp", "job")


@dataclass(frozen=True)
class DistrictHealth:
    """What the collector reports for one district, taken from its resource's status."""

    namespace: str
    name: str
    district_id: str
    ready: bool
    suspended: bool
    sftp_ready: bool
    consecutive_failed_runs: int = 0
    held_files_pending: int = 0
    oldest_held_file_time: datetime | None = None
    last_successful_import_time: datetime | None = None
    last_run_end_time: datetime | None = None
    next_run_time: datetime | None = None


class Fleet(Collector):
    """Every district's latest health, collected as gauges at scrape time.

    Thread-safe: kopf runs sync handlers in threads while the HTTP server scrapes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._districts: dict[tuple[str, str], DistrictHealth] = {}

    def update(self, health: DistrictHealth) -> None:
        with self._lock:
            self._districts[(health.namespace, health.name)] = health

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            self._districts.pop((namespace, name), None)

    def snapshot(self) -> list[DistrictHealth]:
        with self._lock:
            return list(self._districts.values())

    def describe(self) -> Iterable[Metric]:
        return self._families().values()

    def collect(self) -> Iterator[Metric]:
        families = self._families()
        for health in self.snapshot():
            labels = [health.namespace, health.name]
            families["info"].add_metric([*labels, health.district_id], 1)
            families["ready"].add_metric(labels, int(health.ready))
            families["suspended"].add_metric(labels, int(health.suspended))
            families["sftp_ready"].add_metric(labels, int(health.sftp_ready))
            families["failed"].add_metric(labels, health.consecutive_failed_runs)
            families["held"].add_metric(labels, health.held_files_pending)
            for key, moment in (("oldest_held", health.oldest_held_file_time),
                                ("last_success", health.last_successful_import_time),
                                ("last_run", health.last_run_end_time),
                                ("next_run", health.next_run_time)):
                if moment is not None:
                    families[key].add_metric(labels, moment.timestamp())
        yield from families.values()

    @staticmethod
    def _families() -> dict[str, GaugeMetricFamily]:
        def gauge(name: str, documentation: str,
                  extra: tuple[str, ...] = ()) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"visitor_sync_{name}", documentation,
                                     labels=[*DISTRICT_LABELS, *extra])

        return {
            "info": gauge("district_info", "One per DistrictSync resource; district_id is the "
                          "id its data is stored under.", ("district_id",)),
            "ready": gauge("district_ready", "1 when the district's Ready condition is True."),
            "suspended": gauge("district_suspended", "1 when scheduled runs are suspended "
                               "(spec.suspend or a pause window)."),
            "sftp_ready": gauge("sftp_ready", "1 when the district's SFTP server has a ready "
                                "replica."),
            "failed": gauge("consecutive_failed_runs", "Runs that failed in a row since the "
                            "last one that did not (0 after a success)."),
            "held": gauge("held_files_pending", "Files held for approval and not yet "
                          "approved, superseded or expired."),
            "oldest_held": gauge("oldest_held_file_timestamp_seconds", "When the oldest "
                                 "pending held file was held (absent when none)."),
            "last_success": gauge("last_successful_import_timestamp_seconds", "End of the "
                                  "last run that imported: result success or partial "
                                  "(absent before one)."),
            "last_run": gauge("last_run_timestamp_seconds", "End of the last finished run."),
            "next_run": gauge("next_run_timestamp_seconds", "Next scheduled run (absent while "
                              "suspended)."),
        }


class Metrics:
    """The operator's registry: event counters plus the :class:`Fleet` collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.fleet = Fleet()
        self.registry.register(self.fleet)
        self.runs = Counter(
            "visitor_sync_runs", "Import runs finished, by result (success, partial, held, "
            "failed, waiting; a Job that ended without a summary counts as failed).",
            [*DISTRICT_LABELS, "result"], registry=self.registry)
        self.rows = Counter(
            "visitor_sync_rows", "Rows of imported files, by file type and outcome "
            "(created, updated, unchanged, deactivated, rejected).",
            [*DISTRICT_LABELS, "type", "outcome"], registry=self.registry)
        self.files = Counter(
            "visitor_sync_files", "Files handled by runs, by file type and status (applied, "
            "rejected, held, waiting, failed, ignored).",
            [*DISTRICT_LABELS, "type", "status"], registry=self.registry)
        self.run_duration = Histogram(
            "visitor_sync_run_duration_seconds", "Wall-clock duration of finished runs.",
            DISTRICT_LABELS, buckets=DURATION_BUCKETS, registry=self.registry)
        self.reconcile_errors = Counter(
            "visitor_sync_reconcile_errors", "Operator handler failures, by handler and "
            "whether kopf retries them (temporary) or gives up (permanent).",
            ["handler", "kind"], registry=self.registry)
        for handler in HANDLERS:
            for kind in ("temporary", "permanent"):
                self.reconcile_errors.labels(handler, kind)

    def know_district(self, namespace: str, district: str) -> None:
        """Create the district's run series at 0, so ``increase()`` sees its first run."""
        for result in RunResult:
            self.runs.labels(namespace, district, result.value)

    def forget_district(self, namespace: str, district: str) -> None:
        """Drop a deleted district's series (label sets stay bounded by live districts)."""
        self.fleet.forget(namespace, district)
        for metric in (self.runs, self.rows, self.files, self.run_duration):
            names = metric._labelnames  # no public getter in prometheus_client
            label_sets = {tuple(sample.labels[name] for name in names)
                          for family in metric.collect() for sample in family.samples}
            for labels in label_sets:
                if labels[:2] == (namespace, district):
                    metric.remove(*labels)

    def record_run(self, namespace: str, district: str, summary: ImportSummary) -> None:
        """Count one finished run from its summary."""
        labels = (namespace, district)
        self.runs.labels(*labels, summary.result.value).inc()
        duration = (summary.finished_at - summary.started_at).total_seconds()
        self.run_duration.labels(*labels).observe(max(duration, 0.0))
        for outcome in summary.files:
            file_type = outcome.type or UNKNOWN_TYPE
            self.files.labels(*labels, file_type, outcome.status.value).inc()
            if outcome.status is FileStatus.WAITING:
                continue
            counts = {"created": outcome.created, "updated": outcome.updated,
                      "unchanged": outcome.unchanged, "deactivated": outcome.deactivated,
                      "rejected": outcome.rejected_rows}
            for name, count in counts.items():
                if count:
                    self.rows.labels(*labels, file_type, name).inc(count)

    def record_crashed_run(self, namespace: str, district: str) -> None:
        """Count a run whose Job ended without a summary (crash, OOM, deadline)."""
        self.runs.labels(namespace, district, "failed").inc()
