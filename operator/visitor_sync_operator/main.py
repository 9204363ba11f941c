"""Wiring only: kopf handlers registered as thin shims over :mod:`handlers`.

:func:`build_registry` makes a fresh registry per operator (tests run several),
and :func:`run` starts kopf with the settings and the metrics server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import socket
from typing import Any

import kopf
import kubernetes
from prometheus_client import start_http_server

from visitor_sync_operator import handlers
from visitor_sync_operator.district import MANAGER
from visitor_sync_operator.handlers import (
    Operator,
    health_of,
    job_changed,
    reconcile_and_save,
)
from visitor_sync_operator.kube import Kube, Unavailable
from visitor_sync_operator.metrics import Metrics
from visitor_sync_operator.settings import OperatorSettings
from visitor_sync_operator.spec import GROUP, PLURAL, VERSION

log = logging.getLogger(__name__)

#: Prefix of kopf's own annotations on DistrictSync resources. Not ours: kopf ignores
#: changes of annotations under its prefix, and ours (run requests...) must be seen.
ANNOTATION_PREFIX = "kopf.sync.visitoraware.io"
#: Seconds before kopf retries a handler that hit an unavailable API.
RETRY_DELAY = 30
OWNED = {"app.kubernetes.io/managed-by": MANAGER}
#: kopf's threads for sync handlers, and the API client's connections to serve them.
HANDLER_THREADS = 16


def api_client() -> kubernetes.client.ApiClient:
    """In-cluster credentials in a pod, the kubeconfig elsewhere.

    Its connection pool is as large as kopf's handler thread pool: with urllib3's
    default of 10, every handler thread beyond ten opens and drops a connection per call.
    """
    configuration = kubernetes.client.Configuration()
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        kubernetes.config.load_incluster_config(client_configuration=configuration)
    else:
        kubernetes.config.load_kube_config(client_configuration=configuration)
    configuration.connection_pool_maxsize = HANDLER_THREADS
    return kubernetes.client.ApiClient(configuration)


def configure(kopf_settings: kopf.OperatorSettings) -> None:
    """kopf's bookkeeping in our own annotations; Events say who wrote them."""
    kopf_settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(
        prefix=ANNOTATION_PREFIX)
    kopf_settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    kopf_settings.posting.reporting_component = MANAGER
    kopf_settings.posting.level = logging.INFO
    # The CRD is installed with the chart: no need to watch CRDs (nor to list namespaces,
    # which would need cluster-wide permissions even when watching named namespaces).
    kopf_settings.scanning.disabled = True
    # Sync handlers run in this pool; each waits on the API, not the CPU.
    kopf_settings.execution.max_workers = HANDLER_THREADS


