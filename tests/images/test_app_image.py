"""The operator/importer image, run with the security settings of its pods.

Nothing here had run in a real pod before: the operator crash-looped because the
image's uid has no user database entry and no USER/LOGNAME. These tests run the built
image exactly that way (tests/support/images.as_the_pods_run_it).
"""

from __future__ import annotations

import pytest

from tests.support.images import as_the_pods_run_it, engine

pytestmark = pytest.mark.timeout(2400)


def run(image: str, *command: str, entrypoint: str | None = None):
    arguments = as_the_pods_run_it()
    if entrypoint:
        arguments += ["--entrypoint", entrypoint]
    return engine("run", *arguments, image, *command)


def test_the_pods_identity_has_no_user_entry_and_no_user_variables(built_images) -> None:
    """The conditions of the crash: getpass.getuser() fails in the pod (the check can fail),
    the operator's kopf identity does not."""
    app, _ = built_images
    result = run(app, "-c", "import os, getpass\n"
                 "print(os.getuid(), os.environ.get('USER'), os.environ.get('LOGNAME'))\n"
                 "try:\n    getpass.getuser()\nexcept (KeyError, OSError) as error:\n"
                 "    print('getuser fails:', type(error).__name__)\n"
                 "from visitor_sync_operator.main import identity\nprint('identity', identity())",
                 entrypoint="python")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "10001 None None"
    assert lines[1].startswith("getuser fails:")
    assert lines[2].startswith("identity ") and len(lines[2]) > len("identity ")


@pytest.mark.parametrize("command", [["--help"], ["operator", "--help"], ["import", "--help"]])
def test_commands_start_as_the_pods_run_them(built_images, command) -> None:
    app, _ = built_images
    result = run(app, *command)
    assert result.returncode == 0, result.stderr
    assert "Usage: visitor-sync" in result.stdout


def test_the_demo_imports_on_the_pods_scratch_volume(built_images) -> None:
    """A whole import (migrations, SQLite, the sample district) with a read-only root:
    everything it writes is under /tmp."""
    app, _ = built_images
    result = run(app, "demo", "--workdir", "/tmp/demo")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "created" in result.stdout


def test_without_the_scratch_volume_the_demo_fails_loudly(built_images) -> None:
    """The read-only root is really read-only (the test above proves something)."""
    app, _ = built_images
    result = engine("run", *as_the_pods_run_it(scratch=False), app,
                    "demo", "--workdir", "/tmp/demo")
    assert result.returncode != 0
    assert "Read-only file system" in result.stderr


def test_district_time_zones_resolve(built_images) -> None:
    """spec.timeZone is validated and scheduled with zoneinfo: the base's tzdata is there
    and readable by the pods' uid (docs/images.md)."""
    app, _ = built_images
    result = run(app, "-c", "from zoneinfo import ZoneInfo, available_timezones\n"
                 "print(len(available_timezones()), ZoneInfo('America/Chicago').key)",
                 entrypoint="python")
    assert result.returncode == 0, result.stderr
    count, key = result.stdout.split()
    assert int(count) > 300 and key == "America/Chicago"
