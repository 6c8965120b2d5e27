#!/usr/bin/python3.11 -I
"""A kubelet stand-in honouring the kubelet's process contract, for tests and images without one.

What a real kubelet does that talos-init relies on, and nothing more:
- parses its flags and exits 1 with "unknown flag: --x" on one it does not know;
- needs --config (a KubeletConfiguration), --bootstrap-kubeconfig or --kubeconfig,
  a container runtime endpoint (a unix socket that must exist: the deprecated flag,
  else the config's containerRuntimeEndpoint, else the kubelet's default
  unix:///run/containerd/containerd.sock), and the client CA file the config
  names; a missing one is a fatal error naming it;
- its node name is --hostname-override, else the hostname, lowercased; one that is
  not a DNS-1123 subdomain (a node nobody named reports "(none)") is fatal here,
  where the real kubelet would fail to register its Node;
- serves /healthz ("ok") on the config's healthzBindAddress:healthzPort;
- sends READY=1 to $NOTIFY_SOCKET once serving; exits 0 on SIGTERM.
- runs the static pods of the config's staticPodPath through CRI on
  that endpoint, as the kubelet does: for each pod RunPodSandbox (the host's
  network with hostNetwork, else a pod network that containerd sets up through
  CNI, with the containers' hostPorts as port mappings for the portmap plugin),
  then CreateContainer (command, args, env, volumes, log file
  /var/log/pods/<ns>_<name>_<uid>/<container>/<n>.log) and StartContainer,
  retried every few seconds until it runs (an image imported later is picked
  up); exited containers are restarted unless restartPolicy is Never; pods
  whose manifest went away are stopped and their volumes unmounted.
- volumes as the kubelet lays them out under --root-dir (/var/lib/kubelet):
  hostPath; emptyDir in pods/<uid>/volumes/kubernetes.io~empty-dir/<name>,
  with medium Memory a tmpfs mounted by running the `mount` program (size from
  sizeLimit) as mount-utils does; projected in kubernetes.io~projected/<name>,
  always a tmpfs, with its serviceAccountToken files (an unsigned stand-in
  token: there is no API server; other sources need one and are an error).
  Removed pods' tmpfs volumes are unmounted with the `umount` program.
For tests: records the flags and files it received as JSON at
$KUBELET_STANDIN_RECORD (default /var/lib/kubelet/standin-record.json), and
crashes (exit 255) when $KUBELET_STANDIN_CRASH (default
/var/lib/kubelet/standin-crash) exists; with the content "once" the file is
removed first, so the next start runs normally. The static pods' state goes to
$KUBELET_STANDIN_PODS (default /var/lib/kubelet/standin-pods.json);
$KUBELET_STANDIN_LOG_ROOT moves /var/log/pods for host tests.
CRI messages are encoded by hand with talos_init's protobuf helpers, imported
only when there is a pod to run (the system python of a test host has no h2).
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import base64
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

# Real kubelet flags talos-init passes or users commonly pass in extraArgs.
VALUE_FLAGS = {
    "config", "bootstrap-kubeconfig", "kubeconfig", "cert-dir", "container-runtime-endpoint",
    "hostname-override", "node-ip", "node-labels", "v", "max-pods", "cloud-provider",
    "root-dir", "register-with-taints", "feature-gates", "system-reserved", "kube-reserved",
    "eviction-hard", "image-gc-high-threshold", "image-gc-low-threshold", "provider-id",
    "pod-infra-container-image", "runtime-request-timeout", "resolv-conf",
}
DEFAULT_RUNTIME_ENDPOINT = "unix:///run/containerd/containerd.sock"
BOOL_FLAGS = {"rotate-server-certificates", "register-node", "fail-swap-on", "rotate-certificates"}
LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")  # what a Node name must be


QUANTITY = re.compile(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$")
UNITS = {None: 1, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "k": 10**3, "M": 10**6,
         "G": 10**9, "T": 10**12}


def fail(message: str, code: int = 1) -> None:
    print(f"kubelet-standin: {message}", file=sys.stderr, flush=True)
    sys.exit(code)


def parse_flags(argv: list[str]) -> dict[str, list[str]]:
    flags: dict[str, list[str]] = {}
    for arg in argv:
        if not arg.startswith("--"):
            fail(f"unexpected argument {arg!r} (flags only)")
        name, eq, value = arg[2:].partition("=")
        if name in BOOL_FLAGS:
            if eq and value not in ("true", "false"):
                fail(f"invalid value {value!r} for --{name}: must be true or false")
            value = value if eq else "true"
        elif name in VALUE_FLAGS:
            if not eq:
                fail(f"flag needs an argument: --{name}")
        else:
            fail(f"unknown flag: --{name}")
        flags.setdefault(name, []).append(value)
    return flags


def load_yaml(path: str) -> dict:
    try:
        import yaml
    except ImportError:  # an image without PyYAML: JSON is YAML too
        return json.loads(open(path).read())
    return yaml.safe_load(open(path))


def check_crash(path: str) -> None:
    try:
        content = open(path).read().strip()
    except FileNotFoundError:
        return
    if content == "once":
        os.unlink(path)
    print("kubelet-standin: crashing as told by", path, file=sys.stderr, flush=True)
    os._exit(255)


# -- static pods through CRI (runtime.v1) --------------------------------------------------

CRI = "/runtime.v1.RuntimeService/"
NODE, CONTAINER_NS, POD_NS = 2, 1, 0  # NamespaceMode
SANDBOX_READY = 0  # PodSandboxState
RUNNING, EXITED = 1, 2  # ContainerState


def say(message: str) -> None:
    print(f"kubelet-standin: {message}", file=sys.stderr, flush=True)


class Cri:
    """The few RuntimeService calls a static pod needs, over talos_init's unary gRPC client."""

    def __init__(self, socket_path: str):
        from talos_init.apid import containerd as grpc  # lazily: needs h2

        self.g = grpc
        self.client = grpc.Client(socket_path, timeout=120)  # image unpack, TCG

    def call(self, method: str, message: bytes) -> dict:
        return self.g.decode(self.client.call(CRI + method, message, "k8s.io"))

    def f(self, number: int, value) -> bytes:
        return self.g.field(number, value)

    def kv(self, number: int, mapping: dict) -> bytes:
        return b"".join(self.f(number, self.f(1, k) + self.f(2, v)) for k, v in mapping.items())

    def text(self, fields: dict, number: int) -> str:
        return fields[number][-1].decode() if fields.get(number) else ""

    def num(self, fields: dict, number: int) -> int:
        return fields[number][-1] if fields.get(number) else 0

    def sandboxes(self, selector: dict) -> list[dict]:
        reply = self.call("ListPodSandbox", self.f(1, self.kv(3, selector)))
        out = []
        for raw in reply.get(1, []):
            item = self.g.decode(raw)
            meta = self.g.decode(item[2][-1]) if item.get(2) else {}
            labels = {}
            for entry in item.get(5, []):
                e = self.g.decode(entry)
                labels[self.text(e, 1)] = self.text(e, 2)
            out.append({"id": self.text(item, 1), "state": self.num(item, 3),
                        "attempt": self.num(meta, 4), "labels": labels})
        return out

    def containers(self, sandbox_id: str) -> list[dict]:
        reply = self.call("ListContainers", self.f(1, self.f(3, sandbox_id)))
        out = []
        for raw in reply.get(1, []):
            item = self.g.decode(raw)
            meta = self.g.decode(item[3][-1]) if item.get(3) else {}
            out.append({"id": self.text(item, 1), "name": self.text(meta, 1),
                        "attempt": self.num(meta, 2), "state": self.num(item, 6)})
        return out


