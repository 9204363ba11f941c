"""The SFTP image: what the build leaves in it (only sshd; no client tools, no default
configuration, no host keys of its own) and that the mounted configuration is the one
sshd can run with."""

from __future__ import annotations

import pytest

from tests.support.images import engine

pytestmark = pytest.mark.timeout(2400)

#: openssh-client's programs, which Debian's openssh-server pulls in and the build removes.
CLIENT_TOOLS = ("ssh", "scp", "sftp", "ssh-keygen", "ssh-keyscan", "ssh-agent", "ssh-add")


def shell(image: str, script: str):
    return engine("run", "--rm", "--network=none", "--entrypoint", "bash", image, "-c", script)


def test_only_the_server_is_installed(built_images) -> None:
    _, sftp = built_images
    result = shell(sftp, "for tool in " + " ".join(CLIENT_TOOLS) + "; do "
                   "command -v $tool || true; done; "
                   "ls /etc/ssh; test -x /usr/sbin/sshd && echo sshd-present")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert "sshd-present" in lines
    assert not [line for line in lines if line.startswith("/")], result.stdout  # no client
    assert "sshd_config" not in lines and not [n for n in lines if n.startswith("ssh_host_")]


def test_the_check_sees_a_client_tool(built_images) -> None:
    """The listing above can fail: it does find a program that is there."""
    _, sftp = built_images
    result = shell(sftp, "command -v sshd")
    assert result.stdout.strip() == "/usr/sbin/sshd"


def test_sshd_runs_only_with_the_mounted_configuration(built_images) -> None:
    """With the default config removed, sshd without -f has nothing to start with."""
    _, sftp = built_images
    result = shell(sftp, "/usr/sbin/sshd -t")
    assert result.returncode != 0
    assert "/etc/ssh/sshd_config: No such file or directory" in result.stderr
