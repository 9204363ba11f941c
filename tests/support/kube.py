"""Run the real kopf engine against kmock's Kubernetes API emulator, in the test's event loop.

No cluster exists on the test machines, so operator tests talk HTTP to ``kmock`` (a Kubernetes
API emulator on 127.0.0.1 by kopf's author). Stock kmock 0.8 is a thin in-memory store, and
several of its gaps break kopf itself, so this module adds a small realism layer:

* :class:`KubeEmulator` (kmock's emulator with API-server semantics kopf depends on):

  - ``metadata.uid``, ``creationTimestamp`` and a cluster-wide ``resourceVersion`` counter.
    Stock kmock sets none: kopf's finalizer JSON-patch starts with a ``test`` op on
    ``/metadata/resourceVersion`` and got HTTP 500 forever; ``kopf.adopt`` wrote
    ``ownerReferences[].uid: null``, which the typed ``kubernetes`` client refuses to read.
  - ``metadata.generateName``: kopf posts every Event with a generateName only; stock kmock
    stored them all under the name ``None``, so the second Event of a namespace got HTTP 409.
  - ``GET /api/v1/namespaces`` (kmock's path parser crashed with HTTP 500; kopf lists
    namespaces whenever it serves named namespaces, and then never watched anything).
  - The status subresource: writes to the object ignore ``.status``, writes to ``/status``
    change only ``.status``, and ``.status`` is dropped on create, as for CRDs and Jobs.
  - ``metadata.generation`` (1 on create, +1 when anything but metadata and status changes,
    +1 when deletion starts) for custom resources and the built-in workload kinds that have
    one (Deployment, Job, CronJob, NetworkPolicy...); ConfigMaps, Secrets, Services, PVCs have
    none. Stock kmock has no generation at all (no ``observedGeneration`` logic is testable).
  - A no-op write keeps the resourceVersion and sends no watch event (stock kmock sent
    MODIFIED for every PATCH, so a handler patching on every event looped forever).
  - Watches replay only objects newer than ``?resourceVersion=`` (stock kmock replayed
    everything on every reconnect) and subscribe before the replay (stock kmock could lose an
    event written while a watch was starting).
  - Content types: ``merge-patch+json`` (RFC 7386), ``json-patch+json`` (a failed ``test`` op
    is HTTP 422 like the real server, not 500), ``strategic-merge-patch+json`` for built-in
    kinds only (applied as a merge patch, see below) and HTTP 415 for custom resources (the real
    server refuses it too). PUT replaces the object (HTTP 409 on a stale resourceVersion).
  ``apply-patch+yaml`` (server-side apply) creates an absent object and otherwise is applied
  as a merge patch: one field manager only, so a field it stops setting is NOT removed and
  conflicts never happen (the real-API tier, tests/realapi/, proves what apply does).
  - ``labelSelector`` (=, ==, !=, in, notin, exists, !exists) and ``fieldSelector``
    (=, ==, != on any dotted path) on list and watch; stock kmock ignored both.
  - ``stringData`` of Secrets is base64-encoded into ``data``; objects get ``apiVersion``
    and ``kind``; creating in a namespace that does not exist is HTTP 404.

* Still NOT emulated (the real API server differs; do not write tests that rely on them):
  strategic-merge semantics (lists are replaced, not merged by key: ``containers``, ``env``,
  ``ownerReferences``, ``finalizers``; ``$patch`` directives are stored verbatim),
  server-side apply's field ownership, ``deletecollection`` (405), subresources other than
  ``status`` (404), garbage collection of dependents by ownerReferences, namespace deletion
  cascading, admission, defaulting and schema validation, watch ``timeoutSeconds`` and
  bookmarks (streams stay open until the client leaves), DELETED events with a new
  resourceVersion, the watch history before ``resourceVersion`` (objects deleted between a
  list and a watch are never reported), ``limit``/``continue`` pagination (everything comes
  in one page), Pods and Jobs never run (the test plays the kubelet by patching
  ``/status``).

* Request log: every request kmock served, as :class:`ApiRequest` (method, path, query,
  ``watch``, RBAC verb, resource, subresource, namespace, name, user agent, body) via
  :attr:`Cluster.requests` and :attr:`OperatorRun.requests`; :func:`rbac_rules` turns them into
  the verbs actually used per resource. The harness's own calls carry
  :data:`HARNESS_USER_AGENT` and are left out of :attr:`OperatorRun.requests`.

* :func:`running_operator` runs ``kopf.spawn_tasks`` + ``kopf.run_tasks`` (what
  ``kopf.operator`` does) with four fixes: (1) it waits until kopf's watch-streams are
  really established in the emulator (kopf's ``ready_flag`` is set before any watching, so
  objects created right after it could be processed before or after the initial listing);
  (2) kopf treats every task created after its start as its own "hung" task and waits 5 s for
  them at exit, then cancels them: that included kmock's server-side connection handlers and
  the test's own tasks; the harness marks the tasks the operator creates (a task factory and a
  context variable) and lets kopf stop only those; (3) kopf's 600 s SIGKILL timer
  (``settings.process.ultimate_exiting_timeout``) is disabled, and kopf's SIGINT/SIGTERM loop
  handlers are removed at exit so Ctrl+C reaches pytest again; (4) a kopf failure (a failed
  startup handler, a crashed root task) is raised from the ``async with``, at once: kopf
  itself would idle 5 s on its own "stop-flag waiter" task before exiting.

Pitfalls for test writers:

* kmock serves HTTP from the test's own event loop. A synchronous ``kubernetes`` call from a
  coroutine deadlocks it: use the ``async`` helpers of :class:`Cluster`, or
  ``await asyncio.to_thread(...)`` with :meth:`Cluster.api_client`. Operator handlers that use
  the sync client must be ``def`` (kopf runs them in threads), never ``async def``.
* A plain ``kopf.OperatorRegistry()`` has no login handler (only kopf's default registry
  does); :func:`running_operator` adds ``kopf.login_via_client``, which reads the kubeconfig.
* The kubeconfig is in ``$KUBECONFIG`` and in ``kubernetes.config.kube_config``'s default
  location (read at import time), and ``kubernetes.client.Configuration``'s default points at
  the emulator for the duration of the test; ``KUBERNETES_SERVICE_HOST`` is unset so that an
  in-cluster CI runner can never reach a real cluster.
* Timeouts of :func:`wait_for` are wall-clock seconds. Under ``@pytest.mark.looptime``
  ``asyncio.sleep`` is fast-forwarded: the poll interval is loop time, so a long wait in loop
  time (an hourly timer) is ``await asyncio.sleep(3 * 3600)``, not a tiny poll interval.
* Writes are stored even when a test's own kmock reaction answers them (kmock's design), so
  ``kmock['patch', ...] << 500`` fault injection still changes the object.
* Error answers (404, 409, 422...) are recorded in ``kmock.errors``: do not enable kmock's
  strict mode (``kmock_strict``), it would fail every test that expects one at teardown.
* kopf's defaults are tuned by :func:`fast_settings`; notably the watch inactivity timeout
  is lifted, since the emulator sends no bookmarks (under looptime kopf reconnected every
  70 s of loop time). Pass ``settings_hook=`` to change more.
* Private kopf APIs used: ``registry._activities`` (is there a login handler?) and
  ``kopf._cogs.structs.references.Insights`` (which watches to wait for).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import copy
import dataclasses
import datetime
import inspect
import json
import random
import re
import signal
import threading
import time
import uuid
import warnings
import weakref
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Iterator,
    Mapping,
)
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import aiohttp.web
import attrs
import jsonpatch
import jsonpointer
import kmock
import kopf
import kubernetes
import pytest
from kmock._internal import parsing as kmock_parsing
from kopf._cogs.structs.references import Insights
from kopf._core.intents.causes import Activity

T = TypeVar("T")

HARNESS_USER_AGENT = "visitor-sync-kube-harness"
"""User-Agent of the harness's own requests (helpers and :meth:`Cluster.api_client`)."""