def run_program(argv: list[str]) -> None:
    """Run mount/umount found through PATH, as mount-utils does; ValueError with its output."""
    exe = shutil.which(argv[0], path=os.environ.get("PATH") or "/usr/sbin:/usr/bin:/sbin:/bin")
    if exe is None:
        raise ValueError(f"{argv[0]}: executable file not found in $PATH")
    r = subprocess.run([exe, *argv[1:]], capture_output=True, text=True)
    if r.returncode != 0:
        raise ValueError(f"{argv[0]} failed: exit status {r.returncode}; arguments: "
                         f"{' '.join(argv[1:])}; output: {(r.stderr or r.stdout).strip()}")


def mount_tmpfs(path: str, size: int | None) -> None:
    os.makedirs(path, exist_ok=True)
    if os.path.ismount(path):
        return
    options = ["-o", f"size={size}"] if size else []
    run_program(["mount", "-t", "tmpfs", *options, "tmpfs", path])


def parse_quantity(value: str, where: str) -> int:
    m = QUANTITY.match(str(value))
    if not m:
        raise ValueError(f"{where}: {value!r} is not a quantity the stand-in reads (e.g. 16Mi)")
    return int(m.group(1)) * UNITS[m.group(2)]


def standin_token(namespace: str, audience: str, expiry: int) -> str:
    """A JWT-shaped token without a signature: the real one comes from the API server."""
    def part(doc: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()
                                        ).rstrip(b"=").decode()
    now = int(time.time())
    return ".".join([part({"alg": "none", "typ": "JWT"}),
                     part({"iss": "kubelet-standin", "aud": [audience], "iat": now,
                           "exp": now + expiry,
                           "sub": f"system:serviceaccount:{namespace}:default"}), ""])


