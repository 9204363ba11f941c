"""The README's kind walkthrough, step by step, through the Makefile's own targets.

Build and load both images, install the demo PostgreSQL and the chart, declare the
district, upload the sample files with sftp as the district would, request a run and
wait for its result in the resource's status. Skipped unless a kind cluster made by
`make kind-up` and a Docker engine are there (tests/e2e/conftest.py says which is
missing). One test, because the steps only make sense in order and pytest-xdist may
otherwise hand them to different workers.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest
import yaml

from tests.e2e.conftest import CONTEXT, unavailable, wait_for
from tests.support.chart import ROOT
from visitor_sync_operator.builders.importer import run_now_job_name
from visitor_sync_operator.district import District

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]


@pytest.fixture(autouse=True)
def _kind_cluster_or_skip() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(f"{reason}; tests/e2e/test_single_node.py runs the walkthrough instead")

EXAMPLE = yaml.safe_load((ROOT / "examples" / "district-kind.yaml").read_text())
NAMESPACE = EXAMPLE["metadata"]["namespace"]
NAME = EXAMPLE["metadata"]["name"]
RELEASE_NAMESPACE = "visitor-sync-system"
CLUSTER = CONTEXT.removeprefix("kind-")
SAMPLES = ROOT / "build" / "kind-demo" / "inbox"


def make(*targets: str, timeout: float = 900) -> None:
    subprocess.run(["make", "-C", str(ROOT), f"CLUSTER={CLUSTER}", *targets], check=True,
                   timeout=timeout)


def kubectl(*args: str) -> str:
    result = subprocess.run(["kubectl", "--context", CONTEXT, *args], check=True,
                            capture_output=True, text=True, timeout=120)
    return result.stdout


def district() -> dict[str, Any]:
    return json.loads(kubectl("-n", NAMESPACE, "get", "districtsync", NAME, "-o", "json"))


def finished(job: str) -> str | None:
    body = json.loads(kubectl("-n", NAMESPACE, "get", "job", job, "-o", "json"))
    for condition in body.get("status", {}).get("conditions") or []:
        if condition["type"] in ("Complete", "Failed") and condition["status"] == "True":
            return str(condition["type"])
    return None


def test_walkthrough_from_a_clone_to_an_imported_district() -> None:
    make("images", "postgres", "install")
    kubectl("-n", RELEASE_NAMESPACE, "rollout", "status", "deployment/visitor-sync",
            "--timeout=180s")

    make("district")  # waits for condition Ready
    status = district()["status"]
    assert status["sftp"]["hostKeyFingerprints"], "the district cannot verify the server"
    assert status["observedGeneration"] == district()["metadata"]["generation"]

    # fails unless every file is listed on the server afterwards; then waits out the quiet
    # period, so `make upload run` imports the files as the README has it
    make("upload")
    uploaded = sorted(SAMPLES.glob("*.csv"))

    make("run")  # returns once status.lastHandledRunRequest echoes the token
    body = district()
    token = body["status"]["lastHandledRunRequest"]
    job = run_now_job_name(District.from_body(body), token)
    outcome = wait_for(f"Job {job} to finish", lambda: finished(job), timeout=600)
    logs = kubectl("-n", NAMESPACE, "logs", f"job/{job}", "--tail=50")
    assert outcome == "Complete", f"the import Job failed:\n{logs}"

    last = wait_for("the run in the status", lambda: (
        district()["status"].get("lastImport", {}).get("job") == job
        and district()["status"]["lastImport"]), timeout=120)
    # The samples carry deliberate mistakes (docs/formats.md): applied, with errors.
    assert last["result"] == "partial", last["message"]
    assert last["files"] == len(uploaded)
    assert last["counts"]["students"]["rowsRead"] == 300
    assert last["errors"] > 0
    conditions = {c["type"]: c["status"] for c in district()["status"]["conditions"]}
    assert conditions["Ready"] == "True" and conditions["SFTPReady"] == "True"
