"""Every API permission the operator needs, and nothing more: the chart's RBAC source.

The Helm chart's (Cluster)Role must grant exactly these (tests/test_chart.py), and
the operator tests check every request the operator made against the emulator is
covered and every rule here but :data:`OWNER_FINALIZERS` was used
(tests/test_operator_end_to_end.py); the real-API tier runs the operator with only
these, under OwnerReferencesPermissionEnforcement (tests/realapi/).
"""

from __future__ import annotations

from dataclasses import dataclass

from visitor_sync_operator.spec import GROUP, PLURAL


@dataclass(frozen=True)
class Rule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


#: Children are read and written one by one, never listed or watched.
OWN = ("get", "create", "patch")
#: Children whose changes the operator watches (server readiness, runs ending).
WATCHED = ("get", "list", "watch", "create", "patch")

#: Used by no request: OwnerReferencesPermissionEnforcement (OpenShift's default admission)
#: lets only who may update a DistrictSync's finalizers set ``blockOwnerDeletion`` on
#: the children it owns, so without it every child is refused there.
OWNER_FINALIZERS = Rule(GROUP, (f"{PLURAL}/finalizers",), ("update",))

RULES: tuple[Rule, ...] = (
    # The districts: watched, annotated by kopf's bookkeeping, status written.
    Rule(GROUP, (PLURAL,), ("get", "list", "watch", "patch")),
    Rule(GROUP, (f"{PLURAL}/status",), ("patch",)),
    # Children, applied idempotently (create when absent, patch what drifted).
    Rule("", ("configmaps", "persistentvolumeclaims", "secrets", "services"), OWN),
    Rule("networking.k8s.io", ("networkpolicies",), OWN),
    Rule("batch", ("cronjobs",), OWN),
    Rule("apps", ("deployments",), WATCHED),
    # Runs: Jobs started on request and marked once reported; their pods' termination
    # messages hold the run summaries.
    Rule("batch", ("jobs",), WATCHED),
    Rule("", ("pods",), ("list",)),
    # kopf posts Events about the districts (core API).
    Rule("", ("events",), ("create",)),
    OWNER_FINALIZERS,
)
