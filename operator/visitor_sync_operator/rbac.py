"""Every API permission the operator needs, and nothing more: the chart's RBAC source.

The Helm chart's (Cluster)Role must grant exactly these (tests/test_chart.py), and
the operator tests check every request the operator made against the emulator is
covered and every rule here was used (tests/test_operator.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from visitor_sync_operator.spec import GROUP, PLURAL


@dataclass(frozen=True)
class Rule:
    api_group: str
    resources: tuple[str, ...]
    verbs: tuple[str, ...]


OWN = ("get", "list", "watch", "create", "patch")

RULES: tuple[Rule, ...] = (
    # The districts: watched, annotated by kopf's bookkeeping, status written.
    Rule(GROUP, (PLURAL,), ("get", "list", "watch", "patch")),
    Rule(GROUP, (f"{PLURAL}/status",), ("get", "patch")),
    # Children, applied idempotently (create when absent, patch what drifted).
    Rule("", ("configmaps", "persistentvolumeclaims", "secrets", "services"), OWN),
    Rule("apps", ("deployments",), OWN),
    Rule("networking.k8s.io", ("networkpolicies",), OWN),
    Rule("batch", ("cronjobs",), OWN),
    # Runs: Jobs started on request and marked once reported; pods read for the summary.
    Rule("batch", ("jobs",), OWN),
    Rule("", ("pods",), ("get", "list")),
    # kopf posts Events about the districts.
    Rule("", ("events",), ("create",)),
    Rule("events.k8s.io", ("events",), ("create",)),
)
