"""Idle resyncs of N districts on a real kube-apiserver: writes, Events and reads per resync.

The operator (``visitor-sync operator``, as the chart's ServiceAccount) provisions N
districts; once every one has its status, the API server's audit log is read over a
window of whole resync rounds. An idle resync should write nothing and post no Event
(issue 13 item 1), and reads per district per resync are what issue 13 item 8 is about.

    KUBEBUILDER_ASSETS=$(scripts/kube-assets) python -m benchmarks.realapi_idle_resync \\
        --districts 100 --resync 20 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from tests.support.controlplane import ControlPlane, assets_dir
from tests.support.realapi import (
    RELEASE_NAMESPACE,
    Api,
    OperatorProcess,
    audit_policy,
    audited,
    install_chart,
    moment,
    service_account_kubeconfig,
    wait_until,
)

API = "sync.visitoraware.io/v1alpha1"
NAMESPACE = "districts"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--districts", type=int, default=100)
    parser.add_argument("--resync", type=float, default=20.0, help="resync seconds")
    parser.add_argument("--rounds", type=int, default=2, help="resync rounds measured")
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="vs-idle-"))
    plane = ControlPlane(assets_dir(), state, apiserver_args=[
        f"--audit-policy-file={audit_policy(state / 'audit-policy.yaml')}",
        f"--audit-log-path={state / 'audit.log'}"])
    with plane:
        admin = Api(plane.kubeconfig("admin"))
        account = install_chart(admin)
        kubeconfig = service_account_kubeconfig(plane, admin, account,
                                                state / "operator.kubeconfig")
        user = f"system:serviceaccount:{RELEASE_NAMESPACE}:{account}"
        admin.create({"apiVersion": "v1", "kind": "Namespace",
                      "metadata": {"name": NAMESPACE}})
        with OperatorProcess(kubeconfig, [NAMESPACE], state / "operator.log",
                             resync_seconds=args.resync):
            started = time.monotonic()
            for index in range(args.districts):
                name = f"district-{index:04d}"
                admin.create({"apiVersion": API, "kind": "DistrictSync",
                              "metadata": {"name": name, "namespace": NAMESPACE},
                              "spec": {"districtId": name, "displayName": name}})

            def provisioned() -> bool:
                items = admin.list(API, "DistrictSync", NAMESPACE)
                return sum(1 for i in items if (i.get("status") or {}).get("sftp")) == len(
                    items) == args.districts

            wait_until(provisioned, timeout=1800, message="districts not provisioned")
            provisioning = time.monotonic() - started
            # Let the first resync round after provisioning pass, then measure whole rounds.
            time.sleep(args.resync * 1.5)  # a benchmark's settling time, not a test's wait
            since, events = moment(), len(admin.events(NAMESPACE))
            time.sleep(args.resync * args.rounds)
            requests = [r for r in audited(state / "audit.log", user, since)
                        if r.namespace == NAMESPACE]
            writes = Counter(f"{r.verb} {r.resource}{'/' + r.subresource if r.subresource else ''}"
                             for r in requests if r.is_write)
            reads = [r for r in requests if not r.is_write and r.verb != "watch"]
            rounds = sum(1 for r in reads if r.resource == "secrets"
                         and (r.name or "").endswith("-sftp-credentials"))
            print(json.dumps({
                "districts": args.districts, "provisioning_seconds": round(provisioning, 1),
                "resync_seconds": args.resync, "district_resyncs_measured": rounds,
                "writes": dict(writes), "events_posted": len(admin.events(NAMESPACE)) - events,
                "reads_per_district_resync": round(len(reads) / max(rounds, 1), 2),
                "reads_by_resource": dict(Counter(r.resource for r in reads)),
            }, indent=1))


if __name__ == "__main__":
    main()
