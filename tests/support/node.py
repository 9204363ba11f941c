"""A real single-node Kubernetes cluster on this machine, for the e2e tier where no kind runs.

The control plane is :class:`tests.support.controlplane.ControlPlane`; this adds a node:
Debian's containerd (CRI) with runc and the CNI bridge plugin, and kube-scheduler,
kubelet, kube-proxy (iptables) and CoreDNS from the ``KUBEBUILDER_ASSETS`` folder
(``scripts/kube-assets --node-components``). Real pods run: the operator, the district's
SFTP server, the importer Jobs.

What these machines need (each found the hard way, see ../shared/recipes/cluster):
containerd's ``restrict_oom_score_adj`` (root without CAP_SYS_RESOURCE: runc fails on
the kubelet's -998), runc with cgroupfs on a cgroup v1/v2 hybrid, the apiserver asking
the kubelet by InternalIP (the hostname resolves to 127.0.0.1), CoreDNS as a host
process (no image can be pulled), and a pause image made here (catatonit, static).

Nothing listens beyond loopback and the node's own bridge: the apiserver, the kubelet
and CoreDNS bind the bridge's address, NodePorts answer on loopback and the pod subnet.
:meth:`stop` ends pods (through containerd) and then every process by its recorded PID,
and removes the bridge and the iptables chains kube-proxy and the kubelet made.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
from pathlib import Path

from tests.support import images
from tests.support.controlplane import STOP_TIMEOUT, ControlPlane, _http_ok, free_port
from tests.support.realapi import Api

NODE_IP = "10.244.0.1"
POD_SUBNET = "10.244.0.0/24"
#: A bridge of our own (podman's is cni-podman0 on 10.88.0.0/16).
BRIDGE = "vsync-node0"
NODE_NAME = "visitor-sync-node"
PAUSE_IMAGE = "localhost/visitor-sync-pause:1"
NODE_BINARIES = ("kube-scheduler", "kubelet", "kube-proxy", "coredns")
HOST_PROGRAMS = ("containerd", "ctr", "runc", "iptables", "ip", "catatonit")
CNI_PLUGINS = Path("/usr/lib/cni")
#: The system:coredns role a cluster DNS needs to read Services and their endpoints.
COREDNS_RBAC = [
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
     "metadata": {"name": "system:coredns"},
     "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"],
                "verbs": ["list", "watch"]},
               {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"],
                "verbs": ["list", "watch"]}]},
    {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
     "metadata": {"name": "system:coredns"},
     "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                 "name": "system:coredns"},
     "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                   "name": "system:coredns"}]},
]


def unavailable(assets: Path) -> str | None:
    """Why a node cannot run here (missing programs or binaries), or None."""
    if os.geteuid() != 0:
        return "a node (containerd, the kubelet, iptables) needs root"
    missing = [program for program in HOST_PROGRAMS if shutil.which(program) is None]
    missing += [f"CNI {plugin}" for plugin in ("bridge", "host-local", "portmap", "loopback")
                if not (CNI_PLUGINS / plugin).exists()]
    missing += [f"{assets}/{name}" for name in ("etcd", "kube-apiserver",
                                                "kube-controller-manager", *NODE_BINARIES)
                if not (assets / name).exists()]
    if missing:
        return f"a node needs {', '.join(missing)} (scripts/test installs the packages; " \
               f"COMPONENTS=\"$(scripts/kube-assets --node-components)\" scripts/kube-assets)"
    return images.unavailable()


class SingleNodeCluster(ControlPlane):
    """The control plane on the node's bridge address, plus the node itself."""

    def __init__(self, assets: Path, state_dir: Path) -> None:
        super().__init__(assets, state_dir, controller_manager=True, bind_address=NODE_IP,
                         advertise_address=NODE_IP)
        self.socket = state_dir / "containerd" / "containerd.sock"

    # -- start ---------------------------------------------------------------------------

    def _start_etcd_and_apiserver(self) -> None:
        """The bridge first, since the apiserver binds its address (on a retry too); the
        apiserver as a node's: Node authorization, and a client certificate for logs/exec
        on the kubelet, which it reaches by InternalIP (the hostname is 127.0.0.1 here)."""
        self._bridge_up()
        cert, key = self.client_certificate("apiserver-kubelet-client",
                                            "kube-apiserver-kubelet-client",
                                            ["system:masters"])
        self.apiserver_args = [
            "--authorization-mode", "Node", "--enable-admission-plugins", "NodeRestriction",
            "--kubelet-preferred-address-types", "InternalIP,Hostname",
            "--kubelet-client-certificate", str(cert), "--kubelet-client-key", str(key),
            "--allow-privileged=true"]
        super()._start_etcd_and_apiserver()

    def start(self) -> SingleNodeCluster:
        super().start()
        try:
            self._start_containerd()
            self._import_pause_image()
            self._start_scheduler()
            self._start_coredns()
            self._start_kubelet()
            self._start_kube_proxy()
            self._wait_healthy("kubelet", self._node_ready)
        except BaseException:
            self.stop()
            raise
        return self

    def _bridge_up(self) -> None:
        if subprocess.run(["ip", "link", "show", BRIDGE], capture_output=True).returncode:
            prefix = POD_SUBNET.split("/")[1]
            for command in (["ip", "link", "add", BRIDGE, "type", "bridge"],
                            ["ip", "addr", "add", f"{NODE_IP}/{prefix}", "dev", BRIDGE],
                            ["ip", "link", "set", BRIDGE, "up"]):
                subprocess.run(command, check=True, capture_output=True)
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        bridge_netfilter = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
        if bridge_netfilter.exists():
            bridge_netfilter.write_text("1\n")

    def _start_containerd(self) -> None:
        root = self.state_dir / "containerd"
        cni = self.state_dir / "cni"
        for folder in (root, cni):
            folder.mkdir(parents=True, exist_ok=True)
        (cni / "10-pods.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "visitor-sync-pods", "plugins": [
                {"type": "bridge", "bridge": BRIDGE, "isGateway": True, "ipMasq": False,
                 "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_SUBNET,
                                                             "gateway": NODE_IP}]],
                          "routes": [{"dst": "0.0.0.0/0"}], "dataDir": str(cni / "ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
                {"type": "loopback"}]}))
        config = root / "config.toml"
        config.write_text(f"""version = 2
root = "{root / 'root'}"
state = "{root / 'state'}"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # root lacks CAP_SYS_RESOURCE here: runc fails on the kubelet's oom_score_adj -998.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "{shutil.which('runc')}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni}"
""")
        # Launched and recorded like the Kubernetes binaries, from Debian's folder.
        assets, self.assets = self.assets, Path(shutil.which("containerd") or "").parent
        try:
            self._launch("containerd", ["--config", str(config)])
        finally:
            self.assets = assets
        self._wait_healthy("containerd", lambda: self._ctr("version").returncode == 0)

    def _ctr(self, *arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ctr", "--address", str(self.socket), "-n", "k8s.io",
                               *arguments], capture_output=True, text=True, timeout=300)

    def _import_pause_image(self) -> None:
        """The pod sandbox image: catatonit's pause mode (static) in an image of its own."""
        context = self.state_dir / "pause"
        context.mkdir(exist_ok=True)
        shutil.copy(shutil.which("catatonit") or "catatonit", context / "catatonit")
        (context / "Containerfile").write_text(
            'FROM scratch\nCOPY catatonit /catatonit\nUSER 65535:65535\n'
            'ENTRYPOINT ["/catatonit", "-P"]\n')
        built = images.engine("build", "-q", "-t", PAUSE_IMAGE, str(context), timeout=300)
        assert built.returncode == 0, built.stderr
        self.import_images(PAUSE_IMAGE)

    def import_images(self, *names: str) -> None:
        """Images from the build engine into the node's containerd. ``localhost/NAME:TAG``
        (podman's name for ``NAME:TAG``) is also tagged ``docker.io/library/NAME:TAG``, what
        a pod's ``image: NAME:TAG`` means, as ``kind load docker-image`` does."""
        for name in names:
            archive = self.state_dir / "image.tar"
            saved = images.engine("save", "--format", "docker-archive", "-o", str(archive),
                                  name, timeout=600) if images.is_podman() else \
                images.engine("save", "-o", str(archive), name, timeout=600)
            assert saved.returncode == 0, saved.stderr
            imported = self._ctr("images", "import", str(archive))
            archive.unlink()
            assert imported.returncode == 0, imported.stderr
            if images.is_podman():  # podman's archive names it localhost/NAME:TAG
                short = name.removeprefix("localhost/")
                self._ctr("images", "rm", f"docker.io/library/{short}")
                tagged = self._ctr("images", "tag", f"localhost/{short}",
                                   f"docker.io/library/{short}")
                assert tagged.returncode == 0, tagged.stderr

    def _start_scheduler(self) -> None:
        kubeconfig = self.client_kubeconfig("kube-scheduler", "system:kube-scheduler")
        port = free_port()
        self._launch("kube-scheduler", [
            "--kubeconfig", str(kubeconfig), "--authentication-kubeconfig", str(kubeconfig),
            "--authorization-kubeconfig", str(kubeconfig), "--bind-address", "127.0.0.1",
            "--secure-port", str(port), "--leader-elect=false", "--v", "1"])

    def _start_coredns(self) -> None:
        """On the host at the bridge address (no image of it can be pulled)."""
        admin = Api(self.kubeconfig("admin"))
        for body in COREDNS_RBAC:
            admin.apply(body)
        kubeconfig = self.client_kubeconfig("coredns", "system:coredns")
        health, ready = free_port(), free_port()
        corefile = self.state_dir / "Corefile"
        corefile.write_text(f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{health}
    ready 127.0.0.1:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig} local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . /etc/resolv.conf
    cache 30
}}
""")
        self._launch("coredns", ["-conf", str(corefile)])
        self._wait_healthy("coredns", lambda: _http_ok(f"http://127.0.0.1:{ready}/ready"))

    def _start_kubelet(self) -> None:
        kubeconfig = self.client_kubeconfig("kubelet", f"system:node:{NODE_NAME}",
                                            ["system:nodes"])
        config = self.state_dir / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": NODE_IP, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": free_port(),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.pki.ca_cert)}},
            "authorization": {"mode": "Webhook"},
            "cgroupDriver": "cgroupfs", "failCgroupV1": False, "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "resolvConf": "/etc/resolv.conf", "clusterDomain": "cluster.local",
            "clusterDNS": [NODE_IP], "hairpinMode": "hairpin-veth",
            "serializeImagePulls": False,
            # Every image is imported by hand (no registry): never collect one.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "2%",
                             "imagefs.available": "2%", "nodefs.inodesFree": "2%"},
            "podLogsDir": str(self.state_dir / "pod-logs"),
        }))
        self._launch("kubelet", [
            "--config", str(config), "--kubeconfig", str(kubeconfig),
            "--hostname-override", NODE_NAME, "--node-ip", NODE_IP,
            "--root-dir", str(self.state_dir / "kubelet"), "--v", "1"])

    def _start_kube_proxy(self) -> None:
        kubeconfig = self.client_kubeconfig("kube-proxy", "system:kube-proxy")
        self._launch("kube-proxy", [
            "--kubeconfig", str(kubeconfig), "--hostname-override", NODE_NAME,
            "--proxy-mode", "iptables", "--cluster-cidr", POD_SUBNET,
            "--nodeport-addresses", f"127.0.0.0/8,{POD_SUBNET}",
            "--healthz-bind-address", f"127.0.0.1:{free_port()}",
            "--metrics-bind-address", f"127.0.0.1:{free_port()}",
            "--conntrack-max-per-core", "0", "--v", "1"])

    def _node_ready(self) -> bool:
        try:
            node = self.api_get(f"/api/v1/nodes/{NODE_NAME}")
        except OSError:
            return False
        conditions = node.get("status", {}).get("conditions", [])  # type: ignore[union-attr]
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def listening_addresses(self) -> dict[str, set[str]]:
        """Component -> the addresses its TCP listeners are bound to (``ss``)."""
        names = {process.pid: name for name, process in self._processes.items()}
        found: dict[str, set[str]] = {}
        listing = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True,
                                 check=True).stdout
        for line in listing.splitlines():
            fields = line.split()
            address = fields[3].rsplit(":", 1)[0].strip("[]")
            for pid in re.findall(r"pid=(\d+)", fields[-1]):
                if int(pid) in names:
                    found.setdefault(names[int(pid)], set()).add(address)
        return found

    # -- stop ----------------------------------------------------------------------------

    def stop(self) -> None:
        """The kubelet first (it would restart what is killed next), then the pods (their
        processes are containerd's shims', not ours), then every recorded process, then
        the bridge and the iptables rules the node made."""
        kubelet = self._processes.get("kubelet")
        if kubelet is not None and kubelet.poll() is None:
            kubelet.terminate()
            kubelet.wait(STOP_TIMEOUT)
        if "containerd" in self._processes and self._ctr("version").returncode == 0:
            for task in self._ctr("tasks", "ls", "-q").stdout.split():
                self._ctr("tasks", "kill", "-s", "SIGKILL", task)
            for container in self._ctr("containers", "ls", "-q").stdout.split():
                self._ctr("tasks", "delete", "-f", container)
                self._ctr("containers", "delete", container)
        super().stop()
        self._end_shims()
        self._unmount_leftovers()
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True)
        _remove_kube_chains()

    def _end_shims(self) -> None:
        """A pod's shim can outlive containerd: end those our containerd started (their
        command line names its socket), by PID."""
        for status in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                words = status.read_bytes().split(b"\0")
            except OSError:
                continue
            if words[0].endswith(b"containerd-shim-runc-v2") and \
                    str(self.socket).encode() in words:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(status.parent.name), signal.SIGKILL)

    def _unmount_leftovers(self) -> None:
        """Sandbox /dev/shm and network-namespace mounts containerd leaves under its dirs."""
        prefix = f"{self.state_dir}/"
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(prefix)), reverse=True):
            if subprocess.run(["umount", mount], capture_output=True).returncode:
                subprocess.run(["umount", "-l", mount], capture_output=True)


def _remove_kube_chains() -> None:
    """Every KUBE-* chain the kubelet and kube-proxy made, and the rules jumping to them."""
    for table in ("filter", "nat", "mangle"):
        rules = subprocess.run(["iptables", "-t", table, "-S"], capture_output=True,
                               text=True).stdout.splitlines()
        for rule in rules:
            words = shlex.split(rule)  # comments are quoted
            if words[0] == "-A" and " -j KUBE-" in rule and not words[1].startswith("KUBE-"):
                subprocess.run(["iptables", "-t", table, "-D", *words[1:]], capture_output=True)
        chains = [rule.split()[1] for rule in rules
                  if rule.startswith("-N KUBE-")]
        for action in ("-F", "-X"):
            for chain in chains:
                subprocess.run(["iptables", "-t", table, action, chain], capture_output=True)
