"""The operator's few ways of talking to the Kubernetes API, over the dynamic client.

Plain dicts in and out (builders return dicts, tests compare dicts), and the
API's answers turned into what the caller means: 404 is "absent", 4xx on a write
is a spec the cluster refuses (the resource stalls) and anything else is worth a
retry.

Children are written with server-side apply under the field manager
``visitor-sync-operator``: the API server, not a hand-made comparison, decides what
drifted (defaults, canonical quantities, dropped empty fields), and a field the
operator stops setting is removed. An object the district does not control is
refused, never adopted.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, ResourceNotFoundError

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
#: Whose fields the children's are (server-side apply); the chart's Deployment name too.
FIELD_MANAGER = "visitor-sync-operator"


class Refused(Exception):
    """The API server refused a write for good (invalid, forbidden, immutable field)."""


class Gone(Refused):
    """The object does not exist (HTTP 404), e.g. deleted while it was being handled."""


class NotOwned(Refused):
    """A child's name is taken by an object the district does not control."""


class Unavailable(Exception):
    """The API server could not be used just now; retrying may help."""


class Conflict(Unavailable):
    """The object changed since it was read (HTTP 409): read it again and recompute."""


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except (DynamicApiError, ApiException) as error:
        status = getattr(error, "status", None) or 0
        detail = _reason(error)
        if status == 409:
            raise Conflict(f"{action}: {detail}") from error
        if status == 404:
            raise Gone(f"{action}: {detail}") from error
        if 400 <= status < 500 and status not in (408, 429):
            raise Refused(f"{action}: {detail}") from error
        raise Unavailable(f"{action}: {detail}") from error
    except (OSError, urllib3.exceptions.HTTPError,
            kubernetes.client.exceptions.OpenApiException) as error:
        # urllib3 gives up on a refused connection with its own MaxRetryError
        raise Unavailable(f"{action}: {error}") from error


def _reason(error: Exception) -> str:
    """The API's own message (``Status.message``), or the HTTP reason."""
    body = getattr(error, "body", None)
    if body:
        try:
            return json.loads(body).get("message") or str(body)[:500]
        except (ValueError, AttributeError):
            return str(body)[:500]
    return getattr(error, "reason", None) or str(error)


class Kube:
    """Generic get/list/create/patch/apply of namespaced objects."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.dynamic = DynamicClient(api_client)
        #: per object: (what was applied, the resourceVersion that resulted), so that an
        #: object nobody changed since is not applied again (an idle resync writes nothing)
        self._applied: dict[tuple[str, str, str, str], tuple[str, str | None]] = {}

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError as error:
            raise Refused(f"the cluster does not serve {kind} {api_version}") from error

    def get(self, api_version: str, kind: str, namespace: str, name: str
            ) -> dict[str, Any] | None:
        resource = self._resource(api_version, kind)
        try:
            with _translated(f"reading {kind} {namespace}/{name}"):
                return resource.get(name=name, namespace=namespace).to_dict()
        except Gone:
            return None

    def list(self, api_version: str, kind: str, namespace: str,
             labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        resource = self._resource(api_version, kind)
        with _translated(f"listing {kind} in {namespace}"):
            items = resource.get(namespace=namespace, label_selector=selector).to_dict()
        # Filtered here too: not every API (or emulator) honours label selectors.
        return [item for item in items.get("items") or []
                if labels.items() <= ((item.get("metadata") or {}).get("labels") or {}).items()]

    def patch(self, api_version: str, kind: str, namespace: str, name: str,
              patch: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
        """A JSON merge patch, of the object or of its status subresource (with
        ``metadata.resourceVersion`` in it: :class:`Conflict` if the object changed since)."""
        resource = self._resource(api_version, kind)
        if status:
            resource = resource.subresources["status"]
        with _translated(f"patching {kind} {namespace}/{name}"):
            return resource.patch(body=patch, name=name, namespace=namespace,
                                  content_type=MERGE_PATCH).to_dict()

    def apply(self, desired: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Make the object look like ``desired`` (server-side apply), unless it already does.

        Returns the object and whether the server changed it. ``desired`` is applied
        again only when it differs from what was last applied or someone changed the
        object since (its resourceVersion moved), so an idle resync makes no write.
        """
        return self.apply_over(self.get(*_key(desired)), desired)

    def apply_over(self, current: dict[str, Any] | None,
                   desired: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """:meth:`apply` for an object the caller has just read (``None``: absent)."""
        key = _key(desired)
        if current is not None:
            check_controlled(current, desired)
        applied = json.dumps(desired, sort_keys=True)
        version = (current or {}).get("metadata", {}).get("resourceVersion")
        if current is not None and self._applied.get(key) == (applied, version):
            return current, False
        resource = self._resource(key[0], key[1])
        with _translated(f"applying {key[1]} {key[2]}/{key[3]}"):
            result = resource.server_side_apply(
                body=desired, name=key[3], namespace=key[2], field_manager=FIELD_MANAGER,
                # Only objects the district controls get here: a field someone else set
                # where we set one is drift, and ours wins.
                force_conflicts=True).to_dict()
        new_version = result["metadata"].get("resourceVersion")
        self._applied[key] = (applied, new_version)
        written = new_version != version
        if written and current is not None:
            log.info("%s %s/%s drifted from its desired state; applied", *key[1:])
        return result, written


def _controller(body: dict[str, Any]) -> dict[str, Any] | None:
    return next((ref for ref in body["metadata"].get("ownerReferences") or []
                 if ref.get("controller")), None)


def check_controlled(current: dict[str, Any], desired: dict[str, Any]) -> None:
    """Refuse to touch an object the desired owner does not control (a same-named
    Service or Secret of someone else's is not ours to change)."""
    have, want = _controller(current), _controller(desired)
    if want is not None and (have or {}).get("uid") != want.get("uid"):
        owner = f"{have['kind']} {have['name']}" if have else "nobody"
        raise NotOwned(
            f"{desired['kind']} {desired['metadata']['namespace']}/"
            f"{desired['metadata']['name']} already exists and is controlled by {owner}, "
            f"not {want['kind']} {want['name']}: the operator does not take it over; "
            "rename or delete it")


def _key(body: dict[str, Any]) -> tuple[str, str, str, str]:
    """apiVersion, kind, namespace and name of an object."""
    metadata = body["metadata"]
    return body["apiVersion"], body["kind"], metadata["namespace"], metadata["name"]
