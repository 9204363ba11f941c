"""Which cluster the e2e tier's walkthrough runs on: kind, or the single-node cluster.

kind needs the tools the Makefile calls, a Docker engine and the walkthrough's kind
cluster (`make kind-up`; its kubectl context, kind-visitor-sync, or the one in
$VISITOR_SYNC_E2E_CONTEXT). Only that context is ever used, so the tests cannot touch
another cluster the kubeconfig knows. The check is done once and takes well under a
second. Where kind is not there, test_single_node.py runs the same walkthrough on a
cluster it starts on this machine (tests/support/node.py).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

CONTEXT = os.environ.get("VISITOR_SYNC_E2E_CONTEXT", "kind-visitor-sync")
TOOLS = ("docker", "kind", "kubectl", "helm", "make", "sftp", "ssh-keyscan")
#: Both probes run at once and are given this long in total.
PROBE_SECONDS = 0.8


@functools.cache
def unavailable() -> str | None:
    """Why the walkthrough cannot run here, or None when it can."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"e2e needs {', '.join(missing)} on PATH (see README: Try it on kind)"
    probes = {
        "no Docker engine answers (docker version)": [
            "docker", "version", "--format", "{{.Server.Version}}"],
        f"kubectl context {CONTEXT} does not reach a cluster (run `make kind-up`)": [
            "kubectl", "--context", CONTEXT, "--request-timeout=1s", "get", "--raw", "/readyz"],
    }
    running = {reason: subprocess.Popen(command, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
               for reason, command in probes.items()}
    deadline = time.monotonic() + PROBE_SECONDS
    failed = []
    for reason, process in running.items():
        try:
            if process.wait(timeout=max(0.0, deadline - time.monotonic())) != 0:
                failed.append(reason)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            failed.append(f"{reason}: no answer within {PROBE_SECONDS} s")
    return "; ".join(failed) or None


def wait_for(what: str, check: Callable[[], Any], timeout: float, interval: float = 2.0
             ) -> Any:
    """``check()``'s first truthy value, polled every ``interval`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
