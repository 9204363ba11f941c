"""Strict validation of built-in Kubernetes manifests against the real schemas."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

#: The oldest Kubernetes the manifests must work on (CronJob timeZone is GA in 1.27; the
#: chart says kubeVersion >=1.27) and the newest kubernetes-validate knows.
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.utils.latest_version())


def validate_strictly(manifest: dict[str, Any], version: str) -> None:
    """Fail the test, naming the object and the field, unless the manifest is valid."""
    try:
        kubernetes_validate.validate(manifest, version, strict=True)
    except kubernetes_validate.ValidationError as error:
        pytest.fail(f"{manifest['kind']}/{manifest['metadata'].get('name')} is invalid for "
                    f"Kubernetes {version}: {error.message} at {list(error.path)}")
