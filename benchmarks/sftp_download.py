"""Benchmark: a 100 MB file from the local sshd, by our SFTP source and by OpenSSH's sftp.

One real sshd (the project's rendered config, started by the image's entrypoint, as in
the tests) serves one file of random bytes (incompressible; compression is off anyway).
Alternating, several rounds: ``SftpSource`` connects (importer key, pinned host key)
and ``fetch``es the file into its private temp copy; OpenSSH's ``sftp -b`` (batch
mode, same key, same known_hosts) ``get``s it. Both are timed from before connecting
to the file being on local disk, and both copies are checked byte for byte. Prints
each round, then the best MB/s of each and the ratio (target: at least 0.5).

    python3 benchmarks/sftp_download.py [--megabytes 100] [--rounds 3]   (as root)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.sshd import Accounts, SftpServer, server_base, sweep_stale
from visitor_sync.sftp.source import SftpCredentials, SftpSource, SftpTarget

TARGET_RATIO = 0.5


def write_random(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    with path.open("wb") as stream:
        for _ in range(size // (1 << 20)):
            block = os.urandom(1 << 20)
            digest.update(block)
            stream.write(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while block := stream.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def ours(server: SftpServer, expected: str) -> tuple[float, str]:
    """Seconds for connect + list + fetch with SftpSource, and the cipher it used."""
    started = time.perf_counter()
    source = SftpSource(SftpTarget.parse(server.url()),
                        SftpCredentials(key_file=server.accounts.importer_key.path),
                        server.known_hosts)
    with source:
        (listed,) = source.list_files()
        with source.fetch(listed) as copy:
            elapsed = time.perf_counter() - started
            assert sha256(copy) == expected, "SftpSource copy differs"
        client = source._client
        assert client is not None
        transport = client.get_transport()
        assert transport is not None
        cipher = transport.remote_cipher
    return elapsed, cipher


def openssh(server: SftpServer, expected: str, scratch: Path) -> float:
    """Seconds for ``sftp -b`` (connect, authenticate, get) into ``scratch``."""
    target = scratch / "openssh.bin"
    target.unlink(missing_ok=True)
    command = ["sftp", "-q", "-b", "-", "-i", str(server.accounts.importer_key.path),
               "-P", str(server.port), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
               "-o", "StrictHostKeyChecking=yes",
               "-o", f"UserKnownHostsFile={server.known_hosts}",
               f"{server.accounts.importer}@{server.host}"]
    started = time.perf_counter()
    subprocess.run(command, input=f"get {server.paths.importer_upload_path}/big.bin {target}\n",
                   text=True, check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    assert sha256(target) == expected, "OpenSSH copy differs"
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    arguments = parser.parse_args()
    size = arguments.megabytes * (1 << 20)
    sweep_stale()
    with tempfile.TemporaryDirectory(prefix="sftp-benchmark-") as scratch_name:
        scratch = Path(scratch_name)
        accounts = Accounts.create(scratch / "keys")
        try:
            with SftpServer(accounts, server_base("benchmark")) as server:
                big = server.upload / "big.bin"
                expected = write_random(big, size)
                os.chown(big, accounts.uid, accounts.uid)
                version = subprocess.run(["sshd", "-V"], capture_output=True,
                                         text=True).stderr.split(",")[0]
                print(f"{arguments.megabytes} MiB random file served by {version} "
                      f"on {server.host}:{server.port}")
                best_ours = best_openssh = float("inf")
                for round_number in range(1, arguments.rounds + 1):
                    seconds, cipher = ours(server, expected)
                    openssh_seconds = openssh(server, expected, scratch)
                    best_ours, best_openssh = min(best_ours, seconds), min(
                        best_openssh, openssh_seconds)
                    print(f"round {round_number}: SftpSource {size / seconds / 1e6:7.1f} MB/s "
                          f"({cipher})   OpenSSH sftp {size / openssh_seconds / 1e6:7.1f} MB/s")
        finally:
            accounts.remove()
    ours_rate, openssh_rate = size / best_ours / 1e6, size / best_openssh / 1e6
    ratio = ours_rate / openssh_rate
    print(f"best: SftpSource {ours_rate:.1f} MB/s, OpenSSH sftp {openssh_rate:.1f} MB/s, "
          f"ratio {ratio:.2f} (target >= {TARGET_RATIO})")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
