#!/usr/bin/python3.11 -I
"""A kubelet stand-in honouring the kubelet's process contract, for tests and images without one.

What a real kubelet does that talos-init relies on, and nothing more:
- parses its flags and exits 1 with "unknown flag: --x" on one it does not know;
- needs --config (a KubeletConfiguration), --bootstrap-kubeconfig or --kubeconfig,
  --container-runtime-endpoint (a unix socket that must exist), and the client CA
  file the config names; a missing one is a fatal error naming it;
- serves /healthz ("ok") on the config's healthzBindAddress:healthzPort;
- sends READY=1 to $NOTIFY_SOCKET once serving; exits 0 on SIGTERM.
For tests: records the flags and files it received as JSON at
$KUBELET_STANDIN_RECORD (default /var/lib/kubelet/standin-record.json), and
crashes (exit 255) when $KUBELET_STANDIN_CRASH (default
/var/lib/kubelet/standin-crash) exists; with the content "once" the file is
removed first, so the next start runs normally.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import signal
import socket
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
BOOL_FLAGS = {"rotate-server-certificates", "register-node", "fail-swap-on", "rotate-certificates"}


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


def main() -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    flags = parse_flags(sys.argv[1:])
    one = {k: v[-1] for k, v in flags.items()}
    for required in ("config", "container-runtime-endpoint"):
        if required not in one:
            fail(f"--{required} is required")
    if "bootstrap-kubeconfig" not in one and "kubeconfig" not in one:
        fail("--bootstrap-kubeconfig or --kubeconfig is required")
    record_path = os.environ.get("KUBELET_STANDIN_RECORD", "/var/lib/kubelet/standin-record.json")
    crash_path = os.environ.get("KUBELET_STANDIN_CRASH", "/var/lib/kubelet/standin-crash")
    check_crash(crash_path)

    endpoint = one["container-runtime-endpoint"]
    if not endpoint.startswith("unix://"):
        fail(f"--container-runtime-endpoint {endpoint!r}: only unix:// endpoints are supported")
    sock_path = endpoint[len("unix://"):]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(sock_path)
    except OSError as exc:
        fail(f"failed to connect to the container runtime at {sock_path}: {exc}")

    files = {}
    try:
        config = load_yaml(one["config"])
    except (OSError, ValueError) as exc:
        fail(f"failed to load kubelet config file {one['config']}: {exc}")
    if config.get("kind") != "KubeletConfiguration":
        fail(f"{one['config']}: kind is {config.get('kind')!r}, not KubeletConfiguration")
    files["config"] = config
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
              "started": time.time()}
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

    while not stop.wait(0.2):
        check_crash(crash_path)
    server.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