def teardown_volumes(root: str, uid: str) -> None:
    """Unmount a removed pod's tmpfs volumes with `umount`, then remove its directory."""
    base = os.path.join(root, "pods", uid, "volumes")
    for plugin in sorted(os.listdir(base)) if os.path.isdir(base) else []:
        for name in sorted(os.listdir(os.path.join(base, plugin))):
            path = os.path.join(base, plugin, name)
            if os.path.ismount(path):
                run_program(["umount", path])
    shutil.rmtree(os.path.join(root, "pods", uid), ignore_errors=True)


class StaticPod:
    """One manifest as the kubelet sees it: mirror name <name>-<node>, uid from the content."""

    def __init__(self, manifest: dict, raw: bytes, node: str, log_root: str, root: str):
        meta = manifest.get("metadata") or {}
        self.manifest = manifest
        self.spec = manifest.get("spec") or {}
        self.host_network = bool(self.spec.get("hostNetwork"))
        self.root = root
        self.name = f"{meta.get('name')}-{node}"
        self.namespace = meta.get("namespace") or "default"
        # The kubelet hashes the object, its source and the node name into a static pod's uid.
        self.uid = hashlib.md5(raw + b"file" + node.encode()).hexdigest()
        self.log_dir = f"{log_root}/{self.namespace}_{self.name}_{self.uid}"
        self.labels = {"io.kubernetes.pod.name": self.name,
                       "io.kubernetes.pod.namespace": self.namespace,
                       "io.kubernetes.pod.uid": self.uid}

    def namespaces(self, cri: Cri) -> bytes:
        pid = NODE if self.spec.get("hostPID") else CONTAINER_NS
        ipc = NODE if self.spec.get("hostIPC") else POD_NS
        return cri.f(1, NODE if self.host_network else POD_NS) + cri.f(2, pid) + cri.f(3, ipc)

    def port_mappings(self, cri: Cri) -> bytes:
        """CRI PortMapping for each container port with a hostPort (what portmap acts on)."""
        protocols = {"TCP": 0, "UDP": 1, "SCTP": 2}
        out = b""
        for c in self.spec.get("containers") or []:
            for port in c.get("ports") or []:
                if not port.get("hostPort"):
                    continue
                msg = (cri.f(1, protocols.get(port.get("protocol", "TCP"), 0))
                       + cri.f(2, int(port["containerPort"])) + cri.f(3, int(port["hostPort"])))
                if port.get("hostIP"):
                    msg += cri.f(4, port["hostIP"])
                out += cri.f(5, msg)
        return out

    def volume_paths(self) -> dict[str, str]:
        """Set up each volume as the kubelet would; name -> host path (raises ValueError)."""
        base = os.path.join(self.root, "pods", self.uid, "volumes")
        paths = {}
        for v in self.spec.get("volumes") or []:
            name = v.get("name")
            where = f"volume {name!r}"
            if v.get("hostPath"):
                host = v["hostPath"]
                if host.get("type") == "DirectoryOrCreate":
                    os.makedirs(host["path"], exist_ok=True)
                paths[name] = host["path"]
            elif "emptyDir" in v:
                empty = v.get("emptyDir") or {}
                path = os.path.join(base, "kubernetes.io~empty-dir", name)
                os.makedirs(path, exist_ok=True)
                os.chmod(path, 0o777)
                if empty.get("medium") == "Memory":
                    size = empty.get("sizeLimit")
                    mount_tmpfs(path, parse_quantity(size, where) if size else None)
                paths[name] = path
            elif "projected" in v:
                path = os.path.join(base, "kubernetes.io~projected", name)
                mount_tmpfs(path, None)
                for source in (v.get("projected") or {}).get("sources") or []:
                    token = source.get("serviceAccountToken")
                    if token is None:
                        raise ValueError(f"{where}: only serviceAccountToken sources (the others "
                                         "need the API server)")
                    file = os.path.join(path, token.get("path") or "token")
                    if not os.path.exists(file):
                        tmp = file + ".tmp"
                        with open(tmp, "w") as f:
                            f.write(standin_token(self.namespace, token.get("audience") or "api",
                                                  int(token.get("expirationSeconds") or 3600)))
                        os.chmod(tmp, 0o644)
                        os.replace(tmp, file)
                paths[name] = path
            else:
                raise ValueError(f"{where}: only hostPath, emptyDir and projected volumes are "
                                 "supported by the stand-in")
        return paths

    def sandbox_config(self, cri: Cri, attempt: int) -> bytes:
        meta = (cri.f(1, self.name) + cri.f(2, self.uid) + cri.f(3, self.namespace)
                + cri.f(4, attempt))
        linux = cri.f(1, f"/kubepods/besteffort/pod{self.uid}") \
            + cri.f(2, cri.f(1, self.namespaces(cri)))
        hostname = b"" if self.host_network else cri.f(2, self.name)
        return (cri.f(1, meta) + hostname + cri.f(3, self.log_dir) + self.port_mappings(cri)
                + cri.kv(6, self.labels)
                + cri.kv(7, {"kubernetes.io/config.source": "file",
                             "kubernetes.io/config.hash": self.uid})
                + cri.f(8, linux))

    def container_config(self, cri: Cri, c: dict, attempt: int) -> bytes:
        volumes = self.volume_paths()
        msg = cri.f(1, cri.f(1, c["name"]) + cri.f(2, attempt)) + cri.f(2, cri.f(1, c["image"]))
        msg += b"".join(cri.f(3, a) for a in c.get("command") or [])
        msg += b"".join(cri.f(4, a) for a in c.get("args") or [])
        if c.get("workingDir"):
            msg += cri.f(5, c["workingDir"])
        for env in c.get("env") or []:
            if "value" not in env and "valueFrom" in env:
                raise ValueError(f"container {c['name']}: env {env.get('name')}: valueFrom "
                                 "needs the API server")
            msg += cri.f(6, cri.f(1, env["name"]) + cri.f(2, str(env.get("value", ""))))
        for vm in c.get("volumeMounts") or []:
            host = volumes.get(vm.get("name"))
            if not host:
                raise ValueError(f"container {c['name']}: volume {vm.get('name')!r} is not "
                                 "in spec.volumes")
            msg += cri.f(7, cri.f(1, vm["mountPath"]) + cri.f(2, host)
                         + cri.f(3, int(bool(vm.get("readOnly")))))
        msg += cri.kv(9, {**self.labels, "io.kubernetes.container.name": c["name"]})
        msg += cri.f(11, f"{c['name']}/{attempt}.log")
        msg += cri.f(15, cri.f(2, cri.f(3, self.namespaces(cri))))
        return msg

    def sync(self, cri: Cri) -> dict:
        """Make the pod run; returns its state for the record."""
        boxes = cri.sandboxes({"io.kubernetes.pod.uid": self.uid})
        ready = [b for b in boxes if b["state"] == SANDBOX_READY]
        if ready:
            sandbox, attempt = ready[0]["id"], ready[0]["attempt"]
            config = self.sandbox_config(cri, attempt)
        else:
            attempt = max((b["attempt"] + 1 for b in boxes), default=0)
            config = self.sandbox_config(cri, attempt)
            os.makedirs(self.log_dir, exist_ok=True)
            sandbox = cri.text(cri.call("RunPodSandbox", cri.f(1, config)), 1)
            say(f"pod {self.namespace}/{self.name}: sandbox {sandbox[:13]} ready")
        existing = cri.containers(sandbox)
        state = {"sandbox": sandbox, "containers": {}}
        for c in self.spec.get("containers") or []:
            mine = sorted((x for x in existing if x["name"] == c["name"]),
                          key=lambda x: x["attempt"])
            last = mine[-1] if mine else None
            if last and last["state"] == RUNNING:
                state["containers"][c["name"]] = last["id"]
                continue
            if last and last["state"] == EXITED and self.spec.get("restartPolicy") == "Never":
                state["containers"][c["name"]] = last["id"]
                continue
            if last and last["state"] != EXITED:
                cid = last["id"]  # created, never started: start it
            else:
                attempt = last["attempt"] + 1 if last else 0
                os.makedirs(f"{self.log_dir}/{c['name']}", exist_ok=True)
                reply = cri.call("CreateContainer", cri.f(1, sandbox) + cri.f(
                    2, self.container_config(cri, c, attempt)) + cri.f(3, config))
                cid = cri.text(reply, 1)
            cri.call("StartContainer", cri.f(1, cid))
            say(f"pod {self.namespace}/{self.name}: container {c['name']} {cid[:13]} started")
            state["containers"][c["name"]] = cid
        return state