CORE_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
"""Namespaces every real cluster has; kopf only watches namespaces that exist."""

DISTRICTSYNCS = kmock.resource("sync.visitoraware.io", "v1alpha1", "districtsyncs")
DISTRICTSYNC_INFO = kmock.ResourceInfo(
    kind="DistrictSync",
    singular="districtsync",
    shortnames={"dsync"},
    namespaced=True,
    verbs={"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
    subresources={"status"},
)
NAMESPACES = kmock.resource("", "v1", "namespaces")
SECRETS = kmock.resource("", "v1", "secrets")

_MERGE_PATCH = "application/merge-patch+json"
_APPLY_PATCH = "application/apply-patch+yaml"
_JSON_PATCH = "application/json-patch+json"
_STRATEGIC_PATCH = "application/strategic-merge-patch+json"
_IMMUTABLE_METADATA = (
    "name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "generation",
)  # fmt: skip
# Built-in kinds whose API strategy maintains metadata.generation (custom resources all do).
_GENERATION_BUILTINS = {
    "deployments", "statefulsets", "daemonsets", "replicasets", "jobs", "cronjobs",
    "networkpolicies", "ingresses", "poddisruptionbudgets", "horizontalpodautoscalers",
}  # fmt: skip
_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # what the API server uses for generateName


_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{{name: kmock, cluster: {{server: "{url}"}}}}]
users: [{{name: tester, user: {{token: kmock-accepts-any-token}}}}]
contexts: [{{name: kmock, context: {{cluster: kmock, user: tester, namespace: default}}}}]
current-context: kmock
"""


# -- the emulator -----------------------------------------------------------------------------


def _fixed_parse_path(path: str) -> kmock_parsing.ParsedPath:
    """kmock's parser, except that ``/api/v1/namespaces[/name[/status|finalize]]`` are the
    Namespace resource itself (kmock read ``namespaces`` as the start of a namespaced path)."""
    parts = path.strip("/").split("/")
    if parts[:3] == ["api", "v1", "namespaces"] and (
        len(parts) <= 4 or (len(parts) == 5 and parts[4] in {"status", "finalize"})
    ):
        return kmock_parsing.ParsedPath(
            group="",
            version="v1",
            plural="namespaces",
            name=parts[3] if len(parts) > 3 else None,
            subresource=parts[4] if len(parts) > 4 else None,
        )
    return _original_parse_path(path)


_original_parse_path = kmock_parsing.parse_path
_parser_users = 0


def _error(status: int, reason: str, message: str) -> kmock.KubernetesError:
    """A Kubernetes ``Status`` failure with the real server's reason strings."""
    return kmock.KubernetesError(status=status, reason=reason, message=message)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, ``null`` deletes, rest replaces."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge_patch(result.get(key), value)
    return result


def _split_terms(selector: str) -> list[str]:
    """Split a selector on the commas that are not inside ``in (a,b)`` parentheses."""
    terms, depth, current = [], 0, ""
    for char in selector:
        depth += (char == "(") - (char == ")")
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    return [term.strip() for term in [*terms, current] if term.strip()]


_SET_TERM = re.compile(r"^(?P<key>[^\s!=]+)\s+(?P<op>in|notin)\s+\((?P<values>[^)]*)\)$")


