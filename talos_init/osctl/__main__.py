"""osctl: operate talos-init nodes over their mutual-TLS API."""

from __future__ import annotations

import argparse
import base64
import datetime
import functools
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from talos_init.apid.protocol import ROLES
from talos_init.osctl import bootverbs, output
from talos_init.osctl.client import Client, Context, OsctlError, config_path, load_context
from talos_init.osctl.output import Column, human_bytes, human_duration

# -- how each call is shown ---------------------------------------------------------------

_g = lambda key: (lambda r: r.get(key))  # noqa: E731

COLUMNS: dict[str, list[Column]] = {
    "services": [("ID", _g("id")), ("STATE", _g("state")), ("HEALTH", _g("health")),
                 ("PID", _g("pid")), ("UPTIME", lambda r: human_duration(r.get("uptime"))),
                 ("RESTARTS", _g("restarts")), ("REASON", lambda r: _service_reason(r))],
    "ps": [("PID", _g("pid")), ("PPID", _g("ppid")), ("USER", _g("user")), ("STATE", _g("state")),
           ("CPU%", lambda r: f"{r['cpu_percent']:.1f}" if r.get("cpu_percent") is not None else None),
           ("CPU-TIME", _g("cpu_time")), ("RSS", lambda r: human_bytes(r.get("rss"))),
           ("COMMAND", lambda r: (r.get("command") or "")[:100])],
    "stats": [("KIND", _g("kind")), ("ID", _g("id")), ("STATE", _g("state")), ("PID", _g("pid")),
              ("PROCS", _g("processes")), ("CPU-TIME", _g("cpu_time")),
              ("MEMORY", lambda r: human_bytes(r.get("rss")))],
    "mounts": [("SOURCE", _g("source")), ("TARGET", _g("target")), ("TYPE", _g("fstype")),
               ("SIZE", lambda r: human_bytes(r.get("size"))),
               ("USED", lambda r: human_bytes(r.get("used"))),
               ("AVAILABLE", lambda r: human_bytes(r.get("available")))],
    "interfaces": [("NAME", _g("name")), ("UP", _g("up")), ("MTU", _g("mtu")), ("MAC", _g("mac")),
                   ("ADDRESSES", _g("addresses"))],
    "routes": [("FAMILY", _g("family")), ("DESTINATION", _g("destination")),
               ("GATEWAY", _g("gateway")), ("INTERFACE", _g("interface")), ("METRIC", _g("metric"))],
    "ls": [("MODE", _g("mode")), ("SIZE", _g("size")),
           ("MODIFIED", lambda r: datetime.datetime.fromtimestamp(r["mtime"]).strftime("%Y-%m-%d %H:%M")
            if r.get("mtime") is not None else None),
           ("PATH", lambda r: r["path"] + (f" -> {r['link']}" if r.get("link") else ""))],
    "timeline": [("T", lambda r: f"{r.get('t', 0):.3f}s"), ("KIND", _g("kind")), ("NAME", _g("name")),
                 ("STATE", _g("state")), ("REASON", _g("reason"))],
    "containers": [("NAMESPACE", _g("namespace")), ("ID", _g("id")), ("IMAGE", _g("image")),
                   ("PID", _g("pid")), ("STATUS", _g("status"))],
    # -k: CRI's containers by pod, as talosctl shows them (the pod's sandbox, then its containers).
    "containers-k": [("POD", lambda r: "/".join(filter(None, (
                         r["labels"].get("io.kubernetes.pod.namespace"), r.get("pod")))) or None),
                     ("NAME", lambda r: r["labels"].get("io.kubernetes.container.name")
                      or ("(sandbox)" if r["labels"].get("io.cri-containerd.kind") == "sandbox"
                          else None)),
                     ("ID", lambda r: r["id"][:13]), ("IMAGE", _g("image")), ("PID", _g("pid")),
                     ("STATUS", _g("status"))],
    "image list": [("NAME", _g("name")), ("DIGEST", lambda r: _short(r.get("digest"))),
                   ("SIZE", lambda r: human_bytes(r.get("size"))), ("PLATFORMS", _g("platforms")),
                   ("CREATED", lambda r: datetime.datetime.fromtimestamp(r["created"]).strftime(
                       "%Y-%m-%d %H:%M") if r.get("created") else None)],
    "disks": [("DEV", _g("dev")), ("SIZE", lambda r: human_bytes(r.get("size"))),
              ("MODEL", _g("model")), ("SERIAL", _g("serial")), ("TRANSPORT", _g("transport")),
              ("RO", _g("readonly"))],
    "image import": [("NAME", _g("name")), ("DIGEST", lambda r: _short(r.get("digest"))),
                     ("FORMAT", _g("format")), ("LAYERS", _g("layers")),
                     ("SIZE", lambda r: human_bytes(r.get("size")))],
}

