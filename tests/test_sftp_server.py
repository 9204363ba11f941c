"""The district's SFTP server: the rendered sshd_config, run by a real OpenSSH sshd.

Every server here is started by ``images/sftp/entrypoint.sh`` (accounts, directories,
keys from "Secret" files, ``sshd -t``, then ``sshd -D -e``) with the config
``render_sshd_config`` produced, on 127.0.0.1, and probed with real clients
(paramiko, OpenSSH's ``sftp``) and ``ssh-audit``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from tests.support.sshd import (
    ENTRYPOINT,
    Accounts,
    ClientKey,
    SftpServer,
    free_port,
    host_keys,
    server_base,
)
from visitor_sync.sftp.credentials import (
    ALPHABET,
    DIGITS,
    LOWER,
    SYMBOLS,
    UPPER,
    generate_password,
    is_safe_password,
)
from visitor_sync.sftp.keys import (
    check_authorized_keys,
    fingerprint,
    generate_key,
    known_hosts_line,
    public_line_of,
)
from visitor_sync.sftp.server import (
    CIPHERS,
    HOST_KEY_ALGORITHMS,
    KEX_ALGORITHMS,
    MACS,
    SshdSettings,
    entrypoint_environment,
    render_sshd_config,
)

#: What Debian 12's OpenSSH adds to every key exchange offer since the Terrapin fix
#: (CVE-2023-48795): a marker, not an algorithm; ssh-audit 2.5.0 predates it.
STRICT_KEX_MARKER = "kex-strict-s-v00@openssh.com"
#: The capabilities docs/sftp.md says the container needs (setpriv names).
CONTAINER_CAPABILITIES = ("chown", "setuid", "setgid", "sys_chroot", "kill")


def settings(**overrides: object) -> SshdSettings:
    values: dict[str, object] = {
        "district_user": "district", "importer_user": "importer",
        "district_authorized_keys": "/etc/ssh/keys/district",
        "importer_authorized_keys": "/etc/ssh/keys/importer",
        "host_keys": ["/etc/ssh/keys/ssh_host_ed25519_key"]}
    return SshdSettings.model_validate({**values, **overrides})


def effective_config(config: str, directory: Path, user: str, address: str = "127.0.0.1"
                     ) -> dict[str, str]:
    """``sshd -T``: what sshd itself makes of the config for ``user`` from ``address``."""
    path = directory / "sshd_config"
    path.write_text(config)
    result = subprocess.run(
        ["/usr/sbin/sshd", "-T", "-f", str(path), "-C",
         f"user={user},host=client.example,addr={address}"],
        capture_output=True, text=True, check=True)
    effective: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, _, value = line.partition(" ")
        effective[key] = f"{effective[key]} {value}" if key in effective else value
    return effective


@pytest.fixture
def key_directory() -> Iterator[Path]:
    """Host keys for ``sshd -t``/``-T`` runs (it loads them), root-owned under /srv."""
    directory = server_base("render")
    directory.mkdir(parents=True)
    ed25519, rsa_key = host_keys()
    for name, pair in (("ssh_host_ed25519_key", ed25519), ("ssh_host_rsa_key", rsa_key)):
        (directory / name).write_bytes(pair.private_openssh)
        (directory / name).chmod(0o600)
    yield directory
    subprocess.run(["rm", "-rf", str(directory)], check=True)


# -- the renderer (pure) ---------------------------------------------------------------


@pytest.mark.parametrize("overrides", [
    pytest.param({}, id="defaults"),
    pytest.param({"password_login": False}, id="keys-only"),
    pytest.param({"district_authorized_keys": None}, id="password-only"),
    pytest.param({"allowed_networks": ["10.20.0.0/16", "2001:db8::/32"],
                  "importer_networks": ["10.96.0.0/12"], "listen_address": "::"},
                 id="networks-ipv6"),
    pytest.param({"use_pam": True, "max_startups": (3, 50, 10), "port": 22}, id="tuned"),
])
def test_rendered_config_is_accepted_by_sshd(key_directory: Path, overrides: dict) -> None:
    """``sshd -t`` accepts every variant (no option unknown to Debian 12's OpenSSH)."""
    config = render_sshd_config(settings(
        host_keys=[str(key_directory / "ssh_host_ed25519_key"),
                   str(key_directory / "ssh_host_rsa_key")], **overrides))
    path = key_directory / "sshd_config"
    path.write_text(config)
    result = subprocess.run(["/usr/sbin/sshd", "-t", "-f", str(path)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_effective_config_per_account(key_directory: Path) -> None:
    """Read back through ``sshd -T``: each account gets its chroot, forced SFTP and
    login methods; nothing can be forwarded or run; algorithms are exactly ours."""
    config = render_sshd_config(settings(
        root="/srv/drop", host_keys=[str(key_directory / "ssh_host_ed25519_key")]))
    district = effective_config(config, key_directory, "district")
    importer = effective_config(config, key_directory, "importer")

    assert district["chrootdirectory"] == "/srv/drop/district"
    assert importer["chrootdirectory"] == "/srv/drop"
    assert district["forcecommand"].startswith("internal-sftp -l VERBOSE")
    assert "-d /upload" in district["forcecommand"]
    assert "-P symlink,hardlink" in district["forcecommand"]
    assert importer["forcecommand"].startswith("internal-sftp -l VERBOSE")
    assert district["passwordauthentication"] == "yes"
    assert importer["passwordauthentication"] == "no"
    assert district["authenticationmethods"] == "publickey password"
    assert importer["authenticationmethods"] == "publickey"
    assert district["authorizedkeysfile"] == "/etc/ssh/keys/district"
    assert importer["authorizedkeysfile"] == "/etc/ssh/keys/importer"
    for effective in (district, importer):
        for option in ("permittty", "allowtcpforwarding", "allowagentforwarding",
                       "x11forwarding", "permittunnel", "gatewayports", "permitrootlogin",
                       "kbdinteractiveauthentication", "hostbasedauthentication",
                       "permituserenvironment", "disableforwarding"):
            expected = "yes" if option == "disableforwarding" else "no"
            assert effective[option] == expected, option
        assert effective["loglevel"] == "VERBOSE"
        assert effective["usepam"] == "no"
        assert effective["maxauthtries"] == "3"
        assert effective["logingracetime"] == "30"
        assert effective["maxstartups"] == "10:30:60"
        assert effective["clientaliveinterval"] == "15"
        assert effective["clientalivecountmax"] == "4"
        assert effective["kexalgorithms"].split(",") == list(KEX_ALGORITHMS)
        assert effective["ciphers"].split(",") == list(CIPHERS)
        assert effective["macs"].split(",") == list(MACS)
        assert effective["hostkeyalgorithms"].split(",") == list(HOST_KEY_ALGORITHMS)
    assert effective_config(config, key_directory, "root")["permitrootlogin"] == "no"


def test_source_networks_render_as_allow_users(key_directory: Path) -> None:
    config = render_sshd_config(settings(
        allowed_networks=["10.20.0.0/16", "192.0.2.7/32"], importer_networks=["10.96.0.0/12"],
        host_keys=[str(key_directory / "ssh_host_ed25519_key")]))
    assert ("AllowUsers district@10.20.0.0/16 district@192.0.2.7/32 importer@10.96.0.0/12"
            in config.splitlines())
    effective = effective_config(config, key_directory, "district")
    assert effective["allowusers"].split() == [
        "district@10.20.0.0/16", "district@192.0.2.7/32", "importer@10.96.0.0/12"]


@pytest.mark.parametrize("overrides, message", [
    ({"root": "/srv/sftp\nForceCommand /bin/sh"}, "not a plain absolute path"),
    ({"root": "/srv/../etc"}, "not a plain absolute path"),
    ({"root": "srv/sftp"}, "not a plain absolute path"),
    ({"district_authorized_keys": "/etc/ssh/%u"}, "not a plain absolute path"),
    ({"district_user": "root bob"}, "user name"),
    ({"district_user": "-oProxyCommand"}, "user name"),
    ({"importer_user": "district"}, "different names"),
    ({"password_login": False, "district_authorized_keys": None}, "password login or"),
    ({"upload_directory": ".."}, "plain directory name"),
    ({"allowed_networks": ["10.0.0.1/8"]}, "not a valid IPv4 network"),
    ({"host_keys": []}, "at least 1"),
])
def test_settings_refuse_what_could_inject_or_lock_out(overrides: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        settings(**overrides)


def test_entrypoint_environment_matches_the_config() -> None:
    environment = entrypoint_environment(settings(root="/srv/d1"), uid=12345)
    assert environment["SFTP_ROOT"] == "/srv/d1"
    assert environment["SFTP_UID"] == "12345"
    assert environment["SFTP_HOST_KEYS"] == "/etc/ssh/keys/ssh_host_ed25519_key"
    assert environment["SFTP_DISTRICT_AUTHORIZED_KEYS"] == "/etc/ssh/keys/district"
    assert all("\n" not in value for value in environment.values())


# -- keys and credentials --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_host_keys_match_ssh_keygen(tmp_path: Path, kind: str) -> None:
    """Our fingerprint and public line are ssh-keygen's; RSA keys have 3072 bits."""
    pair = host_keys()[0 if kind == "ed25519" else 1]
    path = tmp_path / "key"
    path.write_bytes(pair.private_openssh)
    path.chmod(0o600)
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(path)], capture_output=True,
                            text=True, check=True).stdout.strip()
    assert public.split()[:2] == pair.public_line.split()[:2]
    assert public_line_of(pair.private_openssh) == pair.public_line
    listed = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
                            capture_output=True, text=True, check=True).stdout.split()
    assert listed[1] == pair.fingerprint == fingerprint(pair.public_line)
    assert listed[0] == ("256" if kind == "ed25519" else "3072")
    assert pair.private_openssh.startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")


def test_small_rsa_keys_are_refused() -> None:
    with pytest.raises(ValueError, match="3072"):
        generate_key("rsa", 2048)


def test_known_hosts_lines() -> None:
    pair = host_keys()[0]
    key_type, blob = pair.public_line.split()[:2]
    assert known_hosts_line("sftp.example.org", 22, pair.public_line) == \
        f"sftp.example.org {key_type} {blob}"
    assert known_hosts_line("10.0.0.5", 2222, f"{pair.public_line} comment") == \
        f"[10.0.0.5]:2222 {key_type} {blob}"
    with pytest.raises(ValueError):
        known_hosts_line("evil host", 22, pair.public_line)


def test_authorized_keys_are_checked() -> None:
    ed25519 = generate_key("ed25519").public_line
    small = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    small_line = small.public_bytes(serialization.Encoding.OpenSSH,
                                    serialization.PublicFormat.OpenSSH).decode()
    assert check_authorized_keys(f"# district keys\n\n{ed25519} sis@district\n") == [
        f"{ed25519} sis@district"]
    with pytest.raises(ValueError, match="2048 bits"):
        check_authorized_keys(small_line)
    with pytest.raises(ValueError, match="not accepted"):
        check_authorized_keys(f'command="/bin/sh" {ed25519}')
    with pytest.raises(ValueError, match="not accepted"):
        check_authorized_keys("ssh-dss AAAAB3NzaC1kc3MAAACBAP")
    with pytest.raises(ValueError, match="base64"):
        check_authorized_keys("ssh-ed25519 not*base64")


def test_generated_passwords_are_strong() -> None:
    passwords = {generate_password() for _ in range(200)}
    assert len(passwords) == 200
    for password in passwords:
        assert len(password) == 24
        assert is_safe_password(password)
        assert set(password) <= set(ALPHABET)
        for group in (LOWER, UPPER, DIGITS, SYMBOLS):
            assert set(password) & set(group)
    assert not is_safe_password("short")
    assert not is_safe_password("a:b" * 8)
    with pytest.raises(ValueError):
        generate_password(8)


# -- the running server ----------------------------------------------------------------


def test_password_and_key_logins(sftp_server: SftpServer) -> None:
    accounts = sftp_server.accounts
    with sftp_server.sftp(accounts.district, password=accounts.password) as sftp:
        assert sftp.getcwd() is None and sftp.normalize(".") == "/upload"
    with sftp_server.sftp(accounts.district, key=accounts.district_key) as sftp:
        assert sftp.normalize(".") == "/upload"
    with sftp_server.sftp(accounts.importer, key=accounts.importer_key) as sftp:
        assert sorted(sftp.listdir("/")) == ["dev", "district", "held"]
    log = sftp_server.log_after(f"Accepted publickey for {accounts.importer}")
    assert f"Accepted password for {accounts.district}" in log
    assert f"Accepted publickey for {accounts.district}" in log
    assert accounts.district_key.pair.fingerprint in log  # VERBOSE: which key logged in
    assert f"Accepted publickey for {accounts.importer}" in log


def test_wrong_credentials_are_refused(sftp_server: SftpServer, tmp_path: Path) -> None:
    accounts = sftp_server.accounts
    stranger = ClientKey.create(tmp_path, "stranger")
    attempts = [
        (accounts.district, {"password": accounts.password + "x"}),
        (accounts.district, {"key": stranger}),
        (accounts.district, {"key": accounts.importer_key}),   # keys are per account
        (accounts.importer, {"password": accounts.password}),  # the importer: keys only
        (accounts.importer, {"key": accounts.district_key}),
        ("root", {"password": accounts.password}),
    ]
    for user, credentials in attempts:
        with pytest.raises(paramiko.AuthenticationException):
            sftp_server.client(user, **credentials)


def test_a_wrong_pinned_host_key_is_refused(sftp_server: SftpServer, tmp_path: Path) -> None:
    accounts = sftp_server.accounts
    impostor = tmp_path / "known_hosts"
    impostor.write_text(known_hosts_line(sftp_server.host, sftp_server.port,
                                         generate_key("ed25519").public_line) + "\n")
    with pytest.raises(paramiko.BadHostKeyException):
        sftp_server.client(accounts.district, password=accounts.password,
                           known_hosts=impostor)
    impostor.write_text(known_hosts_line(sftp_server.host, sftp_server.port + 1,
                                         host_keys()[0].public_line) + "\n")
    with pytest.raises(paramiko.SSHException, match="not found in known_hosts"):
        sftp_server.client(accounts.district, password=accounts.password,
                           known_hosts=impostor)


def test_district_sees_only_its_chroot(sftp_server: SftpServer) -> None:
    (sftp_server.held / "run-1").mkdir()
    with sftp_server.sftp() as sftp:
        assert sorted(sftp.listdir("/")) == ["dev", "upload"]
        assert sftp.normalize("../../..") == "/"
        for outside in ("/etc/passwd", "/held", "../held", "/district", "/srv",
                        str(sftp_server.held)):
            with pytest.raises(FileNotFoundError):
                sftp.stat(outside)
        with pytest.raises(OSError):
            sftp.symlink("/etc/passwd", "/upload/link")  # denied request
        assert sftp.listdir("/upload") == []


def test_shell_exec_and_forwarding_are_refused(sftp_server: SftpServer) -> None:
    accounts = sftp_server.accounts
    client = sftp_server.client(accounts.district, password=accounts.password)
    try:
        transport = client.get_transport()
        assert transport is not None
        channel = transport.open_session()
        with pytest.raises(paramiko.SSHException):
            channel.get_pty()
        channel.close()
        # exec and shell requests get internal-sftp (ForceCommand), never a shell
        for start in ("exec", "shell"):
            channel = transport.open_session()
            channel.settimeout(3)
            if start == "exec":
                channel.exec_command("id; cat /etc/passwd")
            else:
                channel.invoke_shell()
            channel.shutdown_write()  # EOF: internal-sftp ends without a request
            received = b""
            try:
                while chunk := channel.recv(4096):
                    received += chunk
            except TimeoutError:
                pass
            assert b"uid=" not in received and b"root:" not in received
            channel.close()
        with pytest.raises(paramiko.ChannelException):
            transport.open_channel("direct-tcpip", ("127.0.0.1", sftp_server.port),
                                   ("127.0.0.1", 0), timeout=5)
        with pytest.raises(paramiko.SSHException):
            transport.request_port_forward("127.0.0.1", 0)
    finally:
        client.close()
    started = "Starting session: forced-command (config) 'internal-sftp"
    assert started in sftp_server.log_after(started)


def test_writing_is_possible_only_in_upload(sftp_server: SftpServer) -> None:
    accounts = sftp_server.accounts
    with sftp_server.sftp() as sftp:
        for path in ("/students.csv", "/dev/students.csv"):
            with pytest.raises(PermissionError):
                sftp.open(path, "w")
        with pytest.raises(PermissionError):
            sftp.mkdir("/elsewhere")
        with sftp.open("/upload/students.csv", "w") as stream:
            stream.write("Student ID\n")
        with pytest.raises(PermissionError):
            sftp.rename("/upload/students.csv", "/students.csv")
        with pytest.raises(PermissionError):
            sftp.rmdir("/upload")
    with sftp_server.sftp(accounts.importer, key=accounts.importer_key) as sftp:
        for path in ("/x.csv", "/district/x.csv"):
            with pytest.raises(PermissionError):
                sftp.open(path, "w")
        sftp.mkdir("/held/run-1")
        sftp.rename("/district/upload/students.csv", "/held/run-1/students.csv")
    assert (sftp_server.held / "run-1" / "students.csv").read_text() == "Student ID\n"


def test_district_cannot_reach_held_files(sftp_server: SftpServer) -> None:
    """held/ is outside the district's chroot: no path names it, no link reaches it."""
    run = sftp_server.held / "run-1"
    run.mkdir()
    (run / "students.csv").write_text("secret roster\n")
    with sftp_server.sftp() as sftp:
        for path in ("/held/run-1/students.csv", "/upload/../held/run-1/students.csv",
                     "/../held/run-1/students.csv"):
            with pytest.raises(FileNotFoundError):
                sftp.open(path)
            with pytest.raises((FileNotFoundError, PermissionError)):
                sftp.open(path, "w")
        with pytest.raises(OSError):
            sftp.symlink("/held/run-1/students.csv", "/upload/students.csv")
    assert (run / "students.csv").read_text() == "secret roster\n"
    # On disk: both areas belong to the accounts' uid alone, chroots to root.
    for path, owner, mode in ((sftp_server.paths.root, 0, 0o755),
                              (sftp_server.paths.district_chroot, 0, 0o755),
                              (sftp_server.upload, sftp_server.accounts.uid, 0o700),
                              (sftp_server.held, sftp_server.accounts.uid, 0o700)):
        info = os.stat(path)
        assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (owner, mode), path


def test_a_second_district_is_isolated(sftp_server: SftpServer, tmp_path: Path) -> None:
    """Another district's server (own accounts, own root): neither reaches the other."""
    with sftp_server.sftp() as sftp, sftp.open("/upload/students.csv", "w") as stream:
        stream.write("district one\n")
    other = Accounts.create(tmp_path / "other")
    try:
        with SftpServer(other, server_base("other")) as second:
            with second.sftp() as sftp:
                assert sftp.listdir("/upload") == []
                for path in ("/upload/students.csv", str(sftp_server.upload / "students.csv")):
                    with pytest.raises(FileNotFoundError):
                        sftp.stat(path)
            with (second.sftp(other.importer, key=other.importer_key) as sftp,
                  pytest.raises(FileNotFoundError)):
                sftp.stat(str(sftp_server.upload / "students.csv"))
            # Each server lets in its own two accounts only.
            for server, user, credentials in (
                    (sftp_server, other.district, {"password": other.password}),
                    (sftp_server, other.importer, {"key": other.importer_key}),
                    (second, sftp_server.accounts.district,
                     {"password": sftp_server.accounts.password}),
                    (second, sftp_server.accounts.importer,
                     {"key": sftp_server.accounts.importer_key})):
                with pytest.raises(paramiko.AuthenticationException):
                    server.client(user, **credentials)
            refused = f"User {other.district} from 127.0.0.1 not allowed"
            assert refused in sftp_server.log_after(refused)
    finally:
        other.remove()


@pytest.mark.parametrize("network, allowed", [("10.0.0.0/8", False), ("127.0.0.0/8", True)])
def test_source_network_restriction(sftp_accounts: Accounts, network: str,
                                    allowed: bool) -> None:
    with SftpServer(sftp_accounts, server_base("cidr"),
                    {"allowed_networks": [network]}) as server:
        if allowed:
            server.client(sftp_accounts.district, password=sftp_accounts.password).close()
        else:
            with pytest.raises(paramiko.AuthenticationException):
                server.client(sftp_accounts.district, password=sftp_accounts.password)
        # the importer is not restricted by the district's networks
        server.client(sftp_accounts.importer, key=sftp_accounts.importer_key).close()


def test_password_login_can_be_off(tmp_path: Path) -> None:
    """Own accounts: the entrypoint also clears the password of a keys-only district."""
    accounts = Accounts.create(tmp_path)
    try:
        with SftpServer(accounts, server_base("keys"), {"password_login": False}) as server:
            with pytest.raises(paramiko.AuthenticationException):
                server.client(accounts.district, password=accounts.password)
            server.client(accounts.district, key=accounts.district_key).close()
        shadow = subprocess.run(["getent", "shadow", accounts.district], capture_output=True,
                                text=True, check=True).stdout
        assert shadow.split(":")[1] == "*"
    finally:
        accounts.remove()


def test_sftp_transactions_are_logged(sftp_server: SftpServer) -> None:
    """VERBOSE internal-sftp logs reach the container output through the chroots'
    /dev/log relay: who uploaded, read and removed what."""
    accounts = sftp_server.accounts
    with sftp_server.sftp() as sftp, sftp.open("/upload/students.csv", "w") as stream:
        stream.write("Student ID\n")
    with sftp_server.sftp(accounts.importer, key=accounts.importer_key) as sftp:
        sftp.remove("/district/upload/students.csv")
    deadline = time.monotonic() + 5
    expected = ('open "/upload/students.csv" flags WRITE,CREATE,TRUNCATE',
                'remove name "/district/upload/students.csv"',
                f"session opened for local user {accounts.importer}")
    while not all(line in sftp_server.log() for line in expected):
        assert time.monotonic() < deadline, sftp_server.log()
        time.sleep(0.05)


def test_ssh_audit_finds_no_weak_algorithm(sftp_server: SftpServer) -> None:
    """ssh-audit against the live server: the offer is exactly ours, and ssh-audit's
    database has neither a failure nor a warning for any of it.

    Checked three ways: the JSON offer (``-j``) equals the rendered lists; every
    offered algorithm looked up (``--lookup``) exits 0 with no [warn]/[fail]; the full
    report on the live server has [warn]/[fail] lines only for the strict-kex marker
    this ssh-audit version does not know.
    """
    offer = json.loads(subprocess.run(
        ["ssh-audit", "-j", "-p", str(sftp_server.port), sftp_server.host],
        capture_output=True, text=True, timeout=30).stdout)
    kex = [entry["algorithm"] for entry in offer["kex"]]
    assert kex == [*KEX_ALGORITHMS, STRICT_KEX_MARKER]
    assert [entry["algorithm"] for entry in offer["key"]] == list(HOST_KEY_ALGORITHMS)
    assert all(entry.get("keysize", 3072) >= 3072 for entry in offer["key"])
    assert offer["enc"] == list(CIPHERS)
    assert offer["mac"] == list(MACS)

    offered = [*KEX_ALGORITHMS, *HOST_KEY_ALGORITHMS, *CIPHERS, *MACS]
    lookup = subprocess.run(["ssh-audit", "-n", f"--lookup={','.join(offered)}"],
                            capture_output=True, text=True, timeout=30)
    assert lookup.returncode == 0, lookup.stdout
    assert "[warn]" not in lookup.stdout and "[fail]" not in lookup.stdout
    assert "unknown" not in lookup.stdout
    control = subprocess.run(["ssh-audit", "-n", "--lookup=hmac-sha2-256,ecdh-sha2-nistp256"],
                             capture_output=True, text=True, timeout=30)
    assert control.returncode != 0 and "[fail]" in control.stdout  # the check can fail

    report = subprocess.run(
        ["ssh-audit", "-n", "-p", str(sftp_server.port), sftp_server.host],
        capture_output=True, text=True, timeout=30).stdout
    flagged = [line for line in report.splitlines()
               if re.match(r"^\((kex|key|enc|mac)\) ", line) and re.search(
                   r"\[(warn|fail)\]", line)]
    assert flagged and all(STRICT_KEX_MARKER in line for line in flagged), report
    assert not re.search(r"^\(rec\) -", report, re.MULTILINE), report  # nothing to remove


@pytest.mark.parametrize("put", ["put", "put -p"])
def test_openssh_client_works_with_the_offer(sftp_server: SftpServer, tmp_path: Path,
                                             put: str) -> None:
    """OpenSSH's own sftp client, batch mode, pinned host key: upload and list. With
    ``put -p`` the client also asks to set the local mode and times afterwards."""
    accounts = sftp_server.accounts
    local = tmp_path / "students.csv"
    local.write_text("Student ID\n")
    local.chmod(0o644)
    result = subprocess.run(
        ["sftp", "-b", "-", "-i", str(accounts.district_key.path), "-P", str(sftp_server.port),
         "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "IdentitiesOnly=yes",
         "-o", f"UserKnownHostsFile={sftp_server.known_hosts}",
         f"{accounts.district}@{sftp_server.host}"],
        input=f"{put} {local}\nls -l\n", capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    uploaded = sftp_server.upload / "students.csv"
    assert uploaded.read_text() == "Student ID\n"
    # a 0644 upload ends 0600 (umask 077): private to the accounts' uid, also when the
    # client asks for its local mode afterwards (refused; the upload is kept)
    assert stat.S_IMODE(uploaded.stat().st_mode) == 0o600
    assert ("remote fsetstat: Permission denied" in result.stderr) == (put == "put -p")


def test_the_district_cannot_change_modes_or_times(sftp_server: SftpServer) -> None:
    """SETSTAT would widen an upload past the umask; the importer's session keeps it."""
    with sftp_server.sftp() as sftp:
        with sftp.open("/upload/students.csv", "w") as stream:
            stream.write("Student ID\n")
            with pytest.raises(PermissionError):
                stream.chmod(0o644)
        for change in (lambda: sftp.chmod("/upload/students.csv", 0o644),
                       lambda: sftp.utime("/upload/students.csv", (0, 0))):
            with pytest.raises(PermissionError):
                change()
    uploaded = sftp_server.upload / "students.csv"
    assert stat.S_IMODE(uploaded.stat().st_mode) == 0o600
    accounts = sftp_server.accounts
    with sftp_server.sftp(accounts.importer, key=accounts.importer_key) as sftp:
        sftp.chmod("/district/upload/students.csv", 0o600)


# -- the image's entrypoint and the capabilities it needs ------------------------------


def test_entrypoint_restarts_idempotently(sftp_accounts: Accounts) -> None:
    """A restarted container finds accounts, files and keys as it left them."""
    base = server_base("restart")
    server = SftpServer(sftp_accounts, base)
    try:
        server.start()
        with server.sftp() as sftp, sftp.open("/upload/students.csv", "w") as stream:
            stream.write("kept\n")
        server.stop()
        server.start()
        with server.sftp() as sftp, sftp.open("/upload/students.csv") as stream:
            assert stream.read() == b"kept\n"
        assert server.log().count("configuration checked; starting sshd") == 2
    finally:
        server.remove()


def run_entrypoint(server: SftpServer, remove: tuple[str, ...] = (),
                   **environment: str) -> subprocess.CompletedProcess[str]:
    """The entrypoint in the foreground with the server's inputs, less ``remove``."""
    server.port = free_port()
    server.settings = server._settings()
    server._write_inputs(server.settings)
    for name in remove:
        (server.secrets / name).unlink()
    env = {**os.environ, **entrypoint_environment(
        server.settings, uid=server.accounts.uid, config_path=str(server.base / "sshd_config"),
        secrets_directory=str(server.secrets)), **environment}
    return subprocess.run([str(ENTRYPOINT)], env=env, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("change, message", [
    ({"SFTP_DISTRICT_USER": "Bad Name"}, "invalid user name"),
    ({"SFTP_UID": "0"}, "SFTP_UID"),
    ({"SFTP_CONFIG": "/nonexistent"}, "no sshd config"),
    ({"remove": ("district-password",)}, "no district-password"),
    ({"remove": ("importer-authorized-keys",)}, "missing secret file"),
    ({"remove": ("ssh_host_rsa_key",)}, "missing secret file"),
])
def test_entrypoint_refuses_incomplete_inputs(sftp_accounts: Accounts, change: dict,
                                              message: str) -> None:
    """It stops, saying why, before sshd would start half-configured."""
    base = server_base("refuse")
    base.mkdir(parents=True)
    server = SftpServer(sftp_accounts, base)
    try:
        result = run_entrypoint(server, **change)
        assert result.returncode != 0
        assert message in result.stderr
        assert "starting sshd" not in result.stderr
    finally:
        server.remove()


def setpriv(capabilities: tuple[str, ...]) -> list[str]:
    """Run as root with only ``capabilities`` (like a container's drop ALL + add)."""
    bounding = ",".join(["-all", *(f"+{name}" for name in capabilities)])
    return ["setpriv", "--no-new-privs", "--bounding-set", bounding, "--"]


def test_the_container_capabilities_suffice(sftp_accounts: Accounts) -> None:
    """Entrypoint and sshd with CHOWN, SETUID, SETGID, SYS_CHROOT and KILL only (no
    DAC_OVERRIDE, FOWNER, AUDIT_WRITE, NET_BIND_SERVICE) and no_new_privs: logins,
    a failed login, uploads and the importer's work all behave."""
    with SftpServer(sftp_accounts, server_base("caps"), {"login_grace_time": 2},
                    command_prefix=setpriv(CONTAINER_CAPABILITIES)) as server:
        with pytest.raises(paramiko.AuthenticationException):
            server.client(sftp_accounts.district, password="wrong-password")
        with server.sftp() as sftp, sftp.open("/upload/students.csv", "w") as stream:
            stream.write("Student ID\n")
        with server.sftp(sftp_accounts.district, key=sftp_accounts.district_key) as sftp:
            assert sftp.listdir("/upload") == ["students.csv"]
        with server.sftp(sftp_accounts.importer, key=sftp_accounts.importer_key) as sftp:
            sftp.mkdir("/held/run-1")
            sftp.rename("/district/upload/students.csv", "/held/run-1/students.csv")
        assert stalled_connection_closes(server)


def stalled_connection_closes(server: SftpServer) -> bool:
    """Whether a client that sends its banner and then nothing is cut off at
    LoginGraceTime (2 s here), rather than holding a MaxStartups slot forever."""
    with socket.create_connection((server.host, server.port), timeout=4) as connection:
        connection.recv(256)
        connection.sendall(b"SSH-2.0-stalled\r\n")
        try:
            while connection.recv(4096):
                pass
        except TimeoutError:
            return False
    return True


@pytest.mark.parametrize("missing", ["setuid", "setgid", "sys_chroot", "kill", "chown"])
def test_each_capability_is_needed(sftp_accounts: Accounts, missing: str) -> None:
    """Without SETUID, SETGID or SYS_CHROOT nobody logs in; without KILL the login
    grace time is not enforced; without CHOWN the entrypoint cannot set the password."""
    capabilities = tuple(name for name in CONTAINER_CAPABILITIES if name != missing)
    server = SftpServer(sftp_accounts, server_base("nocap"), {"login_grace_time": 2},
                        command_prefix=setpriv(capabilities))
    try:
        if missing == "chown":
            with pytest.raises(RuntimeError, match="chpasswd"):
                server.start()
            return
        server.start()
        if missing == "kill":
            server.client(sftp_accounts.importer, key=sftp_accounts.importer_key).close()
            assert not stalled_connection_closes(server)
        else:
            with pytest.raises((paramiko.SSHException, OSError, EOFError)):
                server.client(sftp_accounts.importer, key=sftp_accounts.importer_key)
    finally:
        server.remove()