def labels_match(labels: Mapping[str, str], selector: str) -> bool:
    """Whether labels satisfy a Kubernetes label selector string (equality and set based)."""
    for term in _split_terms(selector):
        if match := _SET_TERM.match(term):
            values = {value.strip() for value in match["values"].split(",")}
            present = match["key"] in labels and labels[match["key"]] in values
            if present != (match["op"] == "in"):
                return False
        elif "!=" in term:
            key, value = (part.strip() for part in term.split("!=", 1))
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = (part.strip() for part in term.replace("==", "=").split("=", 1))
            if labels.get(key) != value:
                return False
        elif term.startswith("!"):
            if term[1:].strip() in labels:
                return False
        elif term not in labels:
            return False
    return True


def fields_match(obj: Mapping[str, Any], selector: str) -> bool:
    """Whether an object satisfies a field selector (``a.b=v``, ``a.b==v``, ``a.b!=v``).

    Lenient: the real server accepts only a few fields per kind and rejects the others.
    """
    for term in _split_terms(selector):
        negated = "!=" in term
        path, expected = (
            p.strip() for p in term.replace("!=", "=").replace("==", "=").split("=", 1)
        )
        value: Any = obj
        for part in path.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        actual = (
            "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
        )
        if (actual == expected) == negated:
            return False
    return True


def _revision(obj: Mapping[str, Any]) -> int:
    value = str(obj.get("metadata", {}).get("resourceVersion") or "0")
    return int(value) if value.isdigit() else 0