def _service_reason(r: dict[str, Any]) -> Any:
    """A failing probe is the news; otherwise why the service is in its state."""
    if r.get("health") == "failing":
        return f"probe failing for {human_duration(r.get('health_for'))}: {r.get('health_message')}"
    return r.get("reason")


def _short(digest: Any) -> str | None:
    return digest[:19] if isinstance(digest, str) else None  # sha256: + 12 hex, as docker shows


MEMORY_FIELDS = ("MemTotal", "MemFree", "MemAvailable", "Buffers", "Cached", "Shmem", "Slab",
                 "SwapTotal", "SwapFree", "Committed_AS")


def _kv_rows(value: dict[str, Any], keys: Iterable[str] | None = None,
             fmt: Callable[[Any], str] = str) -> list[dict[str, Any]]:
    return [{"k": k, "v": fmt(value[k])} for k in (keys or value) if k in value]


_KV: list[Column] = [("FIELD", _g("k")), ("VALUE", _g("v"))]


# -- the command line -----------------------------------------------------------------------

def example(parser: argparse.ArgumentParser, *lines: str) -> argparse.ArgumentParser:
    """Give a command's --help its example lines (every verb has one: tests/unit/osctl)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = "example:\n" + "".join(f"  {line}\n" for line in lines) if lines else None
    return parser


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="osctl", description=__doc__)
    p.add_argument("--osctlconfig", help="client config (default $OSCTLCONFIG or ~/.osctl/config)")
    p.add_argument("--context", help="context of the client config to use")
    p.add_argument("-n", "--nodes", action="append", default=[], metavar="NODE",
                   help="node(s) to talk to (repeat or comma-separate)")
    p.add_argument("-e", "--endpoints", action="append", default=[], metavar="ENDPOINT",
                   help="endpoint(s) to connect to when no node is named")
    p.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    p.add_argument("--timeout", type=float, default=10.0, help="connect timeout, seconds")
    p.add_argument("-i", "--insecure", action="store_true",
                   help="maintenance mode: no client certificate and no CA check (name the "
                        "node with -n; pin its key with --cert-fingerprint)")
    p.add_argument("--cert-fingerprint", action="append", default=[], metavar="FP",
                   help="with --insecure: the node's SHA-256 SPKI fingerprint (from its "
                        "console); any other key is refused")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def cmd(name: str, help: str, *examples: str) -> argparse.ArgumentParser:
        return example(sub.add_parser(name, help=help, description=help), *examples)

    cmd("version", "versions of the node's software", "osctl -n 192.168.1.10 version")
    cmd("services", "services with state, health, uptime and restarts",
        "osctl services", "osctl -o json services")
    s = cmd("service", "start, stop or restart a service", "osctl service restart kubelet")
    s.add_argument("action", choices=("start", "stop", "restart"))
    s.add_argument("id")
    s = cmd("logs", "a service's output, or a Kubernetes container's with -k",
            "osctl logs containerd -f --tail 50", "osctl logs -k kube-system/coredns-abc/coredns")
    s.add_argument("id", help="service id; with -k a container id, its unique prefix, or POD/NAME")
    s.add_argument("-k", "--kubernetes", action="store_true",
                   help="a container of the k8s.io namespace (its CRI log file)")
    s.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    s.add_argument("--tail", type=int, default=None, help="only the last N lines")
    s = cmd("events", "service state changes and boot phases", "osctl events -f --tail 20")
    s.add_argument("-f", "--follow", action="store_true")
    s.add_argument("--tail", type=int, default=None)
    s = cmd("dmesg", "the kernel log", "osctl dmesg -f")
    s.add_argument("-f", "--follow", action="store_true")
    cmd("ps", "processes with cpu and memory", "osctl ps")
    s = cmd("containers", "containerd containers", "osctl containers -k")
    s.add_argument("-k", "--kubernetes", action="store_true", help="the k8s.io namespace")
    s = cmd("image", "images in the node's containerd (k8s.io, where the kubelet looks)",
            "osctl image list", "osctl image import app.tar")
    isub = s.add_subparsers(dest="action", required=True, metavar="ACTION")
    x = example(isub.add_parser("import", help="stream an OCI or docker image archive to the node (admin)",
                                description="stream an OCI image layout or `docker save` archive (tar, "
                                            "optionally gzip-compressed) into the node's containerd"),
                "osctl image import app.tar", "docker save app:1 | osctl -n 10.0.0.5 image import -")
    x.add_argument("file", help="the archive, or - for standard input")
    example(isub.add_parser("list", help="images with digest, size and platforms"), "osctl image list")
    cmd("stats", "cpu and memory per service", "osctl stats")
    cmd("memory", "memory use (/proc/meminfo)", "osctl memory")
    cmd("mounts", "mounted filesystems", "osctl mounts")
    cmd("interfaces", "network interfaces and addresses", "osctl interfaces")
    cmd("routes", "routing table", "osctl routes")
    s = cmd("ls", "list a directory (admin)", "osctl ls -d 2 /var/log")
    s.add_argument("path")
    s.add_argument("-d", "--depth", type=int, default=1)
    s = cmd("read", "print a file (admin)", "osctl read /etc/resolv.conf")
    s.add_argument("path")
    cmd("reboot", "reboot the node", "osctl -n 192.168.1.10 reboot")
    cmd("shutdown", "power the node off", "osctl -n 192.168.1.10 shutdown")
    s = cmd("get", "get a resource: config / machineconfig / mc (the machine config, secrets "
                   "redacted; admin), configversion, confighistory (the stored config's version "
                   "and its last versions with time and mode)",
            "osctl get machineconfig", "osctl get confighistory")
    s.add_argument("resource", choices=("config", "machineconfig", "mc", "configversion",
                                        "confighistory"))
    s = cmd("timeline", "the boot timeline", "osctl timeline", "osctl timeline --svg boot.svg")
    s.add_argument("--svg", type=Path, metavar="FILE",
                   help="draw it as an SVG chart into FILE (FILE-NODE.svg for several nodes)")
    gen = cmd("gen", "generate a cluster's configs and PKI, or a client certificate",
              "osctl gen config my-cluster https://192.168.1.10:6443")
    gensub = gen.add_subparsers(dest="what", required=True, metavar="WHAT")
    s = example(gensub.add_parser("config", help="PKI, controlplane.yaml, worker.yaml, osctl config"),
                "osctl gen config my-cluster https://192.168.1.10:6443 --output-dir my-cluster")
    s.add_argument("cluster")
    s.add_argument("endpoint", help="Kubernetes API endpoint, e.g. https://192.168.1.10:6443")
    s.add_argument("--output-dir", default=".", type=Path)
    s.add_argument("--force", action="store_true", help="overwrite existing files")
    s.add_argument("--talos-version", default="1.15", metavar="VERSION",
                   help="write the layout of this Talos release's gen config: 1.14 and later "
                        "multi-document, e.g. --talos-version 1.11 for one v1alpha1 document")
    s = example(gensub.add_parser("cert", help="a client certificate signed by the machine CA"),
                "osctl gen cert alice --role os:reader --pki my-cluster/pki")
    s.add_argument("name", help="common name; files NAME.crt and NAME.key")
    s.add_argument("--role", action="append", required=True, choices=ROLES, dest="roles")
    s.add_argument("--pki", default="pki", type=Path, help="directory with ca.crt and ca.key")
    s.add_argument("--days", type=int, default=365)
    s.add_argument("--output-dir", default=".", type=Path)
    s.add_argument("--force", action="store_true", help="overwrite existing files")
    bootverbs.add_parsers(cmd)
    s = cmd("validate", "validate a machine config file as a node would",
            "osctl validate configs/worker.yaml", "osctl validate -q - < worker.yaml")
    s.add_argument("file", help="the machine config (YAML), or - for standard input")
    s.add_argument("-q", "--quiet", action="store_true", help="print errors only")
    s = cmd("completion", "a shell completion script, generated from these commands",
            "source <(osctl completion bash)", "osctl completion zsh > ~/.zsh/completions/_osctl")
    s.add_argument("shell", choices=("bash", "zsh"))
    add_disks(sub)
    add_apply_config(sub)
    add_patch(sub)
    add_edit(sub)
    return p


def add_disks(sub: Any) -> None:
    example(sub.add_parser("disks", help="block devices: name, size, model, serial, transport",
                               description="block devices an install disk can be chosen from"),
                "osctl --insecure -n 10.5.0.2 disks")


def add_apply_config(sub: Any) -> None:
    s = sub.add_parser(
        "apply-config", help="apply a machine config (maintenance: --insecure; else admin)",
        description="validate a whole machine config on the node and apply it. In maintenance "
                    "mode (--insecure) the boot goes on with it; on a configured node --mode "
                    "says when it takes effect")
    example(s, "osctl --insecure -n 10.5.0.2 apply-config -f worker.yaml",
            "osctl -n 10.5.0.2 apply-config -f worker.yaml --mode try --timeout 1m")
    s.add_argument("-f", "--file", required=True, help="the machine config (YAML), - for stdin")
    add_mode_flags(s)


def add_patch(sub: Any) -> None:
    s = sub.add_parser(
        "patch", help="patch the machine config (JSON patch or strategic merge) and apply it",
        description="fetch the node's machine config, apply the patches here (RFC 6902 JSON "
                    "patch, or strategic-merge YAML as Talos), and apply the whole result")
    example(s, "osctl -n 10.5.0.2 patch machineconfig --patch @hostname.yaml",
            "osctl -n 10.5.0.2 patch mc -p '[{\"op\": \"add\", \"path\": "
            "\"/machine/sysctls/vm.max_map_count\", \"value\": \"262144\"}]' --dry-run")
    s.add_argument("resource", choices=("machineconfig", "mc"))
    s.add_argument("-p", "--patch", action="append", required=True, metavar="PATCH",
                   help="@FILE or the patch itself (YAML or JSON); repeat to apply several")
    add_mode_flags(s)


def add_edit(sub: Any) -> None:
    s = sub.add_parser(
        "edit", help="edit the machine config in $EDITOR and apply it on save",
        description="open the node's machine config in $EDITOR (or vi); on save it is applied. "
                    "A config the node refuses is reopened with the problems at the top; an "
                    "unchanged or empty file cancels ($EDITOR=nano osctl ... to choose)")
    example(s, "osctl -n 10.5.0.2 edit machineconfig --mode no-reboot")
    s.add_argument("resource", choices=("machineconfig", "mc"))
    add_mode_flags(s)


def add_mode_flags(s: argparse.ArgumentParser) -> None:
    s.add_argument("-m", "--mode", choices=("auto", "no-reboot", "staged", "try"), default="auto",
                   help="auto/no-reboot: persist and apply live (refused when a change needs a "
                        "reboot); staged: persist for the next boot; try: apply live, revert "
                        "after --timeout unless confirmed by another apply")
    s.add_argument("--timeout", dest="try_timeout", default="1m",
                   help="with --mode try: how long before the change is reverted (e.g. 30s, 1m)")
    s.add_argument("--dry-run", action="store_true",
                   help="validate and show the changes and what would restart; apply nothing")


def _split(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def targets(args: argparse.Namespace, ctx: Context) -> list[str]:
    """Who to talk to: -n, else -e, else the context's nodes, else its endpoints."""
    found = _split(args.nodes) or _split(args.endpoints) or ctx.nodes or ctx.endpoints
    if not found:
        raise OsctlError(f"no node to talk to: pass -n/--nodes or set endpoints in context "
                         f"{ctx.name!r}")
    return found


