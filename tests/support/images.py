"""The project's two images, built once per test session by scripts/images, and run.

Runs with a Docker engine or podman (scripts/images chooses; where no registry is
reachable it makes the base images locally). Skipped, with the reason, only where
neither exists; where one does, a failed build fails the tests (CI must not pass by
skipping). Concurrent pytest-xdist workers take turns on a lock file: the first builds,
the others find every layer cached.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.chart import ROOT

SCRIPT = ROOT / "scripts" / "images"
APP_IMAGE = os.environ.get("IMAGE", "visitor-sync:dev")
SFTP_IMAGE = os.environ.get("SFTP_IMAGE", "visitor-sync-sftp:dev")
#: A cold build (base images from Debian's mirrors, both images) takes 5 to 10 minutes
#: on 2 busy cores; a cached one seconds.
BUILD_SECONDS = 1800


def unavailable() -> str | None:
    """Why no image can be built here, or None."""
    docker = shutil.which("docker") and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0
    if docker or shutil.which("podman"):
        return None
    return "no Docker engine answers and podman is not installed (scripts/test installs it)"


def build() -> None:
    """scripts/images, once at a time across workers; fails the test on any error."""
    lock_path = Path(os.environ.get("TMPDIR", "/tmp")) / "visitor-sync-images.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run([str(SCRIPT)], capture_output=True, text=True,
                                timeout=BUILD_SECONDS)
    if result.returncode != 0:
        pytest.fail(f"scripts/images failed ({result.returncode}):\n{result.stderr[-4000:]}")


def engine(*arguments: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The container engine with scripts/images' settings (podman's runtime, rlimits)."""
    return subprocess.run([str(SCRIPT), "engine", *arguments], capture_output=True, text=True,
                          timeout=timeout)


def is_podman() -> bool:
    return "podman" in engine("--version").stdout.lower()


def as_the_pods_run_it(scratch: bool = True) -> list[str]:
    """``run`` options for what the importer Jobs' and the operator's pod security
    amounts to (builders/importer.py, the chart's Deployment): the image's uid without a
    user database entry, read-only root, no capabilities, no privilege escalation, no
    USER/LOGNAME in the environment (neither pod sets one), and an emptyDir at /tmp
    (``scratch``)."""
    options = ["--rm", "--read-only", "--user", "10001:10001", "--cap-drop=ALL",
               "--security-opt", "no-new-privileges", "--network=none"]
    if is_podman():
        # podman adds a passwd entry for --user and a tmpfs /tmp to --read-only
        # containers by default; a pod has neither.
        options += ["--passwd=false", "--read-only-tmpfs=false"]
    if scratch:
        options += ["--tmpfs", "/tmp:rw,mode=1777,size=512m"]
    return options