def _header(request: kmock.Request, name: str) -> str:
    for key, value in request.headers.items():
        if key.lower() == name:
            return str(value)
    return ""


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """kmock's Kubernetes emulator with the API-server semantics listed in the module doc.

    Writes (POST, PUT, PATCH, DELETE) are applied here under kmock's lock, then answered by
    kmock's reactions and fallbacks. List and watch are re-implemented (selectors,
    resourceVersions); GET and discovery are kmock's own.
    """

    watches: list[kmock.Request] = attrs.field(factory=list, init=False)
    """Watch requests whose stream is subscribed (established), in arrival order."""
    custom_resources: set[kmock.resource] = attrs.field(factory=set, init=False)
    _revision: int = attrs.field(default=0, init=False)
    _responses: dict[int, dict[str, Any]] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        self.fallback[kmock.method.PUT] << self._serve_update  # kmock knows no PUT

    async def __aenter__(self) -> KubeEmulator:
        global _parser_users
        _parser_users += 1
        kmock_parsing.parse_path = _fixed_parse_path
        return await super().__aenter__()

    async def __aexit__(self, *exc_info: Any) -> None:
        global _parser_users
        try:
            await super().__aexit__(*exc_info)
        finally:
            _parser_users -= 1
            if not _parser_users:
                kmock_parsing.parse_path = _original_parse_path

    def add_custom_resource(self, resource: kmock.resource, info: kmock.ResourceInfo) -> None:
        """Register a CRD's resource (posting a CRD object does not register anything)."""
        self.resources[resource] = info
        self.custom_resources.add(resource)

    def info(self, resource: kmock.resource) -> kmock.ResourceInfo:
        # NB: kmock's ``resources[...]`` creates a blank entry on a miss; do not.
        return self.resources[resource] if resource in self.resources else kmock.ResourceInfo()

    def _next_revision(self) -> str:
        self._revision += 1
        return str(self._revision)

    def _alive(self, key: tuple[kmock.resource, str | None, str]) -> dict[str, Any] | None:
        if key in self.objects and not self.objects[key].deleted:
            return copy.deepcopy(self.objects[key].raw)
        return None

    def _store(self, key: tuple[kmock.resource, str | None, str], body: dict[str, Any]) -> None:
        if key in self.objects:
            self.objects[key].history.append(body)
        else:
            self.objects[key] = body

    def _selected(self, request: kmock.Request, obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata", {})
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        labels = request.params.get("labelSelector")
        if labels and not labels_match(meta.get("labels") or {}, labels):
            return False
        fields = request.params.get("fieldSelector")
        return not fields or fields_match(obj, fields)

    # -- writes --

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        resource = request.resource
        is_write = request.method in {
            kmock.method.POST, kmock.method.PUT, kmock.method.PATCH, kmock.method.DELETE,
        }  # fmt: skip
        if resource is None or resource.plural is None or not is_write:
            return await super()._handle(request)
        async with self._lock:
            self._responses[request.id], events = self._write(request, resource)
            for event in events:
                await self._buses[resource].put(event)
        # Skip kmock's own mutation code (KubernetesEmulator._handle): reactions and fallbacks.
        try:
            return await kmock.RawHandler._handle(self, request)
        finally:
            self._responses.pop(request.id, None)

    async def _serve_create(self, request: kmock.Request) -> Any:
        return self._responses[request.id]

    _serve_update = _serve_delete = _serve_create

    def _write(
        self, request: kmock.Request, resource: kmock.resource
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Apply a write; return the response body and the watch events."""
        info = self.info(resource)
        sub = request.subresource
        if sub not in {None, "status"} or (sub == "status" and "status" not in info.subresources):
            raise _error(404, "NotFound", f"subresource {sub!r} of {resource} is not emulated")
        if request.method == kmock.method.POST and request.name is None:
            return self._create(request, resource, info)
        if request.name is None:
            raise _error(405, "MethodNotAllowed", f"{request.method} of collections: not emulated")
        key = (resource, request.namespace, request.name)
        old = self._alive(key)
        if old is None and request.method == kmock.method.PATCH and sub is None and (
                _header(request, "content-type").split(";")[0].strip() == _APPLY_PATCH):
            return self._create(request, resource, info)  # apply creates what is absent
        if old is None:
            raise _error(404, "NotFound", f'{resource.plural} "{request.name}" not found')
        if request.method == kmock.method.DELETE:
            return self._delete(key, old)
        return self._update(request, key, old, info)

    def _create(
        self, request: kmock.Request, resource: kmock.resource, info: kmock.ResourceInfo
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        if not isinstance(request.data, Mapping):
            raise _error(400, "BadRequest", "the body must be a JSON object")
        body = copy.deepcopy(dict(request.data))
        meta = body["metadata"] = dict(body.get("metadata") or {})
        namespace: str | None = None
        if info.namespaced or (info.namespaced is None and request.namespace):
            namespace = request.namespace or meta.get("namespace")
            if not namespace:
                raise _error(400, "BadRequest", "a namespaced object needs a namespace")
            if meta.get("namespace") not in {None, namespace}:
                raise _error(
                    400, "BadRequest", "the namespace of the object does not match the URL"
                )
            if NAMESPACES in self.resources and self._alive((NAMESPACES, None, namespace)) is None:
                raise _error(404, "NotFound", f'namespaces "{namespace}" not found')
            meta["namespace"] = namespace
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise _error(422, "Invalid", "metadata.name or metadata.generateName is required")
            while True:
                meta["name"] = meta["generateName"] + "".join(random.choices(_NAME_ALPHABET, k=5))
                if self._alive((resource, namespace, meta["name"])) is None:
                    break
        key = (resource, namespace, meta["name"])
        if self._alive(key) is not None:
            raise _error(409, "AlreadyExists", f'{resource.plural} "{meta["name"]}" already exists')
        group_version = (
            f"{resource.group}/{resource.version}" if resource.group else resource.version
        )
        body["apiVersion"] = group_version
        if info.kind:
            body["kind"] = info.kind
        meta.pop("deletionTimestamp", None)
        meta.update(
            uid=str(uuid.uuid4()), creationTimestamp=_now(), resourceVersion=self._next_revision()
        )
        if "status" in info.subresources:
            body.pop("status", None)
        if resource in self.custom_resources or resource.plural in _GENERATION_BUILTINS:
            meta["generation"] = 1
        self._convert_string_data(resource, body)
        self._store(key, body)
        return body, [{"type": "ADDED", "object": body}]

    def _delete(
        self, key: tuple[kmock.resource, str | None, str], old: dict[str, Any]
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        meta = old["metadata"]
        if meta.get("deletionTimestamp"):
            return old, []
        if meta.get("finalizers"):  # only marked; deleted when the last finalizer goes
            meta.update(deletionTimestamp=_now(), resourceVersion=self._next_revision())
            if "generation" in meta:
                meta["generation"] += 1
            self._store(key, old)
            return old, [{"type": "MODIFIED", "object": old}]
        self.objects[key].delete()
        return old, [{"type": "DELETED", "object": old}]

    def _update(
        self,
        request: kmock.Request,
        key: tuple[kmock.resource, str | None, str],
        old: dict[str, Any],
        info: kmock.ResourceInfo,
    ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        new = self._apply(request, key[0], old)
        if "status" in info.subresources:
            if request.subresource == "status":
                status = new.get("status")
                new = copy.deepcopy(old)
                new["status"] = status
            else:
                new["status"] = copy.deepcopy(old.get("status"))
            if new["status"] is None:
                del new["status"]
        new_meta = new["metadata"] = dict(new.get("metadata") or {})
        for field in [*_IMMUTABLE_METADATA, "resourceVersion"]:
            if field in old["metadata"]:
                new_meta[field] = old["metadata"][field]
            else:
                new_meta.pop(field, None)
        for field in ("apiVersion", "kind"):
            if field in old:
                new[field] = old[field]
        self._convert_string_data(key[0], new)
        if new == old:
            return old, []  # a no-op write: the same resourceVersion and no watch event
        new_meta["resourceVersion"] = self._next_revision()
        spec_changed = {k: v for k, v in new.items() if k not in {"metadata", "status"}} != {
            k: v for k, v in old.items() if k not in {"metadata", "status"}
        }
        if spec_changed and "generation" in new_meta:
            new_meta["generation"] += 1
        self._store(key, new)
        if new_meta.get("deletionTimestamp") and not new_meta.get("finalizers"):
            self.objects[key].delete()  # the last finalizer is gone: the object is deleted
            return new, [{"type": "DELETED", "object": new}]
        return new, [{"type": "MODIFIED", "object": new}]

    def _apply(
        self, request: kmock.Request, resource: kmock.resource, old: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply a PUT or PATCH body to the old state as the API server would (see module doc)."""
        body = request.data
        content_type = _header(request, "content-type").split(";")[0].strip().lower()
        current = old["metadata"].get("resourceVersion")
        if request.method == kmock.method.PUT:
            if not isinstance(body, Mapping):
                raise _error(400, "BadRequest", "the body must be a JSON object")
            wanted = (body.get("metadata") or {}).get("resourceVersion")
            if wanted and wanted != current:
                raise _error(
                    409, "Conflict", "the object has been modified; resourceVersion is stale"
                )
            return copy.deepcopy(dict(body))
        if content_type == _JSON_PATCH:
            if not isinstance(body, list):
                raise _error(400, "BadRequest", "a JSON patch must be a list of operations")
            try:
                result: dict[str, Any] = jsonpatch.apply_patch(old, body, in_place=False)
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException) as exc:
                raise _error(422, "Invalid", f"the JSON patch cannot be applied: {exc}") from exc
            return result
        if content_type == _STRATEGIC_PATCH and resource in self.custom_resources:
            raise _error(
                415, "UnsupportedMediaType", "strategic merge patch is not supported for CRs"
            )
        if content_type not in {_MERGE_PATCH, _STRATEGIC_PATCH, _APPLY_PATCH}:
            raise _error(
                415, "UnsupportedMediaType", f"{content_type or 'no content type'} is not emulated"
            )
        if not isinstance(body, Mapping):
            raise _error(400, "BadRequest", "a merge patch must be a JSON object")
        wanted = (body.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current:
            raise _error(409, "Conflict", "the object has been modified; resourceVersion is stale")
        patched: dict[str, Any] = _merge_patch(old, body)
        return patched

    @staticmethod
    def _convert_string_data(resource: kmock.resource, body: dict[str, Any]) -> None:
        if resource == SECRETS and body.get("stringData"):
            data = body["data"] = dict(body.get("data") or {})
            for key, value in body["stringData"].items():
                data[key] = base64.b64encode(str(value).encode()).decode()
        if resource == SECRETS:
            body.pop("stringData", None)

    # -- reads --

    def _serves(self, resource: kmock.resource) -> bool:
        return resource in self._get_resources()

    def _objects_of(self, resource: kmock.resource) -> Iterable[Any]:
        """The stored objects of ``resource``, in creation order (deleted ones included)."""
        return (obj for (res, _, _), obj in self.objects.items() if res == resource)

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        resource = request.resource
        if resource is None or not self._serves(resource):
            raise kmock.KubernetesResourceNotFoundError()
        async with self._lock:
            items = [
                obj.raw
                for obj in self._objects_of(resource)
                if not obj.deleted and self._selected(request, obj.raw)
            ]
            revision = str(self._revision)
        kind = self.info(resource).kind
        return {
            "apiVersion": f"{resource.group}/{resource.version}" if resource.group else "v1",
            "kind": f"{kind}List" if kind else "List",
            "metadata": {"resourceVersion": revision},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        yield b""  # send the headers now: the stream can stay silent for a long time
        assert request.resource is not None
        bus = self._buses[request.resource]
        since_text = request.params.get("resourceVersion") or "0"
        since = int(since_text) if since_text.isdigit() else 0
        async with self._lock:
            # Subscribe before taking the snapshot: no write can fall between the two.
            mark = await bus.mark()
            replay = [
                obj.raw
                for (res, _, _), obj in self.objects.items()
                if res == request.resource and not obj.deleted and _revision(obj.raw) > since
                if self._selected(request, obj.raw)
            ]
        self.watches.append(request)
        try:
            for raw in replay:
                yield {"type": "ADDED", "object": raw}
            async for event in bus.stream(since=mark):
                if self._selected(request, event.get("object") or {}):
                    yield event
        finally:
            await bus.unmark(mark)


# -- request log ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ApiRequest:
    """One request the emulator received, as a test or an RBAC rule sees it."""

    id: int
    method: str
    path: str
    query: Mapping[str, str]
    watch: bool
    group: str | None
    version: str | None
    resource: str | None  # the plural; None for discovery and other non-resource URLs
    subresource: str | None
    namespace: str | None
    name: str | None
    user_agent: str
    body: Any

    @classmethod
    def from_kmock(cls, request: kmock.Request) -> ApiRequest:
        res = request.resource
        return cls(
            id=request.id,
            method=request.method.value,
            path=request.url.path,
            query=dict(request.params),
            watch=request.action == kmock.action.WATCH,
            group=res.group if res is not None else None,
            version=res.version if res is not None else None,
            resource=res.plural if res is not None else None,
            subresource=request.subresource,
            namespace=request.namespace,
            name=request.name,
            user_agent=_header(request, "user-agent"),
            body=request.data,
        )

    @property
    def verb(self) -> str | None:
        """The RBAC verb this request needs (None for non-resource URLs)."""
        if self.resource is None:
            return None
        if self.method == "GET":
            return "watch" if self.watch else "get" if self.name else "list"
        if self.method == "DELETE":
            return "delete" if self.name else "deletecollection"
        return {"POST": "create", "PUT": "update", "PATCH": "patch"}.get(self.method)

    @property
    def is_write(self) -> bool:
        return self.method in {"POST", "PUT", "PATCH", "DELETE"}

    @property
    def by_harness(self) -> bool:
        return self.user_agent == HARNESS_USER_AGENT

    def __str__(self) -> str:
        query = "?" + "&".join(f"{k}={v}" for k, v in self.query.items()) if self.query else ""
        return f"{self.method} {self.path}{query}"


def rbac_rules(requests: Iterable[ApiRequest]) -> dict[tuple[str, str], set[str]]:
    """``{(apiGroup, "plural[/subresource]"): {verbs}}`` that these requests needed."""
    rules: dict[tuple[str, str], set[str]] = {}
    for request in requests:
        if request.verb is not None and request.resource is not None:
            name = request.resource + (f"/{request.subresource}" if request.subresource else "")
            rules.setdefault((request.group or "", name), set()).add(request.verb)
    return rules


# -- the cluster ------------------------------------------------------------------------------


class KubeApiError(Exception):
    """An HTTP error from the emulator, with the Kubernetes ``Status`` body."""

    def __init__(self, status: int, body: Any, request: str) -> None:
        reason = body.get("reason") if isinstance(body, Mapping) else None
        super().__init__(f"{request} -> {status} {reason or ''}: {body!r:.300}")
        self.status = status
        self.body = body


async def wait_for(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = 5.0,
    interval: float = 0.01,
    message: str | Callable[[], str] = "",
) -> T:
    """Poll ``predicate`` (sync or async) until it returns something truthy, and return that.

    ``timeout`` is wall-clock seconds, so it means the same under looptime; ``interval`` is
    an ``asyncio.sleep`` (loop time: fast-forwarded under looptime).
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise TimeoutError(text or f"the condition was not met within {timeout} s")
        await asyncio.sleep(interval)


class Cluster:
    """The emulated cluster a test talks to; made by the ``cluster`` fixture (conftest)."""

    def __init__(self, emulator: KubeEmulator, kubeconfig: Path, session: aiohttp.ClientSession):
        self.emulator = emulator
        self.kubeconfig = kubeconfig
        self._session = session
        self._clients: list[kubernetes.client.ApiClient] = []

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls, emulator: kmock.RawHandler, directory: Path, monkeypatch: pytest.MonkeyPatch
    ) -> AsyncIterator[Cluster]:
        """Register the resources, point kopf and ``kubernetes`` at the emulator, yield."""
        if not isinstance(emulator, KubeEmulator):
            raise TypeError(f"kmock must be a KubeEmulator (see conftest), got {type(emulator)}")
        with warnings.catch_warnings():  # kmock 0.8 uses the deprecated read_binary()
            warnings.simplefilter("ignore", DeprecationWarning)
            emulator.resources.load_bundled()
        emulator.add_custom_resource(DISTRICTSYNCS, DISTRICTSYNC_INFO)

        url = str(emulator.url).rstrip("/")
        kubeconfig = directory / "kubeconfig.yaml"
        kubeconfig.write_text(_KUBECONFIG.format(url=url))
        for variable in ("KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT"):
            monkeypatch.delenv(variable, raising=False)  # never log in to a real cluster
        monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        monkeypatch.setattr(
            kubernetes.config.kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", str(kubeconfig)
        )
        configuration_class = kubernetes.client.Configuration
        monkeypatch.setattr(configuration_class, "_default", configuration_class._default)
        kubernetes.config.load_kube_config(config_file=str(kubeconfig))

        headers = {"User-Agent": HARNESS_USER_AGENT}
        async with aiohttp.ClientSession(base_url=url, headers=headers) as session:
            cluster = cls(emulator, kubeconfig, session)
            try:
                for namespace in CORE_NAMESPACES:
                    await cluster.create(
                        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
                    )
                yield cluster
            finally:
                for client in cluster._clients:
                    client.close()

    @property
    def url(self) -> str:
        return str(self.emulator.url).rstrip("/")

    def api_client(self) -> kubernetes.client.ApiClient:
        """A sync ``kubernetes`` client for the emulator; call it via ``asyncio.to_thread``."""
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(
            config_file=str(self.kubeconfig), client_configuration=configuration
        )
        client = kubernetes.client.ApiClient(configuration)
        client.user_agent = HARNESS_USER_AGENT
        self._clients.append(client)
        return client

    # -- addressing --

    def resource(self, api_version: str, kind: str) -> kmock.resource:
        """The resource of an ``apiVersion`` and a kind, plural, singular or short name."""
        group, _, version = api_version.rpartition("/")
        for res, info in self.emulator.resources.items():
            if (res.group, res.version) == (group, version) and (
                kind in {res.plural, info.kind, info.singular} or kind in info.shortnames
            ):
                return res
        raise LookupError(f"{api_version} {kind} is not registered in the emulator")

    def path(
        self,
        api_version: str,
        kind: str,
        name: str | None = None,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> str:
        """The API path; ``namespace`` is ignored for cluster-scoped resources."""
        res = self.resource(api_version, kind)
        parts = ["/api/v1" if not res.group else f"/apis/{res.group}/{res.version}"]
        if namespace and self.emulator.info(res).namespaced is not False:
            parts.append(f"namespaces/{namespace}")
        parts.append(str(res.plural))
        parts.extend(part for part in (name, subresource) if part)
        return "/".join(parts)

    # -- async CRUD (never blocks the loop that serves the emulator) --

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: Mapping[str, str] | None = None,
    ) -> Any:
        """One API call; returns the JSON body, raises :class:`KubeApiError` on HTTP >= 400."""
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        async with self._session.request(
            method, path, data=data, headers=headers, params=params
        ) as response:
            text = await response.text()
            try:
                payload = json.loads(text) if text else None
            except ValueError:
                payload = text
            if response.status >= 400:
                raise KubeApiError(response.status, payload, f"{method} {path}")
            return payload

    async def create(self, body: Mapping[str, Any], *, namespace: str | None = None) -> Any:
        """Create an object; ``namespace`` defaults to the body's or ``default``."""
        namespace = namespace or body.get("metadata", {}).get("namespace") or "default"
        path = self.path(body["apiVersion"], body["kind"], namespace=namespace)
        return await self.request("POST", path, body=body)

    async def get(
        self, api_version: str, kind: str, name: str, *, namespace: str = "default"
    ) -> Any:
        """The object, or None if it does not exist."""
        try:
            return await self.request(
                "GET", self.path(api_version, kind, name, namespace=namespace)
            )
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def list(
        self,
        api_version: str,
        kind: str,
        *,
        namespace: str | None = "default",
        labels: str | None = None,
        fields: str | None = None,
    ) -> list[Any]:
        """The objects (``namespace=None``: all namespaces), optionally selected."""
        params = {
            key: value
            for key, value in (("labelSelector", labels), ("fieldSelector", fields))
            if value
        }
        path = self.path(api_version, kind, namespace=namespace)
        result = await self.request("GET", path, params=params)
        return list(result["items"])

    async def patch(
        self,
        api_version: str,
        kind: str,
        name: str,
        patch: Any,
        *,
        namespace: str = "default",
        subresource: str | None = None,
        content_type: str = _MERGE_PATCH,
    ) -> Any:
        """PATCH an object; a list ``patch`` is sent as a JSON patch."""
        if isinstance(patch, list):
            content_type = _JSON_PATCH
        path = self.path(api_version, kind, name, namespace=namespace, subresource=subresource)
        return await self.request("PATCH", path, body=patch, content_type=content_type)

    async def patch_status(
        self,
        api_version: str,
        kind: str,
        name: str,
        status: Mapping[str, Any],
        *,
        namespace: str = "default",
    ) -> Any:
        """Merge-patch the status subresource, as a controller (or the kubelet) would."""
        return await self.patch(
            api_version, kind, name, {"status": status}, namespace=namespace, subresource="status"
        )

    async def delete(
        self, api_version: str, kind: str, name: str, *, namespace: str = "default"
    ) -> Any:
        return await self.request("DELETE", self.path(api_version, kind, name, namespace=namespace))

    # -- in-memory inspection (no HTTP, not in the request log) --

    def peek(
        self, api_version: str, kind: str, name: str, *, namespace: str | None = "default"
    ) -> dict[str, Any] | None:
        """The stored object without an API call (cheap in ``wait_for`` predicates)."""
        res = self.resource(api_version, kind)
        if self.emulator.info(res).namespaced is False:
            namespace = None
        key = (res, namespace, name)
        if key in self.emulator.objects and not self.emulator.objects[key].deleted:
            return copy.deepcopy(self.emulator.objects[key].raw)
        return None

    async def wait_for_object(
        self,
        api_version: str,
        kind: str,
        name: str,
        condition: Callable[[dict[str, Any]], Any] = bool,
        *,
        namespace: str = "default",
        timeout: float = 5.0,
    ) -> dict[str, Any]:
        """Wait until the object exists and satisfies ``condition``; return it."""

        def check() -> dict[str, Any] | None:
            obj = self.peek(api_version, kind, name, namespace=namespace)
            return obj if obj is not None and condition(obj) else None

        return await wait_for(
            check,
            timeout=timeout,
            message=lambda: (
                f"{kind} {namespace}/{name} did not satisfy the condition in "
                f"{timeout} s; it is: {self.peek(api_version, kind, name, namespace=namespace)}"
            ),
        )

    # -- the request log --

    @property
    def requests(self) -> list[ApiRequest]:
        """Every request the emulator received so far, including the harness's own."""
        return [ApiRequest.from_kmock(request) for request in self.emulator]


# -- the operator -----------------------------------------------------------------------------

_OWNED_TASKS: contextvars.ContextVar[weakref.WeakSet[asyncio.Task[Any]] | None] = (
    contextvars.ContextVar("kube_harness_owned_tasks", default=None)
)

TaskFactory = Callable[..., "asyncio.Future[Any]"]


def _tracking_factory(previous: TaskFactory | None) -> TaskFactory:
    """A task factory that remembers which tasks an operator (transitively) created."""

    def factory(
        loop: asyncio.AbstractEventLoop, coro: Coroutine[Any, Any, Any], **kwargs: Any
    ) -> asyncio.Future[Any]:
        if previous is not None:
            task = previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        context = kwargs.get("context")
        owned = context.get(_OWNED_TASKS) if context is not None else _OWNED_TASKS.get()
        if owned is not None and isinstance(task, asyncio.Task):
            owned.add(task)
        return task

    factory.tracks_operators = True  # type: ignore[attr-defined]
    return factory


class _ForeignTasks(Collection["asyncio.Task[Any]"]):
    """kopf's ``ignored=`` tasks: every task that the operator did not create itself."""

    def __init__(self, owned: weakref.WeakSet[asyncio.Task[Any]]) -> None:
        self._owned = owned

    def __contains__(self, task: object) -> bool:
        return task not in self._owned

    def __iter__(self) -> Iterator[asyncio.Task[Any]]:
        return iter(())

    def __len__(self) -> int:
        return 0


def fast_settings() -> kopf.OperatorSettings:
    """kopf settings for tests: fail fast on emulator errors, never SIGKILL pytest."""
    settings = kopf.OperatorSettings()
    settings.process.ultimate_exiting_timeout = None  # cancel() must never arm a SIGKILL
    settings.networking.error_backoffs = [0.1, 0.2]  # a 5xx from the emulator is a bug
    settings.networking.request_timeout = 30
    settings.networking.connect_timeout = 2
    settings.watching.connect_timeout = 2
    settings.watching.reconnect_backoff = 0.05
    # The emulator sends no bookmarks: a silent stream is not a dead one. The default 70 s made
    # kopf reconnect every 70 s of loop time (150 times per looptime hour, ~5 s of real time).
    settings.watching.inactivity_timeout = 30 * 24 * 3600
    settings.persistence.consistency_timeout = 1.0  # 5 s when a patched version never arrives
    settings.queueing.exit_timeout = 0.5
    return settings


@dataclasses.dataclass
class OperatorRun:
    """A running operator: its settings, memo and the requests it made."""

    cluster: Cluster
    settings: kopf.OperatorSettings
    memo: Any
    insights: Insights
    task: asyncio.Task[None]
    first_request_id: int
    end_request_id: int | None = None  # set when the operator has stopped

    @property
    def requests(self) -> list[ApiRequest]:
        """Requests while the operator ran, except the harness's own (all user agents else)."""
        end = self.end_request_id
        return [
            request
            for request in self.cluster.requests[self.first_request_id : end]
            if not request.by_harness
        ]

    def _missing_watches(self) -> set[tuple[str, str | None]]:
        expected = {
            (f"{res.plural}.{res.version}.{res.group}".rstrip("."), namespace)
            for res in self.insights.watched_resources | self.insights.indexed_resources
            for namespace in self.insights.namespaces
        }
        established = {
            (
                f"{w.resource.plural}.{w.resource.version}.{w.resource.group}".rstrip("."),
                w.namespace,
            )
            for w in self.cluster.emulator.watches
            if w.id >= self.first_request_id and w.resource is not None
        }
        return expected - established


@contextlib.asynccontextmanager
async def running_operator(
    cluster: Cluster,
    *,
    registry: kopf.OperatorRegistry | None = None,
    namespaces: Iterable[str] = ("default",),
    clusterwide: bool = False,
    memo: Any = None,
    settings_hook: Callable[[kopf.OperatorSettings], None] | None = None,
    startup_timeout: float = 5.0,
    stop_timeout: float = 3.0,
) -> AsyncIterator[OperatorRun]:
    """Run kopf with ``registry`` (default: kopf's global one) until the block exits.

    Entering returns once every watched resource is being watched in every served namespace;
    exiting sets the stop flag, waits ``stop_timeout`` s, then cancels, and re-raises the
    operator's own failure. Runs must nest (the task factory is per event loop).
    """
    loop = asyncio.get_running_loop()
    if registry is not None and not registry._activities.get_handlers(
        activity=Activity.AUTHENTICATION
    ):
        kopf.on.login(registry=registry, id="kube-harness-login")(kopf.login_via_client)
    settings = fast_settings()
    if settings_hook is not None:
        settings_hook(settings)
    insights = Insights()
    stop_flag, ready_flag = asyncio.Event(), asyncio.Event()
    owned: weakref.WeakSet[asyncio.Task[Any]] = weakref.WeakSet()
    root_tasks: list[asyncio.Task[Any]] = []
    previous_factory = loop.get_task_factory()
    installs_factory = not getattr(previous_factory, "tracks_operators", False)
    main_thread = threading.current_thread() is threading.main_thread()
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    async def operate() -> None:
        _OWNED_TASKS.set(owned)  # inherited by every task created from here on
        root_tasks[:] = await kopf.spawn_tasks(
            registry=registry,
            settings=settings,
            insights=insights,
            standalone=True,
            clusterwide=clusterwide,
            namespaces=() if clusterwide else list(namespaces),
            memo=memo,
            stop_flag=stop_flag,
            ready_flag=ready_flag,
        )
        await kopf.run_tasks(root_tasks, ignored=_ForeignTasks(owned))

    if installs_factory:
        loop.set_task_factory(_tracking_factory(previous_factory))
    first_request_id = len(cluster.emulator)
    task = asyncio.create_task(operate(), name="kopf operator under test")
    run = OperatorRun(cluster, settings, memo, insights, task, first_request_id)
    try:
        await wait_for(
            lambda: (
                task.done()
                or any(root.done() for root in root_tasks)  # e.g. a failed startup handler
                or (
                    ready_flag.is_set()
                    and insights.ready_resources.is_set()
                    and insights.ready_namespaces.is_set()
                    and (clusterwide or insights.namespaces)
                    and not run._missing_watches()
                )
            ),
            timeout=startup_timeout,
            message=lambda: (
                f"the operator did not start watching in {startup_timeout} s; "
                f"served namespaces: {insights.namespaces} (do they exist?); "
                f"missing watches: {run._missing_watches()}"
            ),
        )
        if task.done() or any(root.done() for root in root_tasks):
            # kopf's own "stop-flag waiter" would keep it 5 s in its exit: set the flag.
            await _stop(task, stop_flag, stop_timeout, owned, raise_errors=True)
            raise RuntimeError("the operator exited during its startup")
        yield run
    except BaseException:
        await _stop(task, stop_flag, stop_timeout, owned, raise_errors=False)
        raise
    else:
        await _stop(task, stop_flag, stop_timeout, owned, raise_errors=True)
    finally:
        run.end_request_id = len(cluster.emulator)
        if installs_factory:
            loop.set_task_factory(previous_factory)
        if main_thread:
            for sig, handler in saved_signals.items():
                loop.remove_signal_handler(sig)  # kopf's, which would set a finished future
                signal.signal(sig, handler)


#: kopf names the task running a timer or daemon "runner of <handler id>"; it sleeps in
#: an ``Event.wait`` task of its own.
KOPF_TIMER_TASK = "runner of "


async def _stop(
    task: asyncio.Task[None],
    stop_flag: asyncio.Event,
    timeout: float,
    owned: weakref.WeakSet[asyncio.Task[Any]],
    *,
    raise_errors: bool,
) -> None:
    stop_flag.set()
    try:
        await asyncio.wait_for(asyncio.shield(task), timeout)
    except TimeoutError:
        hung = {t.get_name(): getattr(t.get_coro(), "__qualname__", "")
                for t in owned if not t.done() and t is not task}
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, *([] if raise_errors else [Exception])):
            await task
        # kopf race: a timer spawned for an event that arrives while kopf stops is never
        # told to stop (its daemon killer is gone) and sleeps out its interval. Only a
        # hung handler of ours is the test's business.
        ours = [name for name, coroutine in hung.items()
                if not name.startswith(KOPF_TIMER_TASK) and coroutine != "Event.wait"]
        if raise_errors and ours:
            raise TimeoutError(
                f"the operator did not stop in {timeout} s (hung: {', '.join(ours)}); cancelled"
            ) from None
    except Exception:
        if raise_errors:
            raise  # the operator's own failure: the test must not pass