def proxy_endpoint(args: argparse.Namespace) -> str | None:
    """With both -e and -n, calls go to the (first) endpoint, which forwards them to each node."""
    endpoints = _split(args.endpoints)
    return endpoints[0] if endpoints and _split(args.nodes) else None


def _via(args: argparse.Namespace, node: str) -> tuple[str, dict[str, Any]]:
    """Where to connect for ``node`` and the client keywords that make it forwarded."""
    endpoint = proxy_endpoint(args)
    return (endpoint, {"node": node}) if endpoint else (node, {})


def run_import(args: argparse.Namespace, client: Client, nodes: list[str]) -> int:
    if args.file == "-" and len(nodes) > 1:
        raise OsctlError("standard input can go to one node only (-n NODE)")
    failed = 0
    for node in nodes:
        try:
            try:
                f = sys.stdin.buffer if args.file == "-" else open(args.file, "rb")
            except OSError as e:
                raise OsctlError(f"{args.file}: {e.strerror or e}") from None
            with f:
                target, via = _via(args, node)
                result = client.upload(target, "image.import", {},
                                       iter(functools.partial(f.read, 1 << 20), b""), **via)
            if args.output != "table":
                output.structured({"node": node, "result": result} if len(nodes) > 1 else result,
                                  args.output)
                continue
            output.table(result["images"], COLUMNS["image import"])
            rate = result["bytes"] / max(result["seconds"], 1e-3)
            print(f"{node}: imported {human_bytes(result['bytes'])} in {result['seconds']:.1f}s "
                  f"({human_bytes(rate)}/s)")
        except OsctlError as e:
            print(f"osctl: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def run_call(args: argparse.Namespace, client: Client, nodes: list[str]) -> int:
    c = args.command
    if c == "image" and args.action == "import":
        return run_import(args, client, nodes)
    if c in bootverbs.VERBS:
        return bootverbs.run(args, client, nodes)
    if c in ("apply-config", "patch", "edit") or (
            c == "get" and args.resource in ("configversion", "confighistory")):
        from talos_init.osctl import configcmd

        return configcmd.RUNNERS[c](args, client, nodes)
    verbs: dict[str, tuple[str, dict[str, Any], bool]] = {
        "version": ("version", {}, False), "services": ("services", {}, False),
        "service": (f"service.{getattr(args, 'action', '')}", {"id": getattr(args, "id", None)}, False),
        "logs": ("logs", {"id": getattr(args, "id", None), "follow": getattr(args, "follow", False),
                          "tail": getattr(args, "tail", None),
                          **({"kubernetes": True} if getattr(args, "kubernetes", False) else {})},
                 True),
        "events": ("events", {"follow": getattr(args, "follow", False),
                              "tail": getattr(args, "tail", None)}, True),
        "dmesg": ("dmesg", {"follow": getattr(args, "follow", False)}, True),
        "ps": ("ps", {}, False),
        "containers": ("containers", {"namespace": "k8s.io" if getattr(args, "kubernetes", False)
                                      else "system"}, False),
        "stats": ("stats", {}, False), "memory": ("memory", {}, False),
        "mounts": ("mounts", {}, False), "interfaces": ("interfaces", {}, False),
        "routes": ("routes", {}, False),
        "ls": ("ls", {"path": getattr(args, "path", None), "depth": getattr(args, "depth", 1)}, False),
        "read": ("read", {"path": getattr(args, "path", None)}, True),
        "reboot": ("reboot", {}, False), "shutdown": ("shutdown", {}, False),
        "get": ("config", {}, False), "timeline": ("timeline", {}, False),
        "image": ("image.list", {}, False), "disks": ("disks", {}, False),
    }
    method, params, stream = verbs[c]
    if stream and getattr(args, "follow", False) and len(nodes) > 1:
        raise OsctlError("follow one node at a time (-n NODE)")
    failed = 0
    for node in nodes:
        try:
            target, via = _via(args, node)
            if stream:
                show_stream(args, node, client.stream(target, method, params, **via), len(nodes) > 1)
            else:
                show(args, node, client.call(target, method, params, **via), len(nodes) > 1)
        except OsctlError as e:
            print(f"osctl: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def show(args: argparse.Namespace, node: str, result: Any, many: bool) -> None:
    c, fmt = args.command, args.output
    if c == "timeline" and getattr(args, "svg", None):
        write_svg(args.svg, node, result, many)
        return
    if fmt != "table":
        output.structured({"node": node, "result": result} if many else result, fmt)
        return

    def table(rows: list[dict[str, Any]], columns: list[Column]) -> None:
        # Several nodes: every row starts with its node, as talosctl prints them.
        output.table(rows, [("NODE", lambda r: node), *columns] if many else columns)

    if c == "get":  # config, machineconfig, mc: the same redacted config
        if many:
            print(f"NODE {node}")
        output.structured(result, "yaml")
    elif c in ("reboot", "shutdown", "service"):
        what = {"reboot": "rebooting", "shutdown": "shutting down"}.get(c)
        if what:
            print(f"{node}: {what}")
        else:
            state = result.get("state") if isinstance(result, dict) else None
            print(f"{node}: service {args.id} {args.action}: {state or 'requested'}")
    elif c == "version":
        boot = result.pop("boot", None) if isinstance(result, dict) else None
        table(_kv_rows(result) + bootverbs.version_rows(boot), _KV)
    elif c == "memory":
        table(_kv_rows(result, MEMORY_FIELDS, human_bytes), _KV)
    elif c == "containers" and args.kubernetes:
        rows = sorted(result, key=lambda r: (
            r.get("pod") or "", r["labels"].get("io.cri-containerd.kind") != "sandbox",
            r["labels"].get("io.kubernetes.container.name") or ""))
        table(rows, COLUMNS["containers-k"])
    elif c == "image":
        table(result, COLUMNS["image list"])
    elif c in COLUMNS:
        table(result, COLUMNS[c])
    else:
        output.structured(result, "yaml")


def write_svg(path: Path, node: str, events: list[dict[str, Any]], many: bool) -> None:
    from talos_init.osctl import timeline_svg

    if many:
        path = path.with_name(f"{path.stem}-{node}{path.suffix or '.svg'}")
    path.write_text(timeline_svg.render(events, title=f"boot timeline: {node}"))
    print(f"{node}: timeline chart written to {path}")


def show_stream(args: argparse.Namespace, node: str, items: Iterable[Any], many: bool) -> None:
    c, fmt = args.command, args.output
    prefix = f"{node}: " if many else ""
    if c == "read":
        out = sys.stdout.buffer
        for item in items:
            if "data" in item:
                out.write(base64.b64decode(item["data"]))
            elif item.get("truncated"):
                out.flush()
                print(f"osctl: {args.path} cut at {item['size']} bytes (the node's read limit)",
                      file=sys.stderr)
        out.flush()
        return
    tty = sys.stdout.isatty()
    for item in items:
        if fmt != "table":
            output.stream_item({"node": node, **item} if many and isinstance(item, dict) else item, fmt)
            continue
        if c == "logs":
            line = item.get("line", item) if isinstance(item, dict) else item
            text = f"{prefix}{line}"
        elif c == "dmesg":
            text = f"{prefix}[{item['t']:12.6f}] {item['msg']}"
        elif c == "events":
            text = (f"{prefix}{item.get('t', 0):10.3f}s  {item.get('kind', ''):8} "
                    f"{item.get('name', ''):16} {item.get('state', ''):10} "
                    f"{item.get('reason', '')}".rstrip())
        else:
            continue
        print(output.for_terminal(text, tty), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "completion":
            from talos_init.osctl import completion

            sys.stdout.write(completion.script(parser, args.shell))
            return 0
        if args.command == "gen":
            from talos_init.osctl import genconfig

            if args.what == "cert":
                paths = genconfig.client_cert(args.name, args.roles, args.pki, args.output_dir,
                                              days=args.days, force=args.force)
            else:
                paths = genconfig.generate(
                    args.cluster, args.endpoint, args.output_dir, force=args.force,
                    context_endpoints=_split(args.endpoints) or None,
                    talos_version=genconfig.parse_version(args.talos_version))
            for path in paths:
                print(f"wrote {path}")
            return 0
        if args.command == "validate":
            # The node's own validator, imported only when asked for.
            from talos_init.userdata.cli import validate_cli
            return int(validate_cli([args.file, *(["--quiet"] if args.quiet else [])]))
        if args.cert_fingerprint and not args.insecure:
            raise OsctlError("--cert-fingerprint pins a maintenance-mode node's key: use it "
                             "with --insecure")
        if args.insecure:
            ctx = Context("insecure")  # no osctl config: nothing of it would be used
        else:
            ctx = load_context(config_path(args.osctlconfig), args.context)
        nodes = targets(args, ctx)
        client = Client(ctx, timeout=args.timeout, insecure=args.insecure,
                        fingerprints=args.cert_fingerprint,
                        say=lambda line: print(f"osctl: {line}", file=sys.stderr))
        try:
            return run_call(args, client, nodes)
        finally:
            client.close()
    except OsctlError as e:
        print(f"osctl: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 141  # `osctl dmesg | head`: the reader left, nothing more to say


if __name__ == "__main__":
    sys.exit(main())
