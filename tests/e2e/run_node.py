"""``make run``: build the image, serve a machine config on loopback, boot a node with its console here.

The config is served by a loopback HTTP server that the guest reaches at
http://10.0.2.100/config.yaml (QEMU guestfwd, user networking with
restrict=on); the API port 50000 is forwarded to 127.0.0.1:<port>. Ctrl-C
presses the ACPI power button; a second Ctrl-C kills QEMU.

apid signs its serving certificate with the machine CA key, which
configs/worker.yaml does not ship. When the config has no machine CA key, a
PKI and osctl client config are generated once with ``osctl gen config``
(cached in build/run-node/) and that machine CA is put into the config served;
the osctlconfig's endpoint is set to this run's forwarded port, so the lines
printed at start (``export OSCTLCONFIG=...`` then ``.venv/bin/osctl services``)
reach this node as pasted.

``--nodes 2`` (``make run NODES=2``) boots a controlplane and a worker on a
private network between the guests (``tests/e2e/twonode.py``) from a
generated cluster (build/run-node-2/): the worker has no CA key and gets its
API certificate from the controlplane's trustd. The controlplane's console
is shown here, the worker's is in its serial.log.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from initramfs.build import ensure_built
from tests.e2e.conftest import UserdataServer, _serve
from tests.e2e.nodeapi import gen_cluster
from talos_init import atomicfile
from tests.e2e.qemu import VM, VMSpec, free_port

REPO = Path(__file__).resolve().parents[2]


def generated_pki(out: Path) -> Path:
    """Make a cluster PKI and osctl config in ``out`` with `osctl gen config`, unless there."""
    if not (out / "osctlconfig").exists() or not (out / "worker.yaml").exists():
        gen_cluster(out, "talos-init-qemu")
    return out


def config_for_node(config: bytes, pki: Path) -> tuple[bytes, Path | None]:
    """The config to serve, and the osctlconfig that reaches the node (None: the config's own PKI).

    A config without a machine CA key gets the generated machine CA; a config with one is
    served unchanged (the user has their own osctl config for it).
    """
    import yaml

    doc = yaml.safe_load(config)
    ca = ((doc or {}).get("machine") or {}).get("ca") or {}
    if not isinstance(doc, dict) or ca.get("key"):
        return config, None
    generated_pki(pki)
    doc["machine"]["ca"] = yaml.safe_load((pki / "controlplane.yaml").read_bytes())["machine"]["ca"]
    return yaml.safe_dump(doc, sort_keys=False).encode(), pki / "osctlconfig"


def point_osctlconfig(path: Path, endpoint: str) -> None:
    """Make the current context of ``path`` reach ``endpoint`` (this run's forwarded port); crash-safe."""
    import yaml

    doc = yaml.safe_load(path.read_text())
    doc["contexts"][doc["context"]]["endpoints"] = [endpoint]
    atomicfile.write_atomic(path, yaml.safe_dump(doc, sort_keys=False).encode(), 0o600)


def _shown(path: Path) -> str:
    """``path`` as a user in the repository types it (relative when under the working directory)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def osctl_hint(osctlconfig: Path | None, api_port: int) -> list[str]:
    """The lines a user pastes into another terminal to reach this node with osctl."""
    osctl = Path(sys.executable).parent / "osctl"  # the venv's console script
    cmd = _shown(osctl) if osctl.exists() else f"{sys.executable} -m talos_init.osctl"
    if osctlconfig is None:  # the config's own PKI: the user's own osctl config, our port
        return [f"{cmd} -e 127.0.0.1:{api_port} services"]
    return [f"export OSCTLCONFIG={osctlconfig.resolve()}", f"{cmd} services"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.e2e.run_node", description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=REPO / "configs" / "worker.yaml")
    parser.add_argument("--build", type=Path, default=REPO / "build")
    parser.add_argument("--api-port", type=int, default=0, help="host port for the API (default: any free)")
    parser.add_argument("--memory", type=int, default=2048, help="MiB")
    parser.add_argument("--cmdline", default="", help="extra kernel command line")
    parser.add_argument("--boot", choices=("kernel", "iso"), default="kernel",
                        help="kernel: QEMU's -kernel/-initrd; iso: the ISO under OVMF (UEFI), "
                             "a UKI whose command line carries the config URL")
    parser.add_argument("--pki", type=Path, default=None,
                        help="where the generated PKI and osctlconfig are kept "
                             "(default: BUILD/run-node)")
    parser.add_argument("--nodes", type=int, choices=(1, 2), default=1,
                        help="2: a controlplane and a worker on a private network (--config unused)")
    args = parser.parse_args(argv)
    if args.nodes == 2:
        if args.boot != "kernel":
            parser.error("--nodes 2 boots both guests by -kernel; --boot iso boots one node")
        return run_two(args)

    if not args.config.exists():
        parser.error(f"--config {args.config}: no such file")
    # `make image` has just built it and stamped its inputs: reused, not built again.
    print(f"run: image in {args.build} (built only when its inputs changed)", flush=True)
    ensure_built(args.build, quiet=False)
    pki = args.pki or args.build / "run-node"
    body, osctlconfig = config_for_node(args.config.read_bytes(), pki)
    state = UserdataServer(body=body)
    server = _serve(state)
    api_port = args.api_port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="talos-node-"))
    cmdline = [f"talos.config={state.guest_url}", *args.cmdline.split()]
    spec = VMSpec(args.build / "vmlinuz", args.build / "initramfs.img", workdir, cmdline=cmdline,
                  memory_mb=args.memory, config_port=state.port, api_port=api_port, echo=True)
    if args.boot == "iso":
        from initramfs import bootimg

        # The UKI's command line is fixed inside it: one made for this run carries the URL.
        made = bootimg.build_all(args.build, f"{bootimg.CMDLINE} {' '.join(cmdline)}",
                                 name="run-node", quiet=False)
        spec.kernel = spec.initrd = None
        spec.firmware, spec.boot_image, spec.allow_reboot = "ovmf", made["iso"], True
    print(f"run: serving {args.config} on 127.0.0.1:{state.port} (guest: {state.guest_url}); "
          f"API on 127.0.0.1:{api_port}; console log {workdir / 'serial.log'}", flush=True)
    if osctlconfig is not None:
        point_osctlconfig(osctlconfig, f"127.0.0.1:{api_port}")
        print(f"run: {args.config} has no machine CA key: serving it with the generated "
              f"machine CA; osctl config {osctlconfig} (endpoint 127.0.0.1:{api_port})", flush=True)
    print("run: to reach the node, in another terminal here:\n"
          + "".join(f"    {line}\n" for line in osctl_hint(osctlconfig, api_port)), end="", flush=True)
    vm = VM(spec)
    try:
        vm.start()
        try:
            return vm.wait_exit(timeout=10**9)
        except KeyboardInterrupt:
            print("\nrun: power button pressed (Ctrl-C again to kill QEMU)", flush=True)
            vm.powerdown()
            return vm.wait_exit(timeout=120)
    except KeyboardInterrupt:
        return 130
    finally:
        vm.close()
        server.shutdown()
        server.server_close()


def run_two(args: argparse.Namespace) -> int:
    from tests.e2e import twonode

    print(f"run: image in {args.build} (built only when its inputs changed)", flush=True)
    ensure_built(args.build, quiet=False)
    cluster = args.pki or args.build / "run-node-2"
    if not (cluster / "osctlconfig").exists():
        twonode.gen_two_node_cluster(cluster, "talos-init-pair")
    p = twonode.plan(cluster)
    servers, vms = [], []
    try:
        for name, body, peer, extra in (
                ("controlplane", p.controlplane, p.cp_peer, ((p.trustd_port, twonode.TRUSTD_PORT),)),
                ("worker", p.worker, p.worker_peer, ())):
            state = UserdataServer(body=body)
            servers.append(_serve(state))
            api_port = args.api_port + len(vms) if args.api_port else free_port()
            workdir = Path(tempfile.mkdtemp(prefix=f"talos-{name}-"))
            vm = VM(VMSpec(args.build / "vmlinuz", args.build / "initramfs.img", workdir,
                           cmdline=[f"talos.config={state.guest_url}", *args.cmdline.split()],
                           memory_mb=args.memory, config_port=state.port, api_port=api_port,
                           echo=not vms, peer_nic=peer, forwards=extra))
            vms.append(vm)
            print(f"run: {name}: API on 127.0.0.1:{api_port}, console log {workdir / 'serial.log'}",
                  flush=True)
        cp_at = f"127.0.0.1:{vms[0].spec.api_port}"
        point_osctlconfig(cluster / "osctlconfig", cp_at)
        first, second = osctl_hint(cluster / "osctlconfig", vms[0].spec.api_port)
        print("run: to reach the nodes, in another terminal here:\n"
              f"    {first}\n"
              f"    {second}                      # the controlplane\n"
              f"    {second.rsplit(' ', 1)[0]} -e {cp_at} -n {twonode.WORKER_ADDR} services"
              "   # the worker, through the controlplane", flush=True)
        for vm in vms:
            vm.start()
        try:
            return vms[0].wait_exit(timeout=10**9)
        except KeyboardInterrupt:
            print("\nrun: power button pressed on both (Ctrl-C again to kill QEMU)", flush=True)
            for vm in vms:
                vm.powerdown()
            return vms[0].wait_exit(timeout=120)
    except KeyboardInterrupt:
        return 130
    finally:
        for vm in vms:
            vm.close()
        for server in servers:
            server.shutdown()
            server.server_close()


if __name__ == "__main__":
    sys.exit(main())
