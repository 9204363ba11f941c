"""The operator's few ways of talking to the Kubernetes API, over the dynamic client.

Plain dicts in and out (builders return dicts, tests compare dicts), and the
API's answers turned into what the caller means: 404 is "absent", 409 on
create is "someone made it first", 4xx on a write is a spec the cluster
refuses (the resource stalls) and anything else is worth a retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import DynamicApiError, NotFoundError, ResourceNotFoundError

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"


class Refused(Exception):
    """The API server refused a write for good (invalid, forbidden, immutable field)."""


class Unavailable(Exception):
    """The API server could not be used just now; retrying may help."""


def covers(current: Any, desired: Any) -> bool:
    """Whether ``current`` already has every value ``desired`` sets.

    Fields the API server adds (defaults, status, metadata) do not count as drift;
    lists must match element by element. An empty list or map is what an absent field
    is: the API server drops empty ``omitempty`` fields, so comparing them as values
    would patch the same object on every resync.
    """
    if current is None and desired in ([], {}):
        return True
    if isinstance(desired, dict):
        return isinstance(current, dict) and all(
            covers(current.get(key), value) for key, value in desired.items())
    if isinstance(desired, list):
        return isinstance(current, list) and len(current) == len(desired) and all(
            covers(have, want) for have, want in zip(current, desired, strict=True))
    return current == desired


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except (DynamicApiError, ApiException) as error:
        status = getattr(error, "status", None) or 0
        detail = _reason(error)
        if 400 <= status < 500 and status not in (408, 409, 429):
            raise Refused(f"{action}: {detail}") from error
        raise Unavailable(f"{action}: {detail}") from error
    except (OSError, kubernetes.client.exceptions.OpenApiException) as error:
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
    """Generic get/list/create/patch/delete of namespaced objects."""

    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.dynamic = DynamicClient(api_client)

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
        except Refused as refused:
            if isinstance(refused.__cause__, NotFoundError):
                return None
            raise

    def list(self, api_version: str, kind: str, namespace: str,
             labels: dict[str, str]) -> list[dict[str, Any]]:
        selector = ",".join(f"{key}={value}" for key, value in labels.items())
        resource = self._resource(api_version, kind)
        with _translated(f"listing {kind} in {namespace}"):
            items = resource.get(namespace=namespace, label_selector=selector).to_dict()
        # Filtered here too: not every API (or emulator) honours label selectors.
        return [item for item in items.get("items") or []
                if covers((item.get("metadata") or {}).get("labels") or {}, labels)]

    def create(self, body: dict[str, Any]) -> dict[str, Any]:
        resource = self._resource(body["apiVersion"], body["kind"])
        metadata = body["metadata"]
        with _translated(f"creating {body['kind']} {metadata['namespace']}/{metadata['name']}"):
            return resource.create(body=body, namespace=metadata["namespace"]).to_dict()

    def patch(self, api_version: str, kind: str, namespace: str, name: str,
              patch: dict[str, Any], *, status: bool = False) -> dict[str, Any]:
        """A JSON merge patch, of the object or of its status subresource."""
        resource = self._resource(api_version, kind)
        if status:
            resource = resource.subresources["status"]
        with _translated(f"patching {kind} {namespace}/{name}"):
            return resource.patch(body=patch, name=name, namespace=namespace,
                                  content_type=MERGE_PATCH).to_dict()

    def apply(self, desired: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Make the object look like ``desired``: create it, patch what drifted, or nothing.

        Returns the object and whether anything was written (an idle resync writes
        nothing). A create that loses a race to another writer falls back to a patch.
        """
        return self.apply_over(self.get(*_key(desired)), desired)

    def apply_over(self, current: dict[str, Any] | None,
                   desired: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """:meth:`apply` for an object the caller has just read (``None``: absent)."""
        key = _key(desired)
        if current is None:
            try:
                return self.create(desired), True
            except Unavailable as error:
                current = self.get(*key)
                if current is None:
                    raise error from None
        if covers(current, desired):
            return current, False
        log.info("%s %s/%s drifted from its desired state; patching", *key[1:])
        patch = {name: value for name, value in desired.items()
                 if name not in ("apiVersion", "kind")}
        return self.patch(*key, patch), True


def _key(body: dict[str, Any]) -> tuple[str, str, str, str]:
    """apiVersion, kind, namespace and name of an object."""
    metadata = body["metadata"]
    return body["apiVersion"], body["kind"], metadata["namespace"], metadata["name"]
