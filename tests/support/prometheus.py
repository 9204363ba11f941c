"""A throwaway Prometheus server (Debian's ``prometheus`` package) and a /metrics endpoint.

The monitoring tests load the shipped alert rules into a real Prometheus that scrapes the
operator's real registry over HTTP, the way the chart's ServiceMonitor will (job
``visitor-sync-operator``, ``honor_labels``), with a one-second scrape and evaluation
interval so rules see data within seconds. Prometheus listens on 127.0.0.1 on a free port
and keeps its TSDB in a private temporary directory; both go away on ``stop()``.

Like ``tests.support.postgres`` this module does not import pytest: a missing binary raises
:class:`PrometheusUnavailableError`, which the tests turn into a failure, not a skip.
"""

from __future__ import annotations

import atexit
import json
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import yaml
from prometheus_client import CollectorRegistry, start_http_server

from tests.support.metrics_sample import populated_metrics
from tests.support.waiting import wait_for
from visitor_sync_operator.metrics import Metrics

ALERT_RULES = Path(__file__).resolve().parents[2] / "charts/visitor-sync/files/alerts.yaml"
#: The scrape job name the chart's ServiceMonitor gives the operator (the alerts use it).
JOB = "visitor-sync-operator"
START_ATTEMPTS = 3
"""Free-port picking can race with other processes (e.g. other xdist workers); retry."""

T = TypeVar("T")


class PrometheusUnavailableError(RuntimeError):
    """The ``prometheus`` binary is missing: ``apt-get install prometheus`` (scripts/test does)."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class MetricsEndpoint:
    """``prometheus_client``'s own HTTP server for a registry, on 127.0.0.1 and a free port."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.server, self._thread = start_http_server(0, addr="127.0.0.1", registry=registry)
        self.target = f"127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        """Stop answering scrapes (Prometheus then records ``up == 0``)."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)


class PrometheusServer:
    """One private Prometheus scraping ``targets`` as job ``visitor-sync-operator``."""

    host = "127.0.0.1"

    def __init__(self, targets: list[str], rule_files: list[Path] | None = None,
                 interval: str = "1s") -> None:
        self.binary = shutil.which("prometheus")
        if self.binary is None:
            raise PrometheusUnavailableError(
                "no `prometheus` binary: install Debian's prometheus package "
                "(scripts/test does)")
        self.targets = targets
        self.rule_files = [path.resolve() for path in rule_files or []]
        self.interval = interval
        self.port = 0
        self.base_dir: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.base_dir = Path(tempfile.mkdtemp(prefix="visitor-sync-prometheus-"))
        config = {
            "global": {"scrape_interval": self.interval, "evaluation_interval": self.interval,
                       "scrape_timeout": self.interval},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [{"job_name": JOB, "honor_labels": True,
                                "static_configs": [{"targets": self.targets}]}],
        }
        config_file = self.base_dir / "prometheus.yml"
        config_file.write_text(yaml.safe_dump(config))
        last_error = ""
        for _ in range(START_ATTEMPTS):
            self.port = _free_port()
            log = (self.base_dir / "prometheus.log").open("wb")
            assert self.binary is not None
            self._process = subprocess.Popen(
                [self.binary, f"--config.file={config_file}",
                 f"--storage.tsdb.path={self.base_dir / 'data'}",
                 f"--web.listen-address={self.host}:{self.port}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self._process.poll() is None:
                try:
                    with urllib.request.urlopen(f"{self.url}/-/ready", timeout=1) as answer:
                        if answer.status == 200:
                            return
                except (urllib.error.URLError, ConnectionError):
                    pass
                time.sleep(0.05)
            last_error = self.log()[-2000:]
            self._terminate()
        self.stop()
        raise RuntimeError(f"Prometheus did not start:\n{last_error}")

    def log(self) -> str:
        """Prometheus's own log, for failure messages."""
        if self.base_dir is None:
            return ""
        path = self.base_dir / "prometheus.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """GET ``/api/v1/<path>`` and return its ``data``; an API error raises."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                body = json.load(answer)
        except urllib.error.HTTPError as error:
            body = json.load(error)
        if body.get("status") != "success":
            raise ValueError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's result vector (``[{"metric": {...}, "value": [t, "v"]}]``)."""
        data = self.api("query", query=expr)
        result: list[dict[str, Any]] = data["result"] if data["resultType"] == "vector" \
            else [{"metric": {}, "value": data["result"]}]
        return result

    def rules(self) -> list[dict[str, Any]]:
        """Every loaded rule (from ``/api/v1/rules``) with its state, health and alerts."""
        return [rule for group in self.api("rules")["groups"] for rule in group["rules"]]

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = 10.0) -> T:
        """Poll ``check`` until it returns something truthy; fail with ``what`` and the log."""
        return wait_for(f"Prometheus: {what}", check, timeout, interval=0.1,
                        detail=lambda: self.log()[-2000:])

    def _terminate(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def stop(self) -> None:
        self._terminate()
        if self.base_dir is not None:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()


class LiveMonitoring:
    """The operator's populated registry served over HTTP and scraped by a real Prometheus.

    Prometheus starts scraping static targets only after its scrape manager's first
    5-second reload tick, so the pair is started once per test process (see :func:`live`)
    and shared by the alert and dashboard tests instead of paying that per module.
    """

    def __init__(self, metrics: Metrics, rule_files: list[Path]) -> None:
        self.metrics = metrics
        self.endpoint = MetricsEndpoint(metrics.registry)
        self.prometheus = PrometheusServer([self.endpoint.target], rule_files)
        try:
            self.prometheus.start()
        except BaseException:
            self.endpoint.stop()
            raise

    def wait_for_scrapes(self, count: int) -> None:
        """Until Prometheus holds ``count`` successful scrapes of the endpoint."""
        expr = f'count_over_time(up{{job="{JOB}"}}[5m]) >= {count} and up{{job="{JOB}"}} == 1'
        self.prometheus.wait_for(f"{count} scrapes of {self.endpoint.target}",
                                 lambda: self.prometheus.query(expr), timeout=20)

    def stop(self) -> None:
        self.prometheus.stop()
        self.endpoint.stop()


_live: list[LiveMonitoring] = []


def live() -> LiveMonitoring:
    """This process's :class:`LiveMonitoring` of ``populated_metrics()`` with the shipped
    alert rules, started on first use and stopped at exit."""
    if not _live:
        _live.append(LiveMonitoring(populated_metrics(), [ALERT_RULES]))
        atexit.register(_live[0].stop)
    return _live[0]
