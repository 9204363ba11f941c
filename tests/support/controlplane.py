"""A real Kubernetes control plane on this machine: etcd + kube-apiserver (+ controller-manager).

The operator is proven against the real API server (resourceVersion, server-side apply,
defaulting, admission, RBAC), not an emulator. The binaries come from the folder
``KUBEBUILDER_ASSETS`` names, envtest's convention (``scripts/kube-assets`` fills it).
Like :mod:`tests.support.postgres`, this module imports neither pytest nor the project,
so the real-node tier and benchmarks reuse it.

Interface::

    with ControlPlane(Path(os.environ["KUBEBUILDER_ASSETS"]), state_dir,
                      controller_manager=True,
                      apiserver_args=["--enable-admission-plugins=..."],
                      users=["operator"]) as plane:
        plane.kubeconfig("admin")      # system:masters, static token
        plane.kubeconfig("operator")   # a user with no rights until RBAC binds some
        plane.client_kubeconfig("node", "system:node:n1", ["system:nodes"])  # a cert user

Every process listens on free loopback ports (``bind_address`` and ``extra_sans`` put
the apiserver on another address, as a node needs). The PKI is made with
``cryptography`` (ECDSA P-256: milliseconds, where openssl's RSA took seconds), start
waits on ``/readyz`` (and the controller-manager's ``/healthz``), and :meth:`stop` ends
the processes it recorded (their PIDs are also in ``state_dir/pids``), nothing else.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

BINARIES = ("etcd", "kube-apiserver")
#: Seconds a component may take to answer its health check (16 s seen on a busy machine).
START_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
POLL_INTERVAL = 0.1
CERT_LIFETIME = datetime.timedelta(days=30)
#: Start attempts: a free port can be taken by another process before a component binds it.
START_ATTEMPTS = 3
#: The static-token users every control plane has besides ``users``.
ADMIN = "admin"
CONTROLLER_MANAGER_USER = "system:kube-controller-manager"


class ControlPlaneUnavailableError(RuntimeError):
    """The binaries are missing (``KUBEBUILDER_ASSETS`` unset or incomplete)."""


class ControlPlaneFailedError(RuntimeError):
    """A component exited or did not become healthy; the message ends with its log."""


class ComponentExitedError(ControlPlaneFailedError):
    """A component exited while starting (e.g. its port was taken meanwhile)."""


@dataclass(frozen=True)
class Pki:
    """Paths of the control plane's CA, serving certificate and service-account keys."""

    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def apiserver_cert(self) -> Path:
        return self.directory / "apiserver.crt"

    @property
    def apiserver_key(self) -> Path:
        return self.directory / "apiserver.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on now (a later bind may still race; start retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def assets_dir(environ: dict[str, str] | None = None) -> Path:
    """The folder ``KUBEBUILDER_ASSETS`` names, checked to hold etcd and kube-apiserver."""
    value = (environ if environ is not None else os.environ).get("KUBEBUILDER_ASSETS")
    if not value:
        raise ControlPlaneUnavailableError(
            "KUBEBUILDER_ASSETS is not set: export KUBEBUILDER_ASSETS=$(scripts/kube-assets)")
    folder = Path(value)
    missing = [name for name in BINARIES if not os.access(folder / name, os.X_OK)]
    if missing:
        raise ControlPlaneUnavailableError(
            f"{folder} lacks {', '.join(missing)}: run scripts/kube-assets")
    return folder


# -- PKI -------------------------------------------------------------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.TraditionalOpenSSL,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


