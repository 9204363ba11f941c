"""The test plays the kubelet: runs a Job's container as a local process, reports it back.

No cluster runs Pods here, so :func:`run_job` does what a kubelet would do with the Job
the operator made: mounts its ConfigMap and Secret volumes (files in a work directory,
paths in the arguments rewritten to them), resolves ``secretKeyRef`` environment
variables from the emulated API, runs the container's command and arguments, and reads
the termination message file. :func:`report_job` then writes what the Job controller
would: a Pod with the container's terminated state, and the Job's final condition.

``network`` maps cluster names (``importer@svc.ns.svc:22``) to local ones, as cluster
DNS and Service NAT would; known_hosts lines are rewritten the same way.
"""

from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support.kube import Cluster

RUN_TIMEOUT = 120


#: What ``FallbackToLogsOnError`` takes from the log: the last 80 lines, at most 2048 bytes.
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048


@dataclass(frozen=True)
class ContainerRun:
    exit_code: int
    stdout: str
    stderr: str
    termination_message: str

    @property
    def reported_message(self) -> str:
        """The terminated state's message: the termination log, or, when it is empty and
        the container failed, the log's tail (``FallbackToLogsOnError``, which the
        importer's Job uses; stdout then stderr, their interleaving being unknown here)."""
        if self.termination_message or self.exit_code == 0:
            return self.termination_message
        tail = "\n".join((self.stdout + self.stderr).splitlines()[-FALLBACK_LINES:])
        return tail.encode()[-FALLBACK_BYTES:].decode(errors="ignore")


async def _volume_files(cluster: Cluster, namespace: str, volume: dict[str, Any],
                        directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for kind, reference, name_key, decode in (
            ("ConfigMap", volume.get("configMap"), "name", False),
            ("Secret", volume.get("secret"), "secretName", True)):
        if reference is None:
            continue
        body = await cluster.get("v1", kind, reference[name_key], namespace=namespace)
        assert body is not None, f"{kind} {reference[name_key]} of volume {volume['name']}"
        data = body.get("data") or {}
        items = reference.get("items") or [{"key": key, "path": key} for key in data]
        for item in items:
            value = data[item["key"]]
            content = base64.b64decode(value) if decode else value.encode()
            path = directory / item["path"]
            path.write_bytes(content)
            path.chmod(0o600)


async def run_job(cluster: Cluster, job: dict[str, Any], workdir: Path,
                  network: dict[str, str]) -> ContainerRun:
    """Run the Job's only container to completion, as its pod would."""
    namespace = job["metadata"]["namespace"]
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts: dict[str, Path] = {}
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    for mount in container["volumeMounts"]:
        directory = workdir / "volumes" / mount["name"]
        await _volume_files(cluster, namespace, volumes[mount["name"]], directory)
        mounts[mount["mountPath"]] = directory
    termination = workdir / "termination-log"
    termination.write_text("")

    def local(text: str) -> str:
        if text == container["terminationMessagePath"]:
            return str(termination)
        for mount_path, directory in mounts.items():
            if text.startswith(mount_path + "/"):
                text = str(directory) + text[len(mount_path):]
                break
        for cluster_name, local_name in network.items():
            text = text.replace(cluster_name, local_name)
        return text

    for directory in mounts.values():
        for path in directory.iterdir():
            if path.name == "known_hosts":
                path.write_text(local(path.read_text()))
    environment = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8"}
    for variable in container.get("env") or []:
        if "value" in variable:
            environment[variable["name"]] = local(variable["value"])
            continue
        reference = variable["valueFrom"]["secretKeyRef"]
        secret = await cluster.get("v1", "Secret", reference["name"], namespace=namespace)
        assert secret is not None, f"Secret {reference['name']} for ${variable['name']}"
        environment[variable["name"]] = base64.b64decode(
            secret["data"][reference["key"]]).decode()
    # The pod's /tmp is an emptyDir; here it is the mounted scratch directory.
    environment["TMPDIR"] = environment["HOME"] = str(mounts["/tmp"])
    # The console script of the interpreter running the tests, not whatever PATH finds
    # first (another checkout's visitor-sync would run another version of the importer).
    executable = Path(sys.executable).with_name(container["command"][0])
    assert executable.exists(), f"{executable} is not installed"
    command = [str(executable), *container["command"][1:], *map(local, container["args"])]
    done = await asyncio.to_thread(subprocess.run, command, env=environment,
                                   capture_output=True, text=True, timeout=RUN_TIMEOUT)
    return ContainerRun(done.returncode, done.stdout, done.stderr, termination.read_text())


async def report_job(cluster: Cluster, job: dict[str, Any], exit_code: int, message: str,
                     reason: str | None = None) -> None:
    """What the kubelet and the Job controller write when the container has ended."""
    metadata = job["metadata"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    pod_name = f"{metadata['name']}-x7k2p"
    await cluster.create({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": pod_name, "namespace": metadata["namespace"],
                     "labels": {"batch.kubernetes.io/job-name": metadata["name"],
                                "job-name": metadata["name"]}},
        "spec": {"restartPolicy": "Never",
                 "containers": [{"name": "importer", "image": "visitor-sync"}]}})
    terminated = {"exitCode": exit_code, "message": message, "finishedAt": now,
                  "reason": reason or ("Completed" if exit_code == 0 else "Error")}
    await cluster.patch_status("v1", "Pod", pod_name, {
        "phase": "Succeeded" if exit_code == 0 else "Failed",
        "containerStatuses": [{"name": "importer", "ready": False, "restartCount": 0,
                               "image": "visitor-sync", "imageID": "",
                               "state": {"terminated": terminated}}]},
        namespace=metadata["namespace"])
    condition = "Complete" if exit_code == 0 else "Failed"
    await cluster.patch_status("batch/v1", "Job", metadata["name"], {
        "conditions": [{"type": condition, "status": "True", "lastTransitionTime": now,
                        "reason": None if exit_code == 0 else "BackoffLimitExceeded",
                        "message": None if exit_code == 0 else
                        "Job has reached the specified backoff limit"}],
        "succeeded" if exit_code == 0 else "failed": 1}, namespace=metadata["namespace"])