def load_pods(directory: str, node: str, log_root: str,
              root: str = "/var/lib/kubelet") -> tuple[list[StaticPod], dict]:
    """The manifests the kubelet would run, and the ones skipped with the reason."""
    pods, skipped = [], {}
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return [], {}
    for name in names:
        if name.startswith(".") or not name.endswith((".yaml", ".yml", ".json")):
            continue
        path = os.path.join(directory, name)
        try:
            raw = open(path, "rb").read()
            manifest = load_yaml(path)
        except (OSError, ValueError) as exc:
            skipped[name] = f"unreadable: {exc}"
            continue
        if not isinstance(manifest, dict) or manifest.get("kind") != "Pod":
            skipped[name] = "not a Pod manifest"
        else:
            pods.append(StaticPod(manifest, raw, node, log_root, root))
    return pods, skipped


def run_static_pods(directory: str, endpoint_sock: str, node: str, stop: threading.Event,
                    record_path: str, period: float, root: str = "/var/lib/kubelet") -> None:
    """The kubelet's static pod loop: read the directory, make every pod run, stop removed ones."""
    log_root = os.environ.get("KUBELET_STANDIN_LOG_ROOT", "/var/log/pods")
    said: dict[str, str] = {}
    cri = None
    while True:
        pods, skipped = load_pods(directory, node, log_root, root)
        status = {name: {"skipped": why} for name, why in skipped.items()}
        for name, why in skipped.items():
            if said.get(name) != why:
                say(f"static pod {name}: {why}")
                said[name] = why
        if pods or cri is not None:
            try:
                cri = cri or Cri(endpoint_sock)
                for pod in pods:
                    try:
                        status[pod.name] = pod.sync(cri)
                        said.pop(pod.name, None)
                    except (OSError, ValueError, KeyError, cri.g.GrpcError) as exc:
                        status[pod.name] = {"error": str(exc)}
                        if said.get(pod.name) != str(exc):
                            say(f"pod {pod.namespace}/{pod.name}: {exc} (retrying)")
                            said[pod.name] = str(exc)
                wanted = {p.uid for p in pods}
                for box in cri.sandboxes({}):
                    uid = box["labels"].get("io.kubernetes.pod.uid")
                    if box["state"] == SANDBOX_READY and uid and uid not in wanted:
                        cri.call("StopPodSandbox", cri.f(1, box["id"]))
                        say(f"pod {box['labels'].get('io.kubernetes.pod.name')}: manifest gone, "
                            "sandbox stopped")
                for uid in os.listdir(os.path.join(root, "pods")) \
                        if os.path.isdir(os.path.join(root, "pods")) else []:
                    if uid not in wanted:
                        try:
                            teardown_volumes(root, uid)
                            say(f"pod uid {uid}: volumes unmounted and removed")
                        except (OSError, ValueError) as exc:
                            status[f"teardown {uid}"] = str(exc)
            except (OSError, ImportError) as exc:
                status["error"] = f"container runtime: {exc}"
            except Exception as exc:  # a CRI reply we cannot read: keep serving /healthz
                status["error"] = f"{type(exc).__name__}: {exc}"
        tmp = record_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(status, f, indent=1)
        os.replace(tmp, record_path)
        if stop.wait(period):
            return


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    flags = parse_flags(sys.argv[1:])
    one = {k: v[-1] for k, v in flags.items()}
    if "config" not in one:
        fail("--config is required")
    if "bootstrap-kubeconfig" not in one and "kubeconfig" not in one:
        fail("--bootstrap-kubeconfig or --kubeconfig is required")
    node = (one.get("hostname-override") or socket.gethostname()).strip().lower()
    if not DNS1123_SUBDOMAIN.match(node):
        source = "--hostname-override" if one.get("hostname-override") else "the hostname"
        fail(f"node name {node!r} (from {source}) is not a valid DNS-1123 subdomain")
    record_path = os.environ.get("KUBELET_STANDIN_RECORD", "/var/lib/kubelet/standin-record.json")
    crash_path = os.environ.get("KUBELET_STANDIN_CRASH", "/var/lib/kubelet/standin-crash")
    check_crash(crash_path)

    files = {}
    try:
        config = load_yaml(one["config"])
    except (OSError, ValueError) as exc:
        fail(f"failed to load kubelet config file {one['config']}: {exc}")
    if config.get("kind") != "KubeletConfiguration":
        fail(f"{one['config']}: kind is {config.get('kind')!r}, not KubeletConfiguration")
    files["config"] = config

    # The flag wins over the config; neither given is the v1beta1 default (kubelet >= 1.27).
    endpoint = (one.get("container-runtime-endpoint") or config.get("containerRuntimeEndpoint")
                or DEFAULT_RUNTIME_ENDPOINT)
    if not endpoint.startswith("unix://"):
        fail(f"container runtime endpoint {endpoint!r}: only unix:// endpoints are supported")
    sock_path = endpoint[len("unix://"):]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(sock_path)
    except OSError as exc:
        fail(f"failed to connect to the container runtime at {sock_path}: {exc}")
    kubeconfig = one.get("bootstrap-kubeconfig") or one["kubeconfig"]
    try:
        files["bootstrap-kubeconfig"] = load_yaml(kubeconfig)
    except (OSError, ValueError) as exc:
        fail(f"failed to load bootstrap kubeconfig {kubeconfig}: {exc}")
    ca_file = ((config.get("authentication") or {}).get("x509") or {}).get("clientCAFile")
    if ca_file:
        try:
            ca = open(ca_file, "rb").read()
        except OSError as exc:
            fail(f"unable to load client CA file {ca_file}: {exc}")
        if b"-----BEGIN CERTIFICATE-----" not in ca:
            fail(f"client CA file {ca_file} holds no PEM certificate")
        files["ca"] = {"path": ca_file, "sha256": hashlib.sha256(ca).hexdigest()}

    host = config.get("healthzBindAddress", "127.0.0.1")
    port = int(config.get("healthzPort", 10248))

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            body = b"ok" if self.path == "/healthz" else b"not found"
            self.send_response(200 if self.path == "/healthz" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    try:
        server = http.server.HTTPServer((host, port), Healthz)
    except OSError as exc:
        fail(f"failed to listen on {host}:{port} for /healthz: {exc}")
    threading.Thread(target=server.serve_forever, daemon=True).start()

    record = {"pid": os.getpid(), "argv": sys.argv[1:], "flags": flags, "files": files,
              "node": node, "runtime_endpoint": endpoint, "started": time.time()}
    os.makedirs(os.path.dirname(record_path) or ".", exist_ok=True)
    tmp = record_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(record, f, indent=1)
    os.replace(tmp, record_path)

    notify = os.environ.get("NOTIFY_SOCKET")
    if notify:
        addr = "\0" + notify[1:] if notify.startswith("@") else notify
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.sendto(b"READY=1\nSTATUS=kubelet stand-in serving /healthz", addr)
    print(f"kubelet-standin: ready, /healthz on {host}:{port}", file=sys.stderr, flush=True)

    static = config.get("staticPodPath")
    if static:
        pods_record = os.environ.get("KUBELET_STANDIN_PODS", "/var/lib/kubelet/standin-pods.json")
        period = float(os.environ.get("KUBELET_STANDIN_SYNC", "5"))
        threading.Thread(target=run_static_pods, daemon=True,
                         args=(static, sock_path, node, stop, pods_record, period,
                               one.get("root-dir") or "/var/lib/kubelet")).start()

    while not stop.wait(0.2):
        check_crash(crash_path)
    server.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