def _name(common_name: str, organizations: Sequence[str] = ()) -> x509.Name:
    return x509.Name([*(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)
                        for org in organizations),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _subject_alternative_names(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


def _sign(pki: Pki, stem: str, subject: x509.Name, usage: x509.ObjectIdentifier,
          sans: Sequence[str] = ()) -> tuple[Path, Path]:
    """A key and a certificate for it signed by the control plane's CA."""
    ca_key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = _key()
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    builder = (x509.CertificateBuilder().subject_name(subject)
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(start).not_valid_after(start + CERT_LIFETIME)
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
    if sans:
        builder = builder.add_extension(_subject_alternative_names(sans), critical=False)
    cert, key_path = pki.directory / f"{stem}.crt", pki.directory / f"{stem}.key"
    cert.write_bytes(builder.sign(ca_key, hashes.SHA256())
                     .public_bytes(serialization.Encoding.PEM))
    _write_key(key, key_path)
    return cert, key_path


def make_pki(directory: Path, apiserver_sans: Sequence[str]) -> Pki:
    """A CA, the apiserver's serving certificate and the service-account signing keys."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca_key = _key()
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=5)
    subject = _name("visitor-sync-test-ca")
    ca = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(start).not_valid_after(start + CERT_LIFETIME)
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True,
                                       crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False,
                                       key_agreement=False, encipher_only=False,
                                       decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, pki.ca_key)
    _sign(pki, "apiserver", _name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH,
          apiserver_sans)
    service_accounts = _key()
    _write_key(service_accounts, pki.service_account_key)
    pki.service_account_pub.write_bytes(service_accounts.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki


# -- the control plane ----------------------------------------------------------------


class ControlPlane:
    """etcd, kube-apiserver and optionally kube-controller-manager, for one test session.

    ``users`` get a static token each and no rights (bind RBAC to them by name);
    ``admin`` is in ``system:masters``. ``apiserver_args``/``controller_manager_args``
    are appended to the command lines (``--enable-admission-plugins=...``).
    ``bind_address`` is where the apiserver listens (``0.0.0.0`` for a node) and
    ``advertise_address`` what the ``kubernetes`` Service points at; both and
    ``extra_sans`` are in its serving certificate.
    """

    def __init__(self, assets: Path, state_dir: Path, *, controller_manager: bool = False,
                 apiserver_args: Sequence[str] = (), controller_manager_args: Sequence[str] = (),
                 users: Sequence[str] = ("operator",), bind_address: str = "127.0.0.1",
                 advertise_address: str = "127.0.0.1", extra_sans: Sequence[str] = (),
                 service_cidr: str = "10.0.0.0/24", verbosity: int = 1) -> None:
        self.assets = assets
        self.state_dir = state_dir
        self.controller_manager = controller_manager
        self.apiserver_args = list(apiserver_args)
        self.controller_manager_args = list(controller_manager_args)
        self.users = list(users)
        self.bind_address = bind_address
        self.advertise_address = advertise_address
        self.extra_sans = list(extra_sans)
        self.service_cidr = service_cidr
        self.verbosity = verbosity
        self.pki = Pki(state_dir / "pki")
        self.port = 0
        self.tokens: dict[str, str] = {}
        self._processes: dict[str, subprocess.Popen[bytes]] = {}

    # -- where to reach it ---------------------------------------------------------------

    @property
    def server(self) -> str:
        """The apiserver's URL over loopback (it always listens there too)."""
        host = "127.0.0.1" if self.bind_address in ("0.0.0.0", "127.0.0.1") else \
            self.bind_address
        return f"https://{host}:{self.port}"

    def kubeconfig(self, user: str) -> Path:
        """The kubeconfig of a static-token user (``admin`` or one of ``users``)."""
        return self.state_dir / f"{user.replace(':', '-')}.kubeconfig"

    def client_kubeconfig(self, stem: str, user: str, groups: Sequence[str] = (),
                          server: str | None = None) -> Path:
        """A kubeconfig authenticating with a client certificate (CN ``user``, O ``groups``),
        as a kubelet, scheduler or kube-proxy does; ``server`` defaults to :attr:`server`."""
        cert, key = _sign(self.pki, stem, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH)
        path = self.state_dir / f"{stem}.kubeconfig"
        self._write_kubeconfig(path, user, {"client-certificate": str(cert),
                                            "client-key": str(key)}, server)
        return path

    def client_certificate(self, stem: str, user: str, groups: Sequence[str] = ()
                           ) -> tuple[Path, Path]:
        """(certificate, key) of a client identity signed by the CA (e.g. the apiserver's
        kubelet client, in ``system:masters``)."""
        return _sign(self.pki, stem, _name(user, groups), ExtendedKeyUsageOID.CLIENT_AUTH)

    def _write_kubeconfig(self, path: Path, user: str, credentials: dict[str, str],
                          server: str | None = None) -> None:
        config = {
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "local", "cluster": {
                "server": server or self.server,
                "certificate-authority": str(self.pki.ca_cert)}}],
            "users": [{"name": user, "user": credentials}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
            "current-context": "local",
        }
        path.write_text(yaml.safe_dump(config))
        path.chmod(0o600)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ControlPlane:
        """Make the PKI and tokens, start each component and wait until it is healthy."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        for folder in ("logs", "pids"):
            (self.state_dir / folder).mkdir(exist_ok=True)
        first_service_ip = str(next(ipaddress.ip_network(self.service_cidr).hosts()))
        sans = dict.fromkeys([
            "127.0.0.1", self.bind_address, self.advertise_address, first_service_ip,
            "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local", *self.extra_sans])
        sans.pop("0.0.0.0", None)
        make_pki(self.pki.directory, list(sans))
        attempts_left = START_ATTEMPTS
        while True:
            attempts_left -= 1
            self.port = free_port()
            self._write_tokens()
            try:
                self._start_etcd_and_apiserver()
                if self.controller_manager:
                    self._start_controller_manager()
                return self
            except ComponentExitedError:
                self.stop()
                if not attempts_left:
                    raise
                shutil.rmtree(self.state_dir / "etcd-data", ignore_errors=True)
            except BaseException:
                self.stop()
                raise

    def _write_tokens(self) -> None:
        users = {ADMIN: "system:masters", CONTROLLER_MANAGER_USER: ""}
        users |= {user: "" for user in self.users}
        lines = []
        for user, group in users.items():
            self.tokens[user] = secrets.token_hex(24)
            lines.append(f'{self.tokens[user]},{user},uid-{user},"{group}"' if group
                         else f"{self.tokens[user]},{user},uid-{user}")
            self._write_kubeconfig(self.kubeconfig(user), user, {"token": self.tokens[user]})
        tokens = self.state_dir / "tokens.csv"
        tokens.write_text("\n".join(lines) + "\n")
        tokens.chmod(0o600)

    def _start_etcd_and_apiserver(self) -> None:
        etcd_port, peer_port = free_port(), free_port()
        etcd = f"http://127.0.0.1:{etcd_port}"
        self._launch("etcd", [
            "--name", "local", "--data-dir", str(self.state_dir / "etcd-data"),
            "--listen-client-urls", etcd, "--advertise-client-urls", etcd,
            "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
            "--initial-cluster", f"local=http://127.0.0.1:{peer_port}",
            "--unsafe-no-fsync", "--log-level", "warn"])
        self._wait_healthy("etcd", lambda: _http_ok(f"{etcd}/health"))
        self._launch("kube-apiserver", [
            "--etcd-servers", etcd,
            "--bind-address", self.bind_address, "--advertise-address", self.advertise_address,
            "--secure-port", str(self.port), "--cert-dir", str(self.pki.directory),
            "--tls-cert-file", str(self.pki.apiserver_cert),
            "--tls-private-key-file", str(self.pki.apiserver_key),
            "--client-ca-file", str(self.pki.ca_cert),
            "--token-auth-file", str(self.state_dir / "tokens.csv"),
            "--authorization-mode", "RBAC",
            "--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
            "--service-account-key-file", str(self.pki.service_account_pub),
            "--service-account-signing-key-file", str(self.pki.service_account_key),
            "--service-cluster-ip-range", self.service_cidr,
            "--profiling=false", "--v", str(self.verbosity), *self.apiserver_args])
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        self._wait_healthy("kube-apiserver", lambda: _http_ok(
            f"{self.server}/readyz", context, self.tokens[ADMIN]))

    def _start_controller_manager(self) -> None:
        port = free_port()
        kubeconfig = str(self.kubeconfig(CONTROLLER_MANAGER_USER))
        self._launch("kube-controller-manager", [
            "--kubeconfig", kubeconfig, "--authentication-kubeconfig", kubeconfig,
            "--authorization-kubeconfig", kubeconfig, "--bind-address", "127.0.0.1",
            "--secure-port", str(port), "--cert-dir", str(self.pki.directory / "kcm"),
            # One service account per controller, as kubeadm sets it up.
            "--use-service-account-credentials",
            "--service-account-private-key-file", str(self.pki.service_account_key),
            "--root-ca-file", str(self.pki.ca_cert),
            "--service-cluster-ip-range", self.service_cidr, "--authentication-skip-lookup",
            "--leader-elect=false", "--v", str(self.verbosity), *self.controller_manager_args])
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # its self-signed serving certificate
        self._wait_healthy("kube-controller-manager", lambda: _http_ok(
            f"https://127.0.0.1:{port}/healthz", insecure))

    def _launch(self, name: str, args: list[str]) -> None:
        log = (self.state_dir / "logs" / f"{name}.log").open("wb")
        with log:
            process = subprocess.Popen([str(self.assets / name), *args], stdin=subprocess.DEVNULL,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self._processes[name] = process
        (self.state_dir / "pids" / f"{name}.pid").write_text(f"{process.pid}\n")

    def _wait_healthy(self, name: str, healthy: Callable[[], bool]) -> None:
        process = self._processes[name]
        deadline = time.monotonic() + START_TIMEOUT
        while not healthy():
            if process.poll() is not None:
                raise ComponentExitedError(
                    f"{name} exited with {process.returncode}:\n{self.log_tail(name)}")
            if time.monotonic() > deadline:
                raise ControlPlaneFailedError(
                    f"{name} not healthy after {START_TIMEOUT:.0f} s:\n{self.log_tail(name)}")
            time.sleep(POLL_INTERVAL)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.state_dir / "logs" / f"{name}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM each recorded process (newest first), SIGKILL what is left after a while."""
        for name, process in reversed(list(self._processes.items())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            (self.state_dir / "pids" / f"{name}.pid").unlink(missing_ok=True)
        self._processes.clear()

    def __enter__(self) -> ControlPlane:
        return self.start()

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.stop()

    def api_get(self, path: str, user: str = ADMIN) -> dict[str, object]:
        """GET a path of the API as ``user`` (a small probe for tests and scripts)."""
        request = urllib.request.Request(f"{self.server}{path}", headers={
            "Authorization": f"Bearer {self.tokens[user]}"})
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            body: dict[str, object] = json.load(answer)
            return body


def _http_ok(url: str, context: ssl.SSLContext | None = None, token: str | None = None
             ) -> bool:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    context=context, timeout=5) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