def build_registry(settings: OperatorSettings, metrics: Metrics) -> kopf.OperatorRegistry:
    registry = kopf.OperatorRegistry()
    # The same credentials as the kubernetes client: in-cluster, or the kubeconfig.
    kopf.on.login(registry=registry)(kopf.login_via_client)

    @kopf.on.startup(registry=registry)
    def startup(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
        configure(settings)
        memo.operator = Operator(operator_settings, Kube(api_client()), metrics)

    operator_settings = settings

    def reconciled(body: kopf.Body, memo: kopf.Memo, handler: str) -> None:
        operator: Operator = memo.operator
        try:
            reconcile_and_save(operator, dict(body))
        except Unavailable as error:
            operator.metrics.reconcile_errors.labels(handler, "temporary").inc()
            raise kopf.TemporaryError(str(error), delay=RETRY_DELAY) from error

    @kopf.on.resume(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.create(GROUP, VERSION, PLURAL, registry=registry)
    @kopf.on.update(GROUP, VERSION, PLURAL, registry=registry)
    def changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        reconciled(body, memo, "changed")

    @kopf.timer(GROUP, VERSION, PLURAL, interval=settings.resync_seconds,
                initial_delay=settings.resync_seconds, registry=registry)
    def resync(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        """Repairs drift (deleted or edited children) and opens or closes pause windows."""
        if (body.get("status") or {}).get("observedGeneration") is None:
            return  # not reconciled once yet: the create handler is on it
        reconciled(body, memo, "resync")

    _without_finalizers(registry)

    @kopf.on.event("apps", "v1", "deployments", labels=OWNED, registry=registry)
    def sftp_server_changed(body: kopf.Body, memo: kopf.Memo, type: str | None,
                            **_: Any) -> None:
        operator: Operator = memo.operator
        owner = _owner(body)
        if owner is None or type in (None, "DELETED"):
            return
        try:
            handlers.sftp_server_changed(operator, dict(body), owner)
        except Unavailable as error:
            operator.metrics.reconcile_errors.labels("sftp", "temporary").inc()
            log.warning("could not update the SFTP status yet: %s", error)

    @kopf.on.event("batch", "v1", "jobs", labels=OWNED, registry=registry)
    def importer_job_changed(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
        operator: Operator = memo.operator
        try:
            job_changed(operator, dict(body))
        except Unavailable as error:
            operator.metrics.reconcile_errors.labels("job", "temporary").inc()
            log.warning("could not record Job %s yet: %s", body.get("metadata", {}).get("name"),
                        error)

    @kopf.on.event(GROUP, VERSION, PLURAL, registry=registry)
    def district_seen(body: kopf.Body, memo: kopf.Memo, type: str | None, **_: Any) -> None:
        """Keeps the fleet's gauges in step with every resource's status."""
        operator: Operator = memo.operator
        metadata = body.get("metadata", {})
        namespace, name = metadata.get("namespace", ""), metadata.get("name", "")
        if type == "DELETED":
            operator.metrics.forget_district(namespace, name)
        else:
            operator.metrics.know_district(namespace, name)
            operator.metrics.fleet.update(health_of(dict(body)))

    return registry


def _without_finalizers(registry: kopf.OperatorRegistry) -> None:
    """Let the resync timer run without kopf's finalizer on every DistrictSync.

    kopf blocks the deletion of a resource with a timer until it has stopped the timer,
    so ``kubectl delete dsync`` hung whenever the operator was down. The timer has nothing
    to do at a district's end (children go by owner reference, the database is never
    touched), and kopf stops it on the deletion event anyway. kopf has no option for
    this: its registered timer is replaced by a copy that asks for no finalizer, and kopf
    then also removes the finalizer from resources an older version marked.
    """
    spawning = registry._spawning
    spawning._handlers = [dataclasses.replace(handler, requires_finalizer=False)
                          for handler in spawning.get_all_handlers()]


def _owner(child: kopf.Body) -> str | None:
    """The name of the DistrictSync that controls ``child``."""
    for owner in child.get("metadata", {}).get("ownerReferences") or []:
        if owner.get("kind") == "DistrictSync" and owner.get("controller"):
            return str(owner["name"])
    return None


def identity() -> str:
    """Who this operator is to kopf: the pod's name (``POD_ID``, set by the chart), else
    host and process.

    kopf's default asks the user database (``getpass.getuser()``), and the image's uid
    10001 has no entry there and no ``USER``: the operator crashed at start in every pod.
    """
    return os.environ.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"


def run(settings: OperatorSettings, *, verbose: bool = False) -> None:
    """Run the operator until it is stopped (SIGTERM or SIGINT)."""
    metrics = Metrics()
    start_http_server(settings.metrics_port, registry=metrics.registry)
    registry = build_registry(settings, metrics)
    asyncio.run(kopf.operator(
        registry=registry, identity=identity(),  # type: ignore[arg-type]  # kopf's NewType
        standalone=True, clusterwide=not settings.namespaces, namespaces=settings.namespaces,
        liveness_endpoint=f"http://0.0.0.0:{settings.health_port}/healthz"))
