"""Runs inside `unshare --net` (a throwaway 'node' netns): the default CNI conf through the
real Debian plugins, against a 'pod' netns held by a sleeping child. Prints one JSON line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

conflist = json.loads(open(sys.argv[1]).read())
data_dir = sys.argv[2]
pod = subprocess.Popen(["unshare", "--net", "sleep", "60"])
try:
    netns = f"/proc/{pod.pid}/ns/net"
    for _ in range(100):  # unshare must have switched namespace before we use it
        if os.readlink(netns) != os.readlink("/proc/self/ns/net"):
            break
        subprocess.run(["sleep", "0.05"])
    results = []
    prev = None
    for plugin in conflist["plugins"]:
        # Chained as containerd runs a conflist: each plugin gets the previous one's result;
        # portmap gets the pod's hostPorts as containerd passes them (runtimeConfig).
        conf = dict(plugin, cniVersion=conflist["cniVersion"], name=conflist["name"])
        if "ipam" in conf:
            conf["ipam"] = dict(conf["ipam"], dataDir=data_dir)
        if prev is not None:
            conf["prevResult"] = prev
        if (plugin.get("capabilities") or {}).get("portMappings"):
            conf["runtimeConfig"] = {"portMappings": [
                {"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]}
        env = dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="talos-init-test",
                   CNI_NETNS=netns, CNI_IFNAME="eth0", CNI_PATH="/usr/lib/cni")
        r = subprocess.run([f"/usr/lib/cni/{conf['type']}"], input=json.dumps(conf),
                           capture_output=True, text=True, env=env)
        results.append({"type": conf["type"], "rc": r.returncode, "out": r.stdout, "err": r.stderr})
        if r.returncode == 0 and r.stdout.strip():
            prev = json.loads(r.stdout)
    lo = subprocess.run(["/usr/lib/cni/loopback"], capture_output=True, text=True,
                        input=json.dumps({"cniVersion": conflist["cniVersion"], "name": "lo",
                                          "type": "loopback"}),
                        env=dict(os.environ, CNI_COMMAND="ADD", CNI_CONTAINERID="talos-init-test",
                                 CNI_NETNS=netns, CNI_IFNAME="lo", CNI_PATH="/usr/lib/cni"))
    pod_addrs = subprocess.run(["nsenter", f"--net={netns}", "ip", "-j", "addr"],
                               capture_output=True, text=True).stdout
    # Reachability node -> pod across cni0: a TCP server in the pod netns, a client here.
    server = subprocess.Popen(
        ["nsenter", f"--net={netns}", sys.executable, "-c",
         "import socket; s = socket.create_server(('10.88.0.2', 8080)); print('up', flush=True)\n"
         "for _ in range(2):\n    c, _ = s.accept(); c.sendall(b'pod says hi'); c.close()"],
        stdout=subprocess.PIPE, text=True)
    reply = hostport = ""
    try:
        if server.stdout.readline().strip() == "up":
            with socket.create_connection(("10.88.0.2", 8080), timeout=10) as c:
                reply = c.recv(100).decode()
            # The hostPort: the node's own address, DNATed by portmap's rules to the pod.
            with socket.create_connection(("10.88.0.1", 18080), timeout=10) as c:
                hostport = c.recv(100).decode()
    finally:
        server.kill()
        server.wait()
    print(json.dumps({"results": results, "loopback_rc": lo.returncode, "loopback_err": lo.stderr,
                      "pod_addrs": json.loads(pod_addrs or "[]"), "reply": reply,
                      "hostport_reply": hostport,
                      "nat": subprocess.run(["iptables-save", "-t", "nat"], capture_output=True,
                                            text=True).stdout}))
finally:
    pod.kill()
    pod.wait()
